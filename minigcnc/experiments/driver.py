"""The pieces a figure's ``main`` is written from, so that each figure script reads top to bottom: parse,
runs, train, claims, draw, write.

- claims: ``sweep_claims`` (one sweep: four rank correlations, the swept values the units, each seed's own
  beside as a description: ``sweep_rank_claims``), ``claims_of_sweeps`` (every row of a grid),
  ``cross_run_claims`` (the bound against the error across every config of every sweep, configs the units;
  ``runs_per_config`` / ``config_finals`` give a claim across configs its data);
- pictures: ``draw_sweeps`` (one row per sweep, one column per metric), ``draw_cross_run``;
- the JSON and the terminal: ``summarize_sweeps``, ``print_finals``;
- the command line: ``dataset_and_model_options`` (``--dataset``/``--model``), ``runs_epilog`` (the runs of
  every scale, printed from the code at the end of ``--help``), ``model_title``.

A sweep figure (Figure 1, its convnet appendix, the GC-regularization appendix, your own) has a
``scale_setup(scale) -> (base RunConfig, {field: values}, seeds)`` (any field can be swept; the direction each
sweep is expected to lower GC comes from ``EXPECTED_SIGN``, or the figure's own table for another knob); ``grid.sweep_configs``,
``grid.flat`` and ``grid.by_sweep`` turn it into runs and back; ``cli.figure_parser``, ``cli.parse``,
``cli.run_sweep`` and ``cli.write_figure`` are the command line, the training and the outputs.
"""
import sys
import textwrap

import numpy as onp

from . import claims as C
from .config import SCALES
from .history import final, finals, series, train_seconds
from .plotting import any_diverged, band_words, fmt_value

# knob -> the sign of spearman(value, final GC) the paper expects: a higher lr, a smaller batch, more L2 and a
# stronger GC penalty lower GC. The one table of these signs: every figure's sweep claims read it.
EXPECTED_SIGN = {"lr": -1, "batch_size": +1, "l2": -1, "gc_reg": -1}
KNOB_LABELS = {"lr": "learning rate", "batch_size": "batch size", "l2": "L2 strength", "gc_reg": "GC penalty"}
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


def by_config(per_seed):
    """``[[v per config] per seed]`` (the layout of ``history.finals``) as ``[[v per seed] per config]``."""
    return [list(row) for row in zip(*per_seed)]


def sweep_rank_claims(figure, statement, xs, ys, expected_sign, x_name, y_name):
    """[the counted claim, its per-seed description] on "x -> y" across one sweep; ``xs``, ``ys``: [[value per
    swept value] per seed].

    Counted: ``claims.config_rank_claim`` with the swept values as the units (each averaged over its seeds,
    exact over the sweep's values: 5 values allow p >= 2/120 two-sided; 4 or fewer cannot reach 0.05, and the
    claim is then a description). Beside it, never counted: the within-seed Spearman with the stratified
    permutation test (``claims.seeds_as_replicates``), which counts the seeds as replicates of the same values.
    """
    counted = C.config_rank_claim(figure, statement, by_config(xs), by_config(ys), expected_sign, x_name, y_name)
    per_seed = C.rank_correlation_claim(figure, statement, xs, ys, expected_sign, x_name, y_name)
    return [counted, C.seeds_as_replicates(per_seed)]


def sweep_claims(figure, label, values, hist, expected_sign, value_name, predictors=(("gc", "GC"),)):
    """The claims of one sweep; ``hist`` = [[history per value] per seed], ``values`` in the same order.

    spearman(value, final GC) and spearman(value, final NC) with ``expected_sign``; for each predictor
    (final GC by default), spearman(predictor, final NC) and spearman(predictor, final geometric collapse),
    expected positive. Each is counted with the swept values as the units and shown per seed beside it as a
    description (``sweep_rank_claims``). Which of them the others force (e.g. GC -> NC when value -> GC and
    value -> NC are +-1 over the value means) is computed by ``claims.mark_forced`` over the figure's claims
    (``claims_of_sweeps``).
    """
    xs = [list(sweep_positions(values)) for _ in hist]
    nc, gcol = finals(hist, "nc_train"), finals(hist, "gcol")
    word = "higher" if expected_sign < 0 else "smaller"
    out = (sweep_rank_claims(figure, f"{word} {label} gives lower final GC", xs, finals(hist, "gc"), expected_sign,
                             value_name, "gc")
           + sweep_rank_claims(figure, f"{word} {label} gives lower final NC", xs, nc, expected_sign, value_name,
                               "nc_train"))
    for metric, name in predictors:
        pred = finals(hist, metric)
        out += sweep_rank_claims(figure, f"{label} sweep: lower final {name} goes with lower final NC", pred, nc, +1,
                                 metric, "nc_train")
        if metric != "gcol":
            out += sweep_rank_claims(figure, f"{label} sweep: lower final {name} goes with lower geometric collapse",
                                     pred, gcol, +1, metric, "gcol")
    return out


def claims_of_sweeps(figure, grid, hist_by_field, predictors=(("gc", "GC"),), directions=None):
    """``sweep_claims`` of every row of ``grid`` in its order, each with its label and expected sign from
    ``direction_of(field, directions)``."""
    out = []
    for field, values in grid.items():
        label, sign = direction_of(field, directions)
        out += sweep_claims(figure, label, values, hist_by_field[field], sign, field, predictors)
    return C.mark_forced(out)


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


def runs_per_config(hist_by_field):
    """[[history per seed] per distinct config] over all sweeps (a shared base run counted once): the units of a
    claim across runs. Configs in order of first appearance; seeds in the order of ``distinct_runs_per_seed``."""
    out = {}
    for hs in distinct_runs_per_seed(hist_by_field):
        for h in hs:
            cfg = {k: v for k, v in h["config"].items() if k != "seed"}
            out.setdefault(repr(sorted(cfg.items())), []).append(h)
    return list(out.values())


def config_finals(per_config, metric):
    """[[final value per seed] per config] of ``metric``, for ``claims.config_rank_claim``."""
    return [[final(h, metric) for h in hs] for hs in per_config]


def cross_run_claims(figure, hist_by_field):
    """Across every config of every sweep: does a lower final GC bound (GCol, GC, test NC) go with a lower final
    NCC test error? Within one run everything that trends correlates with the error; across runs the bound has
    to rank runs that ended differently. Configs are the units (``claims.config_rank_claim``: each config
    averaged over its seeds, exact over the configs; each seed's own Spearman shown as its reproducibility):
    five seeds re-measuring the same configs are not five times the evidence. The test NC of the embeddings is
    the comparison: a description gives the bound's partial rank correlation with the error once the test NC is
    accounted for (what the GC bound adds to the collapse it stands in for)."""
    per_config = runs_per_config(hist_by_field)
    err_c = config_finals(per_config, "ncc_test_error")
    out = [C.config_rank_claim(figure, f"across all configs: a lower final {name} goes with a lower final NCC "
                               "test error", config_finals(per_config, metric), err_c, +1, metric, "ncc_test_error")
           for metric, name in CROSS_RUN]
    runs = distinct_runs_per_seed(hist_by_field)
    err = finals(runs, "ncc_test_error")
    partial = [partial_spearman(b, e, n) for b, e, n in
               zip(finals(runs, "bound_gc"), err, finals(runs, "nc_test"))]
    used = [v for v in partial if onp.isfinite(v)]
    out.append(C.Claim(figure, "across all runs, given the final test NC: the GC bound's partial rank correlation "
                       "with the final NCC test error", "partial spearman(bound_gc, ncc_test_error | nc_test)",
                       float(onp.mean(used)) if used else float("nan"), len(used), "", "n/a", partial,
                       "a description: mean over seeds of the Spearman correlation of the residuals of bound and "
                       "error ranks after a linear fit on the test-NC ranks; near 0 means the bound ranks runs by "
                       "little more than their collapse does", kind="description"))
    return C.mark_forced(out)


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
    """(label, expected sign) of a swept field: the figure's own ``directions`` for a knob outside
    ``EXPECTED_SIGN`` (e.g. an activation sweep), else ``KNOB_LABELS`` and ``EXPECTED_SIGN``, else (field, -1)."""
    if directions and field in directions:
        return directions[field]
    if field in EXPECTED_SIGN:
        return KNOB_LABELS.get(field, field), EXPECTED_SIGN[field]
    return field, -1


def draw_sweeps(grid, hist_by_field, title, directions=None, metrics=METRICS, log=(), band="minmax"):
    """One row per swept field, one column per metric: a curve per value, mean over seeds, min-max band, and the
    min-max of the final values as bars (``plotting.draw_sweep_row``); the title says what each mark is."""
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
    diverged = any_diverged(list(hist_by_field.values()))
    fig.suptitle(f"{title}: {band_words(band, diverged, bars=True)}", y=1.0)
    fig.tight_layout()
    return fig


def sweep_record(figure, scale, base, grid, seeds, cfgs, hist, histories):
    """The JSON record of a sweep figure: what ran (base, grid, seeds, every config), each run's curves and
    finals (``summarize_sweeps``) and the training time of the distinct runs."""
    return {"figure": figure, "scale": scale, "base": base.to_dict(), "grid": grid, "seeds": seeds,
            "configs": [c.to_dict() for c in cfgs], "runs": summarize_sweeps(grid, hist),
            "train_seconds": train_seconds(histories)}


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


def dataset_and_model_options(parser):
    """Add ``--dataset`` and ``--model`` (replacing the scale's; a figure names its outputs
    ``<name>_<model>_<dataset>`` when either is given) to a figure's ``parser``; returns the parser."""
    parser.add_argument("--dataset", default=None, help="dataset instead of the scale's default (e.g. mnist, cifar10)")
    parser.add_argument("--model", default=None, help="model instead of the scale's default (e.g. vgg11, vgg13)")
    return parser


def describe_run(config):
    """One line on a run: the network and data, floats, learning rate, batch, L2, steps and evaluations."""
    return (f"{model_title(config)}, {config.dtype}, lr {config.lr:g}, batch {config.batch_size}, L2 {config.l2:g}, "
            f"{config.steps:,} steps, eval every {config.eval_every:,}")


def runs_epilog(scale_setup):
    """The end of a figure's ``--help``: at every scale the base run, the seeds and the values each sweep takes,
    printed from ``scale_setup(scale) -> (base RunConfig, {field: values}, seeds)`` (so they stay true)."""
    label = lambda v: f"{v:g}" if isinstance(v, float) else fmt_value(v)  # noqa: E731 - 0.00025, not 3e-04
    setups = {scale: scale_setup(scale) for scale in SCALES}
    swept = any(grid for _, grid, _ in setups.values())
    lines = ["runs at each scale (--scale), from the code"
             + (": the base run, then each sweep's values" if swept else "")]
    for scale, (base, grid, seeds) in setups.items():
        lines += textwrap.wrap(f"{describe_run(base)}, {len(seeds)} seed{'s' if len(seeds) > 1 else ''}", 124,
                               initial_indent=f"  {scale:<7s} ", subsequent_indent=" " * 10)
        if grid:
            lines += textwrap.wrap("; ".join(f"{field} {' '.join(label(v) for v in values)}"
                                             for field, values in grid.items()), 124,
                                   initial_indent=" " * 10 + "sweeps: ", subsequent_indent=" " * 18)
    return "\n".join(lines)
