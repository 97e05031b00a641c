"""Figure 3: bounds on the nearest-class-centre (NCC) test error over training: does each track the error, and
which of them says anything?

    python -m minigcnc.figure3                  # laptop scale, a few minutes on 2 cores from an empty cache
    python -m minigcnc.figure3 --scale tiny     # seconds (a plumbing check)
    python -m minigcnc.figure3 --scale paper --data-root DIR   # VGG-13 on CIFAR-10, on a GPU

The runs (fixed before any verdict of them was seen; docs/figures.md#figure3 says why): the nine configs of
Figure 1's lr and batch-size sweeps (``presets.SWEEP_GRIDS``) x 3 seeds on the digits, and the lr sweep x 3
seeds on ``gaussians``, Gaussian classes whose Poincare constants are exact. At every evaluation the NCC
classifier (training class means) is tested on held-out images; beside its class-averaged error every bound
of ``bounds.py`` is recorded (docs/theory.md#bounds-on-the-ncc-test-error): the paper-style GC bound (rho_i the
Gaussian proxy lambda_max Cov(x | i)), the CDNV (Markov) and Cantelli union bounds, also capped at 1 per
class, the *sharp* moment bound (the best bound from each class's test mean and covariance, an SDP), its GC
form, the covariance-weighted GC bounds (valid for Gaussian classes only) and a Clopper-Pearson 95% upper
bound of the error from the test set, the yardstick of what "non-vacuous" can mean here.

What the table tests (``experiments.claims``):
- *Tracking, configs as units.* Every curve falls over training, so any two correlate within a run. At each
  checkpoint and seed the mean over configs is removed from each curve (the shared trend); then
  R_s[c, c'] = correlation over checkpoints of config c's bound and config c''s error, and the statistic is
  matched minus mismatched, p over permutations of the config labels. A positive control that must track
  (the classifier head's test error, 1 - test accuracy) is judged the same way; test NC is shown as a
  yardstick. The design's power (``experiments.power``): how often a tracker at the control's strength, and
  independent curves, would "hold" in this design, printed after the table.
- *Levels across configs*: does the config with the lower final bound end with the lower final error
  (seed-averaged configs, exact permutation over configs)?
- Checks, apart: every bound stays above the error where it is valid by construction; the Poincare step's
  slack rho_c GC_c / Var_c (1 = tight, below 1 = not a bound, 50 = a bound fifty times the variance it bounds).

The runs of each scale: the last lines of ``--help``. More: docs/figures.md#figure3.
"""
import io
import time

import numpy as onp

from .experiments import claims as C
from .experiments.cli import figure_parser, parse, run_sweep, write_figure
from .experiments.config import with_options
from .experiments.driver import model_title, runs_epilog
from .experiments.history import final, series
from .experiments.power import tracking_power
from .experiments.presets import AGOP_EXTRAS, FLATNESS_EXTRAS, MOMENT_EXTRAS, SWEEP_GRIDS, sweep_base
from .experiments.table import print_table

NAME = "figure3"
SEEDS = {"tiny": 2, "laptop": 3, "paper": 3}
TINY_CLASSES = (0, 1, 2, 3, 4)  # at tiny scale five classes, so the plumbing check takes seconds (k - 1 halfspaces
# per class in each sharp-bound SDP)
TINY = {"classes": TINY_CLASSES, "extras": MOMENT_EXTRAS + FLATNESS_EXTRAS + AGOP_EXTRAS}  # the tiny runs' changes
ERROR = "ncc_test_error_balanced"  # the class-averaged NCC test error: what every bound bounds
CONTROL = ("head_test_error", "the classifier head's test error (1 - test accuracy)")
YARDSTICK = ("nc_test", "test NC (CDNV of the test embeddings)")
TRACKED = [  # the bounds whose tracking is counted: the paper's GC bound, the two rho-free ones, the sharp one
    ("bound_gc", "GC bound"),
    ("bound_markov", "CDNV (Markov) bound"),
    ("bound_directional", "directional (Cantelli) bound"),
    ("bound_sharp", "sharp moment bound"),
]
LEVELS = [("bound_gc", "GC bound"), ("bound_sharp", "sharp moment bound")]
FINALS = [  # (metric, label, the step that makes it loose when it is vacuous)
    (ERROR, "NCC test error (class-averaged)", ""),
    ("ncc_test_error_cp_upper", "Clopper-Pearson 95% upper bound (test set)", ""),
    ("bound_sharp", "sharp moment bound (SDP)", "the moments alone allow that much error"),
    ("bound_directional_capped", "directional (Cantelli) bound, capped", "the union over pairs"),
    ("bound_directional", "directional (Cantelli) bound", "the union over k-1 pairs, uncapped"),
    ("bound_markov_capped", "CDNV (Markov) bound, capped", "Markov along every pair and the union"),
    ("bound_markov", "CDNV (Markov) bound", "Markov along every pair and the union"),
    ("bound_gc_weighted", "GC bound, covariance-weighted step (Gaussian only)", "the union and Markov steps"),
    ("bound_sharp_gc_weighted", "sharp bound, covariance-weighted step (Gaussian only)", "the weighted Poincare step"),
    ("bound_sharp_gc", "sharp bound with rho_i E[J J^T] (GC form)", "the isotropic Poincare step"),
    ("bound_gc_capped", "GC bound, capped", "the isotropic Poincare step, Markov and the union"),
    ("bound_gc", "GC bound (paper's form)", "the isotropic Poincare step, Markov and the union"),
]
DRAWN = [  # panel (a) and (c): (metric, colour, line style)
    ("ncc_test_error_cp_upper", "C3", ":"), ("bound_sharp", "C1", "-"), ("bound_directional_capped", "C2", "--"),
    ("bound_markov", "C2", "-"), ("bound_sharp_gc", "C0", "--"), ("bound_gc_weighted", "C4", "-"),
    ("bound_gc", "C0", "-"),
]
AT_LAST = {"bound_sharp_gc", "bound_gc_weighted", "bound_sharp_gc_weighted"}  # recorded at the first and last
# evaluation only (measure.moment_bounds_gc): drawn as a point at the end
DATASETS = (("digits", "the digits"), ("gaussians", "Gaussian classes (exact rho)"))
SHORT = {ERROR: "NCC test error", "ncc_test_error_cp_upper": "Clopper-Pearson upper (test set)",
         "bound_sharp": "sharp moment bound", "bound_directional_capped": "Cantelli, capped",
         "bound_markov_capped": "Markov (CDNV), capped", "bound_sharp_gc_weighted": "sharp, weighted step (Gaussian)",
         "bound_gc_weighted": "GC, weighted step (Gaussian)", "bound_sharp_gc": "sharp, rho E[J J^T] (GC form)",
         "bound_gc": "GC bound (paper's form)"}  # panel (d)'s labels


def scale_setup(scale, *, seeds=None, backend=None, data_root=None):
    """(digits base RunConfig, {field: values}: Figure 1's lr and batch-size sweeps, seeds) at ``scale``."""
    base = with_options(sweep_base(scale, **(TINY if scale == "tiny" else {})), scale, backend,
                        data_root)
    grid = {f: SWEEP_GRIDS[scale][f] for f in ("lr", "batch_size")}
    return base, grid, list(range(seeds or SEEDS[scale]))


def gaussian_base(scale, backend=None, data_root=None):
    """The base run on the Gaussian classes: the MLP of the scale's sweeps (the laptop one at paper scale), with
    the command line's backend (``data_root`` is passed on; the Gaussian classes need no files)."""
    base = sweep_base("tiny" if scale == "tiny" else "laptop", dataset="gaussians",
                      **(TINY if scale == "tiny" else {}))
    return with_options(base, scale, backend, data_root)


def design(scale, *, seeds=None, backend=None, data_root=None):
    """{"digits": [(label, [config per seed]) per config], "gaussians": [...]}: the runs of Figure 3.

    The digits: every distinct config of Figure 1's lr and batch-size sweeps (the shared base run once); the
    Gaussian classes: the lr sweep."""
    base, grid, seeds = scale_setup(scale, seeds=seeds, backend=backend, data_root=data_root)
    out = {"digits": [], "gaussians": []}
    seen = set()
    for field, values in grid.items():
        for v in values:
            cfg = base.replace(**{field: v})
            key = (cfg.lr, cfg.batch_size)
            if key in seen:
                continue
            seen.add(key)
            out["digits"].append((f"lr={cfg.lr:g} bs={cfg.batch_size}", [cfg.replace(seed=s) for s in seeds]))
    gbase = gaussian_base(scale, backend, data_root)
    for v in grid["lr"]:
        out["gaussians"].append((f"lr={v:g}", [gbase.replace(lr=v, seed=s) for s in seeds]))
    return out


def configs(scale, *, seeds=None, backend=None, data_root=None):
    """The runs of Figure 3 at ``scale``, in ``design`` order (digits, then Gaussian classes)."""
    d = design(scale, seeds=seeds, backend=backend, data_root=data_root)
    return [c for name, _ in DATASETS for _, per_seed in d[name] for c in per_seed]


def lay_out(d, histories):
    """{dataset: [[history per seed] per config]} from ``run_sweep``'s flat list in ``configs`` order."""
    it = iter(histories)
    return {name: [[next(it) for _ in per_seed] for _, per_seed in d[name]] for name, _ in DATASETS}


def curve(h, metric, start=1):
    """The curve of ``metric`` over training from checkpoint ``start`` (1: the untrained network left out);
    ``head_test_error`` is 1 - test accuracy."""
    if metric == CONTROL[0]:
        return 1.0 - series(h, "test_acc")[1][start:]
    return series(h, metric)[1][start:]


def curves(runs, metric):
    """[[curve per seed] per config], each seed's curves cut to the checkpoints every config of it has."""
    out = [[curve(h, metric) for h in per_seed] for per_seed in runs]
    for s in range(len(out[0]) if out else 0):
        n = min(len(out[c][s]) for c in range(len(out)))
        for c in range(len(out)):
            out[c][s] = out[c][s][:n]
    return out


def without_shared_trend(cs):
    """The curves minus, at each checkpoint and seed, their mean over configs (the trend every config shares).

    The mean is symmetric in the config labels, so permuting the configs of one curve permutes its centred
    curves: the config-pairing test stays exact."""
    out = [[None] * len(cs[0]) for _ in cs]
    for s in range(len(cs[0])):
        M = onp.array([cs[c][s] for c in range(len(cs))], dtype=float)
        with onp.errstate(invalid="ignore"):
            M = M - onp.nanmean(M, axis=0)
        for c in range(len(cs)):
            out[c][s] = M[c]
    return out


def tracking(statement, a_curves, err_curves, a_name):
    """The counted tracking test: configs as units, the shared trend removed (``without_shared_trend``)."""
    return C.config_tracking_claim(NAME, statement, without_shared_trend(a_curves), without_shared_trend(err_curves),
                                   a_name + " - trend", ERROR + " - trend")


def finals(runs, metric):
    """[[final value per seed] per config]."""
    return [[final(h, metric) if metric != CONTROL[0] else 1.0 - final(h, "test_acc") for h in per_seed]
            for per_seed in runs]


def make_claims(runs, gauss=None):
    """Figure 3's claims (tracking and levels on the digits), the control and the yardstick, the design's
    variant without trend removal, and the checks (both datasets)."""
    err = curves(runs, ERROR)
    control = tracking(f"positive control: {CONTROL[1]} tracks the NCC test error (must hold for the design to "
                       "see tracking)", curves(runs, CONTROL[0]), err, CONTROL[0])
    out = []
    for metric, label in TRACKED:
        c = tracking(f"the {label} tracks the NCC test error over training (configs as units, shared trend "
                     "removed)", curves(runs, metric), err, metric)
        c.detail += f"; beside the positive control's contrast {control.value:+.3f}"
        out.append(c)
    for metric, label in LEVELS:
        out.append(C.config_rank_claim(NAME, f"across configs: the config with the lower final {label} has the "
                                       "lower final NCC test error", finals(runs, metric), finals(runs, ERROR), +1,
                                       metric, ERROR))
    C.mark_forced(out)  # a level claim whose bound ranks the configs as another's does is a copy: derived
    out.append(control_check(control))
    yard = tracking(f"yardstick: {YARDSTICK[1]} tracks the NCC test error (configs as units, shared trend "
                    "removed)", curves(runs, YARDSTICK[0]), err, YARDSTICK[0])
    out.append(as_description(yard))
    raw = C.config_tracking_claim(NAME, "design variant, the shared trend kept: the GC bound tracks the NCC test "
                                  "error (configs as units)", curves(runs, "bound_gc"), err, "bound_gc", ERROR)
    out.append(as_description(raw))
    out += bound_checks(runs, "digits")
    if gauss:
        out += bound_checks(gauss, "Gaussian classes")
    return out


def as_description(claim):
    """A tested statement shown beside the claims but never counted (its p is kept in ``detail``)."""
    claim.detail = f"p {claim.p_value if claim.p_value is not None else float('nan'):.3g} (shown, not counted); " \
                   + claim.detail
    claim.kind = "description"
    return claim


def control_check(control):
    """The positive control as a check of the design: it holds when the control's own tracking test holds."""
    ok = None if control.verdict == "n/a" else control.verdict == "holds"
    return C.check(NAME, control.statement, control.statistic, control.value, ok, per_seed=control.per_seed,
                   ci=control.ci, n_seeds=control.n_seeds, n_points=control.n_points, expected="holds (p < 0.05)",
                   detail=f"p {control.p_value if control.p_value is not None else float('nan'):.3g}; "
                          + control.detail)


def flat_runs(runs):
    return [h for per_seed in runs for h in per_seed if h["evals"]]


def all_curves(runs, metric):
    return [series(h, metric)[1] for h in flat_runs(runs)]


def bound_checks(runs, where):
    """The inequalities every valid bound keeps (by construction on the test images), the sharp bound below the
    Cantelli one, and the Poincare steps' slack (measured: a proxy rho can fail it)."""
    out = []
    hs = flat_runs(runs)
    err = all_curves(runs, ERROR)
    for metric, label in (("bound_markov", "CDNV (Markov) bound"), ("bound_directional", "directional bound"),
                          ("bound_sharp", "sharp moment bound")):
        out.append(C.inequality_check(NAME, f"{where}: the {label} stays above the class-averaged NCC test error",
                                      all_curves(runs, metric), err, metric, ERROR, by_construction=True))
    out.append(C.inequality_check(NAME, f"{where}: the sharp bound is never looser than the capped Cantelli bound",
                                  all_curves(runs, "bound_directional_capped"), all_curves(runs, "bound_sharp"),
                                  "bound_directional_capped", "bound_sharp", by_construction=True))
    out.append(C.inequality_check(NAME, f"{where}: the GC bound stays above the class-averaged NCC test error "
                                  "(valid only where its Poincare step is)", all_curves(runs, "bound_gc"), err,
                                  "bound_gc", ERROR))
    out.append(slack_check(hs, where, "poincare_margin", "Poincare step with the proxy rho" if where == "digits"
                           else "Poincare step with the exact rho", "rho_c GC_c / Var_c"))
    out.append(slack_check(hs, where, "weighted_poincare_margin", "covariance-weighted Poincare step (valid for "
                           "Gaussian classes)", "E tr(J Sigma_c J^T) / Var_c"))
    return out


def slack_check(hs, where, key, what, ratio):
    """A Poincare step per class, seed and checkpoint: its slack ``ratio`` must be >= 1 (else the bound built on
    it is no bound there); the smallest slack is the value, the median says how loose the step is."""
    vals = [onp.concatenate([onp.asarray(e.get(key, []), dtype=float).ravel() for e in h["evals"]]) for h in hs]
    allv = onp.concatenate(vals) if vals else onp.array([])
    allv = allv[onp.isfinite(allv)]
    ok = bool(onp.all(allv >= 1.0)) if len(allv) else None
    smallest = float(allv.min()) if len(allv) else float("nan")
    median = float(onp.median(allv)) if len(allv) else float("nan")
    return C.check(NAME, f"{where}: {what}: slack {ratio} >= 1 for every class (min shown; 1 = tight, larger = "
                   "looser)", f"min {ratio}", smallest, ok, n_seeds=len(hs), n_points=int(len(allv)), expected=">= 1",
                   detail=f"{int(onp.sum(allv >= 1.0))}/{len(allv)} (run, checkpoint, class) slacks >= 1; median slack "
                          f"{median:.3g}: a bound built on this step is that many times the variance it bounds")


def final_means(runs):
    """{metric: mean over every run of its final value} for FINALS."""
    hs = flat_runs(runs)
    with onp.errstate(all="ignore"):
        return {m: float(onp.nanmean([final(h, m) for h in hs])) if hs else float("nan") for m, _, _ in FINALS}


def design_power(runs, n_draws=200, centred=True):
    """(power, false-holds rate, control signal-to-noise) of this design (``power.tracking_power``) from its
    error and control curves, for the counted tracking test (``centred``) or its variant with the trend kept."""
    err, ctl = onp.array(curves(runs, ERROR), dtype=float), onp.array(curves(runs, CONTROL[0]), dtype=float)
    if err.ndim != 3 or err.shape[0] < 2 or err.shape[1] < 2 or err.shape[2] < 3 or not onp.isfinite(err).all() \
            or not onp.isfinite(ctl).all():
        return float("nan"), float("nan"), float("nan")
    prep = without_shared_trend if centred else (lambda cs: cs)

    def claim(a, b):
        return C.config_tracking_claim(NAME, "power", prep(a), prep(b), "a", "b", n_perm=999)

    return tracking_power(err, ctl, claim, n_draws=n_draws, seed=0)


def vacuity_lines(means):
    """Plain lines: which bounds are vacuous (>= 1: they say nothing), each with the step that makes it loose,
    and which are not."""
    bounds = FINALS[2:]
    vac = [(lb, why) for m, lb, why in bounds if means[m] >= 1 - 1e-9]
    use = [lb for m, lb, _ in bounds if means[m] < 1 - 1e-9]
    lines = ["  Vacuous (>= 1, so they say nothing about the error), each with the steps it rests on (panel (e) shows "
             "which step loses how much):"
             if vac else "  No bound is vacuous."]
    lines += [f"    {lb}: {why}" for lb, why in vac]
    lines.append(("  Non-vacuous: " + "; ".join(use) + ".") if use else "  Every bound is vacuous.")
    return lines


def tracking_lines(claims):
    """Each counted tracking claim beside the positive control: its contrast, verdict, and whether it is larger."""
    control = next((c for c in claims if c.statement.startswith("positive control")), None)
    rows = [c for c in claims if c.kind == "claim" and " tracks the NCC test error over training" in c.statement]
    if control is None or not rows:
        return []
    fmt = lambda v: "nan" if v is None or not onp.isfinite(v) else f"{v:+.3f}"  # noqa: E731
    lines = [f"Tracking (configs as units, shared trend removed), beside the positive control ({CONTROL[1]}: "
             f"{fmt(control.value)}, {control.verdict}; above/below the control's contrast: a description, not a test):"]
    for c in rows:
        label = c.statement.split(" tracks ")[0].replace("the ", "", 1)
        side = "above" if c.value > control.value else "below"
        lines.append(f"  {label:<34s} {fmt(c.value)}  {c.verdict:<12s} ({side} the control)")
    return lines


def print_finals(means_by_data, power, out=None, claims=(), agop_runs=()):
    """The tracking verdicts beside the control, the final values (mean over runs) of every bound on both
    datasets, which are vacuous and why, and the power of the design."""
    for line in tracking_lines(list(claims)):
        print(line, file=out)
    names = [n for n, _ in DATASETS if n in means_by_data]
    print("\nFinal values, mean over runs:", file=out)
    print(f"  {'':<58s}" + "".join(f"{n:>12s}" for n in names), file=out)
    for metric, label, _ in FINALS:
        print(f"  {label:<58s}" + "".join(f"{means_by_data[n][metric]:>12.4g}" for n in names), file=out)
    for n, title in DATASETS:
        if n in means_by_data:
            print(f"On {title}:", file=out)
            print("\n".join(vacuity_lines(means_by_data[n])), file=out)
    for line in agop_lines(agop_runs):
        print(line, file=out)
    (p, null, snr), (p_raw, null_raw, _) = power["trend removed"], power["trend kept"]
    print(f"Power of the tracking test in this design (simulated from its error curves): a tracker with the positive "
          f"control's signal-to-noise ({snr:.2f}) holds in {100 * p:.0f}% of draws, independent curves in "
          f"{100 * null:.0f}%; with the shared trend kept (the variant) {100 * p_raw:.0f}% and {100 * null_raw:.0f}%.",
          file=out)


def draw(layout, claims, title):
    """(a) digits: the error, its test-set yardstick and the bounds over training (log); (b) tracking with the
    shared trend removed: each config's GC bound against its own error; (c) levels across configs: final bound
    against final error per config; (d) as (a) on the Gaussian classes; (e) the final values on both datasets
    side by side: which step loses how much; (f) the AGOP spectrum at the start and the end (``draw_agop``)."""
    import matplotlib.pyplot as plt

    from .experiments.plotting import after_init, plot_band, style, sweep_colors

    style()
    fig = plt.figure(figsize=(18, 10))
    grid = fig.add_gridspec(2, 3)
    ax_a, ax_b, ax_c = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[0, 2])
    ax_d, ax_e, ax_f = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1]), fig.add_subplot(grid[1, 2])
    labels = {m: lb for m, lb, _ in FINALS}
    for ax, name, letter in ((ax_a, "digits", "a"), (ax_d, "gaussians", "d")):
        hs = after_init(flat_runs(layout[name]))
        ax.axhline(1.0, color="gray", lw=0.8, ls=":")
        ax.text(0.99, 1.08, "1: a bound above this line says nothing", transform=ax.get_yaxis_transform(),
                va="bottom", ha="right", fontsize=7, color="gray")
        for metric, color, ls in DRAWN:
            plot_band(ax, hs, metric, color, ls=ls, marker="D" if metric in AT_LAST else None,
                      label=f"{labels[metric]} (last step only)" if metric in AT_LAST else labels[metric])
        plot_band(ax, hs, ERROR, "C3", label=labels[ERROR], lw=2.2)
        ax.set_yscale("log")
        ax.set_xlabel("training iteration (the untrained network left off)")
        ax.set_ylabel("bound or error (log)")
        ax.set_title(f"({letter}) {dict(DATASETS)[name]}: bounds on the NCC test error")
    handles, names = ax_a.get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, 0.975))
    by_stat = {c.statistic: c for c in claims}

    runs = layout["digits"]
    err_c, gc_c = without_shared_trend(curves(runs, ERROR)), without_shared_trend(curves(runs, "bound_gc"))
    twin = ax_b.twinx()
    steps = series(flat_runs(runs)[0], ERROR)[0][1:] if flat_runs(runs) else []
    for c, color in enumerate(sweep_colors(len(runs), "plasma")):
        e = onp.nanmean(onp.array(err_c[c], dtype=float), axis=0)
        g = onp.nanmean(onp.array(gc_c[c], dtype=float), axis=0)
        n = min(len(steps), len(e))
        ax_b.plot(steps[:n], e[:n], "-", color=color, lw=1.6)
        twin.plot(steps[:n], g[:n], "--", color=color, lw=1.2)
    claim = by_stat.get(f"matched - mismatched pearson(bound_gc - trend, {ERROR} - trend) over configs")
    stat = f" ({claim.value:+.2f}, {claim.verdict})" if claim is not None else ""
    ax_b.set_xlabel("training iteration")
    ax_b.set_ylabel("NCC test error minus the mean over configs (solid)")
    twin.set_ylabel("GC bound minus the mean over configs (dashed)")
    ax_b.set_title(f"(b) digits, tracking with the shared trend removed{stat}:\neach config's GC bound (dashed) "
                   "against its own error (solid), one colour per config", fontsize=9)

    err = onp.nanmean(onp.array(finals(runs, ERROR), dtype=float), axis=1)
    for metric, label in LEVELS:
        y = onp.nanmean(onp.array(finals(runs, metric), dtype=float), axis=1)
        claim = by_stat.get(f"spearman({metric}, {ERROR}) over config means")
        rho = f": Spearman over configs {claim.value:+.2f}, {claim.verdict}" if claim is not None else ""
        ax_c.plot(err, y, "o", color="C0" if metric == "bound_gc" else "C1", label=f"{label}{rho}")
    ax_c.set_yscale("log")
    ax_c.set_xlabel("final NCC test error, mean over seeds (one point per config)")
    ax_c.set_ylabel("final bound, mean over seeds (log)")
    ax_c.set_title("(c) digits, levels across configs:\ndoes a lower bound mean a lower error?", fontsize=9)
    ax_c.legend(fontsize=7, loc="center right")

    means = {name: final_means(layout[name]) for name, _ in DATASETS}
    shown = [ERROR, "ncc_test_error_cp_upper", "bound_sharp", "bound_directional_capped", "bound_markov_capped",
             "bound_sharp_gc_weighted", "bound_gc_weighted", "bound_sharp_gc", "bound_gc"][::-1]
    yy = onp.arange(len(shown))
    for i, (name, title_) in enumerate(DATASETS):
        ax_e.barh(yy + (0.5 - i) * 0.38, [means[name][m] for m in shown], height=0.38, color=("0.45", "C8")[i],
                  label=title_)
    ax_e.axvline(1.0, color="gray", lw=0.8, ls=":")
    ax_e.set_xscale("log")
    ax_e.set_yticks(yy)
    ax_e.set_yticklabels([SHORT[m] for m in shown], fontsize=8)
    ax_e.set_xlabel("final value, mean over runs (log; 1 = says nothing)")
    ax_e.set_title("(e) final values on both datasets: which step loses how much")
    ax_e.legend(fontsize=8, loc="upper right")
    draw_agop(ax_f, layout["digits"], [label for label, _ in design_labels(layout)])
    fig.suptitle(f"Figure 3: {title}; lines = mean over runs, bands = min-max", y=1.0)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def design_labels(layout):
    """[(label, per_seed)] of the digits configs, labelled by their lr and batch size."""
    return [(f"lr={h[0]['config']['lr']:g} bs={h[0]['config']['batch_size']}", h) for h in layout["digits"] if h]


def agop_rows(runs):
    """Per config: (the runs' AGOP eigenvalue shares at step 0 and at the end, mean over seeds; the mean number
    of directions carrying 90% of the GC at step 0 and at the end)."""
    out = []
    for per_seed in runs:
        rows = {}
        for which, idx in (("start", 0), ("end", -1)):
            evals = [h["evals"][idx] for h in per_seed if h["evals"] and h["status"] == "finished"]
            shares = [onp.cumsum(onp.clip(onp.asarray(e["agop_eigs"], float), 0, None)) / e["agop_trace"]
                      for e in evals if e.get("agop_eigs") and e.get("agop_trace")]
            dirs = [e["agop_dirs90"] for e in evals if e.get("agop_dirs90") is not None]
            n = min((len(v) for v in shares), default=0)
            rows[which] = (onp.mean([v[:n] for v in shares], axis=0) if shares else onp.array([]),
                           float(onp.mean(dirs)) if dirs else float("nan"))
        out.append(rows)
    return out


def draw_agop(ax, runs, labels):
    """(f) the embedding's AGOP spectrum (trace = GC) at the start and the end of every digits config: the
    share of the GC carried by the largest eigen-directions, mean over seeds."""
    from .experiments.plotting import sweep_colors

    rows = agop_rows(runs)
    if rows and len(rows[0]["start"][0]):  # every config starts from the same networks (one init per seed)
        share, dirs = rows[0]["start"]
        ax.plot(onp.arange(1, len(share) + 1), share, ":", color="0.3", lw=1.6,
                label=f"step 0 (the same networks in every config): 90% in {dirs:.0f} dirs")
    for row, label, color in zip(rows, labels, sweep_colors(len(runs), "plasma")):
        share, dirs = row["end"]
        if len(share):
            ax.plot(onp.arange(1, len(share) + 1), share, "-", color=color, lw=1.2,
                    label=f"{label}, end: 90% in {dirs:.0f} dirs")
    n = max((len(r["end"][0]) for r in rows), default=0)
    ax.axhline(0.9, color="gray", lw=0.8, ls=":")
    ax.text(1, 0.91, "90% of the GC", fontsize=7, color="gray", va="bottom")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"AGOP eigen-directions, largest first (log; the {n} largest are recorded, the legend counts "
                  "all)")
    ax.set_ylabel("share of the embedding's GC carried")
    ax.set_title("(f) digits: the AGOP spectrum (trace AGOP = GC) at step 0 and at the end, mean over seeds",
                 fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(0, 0.88), ncol=1)


def agop_lines(runs):
    """A description: how many AGOP directions carry 90% of the GC at the start and at the end, per config."""
    rows = agop_rows(runs)
    if not rows or all(onp.isnan(r["end"][1]) for r in rows):
        return []
    starts = [r["start"][1] for r in rows]
    ends = [r["end"][1] for r in rows]
    return [f"AGOP (a description, not a test): 90% of the embedding's GC is carried by {onp.nanmin(starts):.0f}-"
            f"{onp.nanmax(starts):.0f} input directions at step 0 and {onp.nanmin(ends):.0f}-{onp.nanmax(ends):.0f} at "
            f"the end (digits configs, mean over seeds; panel (f))."]


def summarize(layout):
    """Per run: its config label, seed, status and the curves of the error, the control and every bound."""
    keys = ["ncc_test_error", ERROR, "test_acc", "nc_test", "gc", "gc_test", "rho_max", "poincare_margin_min"] + \
        [m for m, _, _ in FINALS[1:]]
    return {name: [{"config": i, "seed": h["config"]["seed"], "status": h["status"], "message": h["message"],
                    "lr": h["config"].get("lr"), "batch_size": h["config"].get("batch_size"),
                    "steps": series(h, ERROR)[0].tolist(), **{k: series(h, k)[1].tolist() for k in keys}}
                   for i, per_seed in enumerate(layout[name]) for h in per_seed] for name, _ in DATASETS}


def main(argv=None):
    """Run the figure from the command line ``argv`` (see the module docstring); returns its paths and claims."""
    args = parse(figure_parser(f"python -m minigcnc.{NAME}", __doc__, epilog=runs_epilog(scale_setup)), argv)
    t0 = time.time()
    d = design(args.scale, seeds=args.seeds, backend=args.backend, data_root=args.data_root)
    cfgs = configs(args.scale, seeds=args.seeds, backend=args.backend, data_root=args.data_root)
    histories = run_sweep(NAME, args, cfgs)  # from the cache, or trained
    layout = lay_out(d, histories)

    claims = make_claims(layout["digits"], layout["gaussians"])
    power = {"trend removed": design_power(layout["digits"]), "trend kept": design_power(layout["digits"], centred=False)}
    C.judge(claims)

    n_cfg, n_seeds = len(d["digits"]), len(d["digits"][0][1])
    fig = draw(layout, claims, f"{model_title(cfgs[0])}, {n_cfg} configs x {n_seeds} seeds (digits), "
               f"{len(d['gaussians'])} x {n_seeds} (Gaussian classes)")
    means = {name: final_means(layout[name]) for name, _ in DATASETS}
    C.judge(claims)  # q-values over the figure's family, verdicts on q
    png, js = write_figure(NAME, args.scale, args.out, fig, {
        "figure": NAME, "scale": args.scale, "design": {name: [label for label, _ in d[name]] for name, _ in DATASETS},
        "configs": [c.to_dict() for c in cfgs], "final_means": means,
        "agop_dirs90": {label: {"start": rows["start"][1], "end": rows["end"][1]} for (label, _), rows in
                        zip(design_labels(layout), agop_rows(layout["digits"]))},
        "power": {form: {"power": v[0], "false_holds": v[1], "control_snr": v[2], "draws": 200}
                  for form, v in power.items()},
        "runs": summarize(layout)}, claims, t0)
    print_table(claims, args.scale, cfgs)
    summary = io.StringIO()
    print_finals(means, power, out=summary, claims=claims, agop_runs=layout["digits"])
    print(summary.getvalue(), end="")
    return {"png": str(png), "json": str(js), "claims": claims, "histories": histories, "final_means": means,
            "power": power, "summary": summary.getvalue().strip()}


if __name__ == "__main__":
    main()
