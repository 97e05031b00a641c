"""Appendix figure (VGG-11 on MNIST in the paper): Figure 1's sweeps on a convolutional network.

    python -m minigcnc.figure_mnist                 # laptop scale: a small convnet on mnist5k
    python -m minigcnc.figure_mnist --scale tiny    # seconds
    python -m minigcnc.figure_mnist --scale paper --data-root DIR    # VGG-11 on MNIST (60,000 images), GPU

The paper's appendix repeats Figure 1 with another architecture and dataset, VGG-11 on MNIST, to show that
the effect is not a property of one network: a higher learning rate, a smaller batch and more L2 each end
training with a lower embedding GC, a lower geometric collapse and a lower NC. This module runs Figure 1's
steps (the same three sweeps from one base run, the same panels, the same claim table per sweep, from
``experiments.driver``) with a convolutional model; only the scales differ.

At tiny and laptop scale every evaluation also records the trace of the training-loss Hessian (the ``flatness``
extra, ``measure.flatness``; read by ``figure_flatness``); not at paper scale, whose GPU route of the Hessian is
untested. The runs and grids of each scale: the last lines of ``--help``. What the laptop run shows and why these
choices: docs/figures.md#figure_mnist.
"""
import time

from .experiments.claims import judge
from .experiments.cli import figure_parser, parse, run_sweep, write_figure
from .experiments.config import with_options
from .experiments.driver import (claims_of_sweeps, dataset_and_model_options, draw_sweeps, model_title, print_finals,
                                 runs_epilog, sweep_record)
from .experiments.grid import by_sweep, flat, sweep_configs
from .experiments.presets import APPENDIX_GRIDS, APPENDIX_SEEDS, appendix_base
from .experiments.table import print_table

NAME = "figure_mnist"
SEEDS = APPENDIX_SEEDS  # {scale: seeds}
GRIDS = APPENDIX_GRIDS  # {scale: {field: values}}


def scale_setup(scale, *, seeds=None, backend=None, data_root=None, dataset=None, model=None):
    """(base RunConfig, {field: values in sweep order}, seeds) of the MNIST appendix figure at ``scale``, with the
    command line's backend, data root and (``dataset``, ``model``) in place of the scale's."""
    base = appendix_base(scale)
    base = with_options(base, scale, backend, data_root, dataset, model)
    return base, GRIDS[scale], list(range(seeds or SEEDS[scale]))


def configs(scale, *, seeds=None, backend=None, data_root=None, dataset=None, model=None):
    """The runs of the figure at ``scale`` (with repeats of the shared base run, which trains once)."""
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

    claims = claims_of_sweeps(NAME, grid, hist)

    stem = f"{NAME}_{base.model}_{base.dataset}" if args.dataset or args.model else NAME
    title = f"{model_title(base)}, {len(seeds)} seeds"
    fig = draw_sweeps(grid, hist, title)

    print_finals(grid, hist)
    print()
    judge(claims)  # q-values over the figure's family, verdicts on q
    png, js = write_figure(stem, args.scale, args.out, fig, {
        **sweep_record(NAME, args.scale, base, grid, seeds, cfgs, hist, histories)}, claims, t0)
    print_table(claims, args.scale, cfgs)
    return {"png": str(png), "json": str(js), "claims": claims, "histories": histories, "by_sweep": hist}


if __name__ == "__main__":
    main()
