"""The two shapes a figure takes, so that each figure script only says what it runs and what it claims.

- ``sweep_figure``: rows of sweeps (Figure 1, its convnet appendix, the GC-regularization appendix, your own
  sweep): each row changes one ``RunConfig`` field over a grid of values from one base run; columns are
  metrics over training (embedding GC, geometric collapse, NC by default); the claim table has four rank
  correlations per row (``sweep_claims``).
- ``training_figure``: curves over training, one run per seed (Figures 2 and 3).

A figure gives a ``setup(args) -> (base RunConfig, {field: values}, seeds)`` (any field can be swept; the
direction each sweep is expected to lower GC comes from ``DIRECTIONS`` or the figure's own table).
"""
import sys
import time

import numpy as onp

from . import claims as C
from .cli import figure_outputs, figure_parser, parse, run_sweep, save_figure, write_figure
from .config import with_options
from .history import final, finals, series, train_seconds
from .plotting import BANDS, fmt_value
from .sweep import by_sweep, flat, sweep_configs

# field -> (label, sign of spearman(value, final GC) the paper expects: a higher lr, a smaller batch, more L2
# and a stronger GC penalty lower GC)
DIRECTIONS = {"lr": ("learning rate", -1), "batch_size": ("batch size", +1), "l2": ("L2 strength", -1),
              "gc_reg": ("GC penalty", -1)}
METRICS = [("gc", "embedding GC"), ("gcol", "geometric collapse"), ("nc_train", "NC (train CDNV)")]
MODEL_NAMES = {"mlp": "MLP", "convnet": "Convnet", "vgg11": "VGG-11", "vgg13": "VGG-13", "resnet18": "ResNet-18"}


def model_title(config):
    """'MLP (hidden 256-256-64) on mnist5k', 'VGG-13 on cifar10', ... for a figure's title."""
    name = MODEL_NAMES.get(config.model, config.model)
    if config.model == "mlp":
        name += " (hidden " + "-".join(str(h) for h in config.hidden) + ")"
    elif config.model == "convnet":
        name += f" (channels {'-'.join(str(c) for c in config.channels)}, dense {'-'.join(str(h) for h in config.hidden)})"
    if config.activation != "relu":
        name += f" ({config.activation})"
    return f"{name} on {config.dataset}"


def sweep_claims(figure, label, values, hist, expected_sign, value_name, predictors=(("gc", "GC"),)):
    """The claims of one sweep; ``hist`` = [[history per value] per seed], ``values`` in the same order.

    spearman(value, final GC) and spearman(value, final NC) with ``expected_sign``; for each predictor
    (final GC by default), spearman(predictor, final NC) and spearman(predictor, final geometric collapse),
    expected positive. spearman(final GC, final NC) restates the first two (both rank the same swept values),
    so it is marked derived: shown, never counted.
    """
    xs = [list(sweep_positions(values)) for _ in hist]
    nc, gcol = finals(hist, "nc_train"), finals(hist, "gcol")
    word = "higher" if expected_sign < 0 else "smaller"
    out = [
        C.rank_correlation_claim(figure, f"{word} {label} gives lower final GC", xs, finals(hist, "gc"), expected_sign,
                                 value_name, "gc"),
        C.rank_correlation_claim(figure, f"{word} {label} gives lower final NC", xs, nc, expected_sign,
                                 value_name, "nc_train"),
    ]
    for metric, name in predictors:
        pred = finals(hist, metric)
        claim = C.rank_correlation_claim(figure, f"{label} sweep: lower final {name} goes with lower final NC",
                                         pred, nc, +1, metric, "nc_train")
        # value -> GC and value -> NC are both tested above: GC -> NC within the sweep restates them
        out.append(C.derived(claim, f"the two {label} claims above (value -> GC, value -> NC)") if metric == "gc"
                   else claim)
        if metric != "gcol":
            out.append(C.rank_correlation_claim(
                figure, f"{label} sweep: lower final {name} goes with lower geometric collapse", pred, gcol, +1,
                metric, "gcol"))
    return out


CROSS_RUN = [("bound_gc", "GC bound"), ("gcol", "GCol"), ("gc", "GC"), ("nc_test", "test NC (CDNV)")]


def distinct_runs_per_seed(hist_by_field):
    """[[history of every distinct run] per seed] over all sweeps (a shared base run counted once)."""
    out, seen = {}, set()
    for per_seed in hist_by_field.values():
        for hs in per_seed:
            for h in hs:
                if h["key"] not in seen:
                    seen.add(h["key"])
                    out.setdefault(h["config"]["seed"], []).append(h)
    return [out[s] for s in sorted(out)]


def cross_run_claims(figure, hist_by_field):
    """Across every run of every sweep, per seed: does a lower final GC bound (GCol, GC, test NC) go with a lower
    final NCC test error? Within one run everything that trends correlates with the error; across runs the
    bound has to rank runs that ended differently. The test NC of the embeddings is the comparison: a
    description gives the bound's partial rank correlation with the error once the test NC is accounted for
    (what the GC bound adds to the collapse it stands in for)."""
    runs = distinct_runs_per_seed(hist_by_field)
    err = finals(runs, "ncc_test_error")
    out = [C.rank_correlation_claim(figure, f"across all runs: a lower final {name} goes with a lower final NCC "
                                    "test error", finals(runs, metric), err, +1, metric, "ncc_test_error")
           for metric, name in CROSS_RUN]
    partial = [partial_spearman(b, e, n) for b, e, n in
               zip(finals(runs, "bound_gc"), err, finals(runs, "nc_test"))]
    used = [v for v in partial if onp.isfinite(v)]
    out.append(C.Claim(figure, "across all runs, given the final test NC: the GC bound's partial rank correlation "
                       "with the final NCC test error", "partial spearman(bound_gc, ncc_test_error | nc_test)",
                       float(onp.mean(used)) if used else float("nan"), len(used), "", "n/a", partial,
                       "a description: mean over seeds of the Spearman correlation of the residuals of bound and "
                       "error ranks after a linear fit on the test-NC ranks; near 0 means the bound ranks runs by "
                       "little more than their collapse does", kind="description"))
    return out


def partial_spearman(x, y, z):
    """Spearman correlation of x and y given z: the correlation of the residuals of rank(x) and rank(y) after a
    least-squares line in rank(z); finite points only, nan with fewer than 4."""
    from scipy import stats

    x, y, z = (onp.asarray(a, dtype=float) for a in (x, y, z))
    ok = onp.isfinite(x) & onp.isfinite(y) & onp.isfinite(z)
    if ok.sum() < 4:
        return float("nan")
    rx, ry, rz = (stats.rankdata(a[ok]) for a in (x, y, z))
    A = onp.column_stack([onp.ones_like(rz), rz])
    res = [r - A @ onp.linalg.lstsq(A, r, rcond=None)[0] for r in (rx, ry)]
    if min(onp.std(r) for r in res) < 1e-12:
        return float("nan")
    return float(onp.corrcoef(res[0], res[1])[0, 1])


def draw_cross_run(hist_by_field, title):
    """One panel per predictor of CROSS_RUN: every run's final value against its final NCC test error."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from .plotting import style

    style()
    runs = distinct_runs_per_seed(hist_by_field)
    fig, axes = plt.subplots(1, len(CROSS_RUN), figsize=(4.3 * len(CROSS_RUN), 3.8))
    for ax, (metric, name) in zip(axes, CROSS_RUN):
        for s, hs in enumerate(runs):
            ax.plot([final(h, metric) for h in hs], [final(h, "ncc_test_error") for h in hs], "o", ms=4, alpha=0.8,
                    color=f"C{s % 10}", label=f"seed {hs[0]['config']['seed']}")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"final {name} (log)")
        ax.set_ylabel("final NCC test error")
    axes[0].legend(loc="best", fontsize=7)
    fig.suptitle(f"{title}: every run of every sweep, one point each, coloured by seed", y=1.02)
    fig.tight_layout()
    return fig


def sweep_positions(values):
    """The swept values as numbers for a rank correlation: themselves when they are numbers, else their order
    in the sweep (0, 1, 2, ...: e.g. activations or layer widths given as tuples, in the order the figure gives
    them)."""
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return [float(i) for i in range(len(values))]


def direction_of(field, directions=None):
    """(label, expected sign) of a swept field: the figure's table, else ``DIRECTIONS``, else (field, -1)."""
    return (directions or {}).get(field) or DIRECTIONS.get(field) or (field, -1)


def draw_sweeps(grid, hist_by_field, title, directions=None, metrics=METRICS, log=(), band="minmax"):
    """One row per swept field, one column per metric: a curve per value, mean over seeds, min-max band."""
    import matplotlib.pyplot as plt

    from .plotting import draw_sweep_row, style

    style()
    fields = list(grid)
    fig, axes = plt.subplots(len(fields), len(metrics), figsize=(13, 3.2 * len(fields) + 0.4), squeeze=False)
    arrows = {-1: "increasing", +1: "decreasing"}
    for r, field in enumerate(fields):
        label, sign = direction_of(field, directions)
        draw_sweep_row(axes[r], grid[field], hist_by_field[field], f"{label} ({arrows[sign]})", metrics, log=log,
                       band=band)
        for c, (_, mlabel) in enumerate(metrics):
            axes[r, c].set_title(f"({'abcdefgh'[r]}{c + 1}) {mlabel}, {label} sweep")
    fig.suptitle(f"{title}: lines = mean over seeds, bands = {BANDS[band]}; x = a diverged run", y=1.0)
    fig.tight_layout()
    return fig


def summarize_sweeps(grid, hist_by_field, metrics=("gc", "gcol", "nc_train", "nc_test", "train_acc", "test_acc",
                                                   "ncc_test_error", "bound_gc")):
    """Per-sweep, per-value, per-seed curves and finals of the recorded metrics, for the JSON."""
    out = {}
    for field, per_seed in hist_by_field.items():
        rows = []
        for hs in per_seed:
            for v, h in zip(grid[field], hs):
                rows.append({"value": v, "seed": h["config"]["seed"], "key": h["key"], "status": h["status"],
                             "message": h["message"], "seconds": h["seconds"], "steps": series(h, "gc")[0].tolist(),
                             **{m: series(h, m)[1].tolist() for m in metrics},
                             "final": {m: final(h, m) for m in metrics}})
        out[field] = rows
    return out


def print_finals(grid, hist_by_field, metrics=("gc", "gcol", "nc_train", "train_acc"), out=sys.stdout):
    """A table of the final metrics (mean over the seeds that finished) for every swept value."""
    print(f"{'sweep':<11s}{'value':>9s}  " + "  ".join(f"{m:>10s}" for m in metrics) + "   finished", file=out)
    for field, per_seed in hist_by_field.items():
        for i, v in enumerate(grid[field]):
            hs = [h[i] for h in per_seed]
            ok = any(h["status"] == "finished" for h in hs)
            vals = [onp.nanmean([final(h, m) for h in hs]) if ok else float("nan") for m in metrics]
            n_ok = sum(h["status"] == "finished" for h in hs)
            label = f"{v:g}" if isinstance(v, (int, float)) else fmt_value(v)
            print(f"{field:<11s}{label:>9s}  " + "  ".join(f"{x:>10.4g}" for x in vals) + f"   {n_ok}/{len(hs)}",
                  file=out)


def sweep_figure(argv, name, doc, setup, *, add_options=None, directions=None, out_name=None, log=(),
                 predictors=(("gc", "GC"),), make_claims=None, cross_run=False, dataset_and_model=False,
                 band="minmax"):
    """Run, draw and check a sweep figure; returns {"png", "json", "claims", "histories", "by_sweep"}.

    ``setup(args) -> (base, {field: values}, seeds)`` from the parsed command line (``args.scale``,
    ``args.seeds`` and the figure's own options); the command line's backend and data root are applied to the
    base here (``config.with_options``). ``dataset_and_model`` adds ``--dataset``/``--model`` (replacing the
    scale's; the outputs are then named ``<name>_<model>_<dataset>``); ``add_options(parser)`` adds the
    figure's own options; ``out_name(args, base)`` names the outputs (default ``name``);
    ``make_claims(grid, hist_by_field)`` replaces the default claims (``sweep_claims`` per row, with
    ``predictors`` of the final NC); ``cross_run`` adds the claims and the picture (``<name>_across_runs.png``)
    of the bound across runs; ``band`` the spread drawn around each mean (``plotting.BANDS``).
    """
    p = figure_parser(f"python -m minigcnc.{name}", doc)
    if dataset_and_model:
        p.add_argument("--dataset", default=None, help="dataset instead of the scale's default (e.g. mnist, cifar10)")
        p.add_argument("--model", default=None, help="model instead of the scale's default (e.g. vgg11, vgg13)")
    if add_options:
        add_options(p)
    args = parse(p, argv)
    t0 = time.time()
    base, grid, seeds = setup(args)
    variant = dataset_and_model and (args.dataset or args.model)
    base = with_options(base, args.scale, args.backend, args.data_root, *((args.dataset, args.model) if variant else ()))
    sweeps = sweep_configs(base, grid, seeds)
    cfgs = flat(sweeps)
    histories = run_sweep(name, args, cfgs)
    hist = by_sweep(sweeps, histories)
    if make_claims:
        claims = make_claims(grid, hist)
    else:
        claims = [c for field in grid for c in sweep_claims(name, direction_of(field, directions)[0], grid[field],
                                                             hist[field], direction_of(field, directions)[1], field,
                                                             predictors)]
    if cross_run:
        claims += cross_run_claims(name, hist)
    stem = out_name(args, base) if out_name else (f"{name}_{base.model}_{base.dataset}" if variant else name)
    title = f"{model_title(base)}, {len(seeds)} seeds"
    fig = draw_sweeps(grid, hist, title, directions, log=log, band=band)
    extra_png = None
    if cross_run:
        extra_png = figure_outputs(f"{stem}_across_runs", args.scale, args.out)[0]
        save_figure(draw_cross_run(hist, title), extra_png)
    print_finals(grid, hist)
    print()
    png, js = write_figure(stem, args.scale, args.out, fig, {
        "figure": name, "scale": args.scale, "base": base.to_dict(), "grid": grid, "seeds": list(seeds),
        "configs": [c.to_dict() for c in cfgs], "runs": summarize_sweeps(grid, hist),
        "train_seconds": train_seconds(histories), **({"across_runs_png": str(extra_png)} if extra_png else {})},
        claims, t0)
    return {"png": str(png), "json": str(js), "claims": claims, "histories": histories, "by_sweep": hist}


def training_figure(argv, name, doc, configs_of, make_claims, draw, summarize, extra=None):
    """Run, draw and check a figure of curves over training, one run per seed (Figures 2 and 3).

    ``configs_of(args)`` gives the runs; ``make_claims``, ``draw(histories, title)`` and ``summarize`` turn
    their histories into the claim table, the figure and the JSON's ``runs``; ``extra`` (a dict, or a
    function of the histories giving one) adds fields to the JSON.
    """
    args = parse(figure_parser(f"python -m minigcnc.{name}", doc), argv)
    t0 = time.time()
    cfgs = configs_of(args)
    histories = run_sweep(name, args, cfgs)
    claims = make_claims(histories)
    title = f"{model_title(cfgs[0])}, {len(cfgs)} seeds"
    fig = draw(histories, title)
    png, js = write_figure(name, args.scale, args.out, fig, {
        "figure": name, "scale": args.scale, "configs": [c.to_dict() for c in cfgs],
        **(extra(histories) if callable(extra) else (extra or {})),
        "runs": summarize(histories)}, claims, t0)
    return {"png": str(png), "json": str(js), "claims": claims, "histories": histories}
