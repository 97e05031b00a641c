"""Appendix figure: an explicit GC penalty lowers the embedding GC, the geometric collapse and the NC together.

    python -m minigcnc.figure_gc_regularization                  # laptop scale (what it takes: figures/REPORT.md)
    python -m minigcnc.figure_gc_regularization --scale tiny     # seconds
    python -m minigcnc.figure_gc_regularization --scale paper --data-root DIR   # VGG-13 on CIFAR-10, GPU
    python -m minigcnc.figure_gc_regularization --gc-method exact   # the exact penalty: figure_gc_regularization_exact

Training minimizes ``CE + lambda * GC(g, batch)`` (docs/theory.md#geometric-complexity, "GC regularization"; ``gc.make_gc_penalty``)
with plain SGD, for lambda = 0 and a geometric grid of strengths. One row of three panels over the training
iterations: the exact embedding GC on a fixed training subset, the geometric collapse and the NC (CDNV of the
training embeddings); one curve per strength (mean over seeds, min-max band), coloured from the weakest to
the strongest penalty. The claim table (the strengths the units: seed-averaged, exact over the strengths; each
seed's own Spearman beside it as a description, ``driver.sweep_rank_claims``): the Spearman correlation
between lambda and the final GC and NC (expected negative), and between the final GC and the final NC and
geometric collapse across the strengths (expected positive).

The penalty is by default the Hutchinson estimate ``(1/N) sum_n ||v_n^T J(x_n)||^2`` with one fresh Gaussian
probe per image (``gc_reg_method="hutchinson"``): its value and its parameter gradient are unbiased for the exact
ones; ``--gc-method exact`` uses the exact penalty. At strength 0 the run is Figure 1's base run (one cache entry).

The runs and grids of each scale: the last lines of ``--help``. Why these strengths, and what a penalized step
costs: docs/figures.md#figure_gc_regularization.
"""
import time

from .experiments.claims import judge
from .experiments.cli import figure_parser, parse, run_sweep, write_figure
from .experiments.config import scale_base, with_options
from .experiments.driver import (claims_of_sweeps, draw_sweeps, model_title, print_finals, runs_epilog,
                                 sweep_record)
from .experiments.grid import by_sweep, flat, sweep_configs
from .experiments.presets import sweep_base
from .experiments.table import print_table

NAME = "figure_gc_regularization"
SEEDS = {"tiny": 2, "laptop": 5, "paper": 3}
STRENGTHS = {"tiny": (0.0, 1e-2, 1e-1), "laptop": (0.0, 1e-3, 3e-3, 1e-2, 3e-2),
             "paper": (0.0, 1e-7, 1e-6, 1e-5, 1e-4)}
PREDICTORS = (("gc", "GC"), ("gcol", "GCol"))  # what the sweep's claims set against the final NC


def scale_setup(scale, *, seeds=None, backend=None, data_root=None, gc_method="hutchinson"):
    """(base RunConfig, {"gc_reg": strengths in increasing order}, seeds) at ``scale``: Figure 1's base run
    (at paper scale with lr 0.01, the paper's) and the penalty ``gc_method``, with the command line's backend
    and data root. At strength 0 the method has no effect and is not part of the cache key, so that run is
    Figure 1's base run."""
    base = scale_base(scale, gc_reg_method=gc_method, **({"lr": 0.01} if scale == "paper" else {}))
    base = with_options(base, scale, backend, data_root)
    return base, {"gc_reg": STRENGTHS[scale]}, list(range(seeds or SEEDS[scale]))


def sweeps_of(scale, *, seeds=None, backend=None, data_root=None, gc_method="hutchinson"):
    """(base, grid, seeds, {"gc_reg": [[config per strength] per seed]}): below paper scale the strength-0 run
    is exactly Figure 1's base run (``presets.sweep_base``, with the extra metrics it records), so a shared
    cache trains it once for both figures; the penalized runs record the standard metrics only."""
    base, grid, seeds = scale_setup(scale, seeds=seeds, backend=backend, data_root=data_root, gc_method=gc_method)
    sweeps = sweep_configs(base, grid, seeds)
    if scale != "paper":  # (at paper scale the appendix trains at lr 0.01, Figure 1 at 0.02: nothing to share)
        plain = with_options(sweep_base(scale), scale, backend, data_root)
        sweeps = {field: [[plain.replace(seed=c.seed) if c.gc_reg == 0 else c for c in cs] for cs in per_seed]
                  for field, per_seed in sweeps.items()}
    return base, grid, seeds, sweeps


def configs(scale, *, seeds=None, backend=None, data_root=None, gc_method="hutchinson"):
    """The runs of the figure at ``scale``, seed by seed."""
    return flat(sweeps_of(scale, seeds=seeds, backend=backend, data_root=data_root, gc_method=gc_method)[3])


def main(argv=None):
    """Run the figure from the command line ``argv`` (see the module docstring); returns its paths and claims."""
    parser = figure_parser(f"python -m minigcnc.{NAME}", __doc__, epilog=runs_epilog(scale_setup))
    parser.add_argument("--gc-method", choices=("hutchinson", "exact"), default="hutchinson",
                        help="the penalty: Hutchinson (one Gaussian probe per image, unbiased; default) or exact")
    args = parse(parser, argv)
    t0 = time.time()
    base, grid, seeds, sweeps = sweeps_of(args.scale, seeds=args.seeds, backend=args.backend,
                                          data_root=args.data_root, gc_method=args.gc_method)
    # sweeps: {"gc_reg": [[config per strength] per seed]}
    cfgs = flat(sweeps)
    histories = run_sweep(NAME, args, cfgs)  # from the cache, or trained
    hist = by_sweep(sweeps, histories)  # {"gc_reg": [[history per strength] per seed]}

    claims = claims_of_sweeps(NAME, grid, hist, PREDICTORS)

    stem = NAME if args.gc_method == "hutchinson" else f"{NAME}_exact"
    title = f"{model_title(base)}, {len(seeds)} seeds"
    fig = draw_sweeps(grid, hist, title, log=("gc",))  # GC spans orders of magnitude across the strengths: a log axis

    print_finals(grid, hist)
    print()
    judge(claims)  # q-values over the figure's family, verdicts on q
    png, js = write_figure(stem, args.scale, args.out, fig, {
        **sweep_record(NAME, args.scale, base, grid, seeds, cfgs, hist, histories)}, claims, t0)
    print_table(claims, args.scale, cfgs)
    return {"png": str(png), "json": str(js), "claims": claims, "histories": histories, "by_sweep": hist}


if __name__ == "__main__":
    main()
