"""Appendix figure: an explicit GC penalty lowers the embedding GC, the geometric collapse and the NC together.

    python -m minigcnc.figure_gc_regularization                  # laptop scale, about 5 minutes on 2 quiet cores
    python -m minigcnc.figure_gc_regularization --scale tiny     # seconds
    python -m minigcnc.figure_gc_regularization --scale paper --data-root DIR   # VGG-13 on CIFAR-10, GPU

Training minimizes ``CE + lambda * GC(g, batch)`` (PAPER.md section 2, "GC regularization"; ``gc.make_gc_penalty``)
with plain SGD, for lambda = 0 and a geometric grid of strengths. One row of three panels over the training
iterations: the exact embedding GC on a fixed training subset, the geometric collapse and the NC (CDNV of the
training embeddings); one curve per strength (mean over seeds, min-max band), coloured from the weakest to
the strongest penalty. The claim table (over seeds): the Spearman correlation between lambda and the final
GC and NC (expected negative), and between the final GC and the final NC and geometric collapse across the
strengths (expected positive).

The penalty's gradient: the exact GC of a batch costs one backward row per embedding coordinate (p = 64 for
the laptop MLP), and differentiating it again made a training step about 30 times slower than a plain one
here. The default is the Hutchinson estimate ``(1/N) sum_n ||v_n^T J(x_n)||^2`` with one fresh Gaussian probe
per image (``gc_reg_method="hutchinson"``): its value and its parameter gradient are unbiased for the exact
ones, averaged over the batch's images, and a step costs 2-4 plain ones. ``--gc-method exact`` uses the
exact penalty.

Scales (plain SGD, inputs standardized, no augmentation):

- tiny: sklearn digits, MLP 64-32-16, lr 0.1, batch 32, 200 steps, lambda {0, 1e-2, 1e-1}, 2 seeds.
- laptop (default): mnist5k, MLP 784-256-256-64, float32, lr 0.05, batch 128, 2,000 steps evaluated every
  250 steps, 3 seeds, lambda {0, 1e-3, 3e-3, 1e-2, 3e-2}. lambda = 0 is the base run of Figure 1, so with
  a shared cache it is trained once for both figures.
- paper: VGG-13 on CIFAR-10, lr 0.01, batch 256, lambda {0, 1e-7, 1e-6, 1e-5, 1e-4} (the paper's
  strengths), 20,000 steps, 3 seeds (GPU).

Why these laptop strengths (a scan on mnist5k, seed 0; GC of the unregularized run is about 150 at the end):
600 steps with lambda 1e-5 and 1e-4 moved the final GC by less than 5% and left NC and geometric collapse
unchanged; after 2,000 steps 1e-3 lowers GC by 60% and NC by 11% but leaves the geometric collapse where
it was (0.346 against 0.346): the penalty first shrinks the embedding's scale (the squared distances between
class means fall 2.7-fold), which lowers GC but not the scale-free ratio GCol; from 3e-3 on all three
fall, and 3e-2 lowers GC 40-fold. lambda 1e-1 had not reached 100% training
accuracy by step 2,000 (99.8%), so the grid stops at 3e-2, where every run ends in the terminal phase.
The laptop strengths are larger than the paper's because GC, the loss and the step size have other
scales here. Cost: a penalized step costs 2-4 plain ones; the 12 penalized runs used 8 CPU minutes, about
4-5 minutes on two quiet cores with ``--jobs 2`` (10.6 minutes when we measured it on a machine shared with
other work); the 3 unpenalized runs come from Figure 1's cache, or add about half a minute.
"""
import time

from .figure1 import draw_sweep_row, print_finals, summarize, sweep_claims, train_seconds
from .runs import RunConfig, figure_parser, run_sweep, write_figure

NAME = "figure_gc_regularization"
FIELD = "gc_reg"


def scale_setup(scale, backend=None, data_root=None, method="hutchinson"):
    """(base RunConfig, strengths in increasing order, seeds) at ``scale``."""
    if scale == "tiny":
        base = RunConfig(dataset="digits", model="mlp", hidden=(32, 16), lr=0.1, batch_size=32, steps=200,
                         eval_every=50, eval_per_class=10)
        strengths, seeds = (0.0, 1e-2, 1e-1), range(2)
    elif scale == "laptop":
        base = RunConfig(dataset="mnist5k", model="mlp", hidden=(256, 256, 64), lr=0.05, batch_size=128,
                         steps=2000, eval_every=250, eval_per_class=50, dtype="float32")
        strengths, seeds = (0.0, 1e-3, 3e-3, 1e-2, 3e-2), range(3)
    else:
        base = RunConfig(dataset="cifar10", model="vgg13", lr=0.01, batch_size=256, steps=20000, eval_every=1000,
                         eval_per_class=20, dtype="float32", backend="cupy")
        strengths, seeds = (0.0, 1e-7, 1e-6, 1e-5, 1e-4), range(3)
    base = base.replace(data_root=data_root, **({"backend": backend} if backend else {}))
    if backend == "numpy" and scale == "paper":
        base = base.replace(dtype="float64")
    return base, strengths, list(seeds), method


def sweep_configs(base, strengths, seeds, method):
    """[[config per strength] per seed]; lambda = 0 keeps the default method so it shares the plain run's key."""
    return [[base.replace(seed=s, gc_reg=v, **({"gc_reg_method": method} if v else {})) for v in strengths]
            for s in seeds]


def configs(scale, backend=None, data_root=None, method="hutchinson"):
    """The runs of the figure at ``scale``, seed by seed."""
    return [c for cs in sweep_configs(*scale_setup(scale, backend, data_root, method)) for c in cs]


def make_claims(strengths, hist):
    """Four rank correlations across the strengths (see ``figure1.sweep_claims``)."""
    return sweep_claims(NAME, "GC penalty", strengths, hist, -1, "gc_reg")


def draw(strengths, hist, title, method):
    """One row, three panels: embedding GC, geometric collapse, NC over training; a curve per strength."""
    import matplotlib.pyplot as plt

    from .figure1 import METRICS
    from .plotting import style

    style()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(13, 3.6), squeeze=False)
    # GC falls 50-fold across the strengths: a log axis keeps the strong penalties readable
    draw_sweep_row(axes[0], strengths, hist, f"lambda ({'Hutchinson' if method == 'hutchinson' else 'exact'} GC)",
                   log=("gc",))
    for c, (_, mlabel) in enumerate(METRICS):
        axes[0, c].set_title(f"({'abc'[c]}) {mlabel}")
    fig.suptitle(f"{title}: training with CE + lambda * GC(batch); mean and min-max over {len(hist)} seeds", y=1.0)
    fig.tight_layout()
    return fig


def main(argv=None):
    p = figure_parser("python -m minigcnc.figure_gc_regularization", __doc__)
    p.add_argument("--gc-method", choices=("hutchinson", "exact"), default="hutchinson",
                   help="the penalty: Hutchinson (one Gaussian probe per image, unbiased; default) or exact")
    args = p.parse_args(argv)
    t0 = time.time()
    base, strengths, seeds, method = scale_setup(args.scale, args.backend, args.data_root, args.gc_method)
    hist_cfgs = sweep_configs(base, strengths, seeds, method)
    cfgs = [c for cs in hist_cfgs for c in cs]
    flat = run_sweep(NAME, args, cfgs)
    it = iter(flat)
    hist = [[next(it) for _ in cs] for cs in hist_cfgs]
    claims = make_claims(strengths, hist)
    title = f"{'MLP' if base.model == 'mlp' else base.model.upper()} on {base.dataset}"
    fig = draw(strengths, hist, title, method)
    stem = NAME if args.gc_method == "hutchinson" else f"{NAME}_exact"
    grid, by = {FIELD: strengths}, {FIELD: hist}
    print_finals(grid, by)
    print()
    png, js = write_figure(stem, args.scale, args.out, fig, {
        "figure": NAME, "scale": args.scale, "base": base.to_dict(), "strengths": strengths, "method": method,
        "seeds": seeds, "configs": [c.to_dict() for c in cfgs], "runs": summarize(grid, by)[FIELD],
        "train_seconds": train_seconds(flat)}, claims, t0)
    return {"png": str(png), "json": str(js), "claims": claims, "histories": flat}


if __name__ == "__main__":
    main()
