"""Figure 1: a higher learning rate, a smaller batch and more L2 each lower the embedding GC and the NC.

    python -m minigcnc.figure1                  # laptop scale (what it takes: figures/REPORT.md)
    python -m minigcnc.figure1 --scale tiny     # seconds
    python -m minigcnc.figure1 --scale paper --data-root DIR                             # VGG-13 on CIFAR-10, GPU
    python -m minigcnc.figure1 --dataset mnist --model vgg11  # another data or network: figure1_<model>_<dataset>
    python -m minigcnc.figure_mnist --scale paper --data-root DIR  # the appendix's VGG-11 on MNIST (figure_mnist.py)

Three sweeps from one base run, each changing one knob: the learning rate (increasing), the batch size
(decreasing) and the L2 strength (increasing); the base run belongs to all three sweeps and is trained once per
seed (identical configs share a cache key). Columns: the exact embedding GC on a fixed training subset, the
geometric collapse (class GC over squared distances of class means) and the NC (CDNV of the training
embeddings) over the training iterations; one curve per value (mean over seeds, min-max band), coloured along
the sweep order, so in every row the colour runs from the weakest to the strongest regularization. A diverged
run is drawn up to its last evaluation and marked with an x.

The claim table, for each sweep (the swept values are the units: Spearman over the values' seed-averaged
finals, exact over their orderings, ``experiments.driver.sweep_rank_claims``; each seed alone is shown as a
description): the swept value against the final GC (expected negative for lr, positive for batch size,
negative for L2) and the final NC (same signs); the final GC against the final NC and the geometric collapse,
and the final GCol against the final NC (expected positive). Across all configs of all sweeps (configs as the
units, ``driver.cross_run_claims``): the final GC bound, GCol and GC against the final NCC test error (expected
positive; ``figures/figure1_across_runs.png``). "Final" is the last evaluation; a diverged run has none (NaN) and drops
out of its seed's correlation.

The runs and grids of each scale: the last lines of ``--help``. Why these grids: docs/figures.md#figure1.
"""
import time

from .experiments.claims import judge
from .experiments.cli import figure_outputs, figure_parser, parse, run_sweep, save_figure, write_figure
from .experiments.config import with_options
from .experiments.driver import (claims_of_sweeps, cross_run_claims, dataset_and_model_options, draw_cross_run,
                                 draw_sweeps, model_title, print_finals, runs_epilog, sweep_record)
from .experiments.grid import by_sweep, flat, sweep_configs
from .experiments.presets import SWEEP_GRIDS, sweep_base
from .experiments.table import print_table

NAME = "figure1"
SEEDS = {"tiny": 2, "laptop": 5, "paper": 3}
GRIDS = SWEEP_GRIDS  # rows in this order: lr (increasing), batch size (decreasing), L2 (increasing)
PREDICTORS = (("gc", "GC"), ("gcol", "GCol"))  # what each sweep's claims set against the final NC


def scale_setup(scale, *, seeds=None, backend=None, data_root=None, dataset=None, model=None):
    """(base RunConfig, {field: values in sweep order}, seeds) of Figure 1 at ``scale``: ``presets.sweep_base``, with
    the command line's backend, data root and (``dataset``, ``model``) in place of the scale's."""
    base = with_options(sweep_base(scale), scale, backend, data_root, dataset, model)
    return base, GRIDS[scale], list(range(seeds or SEEDS[scale]))


def configs(scale, *, seeds=None, backend=None, data_root=None, dataset=None, model=None):
    """The runs of Figure 1 at ``scale`` (with repeats of the shared base run, which trains once)."""
    return flat(sweep_configs(*scale_setup(scale, seeds=seeds, backend=backend, data_root=data_root,
                                           dataset=dataset, model=model)))


def main(argv=None):
    """Run the figure from the command line ``argv`` (see the module docstring); returns its paths and claims."""
    parser = figure_parser(f"python -m minigcnc.{NAME}", __doc__, epilog=runs_epilog(scale_setup))
    args = parse(dataset_and_model_options(parser), argv)
    t0 = time.time()
    base, grid, seeds = scale_setup(args.scale, seeds=args.seeds, backend=args.backend, data_root=args.data_root,
                                    dataset=args.dataset, model=args.model)
    sweeps = sweep_configs(base, grid, seeds)  # {field: [[config per value] per seed]}
    cfgs = flat(sweeps)
    histories = run_sweep(NAME, args, cfgs)  # from the cache, or trained
    hist = by_sweep(sweeps, histories)  # {field: [[history per value] per seed]}

    claims = claims_of_sweeps(NAME, grid, hist, PREDICTORS) + cross_run_claims(NAME, hist)

    stem = f"{NAME}_{base.model}_{base.dataset}" if args.dataset or args.model else NAME
    title = f"{model_title(base)}, {len(seeds)} seeds"
    fig = draw_sweeps(grid, hist, title)
    across = figure_outputs(f"{stem}_across_runs", args.scale, args.out)[0]
    save_figure(draw_cross_run(hist, title), across)

    print_finals(grid, hist)
    print()
    judge(claims)  # q-values over the figure's family, verdicts on q
    png, js = write_figure(stem, args.scale, args.out, fig, {
        **sweep_record(NAME, args.scale, base, grid, seeds, cfgs, hist, histories), "across_runs_png": str(across)}, claims, t0)
    print_table(claims, args.scale, cfgs)
    return {"png": str(png), "json": str(js), "claims": claims, "histories": histories, "by_sweep": hist}


if __name__ == "__main__":
    main()
