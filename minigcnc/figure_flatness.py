"""Figure: do a larger learning rate and a smaller batch end flatter, and do flatter ends have lower GC?

    python -m minigcnc.figure_flatness                # laptop scale: Figure 1's runs, read from the cache
    python -m minigcnc.figure_flatness --scale tiny   # seconds

The first link of the paper's chain (SGD's implicit regularization flattens the loss -> lower GC -> lower NC),
which Figure 1 does not measure. Figure 1's runs (the same configs: ``python -m minigcnc.reproduce`` trains
nothing for this figure) record the trace of the training-loss Hessian at every evaluation (``measure.flatness``:
Hutchinson's estimator, 4 Rademacher probes on 1,000 fixed training images). Panels: tr H and the embedding GC
over training per swept value (rows: learning rate, batch size, L2), and each config's final tr H against its
final GC (``figures/figure_flatness_across_configs.png``).

The claim table: per sweep, Spearman of the swept value with the final tr H, the swept values the units
(seed-averaged, exact over the values; each seed's own Spearman beside it as a description), expected negative
for the learning rate, positive for the batch size ("ends flatter"); the L2 sweep is a description (no sign
predicted: L2 shrinks the weights, which scales a ReLU net's Hessian up). Across configs (configs as the units,
``claims.config_rank_claim``): a flatter end goes with a lower final GC (and NC), over the learning-rate and
batch-size configs, and over every config of the three sweeps.

The same claims, by the same functions, on the convnet appendix's runs (``figure_mnist``'s configs, which record
the Hessian trace at tiny and laptop scale; read from the cache when that figure ran): each statement prefixed
"convnet appendix:", judged in the same table, and their across-configs panel
``figures/figure_flatness_appendix_across_configs.png``. Not at paper scale, where the appendix (VGG-11 on a GPU)
records no Hessian trace.

The runs of each scale: the last lines of ``--help``. Why: docs/figures.md#figure_flatness.
"""
import time

import numpy as onp

from .experiments import claims as C
from .experiments.cli import figure_outputs, figure_parser, parse, run_sweep, save_figure, write_figure
from .experiments.config import with_options
from .experiments.driver import (EXPECTED_SIGN, distinct_runs_per_seed, draw_sweeps, model_title, runs_epilog,
                                 sweep_positions, sweep_rank_claims, sweep_record)
from .experiments.grid import by_sweep, flat, sweep_configs
from .experiments.history import final, finals
from .experiments.presets import APPENDIX_GRIDS, APPENDIX_SEEDS, SWEEP_GRIDS, appendix_base, sweep_base
from .experiments.table import print_table

NAME = "figure_flatness"
SEEDS = {"tiny": 2, "laptop": 5, "paper": 3}  # Figure 1's (tests/test_figure_flatness.py checks the configs match)
WORDS = {"lr": "a larger learning rate", "batch_size": "a smaller batch"}  # the knobs with a sign: EXPECTED_SIGN
METRICS = [("hessian_trace", "tr H (Hutchinson), start and end"), ("gc", "embedding GC")]


def scale_setup(scale, *, seeds=None, backend=None, data_root=None):
    """(base RunConfig, {field: values}, seeds): Figure 1's (``presets.sweep_base``, ``SWEEP_GRIDS``)."""
    base = with_options(sweep_base(scale), scale, backend, data_root)
    return base, SWEEP_GRIDS[scale], list(range(seeds or SEEDS[scale]))


def appendix_setup(scale, *, seeds=None, backend=None, data_root=None):
    """(base RunConfig, {field: values}, seeds) of the convnet appendix (``figure_mnist``'s), or None at a scale
    where its runs record no Hessian trace."""
    base = with_options(appendix_base(scale), scale, backend, data_root)
    if "flatness" not in base.extras:
        return None
    return base, APPENDIX_GRIDS[scale], list(range(seeds or APPENDIX_SEEDS[scale]))


def configs(scale, *, seeds=None, backend=None, data_root=None):
    """The runs of the figure: Figure 1's runs at ``scale``, then the convnet appendix's (below paper scale)."""
    kw = dict(seeds=seeds, backend=backend, data_root=data_root)
    appendix = appendix_setup(scale, **kw)
    return flat(sweep_configs(*scale_setup(scale, **kw))) + (flat(sweep_configs(*appendix)) if appendix else [])


def runs_per_config(hist):
    """[[history per seed] per distinct config] over the sweeps of ``hist`` (a shared base run once): the units."""
    out = {}
    for hs in distinct_runs_per_seed(hist):
        for h in hs:
            out.setdefault(repr(sorted((k, v) for k, v in h["config"].items() if k != "seed")), []).append(h)
    return list(out.values())


def config_finals(per_config, metric):
    """[[final value per seed] per config] of ``metric``, for ``claims.config_rank_claim``."""
    return [[final(h, metric) for h in hs] for hs in per_config]


def flatness_claims(grid, hist, prefix=""):
    """The claim table (see the module docstring) from ``hist`` = {field: [[history per value] per seed]}; every
    statement starts with ``prefix`` (the convnet appendix's: "convnet appendix: ")."""
    out = []
    for field, values in grid.items():
        xs = [sweep_positions(values) for _ in hist[field]]
        trace = finals(hist[field], "hessian_trace")
        if field in WORDS:  # the swept values the units; each seed alone beside it, a description
            sign = EXPECTED_SIGN[field]
            out += sweep_rank_claims(NAME, f"{prefix}{WORDS[field]} ends flatter (lower final Hessian trace)", xs, trace,
                                     sign, field, "hessian_trace")
        else:
            c = C.rank_correlation_claim(NAME, f"{prefix}{field} sweep: the final Hessian trace against the swept "
                                         "value (no sign predicted)", xs, trace, -1, field, "hessian_trace")
            c.kind, c.verdict = "description", "n/a"
            c.detail = "a description (no sign predicted; the test is two-sided): " + c.detail
            out.append(c)
    sgd = {f: hist[f] for f in grid if f in WORDS}
    for units, label in ((sgd, "the learning-rate and batch-size configs"), (hist, "every config of the three sweeps")):
        per_config = runs_per_config(units)
        tr = config_finals(per_config, "hessian_trace")
        for metric, name in (("gc", "GC"), ("nc_train", "NC")):
            out.append(C.config_rank_claim(NAME, f"{prefix}across {label}: a flatter end goes with a lower final "
                                           f"{name}", tr, config_finals(per_config, metric), +1, "hessian_trace",
                                           metric))
    return out


def draw_across(hist, title):
    """Each config's seed-mean final tr H against its final GC, coloured by sweep."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for i, (field, per_seed) in enumerate(hist.items()):
        tr = onp.nanmean(onp.array(finals(per_seed, "hessian_trace"), dtype=float), axis=0)
        g = onp.nanmean(onp.array(finals(per_seed, "gc"), dtype=float), axis=0)
        ax.plot(tr, g, "o-", color=f"C{i}", label=field, alpha=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("final tr H (mean over seeds)")
    ax.set_ylabel("final embedding GC")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv=None):
    """Run the figure from the command line ``argv`` (see the module docstring); returns its paths and claims."""
    parser = figure_parser(f"python -m minigcnc.{NAME}", __doc__, epilog=runs_epilog(scale_setup))
    args = parse(parser, argv)
    t0 = time.time()
    kw = dict(seeds=args.seeds, backend=args.backend, data_root=args.data_root)
    base, grid, seeds = scale_setup(args.scale, **kw)
    sweeps = sweep_configs(base, grid, seeds)
    cfgs = flat(sweeps)
    histories = run_sweep(NAME, args, cfgs)  # Figure 1's runs: from the cache when Figure 1 ran
    hist = by_sweep(sweeps, histories)
    claims = flatness_claims(grid, hist)
    title = f"{model_title(base)}, {len(seeds)} seeds"
    fig = draw_sweeps(grid, hist, title, metrics=METRICS, log=("hessian_trace", "gc"))
    across = figure_outputs(f"{NAME}_across_configs", args.scale, args.out)[0]
    save_figure(draw_across(hist, title), across)
    record = {"across_png": str(across)}
    appendix = appendix_setup(args.scale, **kw)
    if appendix:  # the convnet appendix's runs: from the cache when figure_mnist ran
        a_base, a_grid, a_seeds = appendix
        a_sweeps = sweep_configs(a_base, a_grid, a_seeds)
        a_cfgs = flat(a_sweeps)
        a_histories = run_sweep(NAME, args, a_cfgs)
        a_hist = by_sweep(a_sweeps, a_histories)
        claims += flatness_claims(a_grid, a_hist, prefix="convnet appendix: ")
        a_across = figure_outputs(f"{NAME}_appendix_across_configs", args.scale, args.out)[0]
        save_figure(draw_across(a_hist, f"convnet appendix: {model_title(a_base)}, {len(a_seeds)} seeds"), a_across)
        a_seconds = [e["seconds_flatness"] for h in a_histories for e in h["evals"] if "seconds_flatness" in e]
        record["appendix"] = {**sweep_record("figure_mnist", args.scale, a_base, a_grid, a_seeds, a_cfgs, a_hist,
                                             a_histories), "across_png": str(a_across),
                              "seconds_flatness_per_eval": float(onp.mean(a_seconds)) if a_seconds else None}
    seconds = [e.get("seconds_flatness") for h in histories for e in h["evals"] if "seconds_flatness" in e]
    C.judge(claims)  # q-values over the figure's family, verdicts on q
    png, js = write_figure(NAME, args.scale, args.out, fig, {
        **sweep_record(NAME, args.scale, base, grid, seeds, cfgs, hist, histories), **record,
        "seconds_flatness_per_eval": float(onp.mean(seconds)) if seconds else None}, claims, t0)
    print_table(claims, args.scale, cfgs)
    return {"png": str(png), "json": str(js), "claims": claims, "histories": histories, "by_sweep": hist}


if __name__ == "__main__":
    main()
