"""Figure 1: a higher learning rate, a smaller batch and more L2 each lower the embedding GC and the NC.

    python -m minigcnc.figure1                  # laptop scale, 6.5 minutes on 2 quiet cores
    python -m minigcnc.figure1 --scale tiny     # seconds
    python -m minigcnc.figure1 --scale paper --data-root DIR                             # VGG-13 on CIFAR-10, GPU
    python -m minigcnc.figure_mnist --scale paper --data-root DIR  # the appendix's VGG-11 on MNIST (figure_mnist.py)

Three sweeps from one base run, each changing one knob: the learning rate (increasing), the batch size
(decreasing) and the L2 strength (increasing), five values each; the base run belongs to all three
sweeps and is trained once per seed (identical configs share a cache key). Columns: the exact embedding GC on
a fixed training subset, the geometric collapse (class GC over squared distances of class means) and the
NC (CDNV of the training embeddings) over the training iterations; one curve per value (mean over seeds,
min-max band), coloured along the sweep order, so in every row the colour runs from the weakest to the
strongest regularization. A diverged run is drawn up to its last evaluation and marked with an x.

The claim table, for each sweep, over seeds: the Spearman correlation between the swept value and the final
GC (expected negative for lr, positive for batch size, negative for L2) and the final NC (same signs), and
between the final GC and the final NC and geometric collapse across the sweep (expected positive).
"Final" is the last evaluation; a diverged run has none (NaN) and drops out of its seed's correlation.

Scales (plain SGD, cross-entropy, no augmentation, inputs standardized with the training statistics):

- tiny: sklearn digits, MLP 64-32-16, 3 values per sweep, 2 seeds, 200 steps (a test of the plumbing).
- laptop (default): mnist5k (400 train images per class), MLP 784-256-256-64, float32, 3 seeds, base run
  lr 0.05, batch 128, no L2; lr {0.05, 0.1, 0.2, 0.3, 0.4}, batch {512, 256, 128, 64, 32},
  L2 {0, 1e-4, 5e-4, 1e-3, 5e-3}; 2,000 steps, evaluated every 250 steps (GC on 50 images per class).
- paper: VGG-13 on CIFAR-10, float32 on CuPy, base run lr 0.02, batch 256, no L2; lr
  {0.005, 0.01, 0.02, 0.04, 0.08}, batch {512, 256, 128, 64, 32}, L2 {0, 1e-4, 2.5e-4, 5e-4, 7.5e-4} (the
  paper's grid at lr 0.02, batch 256); 20,000 steps, 3 seeds. ``--dataset``/``--model`` (e.g. ``mnist`` /
  ``vgg11``) replace the scale's data and network at every scale and name the outputs
  ``figure1_<model>_<dataset>``; the appendix's VGG-11 on MNIST, with its own laptop-scale convnet, is
  ``python -m minigcnc.figure_mnist``.

Why these laptop choices (from scans on mnist5k before settling):

- the model and data are the package's default (offline; exact GC and all collapse metrics in about 0.4 s
  of CPU per evaluation); float32 is about 3x faster than float64 here (GC agrees to ~3 digits). A step
  costs about 5, 8 and 18 ms of CPU at batch 32, 128 and 512. The 39 distinct runs (13 per seed) took 6.5
  minutes from scratch on two quiet cores with ``--jobs 2`` (13 CPU minutes), more while other jobs share
  them (31 minutes when we measured it on a machine loaded about five-fold by other work).
- 2,000 steps: every run reaches 100% training accuracy between steps 250 and 1,250 (training loss 1e-4 to
  2e-3 at the end, 2e-2 with L2 5e-3), so at least the last third of every run is the terminal phase where
  collapse shows; the orderings of GC and NC across each sweep were the same at steps 1,800 and 3,000.
- the learning-rate grid starts at 0.05: below it (0.01-0.05) SGD has not reached the regime where a larger
  step lowers GC within a few thousand steps (GC even rises with lr there), while from 0.05 to 0.4 GC and NC
  fall together. 0.4 is near the largest rate that trains (it trained in every seed here); a run that
  diverges is recorded, drawn with an x, and drops out of its seed's correlation.
- batch sizes double from 32 to 512 at the base lr (a step at 512 costs 2.4 base steps, for a small
  change); L2 up to 5e-3, the strongest that still fits the training set exactly within the steps.
"""
import sys
import time

import numpy as onp

from .experiments import claims as C
from .runs import RunConfig, figure_parser, final, run_sweep, series, write_figure

NAME = "figure1"
# (RunConfig field, label, expected sign of spearman(value, final GC)); rows in this order
SWEEPS = [("lr", "learning rate", -1), ("batch_size", "batch size", +1), ("l2", "L2 strength", -1)]
METRICS = [("gc", "embedding GC"), ("gcol", "geometric collapse"), ("nc_train", "NC (train CDNV)")]


def scale_setup(scale, backend=None, data_root=None, dataset=None, model=None):
    """(base RunConfig, {field: values in sweep order}, seeds) of Figure 1 at ``scale``.

    ``dataset`` / ``model`` replace the scale's defaults (e.g. ``"mnist"`` / ``"vgg11"`` at paper scale).
    """
    if scale == "tiny":
        base = RunConfig(dataset="digits", model="mlp", hidden=(32, 16), lr=0.1, batch_size=32, steps=200,
                         eval_every=50, eval_per_class=10)
        grid = {"lr": (0.05, 0.1, 0.3), "batch_size": (128, 32, 8), "l2": (0.0, 1e-3, 1e-2)}
        seeds = range(2)
    elif scale == "laptop":
        base = RunConfig(dataset="mnist5k", model="mlp", hidden=(256, 256, 64), lr=0.05, batch_size=128,
                         steps=2000, eval_every=250, eval_per_class=50, dtype="float32")
        grid = {"lr": (0.05, 0.1, 0.2, 0.3, 0.4), "batch_size": (512, 256, 128, 64, 32),
                "l2": (0.0, 1e-4, 5e-4, 1e-3, 5e-3)}
        seeds = range(3)
    else:
        base = RunConfig(dataset="cifar10", model="vgg13", lr=0.02, batch_size=256, steps=20000, eval_every=1000,
                         eval_per_class=20, dtype="float32", backend="cupy")
        grid = {"lr": (0.005, 0.01, 0.02, 0.04, 0.08), "batch_size": (512, 256, 128, 64, 32),
                "l2": (0.0, 1e-4, 2.5e-4, 5e-4, 7.5e-4)}
        seeds = range(3)
    return with_options(base, scale, backend, data_root, dataset, model), grid, list(seeds)


def with_options(base, scale, backend=None, data_root=None, dataset=None, model=None):
    """``base`` with the command line's choices: data root, backend (float64 for numpy at paper scale),
    and a dataset or model in place of the scale's default."""
    base = base.replace(data_root=data_root, **({"backend": backend} if backend else {}))
    if backend == "numpy" and scale == "paper":
        base = base.replace(dtype="float64")
    if dataset:
        base = base.replace(dataset=dataset)
    if model:
        base = base.replace(model=model)
    return base


def sweep_configs(base, grid, seeds):
    """{field: [[config per value] per seed]}: every sweep changes one field of ``base``."""
    return {field: [[base.replace(seed=s, **{field: v}) for v in values] for s in seeds]
            for field, values in grid.items()}


def flat(sweeps):
    """All configs of ``sweeps`` in a fixed order (duplicates share a cache key and train once)."""
    return [c for per_seed in sweeps.values() for cs in per_seed for c in cs]


def configs(scale, backend=None, data_root=None, dataset=None, model=None):
    """The runs of Figure 1 at ``scale`` (with repeats of the shared base run; ``run_many`` trains it once)."""
    return flat(sweep_configs(*scale_setup(scale, backend, data_root, dataset, model)))


def histories_by_sweep(sweeps, histories):
    """{field: [[history per value] per seed]} matching ``sweep_configs``, from ``run_many``'s flat list."""
    it = iter(histories)
    return {field: [[next(it) for _ in cs] for cs in per_seed] for field, per_seed in sweeps.items()}


def sweep_claims(figure, label, values, hist, expected_sign, value_name):
    """The claims of one sweep; ``hist`` = [[history per value] per seed], ``values`` in the same order.

    spearman(value, final GC) and spearman(value, final NC) with ``expected_sign``; spearman(final GC,
    final NC) and spearman(final GC, final geometric collapse), expected positive.
    """
    xs = [list(map(float, values)) for _ in hist]
    gc = [[final(h, "gc") for h in hs] for hs in hist]
    nc = [[final(h, "nc_train") for h in hs] for hs in hist]
    gcol = [[final(h, "gcol") for h in hs] for hs in hist]
    word = "higher" if expected_sign < 0 else "smaller"
    return [
        C.rank_correlation_claim(figure, f"{word} {label} gives lower final GC", xs, gc, expected_sign,
                                 value_name, "gc"),
        C.rank_correlation_claim(figure, f"{word} {label} gives lower final NC", xs, nc, expected_sign,
                                 value_name, "nc_train"),
        C.rank_correlation_claim(figure, f"{label} sweep: lower final GC goes with lower final NC", gc, nc, +1,
                                 "gc", "nc_train"),
        C.rank_correlation_claim(figure, f"{label} sweep: lower final GC goes with lower geometric collapse", gc,
                                 gcol, +1, "gc", "gcol"),
    ]


def make_claims(grid, by_sweep, figure=NAME):
    """The claim table of Figure 1: four rank correlations per sweep (see ``sweep_claims``)."""
    out = []
    for field, label, sign in SWEEPS:
        out += sweep_claims(figure, label, grid[field], by_sweep[field], sign, field)
    return out


def clip_to_training(ax, runs, metric, margin=0.08):
    """Fit the y-axis to the evaluations after step 0, where the sweep's curves separate.

    At initialization the NC and the geometric collapse are one to two orders of magnitude above their
    values after a few hundred steps; drawn to scale, that first point flattens the differences the figure is
    about. The first segment then leaves the axis at the top, which a note says.
    """
    vals, first = [], []
    for h in runs:
        steps, v = series(h, metric)
        vals.append(v[(steps > 0) & onp.isfinite(v)])
        first.append(v[(steps == 0) & onp.isfinite(v)])
    vals = onp.concatenate(vals) if vals else onp.array([])
    first = onp.concatenate(first) if first else onp.array([])
    if not len(vals):
        return
    lo, hi = float(vals.min()), float(vals.max())
    if ax.get_yscale() == "log" and lo > 0:
        f = (hi / lo) ** margin if hi > lo else 1.1
        ax.set_ylim(lo / f, hi * f)
    else:
        pad = margin * (hi - lo) if hi > lo else 0.1 * abs(hi) + 1e-12
        ax.set_ylim(max(0.0, lo - pad), hi + pad)
    if len(first) and first.max() > ax.get_ylim()[1]:
        ax.text(0.99, 0.99, "step 0 above the axis", transform=ax.transAxes, ha="right", va="top", fontsize=6.5,
                color="gray")


def log_axis(ax):
    """A log y-axis labelled with plain numbers (2, 5, 10, 20, ...) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def draw_sweep_row(axes, values, hist, label, metrics=METRICS, clip=("gcol", "nc_train"), log=()):
    """One row of panels (one per metric): a curve per swept value, mean over seeds with a min-max band.

    ``values`` in sweep order and ``hist`` = [[history per value] per seed]; colours follow that order.
    A diverged run is drawn alone up to its last evaluation and marked with an x. The metrics in ``clip``
    get a y-axis fitted to the evaluations after step 0 (``clip_to_training``), those in ``log`` a log
    axis. The legend sits right of the row.
    """
    from .plotting import fmt_value, plot_band, sweep_colors

    colors = sweep_colors(len(values), "plasma")
    for ax, (metric, mlabel) in zip(axes, metrics):
        for i, (v, col) in enumerate(zip(values, colors)):
            runs = [hs[i] for hs in hist]
            ok = [h for h in runs if h["status"] == "finished"]
            bad = [h for h in runs if h["status"] != "finished"]
            name = f"{fmt_value(v)}" + (f" ({len(bad)} diverged)" if bad else "")
            line = plot_band(ax, ok, metric, col, label=name) if ok else None
            for h in bad:
                plot_band(ax, [h], metric, col, label=None if line else name, ls=":", lw=1.0)
                line = True
        if metric in log:
            log_axis(ax)
        if metric in clip:
            clip_to_training(ax, [h for hs in hist for h in hs], metric)
        ax.set_xlabel("training iteration")
        ax.set_ylabel(mlabel)
    axes[-1].legend(title=label, loc="center left", bbox_to_anchor=(1.02, 0.5))


def draw(grid, by_sweep, title):
    """3 x 3 panels: rows = lr (increasing), batch size (decreasing), L2 (increasing); columns = GC, GCol, NC."""
    import matplotlib.pyplot as plt

    from .plotting import style

    style()
    fig, axes = plt.subplots(len(SWEEPS), len(METRICS), figsize=(13, 3.2 * len(SWEEPS)), squeeze=False)
    arrows = {-1: "increasing", +1: "decreasing"}
    for r, (field, label, sign) in enumerate(SWEEPS):
        draw_sweep_row(axes[r], grid[field], by_sweep[field], f"{label} ({arrows[sign]})")
        for c, (_, mlabel) in enumerate(METRICS):
            axes[r, c].set_title(f"({'abc'[r]}{c + 1}) {mlabel}, {label} sweep")
    fig.suptitle(f"{title}: {', '.join(lbl for _, lbl, _ in SWEEPS)} sweeps; mean and min-max over "
                 f"{len(next(iter(by_sweep.values())))} seeds", y=1.0)
    fig.tight_layout()
    return fig


def train_seconds(histories):
    """Wall seconds the distinct runs took when they were trained (a cached run keeps its first time)."""
    return float(sum({h["key"]: h["seconds"] for h in histories}.values()))


def summarize(grid, by_sweep, metrics=("gc", "gcol", "nc_train", "nc_test", "train_acc", "test_acc")):
    """Per-sweep, per-value, per-seed curves and finals of the plotted metrics, for the JSON."""
    out = {}
    for field, per_seed in by_sweep.items():
        rows = []
        for hs in per_seed:
            for v, h in zip(grid[field], hs):
                rows.append({"value": v, "seed": h["config"]["seed"], "key": h["key"], "status": h["status"],
                             "message": h["message"], "seconds": h["seconds"], "steps": series(h, "gc")[0].tolist(),
                             **{m: series(h, m)[1].tolist() for m in metrics},
                             "final": {m: final(h, m) for m in metrics}})
        out[field] = rows
    return out


def print_finals(grid, by_sweep, metrics=("gc", "gcol", "nc_train", "train_acc"), out=sys.stdout):
    """A table of the final metrics (mean over the seeds that finished) for every swept value."""
    print(f"{'sweep':<11s}{'value':>9s}  " + "  ".join(f"{m:>10s}" for m in metrics) + "   finished", file=out)
    for field, per_seed in by_sweep.items():
        for i, v in enumerate(grid[field]):
            hs = [h[i] for h in per_seed]
            vals = [onp.nanmean([final(h, m) for h in hs]) if any(h["status"] == "finished" for h in hs) else
                    float("nan") for m in metrics]
            n_ok = sum(h["status"] == "finished" for h in hs)
            print(f"{field:<11s}{v:>9g}  " + "  ".join(f"{x:>10.4g}" for x in vals) + f"   {n_ok}/{len(hs)}",
                  file=out)


def sweep_figure(argv, name, doc, setup, prog=None):
    """Run, draw and check a Figure-1-style sweep figure: ``setup(scale, backend, data_root, dataset, model)``
    gives (base config, grid, seeds); writes ``figures/<name>.png`` and ``.json`` (``--dataset``/``--model``
    add ``_<model>_<dataset>`` to the name). Shared by Figure 1 and the MNIST appendix (``figure_mnist``)."""
    p = figure_parser(prog or f"python -m minigcnc.{name}", doc)
    p.add_argument("--dataset", default=None, help="dataset instead of the scale's default (e.g. mnist, cifar10)")
    p.add_argument("--model", default=None, help="model instead of the scale's default (e.g. vgg11, vgg13)")
    args = p.parse_args(argv)
    t0 = time.time()
    base, grid, seeds = setup(args.scale, args.backend, args.data_root, args.dataset, args.model)
    sweeps = sweep_configs(base, grid, seeds)
    cfgs = flat(sweeps)
    histories = run_sweep(name, args, cfgs)
    by_sweep = histories_by_sweep(sweeps, histories)
    claims = make_claims(grid, by_sweep, figure=name)
    title = f"{ {'mlp': 'MLP', 'convnet': 'Convnet'}.get(base.model, base.model.upper())} on {base.dataset}"
    fig = draw(grid, by_sweep, title)
    variant = args.dataset or args.model
    out_name = f"{name}_{base.model}_{base.dataset}" if variant else name
    print_finals(grid, by_sweep)
    print()
    png, js = write_figure(out_name, args.scale, args.out, fig, {
        "figure": name, "scale": args.scale, "base": base.to_dict(), "grid": grid, "seeds": seeds,
        "configs": [c.to_dict() for c in cfgs], "runs": summarize(grid, by_sweep),
        "train_seconds": train_seconds(histories)}, claims, t0)
    return {"png": str(png), "json": str(js), "claims": claims, "histories": histories}


def main(argv=None):
    return sweep_figure(argv, NAME, __doc__, scale_setup)


if __name__ == "__main__":
    main()
