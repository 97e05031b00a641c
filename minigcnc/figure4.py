"""Figure 4: lower source GC, lower target NC and better few-shot transfer to unseen classes.

    python -m minigcnc.figure4                      # laptop scale, mnist5k, rotation-augmented classes
    python -m minigcnc.figure4 --split digits       # the plain split: 5 source digits, 5 target digits
    python -m minigcnc.figure4 --no-probe           # NCC only, without the logistic-regression probe
    python -m minigcnc.figure4 --source fashion_mnist   # Fashion-MNIST source, MNIST digits target (local files)
    python -m minigcnc.figure4 --scale tiny         # seconds (the tests)
    python -m minigcnc.figure4 --scale paper --data-root DIR   # ResNet-18 on CIFAR-FS, on a GPU

Pre-train on source classes with plain SGD, sweeping one hyperparameter per row: the learning rate
(increasing), the batch size (decreasing) and L2 (increasing), each from the same baseline. At every evaluation:
the exact embedding GC on source training images (``gc``), the CDNV of the frozen embedding on the unseen target
classes (``target_nc``), and the 5-way 5-shot nearest-class-centre accuracy on them (``fewshot5``); also 1-shot
(``fewshot1``), with rotated classes ``fewshot5_distinct`` (episodes of 5 different digits) and, unless
``--no-probe``, a logistic-regression probe on L2-normalized features (``fewshot5_logreg``). Claims, per sweep
and over all runs: Spearman correlation of final source GC (and GCol) with final target NC (expected positive)
and with final accuracy (expected negative), the mean of the per-seed coefficients, stratified permutation test
(``experiments.claims``).

Splits (``--split``): ``digits``, digits 0-4 are the 5 source classes, digits 5-9 the 5 target classes;
``rotations`` (default), each digit at 0, 90, 180 and 270 degrees is its own class: 20 source, 20 target classes.
The digit split was run first and went against the paper (lower source GC, lower few-shot accuracy); the
rotation split was written after that result and made the default. Both are reported alike (figures/REPORT.md).

The runs and grids of each scale: the last lines of ``--help``. The splits, the near-duplicate rule, the probe
and the Fashion-MNIST files in full: docs/figures.md#figure4.
"""
import argparse
import sys
import time
from functools import lru_cache
from itertools import combinations

import numpy as onp

from . import collapse
from . import data as data_mod
from .experiments import claims as C
from .experiments.cli import figure_outputs, figure_parser, parse, run_sweep, save_figure, write_figure
from .experiments.config import scale_base, with_options
from .experiments.driver import distinct_runs_per_seed, runs_epilog
from .experiments.history import final, finals, series
from .experiments.grid import by_sweep, flat, sweep_configs

NAME = "figure4"
SPLITS = ("rotations", "digits")
SOURCES = ("mnist5k", "fashion_mnist")
SOURCE_DIGITS = (0, 1, 2, 3, 4)
TARGET_DIGITS = (5, 6, 7, 8, 9)
SEEDS = {"tiny": 3, "laptop": 5, "paper": 3}
# (digit, quarter turns) of the target classes the rotation split leaves out: near_duplicates() on mnist5k
NEAR_DUPLICATES = ()
# (RunConfig field, row title, the direction the paper expects to lower GC: sign of d GC / d value, in words)
SWEEPS = (
    ("lr", "learning rate (increasing)", -1, "a higher rate"),
    ("batch_size", "batch size (decreasing)", +1, "a smaller batch"),
    ("l2", "L2 (increasing)", -1, "more L2"),
)
METRICS = (("gc", "source GC (embedding)"), ("target_nc", "target NC (CDNV, unseen classes)"),
           ("fewshot5", "5-way 5-shot NCC accuracy"))
GRIDS = {
    "tiny": {"lr": (0.05, 0.1, 0.2), "batch_size": (64, 32, 16), "l2": (0.0, 1e-3, 1e-2)},
    "laptop": {"lr": (0.05, 0.1, 0.2, 0.3), "batch_size": (512, 256, 128, 32), "l2": (0.0, 1e-4, 5e-4, 1e-3, 5e-3)},
    "paper": {"lr": (0.005, 0.01, 0.02, 0.04), "batch_size": (512, 256, 128, 64),
              "l2": (0.0, 1e-4, 2.5e-4, 5e-4, 7.5e-4)},
}


@lru_cache(maxsize=1)
def _pixel_classes(dataset):
    """Per class c of ``dataset`` (labels 0..k-1): the mean of its training images (row c) and its test images,
    flattened to rows of pixels in [0, 1]."""
    (Xtr, ytr), (Xte, yte) = data_mod.load(dataset, "train"), data_mod.load(dataset, "test")
    Xte = Xte.reshape(len(Xte), -1)
    return collapse.class_means(Xtr.reshape(len(Xtr), -1), ytr), [Xte[yte == c] for c in range(ytr.max() + 1)]


def pair_confusability(a, b, dataset="mnist5k_rot"):
    """The 2-way pixel-space NCC error of classes ``a`` and ``b`` of ``dataset``: the fraction of the two classes'
    test images nearer the mean of the other class's training images than of their own.

    Raw pixels: the runs' standardization, for one-channel images one shift and one scale of every pixel,
    changes no nearest-mean decision.
    """
    means, test = _pixel_classes(dataset)
    y = onp.repeat([0, 1], [len(test[a]), len(test[b])])
    return collapse.ncc_error(onp.concatenate([test[a], test[b]]), y, means=means[[a, b]])


def near_duplicates(digits=TARGET_DIGITS, dataset="mnist5k"):
    """The rotated classes of ``digits`` to leave out, as (digit, quarter turns): for each pair of them more
    confusable (``pair_confusability``) than every pair of upright digits, the one with the larger label."""
    rotated, n = dataset + data_mod.ROTATED_SUFFIX, data_mod.N_ROTATIONS
    upright = max(pair_confusability(n * a, n * b, rotated) for a, b in combinations(range(10), 2))
    dropped = set()
    for a, b in combinations(data_mod.rotated_classes(digits), 2):
        if a not in dropped and pair_confusability(a, b, rotated) > upright:
            dropped.add(b)
    return tuple((c // n, c % n) for c in sorted(dropped))


def base_run(scale):
    """The pre-training run of Figure 4 at ``scale``, before the choice of classes."""
    if scale == "tiny":
        return scale_base("tiny", lr=0.05, batch_size=64, steps=120, eval_every=60, eval_per_class=5,
                          fewshot_episodes=50)
    if scale == "laptop":
        return scale_base("laptop", steps=3000, eval_every=500, eval_per_class=25, fewshot_episodes=600)
    return scale_base("paper", dataset="cifarfs", model="resnet18", eval_every=2000, eval_per_class=5,
                      fewshot_episodes=600)


def classes_of(scale, split, source):
    """RunConfig fields that choose the source and target classes for ``split`` and ``source``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}; got {source!r}")
    if scale == "paper":
        return {"target_dataset": "cifarfs"}  # source: the 64 CIFAR-FS train classes; target: its 20 test classes
    rot = split == "rotations"
    suffix = data_mod.ROTATED_SUFFIX if rot else ""
    if source == "fashion_mnist":  # all Fashion classes as source, all MNIST digits as target
        return {"dataset": "fashion_mnist" + suffix, "target_dataset": "mnist5k" + suffix}
    dataset = ("digits" if scale == "tiny" else "mnist5k") + suffix
    pick = data_mod.rotated_classes if rot else list
    dropped = {data_mod.N_ROTATIONS * d + k for d, k in NEAR_DUPLICATES} if rot else set()
    fields = {"dataset": dataset, "classes": tuple(pick(SOURCE_DIGITS)),
              "target_classes": tuple(c for c in pick(TARGET_DIGITS) if c not in dropped)}
    if scale == "laptop" and not rot:
        fields["eval_per_class"] = 100  # 500 GC images, as with the 20 rotated classes
    return fields


def scale_setup(scale, *, seeds=None, backend=None, data_root=None, split="rotations", source="mnist5k", probe=True):
    """(base RunConfig, {field: values in plotting order}, seeds) of Figure 4 (``probe``: the linear probe too),
    with the command line's backend and data root."""
    if scale not in GRIDS:
        raise ValueError(f"scale must be one of 'tiny', 'laptop', 'paper'; got {scale!r}")
    base = with_options(base_run(scale).replace(**classes_of(scale, split, source)), scale, backend, data_root)
    base = base.replace(fewshot_probe=bool(probe))
    return base, {f: list(v) for f, v in GRIDS[scale].items()}, list(range(seeds or SEEDS[scale]))


def configs(scale, *, seeds=None, backend=None, data_root=None, split="rotations", source="mnist5k", probe=True):
    """Every run of Figure 4, flat (the shared baseline appears once per sweep; it trains once)."""
    return flat(sweep_configs(*scale_setup(scale, seeds=seeds, backend=backend, data_root=data_root, split=split,
                                           source=source, probe=probe)))


def per_value(hist_field):
    """[[history per seed] per value] from one sweep's [[history per value] per seed]."""
    return [list(hs) for hs in zip(*hist_field)]


PROBE_LABEL = "5-shot accuracy of the probe on L2-normalized features"


def accuracy_metrics(probe):
    """The 5-shot accuracies every sweep's claims look at: NCC, and the logistic-regression probe (``probe``)."""
    return [("fewshot5", "5-shot NCC accuracy")] + ([("fewshot5_logreg", PROBE_LABEL)] if probe else [])


def pooled_accuracy_metrics(probe, distinct=False):
    """The accuracies the all-runs claims look at: ``accuracy_metrics``, 1-shot NCC accuracy and, with
    ``distinct`` (rotated classes), 5-shot NCC accuracy on episodes of 5 different digits."""
    return accuracy_metrics(probe) + [("fewshot1", "1-shot NCC accuracy")] + (
        [("fewshot5_distinct", "5-shot NCC accuracy, 5 different digits")] if distinct else [])


def make_claims(grid, hist, probe=True, distinct=False):
    """The claim table of Figure 4: per sweep and pooled over all runs, Spearman correlations of final values.

    Per sweep: the sweep moves GC the way the paper says (lr up, batch down, L2 up: GC down); final source GC
    (and GCol) vs final target NC (expected positive); final source GC vs final 5-shot accuracy, NCC and probe
    (expected negative). Pooled over every distinct run of a seed (all sweeps): GC and GCol vs target NC, and
    GC, GCol and target NC vs each accuracy (5-shot NCC, 5-shot probe, 1-shot NCC and, with ``distinct``,
    5-shot NCC on episodes of 5 different digits; expected negative).
    """
    out = []
    for field, title, gc_sign, direction in SWEEPS:
        gc = finals(hist[field], "gc")
        name = title.split(" (")[0]
        xs = [list(grid[field])] * len(gc)
        out.append(C.rank_correlation_claim(NAME, f"{name}: {direction} lowers source GC", xs, gc, gc_sign, field,
                                            "source_gc"))
        out.append(C.rank_correlation_claim(NAME, f"{name}: lower source GC, lower target NC", gc,
                                            finals(hist[field], "target_nc"), +1, "source_gc", "target_nc"))
        out.append(C.rank_correlation_claim(NAME, f"{name}: lower source GCol, lower target NC",
                                            finals(hist[field], "gcol"), finals(hist[field], "target_nc"), +1,
                                            "source_gcol", "target_nc"))
        for metric, label in accuracy_metrics(probe):
            out.append(C.rank_correlation_claim(NAME, f"{name}: lower source GC, higher {label}", gc,
                                                finals(hist[field], metric), -1, "source_gc", metric))
    runs = distinct_runs_per_seed(hist)
    pooled = lambda metric: [[final(h, metric) for h in hs] for hs in runs]  # noqa: E731
    out.append(C.rank_correlation_claim(NAME, "all runs: lower source GC, lower target NC", pooled("gc"),
                                        pooled("target_nc"), +1, "source_gc", "target_nc"))
    out.append(C.rank_correlation_claim(NAME, "all runs: lower source GCol, lower target NC", pooled("gcol"),
                                        pooled("target_nc"), +1, "source_gcol", "target_nc"))
    for metric, label in pooled_accuracy_metrics(probe, distinct):
        out.append(C.rank_correlation_claim(NAME, f"all runs: lower source GC, higher {label}", pooled("gc"),
                                            pooled(metric), -1, "source_gc", metric))
        out.append(C.rank_correlation_claim(NAME, f"all runs: lower source GCol, higher {label}", pooled("gcol"),
                                            pooled(metric), -1, "source_gcol", metric))
        out.append(C.rank_correlation_claim(NAME, f"all runs: lower target NC, higher {label}", pooled("target_nc"),
                                            pooled(metric), -1, "target_nc", metric))
    return out


def _plot_accuracy(ax, hists, metric, color, label, dodge=0.0):
    """Mean accuracy over seeds with its min-max band, and bars of +- the 95% episode interval (mean over seeds),
    shifted by ``dodge`` steps so that the bars of neighbouring curves do not hide each other."""
    from .experiments.plotting import plot_band

    line = plot_band(ax, hists, metric, color, label=label)
    runs = [h for h in hists if h["evals"]]
    if line is None or not runs:
        return
    n = min(len(series(h, metric)[0]) for h in runs)
    steps = series(runs[0], metric)[0][:n]
    with onp.errstate(all="ignore"):
        m = onp.nanmean([series(h, metric)[1][:n] for h in runs], axis=0)
        ci = onp.nanmean([series(h, metric + "_ci95")[1][:n] for h in runs], axis=0)
    ax.errorbar(steps + dodge, m, yerr=ci, fmt="none", ecolor=color, elinewidth=1.0, capsize=2.5)


def draw(grid, hist, title, probe=True, eval_every=1):
    """Three rows (lr, batch, L2 sweeps) by three columns (source GC, target NC, 5-shot accuracy) over training;
    with ``probe`` a fourth column, the 5-shot accuracy of the logistic-regression probe."""
    import matplotlib.pyplot as plt

    from .experiments.plotting import after_init, fmt_value, plot_band, style, sweep_colors

    style()
    columns = list(METRICS) + ([("fewshot5_logreg", "5-shot probe, L2-normalized features")] if probe else [])
    fig, axes = plt.subplots(3, len(columns), figsize=(4.5 * len(columns), 11))
    for row, (field, row_title, *_) in enumerate(SWEEPS):
        values, hists = grid[field], per_value(hist[field])
        colors = sweep_colors(len(values))
        short = {"lr": "lr", "batch_size": "batch", "l2": "L2"}[field]
        every = eval_every
        for i, (v, hs, color) in enumerate(zip(values, hists, colors)):
            label = f"{short} = {fmt_value(v)}"
            plot_band(axes[row, 0], hs, "gc", color, label=label)
            plot_band(axes[row, 1], after_init(hs), "target_nc", color, label=label)
            for col in range(2, len(columns)):
                _plot_accuracy(axes[row, col], after_init(hs), columns[col][0], color, label,
                               dodge=(i - (len(values) - 1) / 2) * 0.04 * every)
        init = [h for hs in hists for h in hs if h["evals"] and h["evals"][0]["step"] == 0]
        for col, (metric, col_title) in enumerate(columns):
            ax = axes[row, col]
            ax.set_title(f"({'abc'[row]}{col + 1}) {col_title}", fontsize=9)
            xlabel = "pre-training iteration"
            if col and init:  # the untrained network is left off the axis so that the sweep stays readable
                xlabel += f" (step 0: {onp.nanmean([h['evals'][0].get(metric, onp.nan) for h in init]):.3g})"
            ax.set_xlabel(xlabel)
        axes[row, 0].set_ylabel(f"{row_title.upper()}\nsource GC")
        axes[row, 1].set_ylabel("target NC (lower = more collapse)")
        for col in range(2, len(columns)):
            axes[row, col].set_ylabel("5-shot accuracy (zoomed)")
        axes[row, 0].legend(loc="best")
    n_seeds = len(hist["lr"])
    fig.suptitle(f"Figure 4: {title}\nrows: one sweep each; lines: mean over {n_seeds} seed{'s' if n_seeds > 1 else ''}, "
                 "bands: min-max over seeds; accuracy bars: 95% interval over the episodes (mean over seeds); "
                 "x: a diverged run", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97), h_pad=1.6, w_pad=1.2)
    return fig


def draw_scatter(grid, hist, title, probe=True):
    """Every run's final (source GC, target NC, 5-shot accuracy) as one point, coloured by sweep."""
    import matplotlib.pyplot as plt

    from .experiments.plotting import style

    style()
    runs = distinct_runs_per_seed(hist)
    sweep_of = {}
    for field, *_ in SWEEPS:
        for key in {h["key"] for hs in hist[field] for h in hs}:  # the baseline is in every sweep: drawn in black
            sweep_of[key] = "baseline" if key in sweep_of else field
    styles = {"lr": ("C0", "o", "lr sweep"), "batch_size": ("C1", "s", "batch sweep"), "l2": ("C2", "^", "L2 sweep"),
              "baseline": ("k", "*", "baseline (all rows)")}
    panels = [("gc", "target_nc"), ("gc", "fewshot5"), ("target_nc", "fewshot5")]
    if probe:
        panels.append(("gc", "fewshot5_logreg"))
    labels = {"gc": "final source GC", "target_nc": "final target NC",
              "fewshot5": "final 5-shot NCC accuracy", "fewshot5_logreg": "final 5-shot probe accuracy (L2-normalized)"}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4))
    hs_all = [h for hs in runs for h in hs]
    for ax, (xm, ym) in zip(axes, panels):
        drawn = set()
        for h in hs_all:
            color, marker, label = styles[sweep_of[h["key"]]]
            ax.plot(final(h, xm), final(h, ym), marker, color=color, ms=6 if marker == "*" else 4.5, alpha=0.8,
                    label=None if label in drawn else label)
            drawn.add(label)
        rho = C.spearman([final(h, xm) for h in hs_all], [final(h, ym) for h in hs_all])
        ax.set_title(f"Spearman {rho:+.2f} over {len(hs_all)} runs")
        ax.set_xlabel(labels[xm])
        ax.set_ylabel(labels[ym])
    axes[0].legend(loc="best")
    fig.suptitle(f"Figure 4, every run pooled ({title})", fontsize=10)
    fig.tight_layout()
    return fig


def summarize(grid, hist):
    """Per sweep, value and seed: status, final values and the curves, for the JSON."""
    keys = ["gc", "gcol", "target_nc", "fewshot5", "fewshot5_ci95", "fewshot1", "fewshot1_ci95", "fewshot5_distinct",
            "fewshot5_distinct_ci95", "fewshot5_logreg", "fewshot5_logreg_ci95", "fewshot1_logreg",
            "fewshot1_logreg_ci95", "nc_train", "test_acc", "logit_gc"]
    out = {}
    for field, *_ in SWEEPS:
        rows = []
        for v, hs in zip(grid[field], per_value(hist[field])):
            for h in hs:
                rows.append({"value": v, "seed": h["config"]["seed"], "key": h["key"], "status": h["status"],
                             "message": h["message"], "seconds": h["seconds"],
                             "final": {k: final(h, k) for k in keys if k in h["evals"][-1]} if h["evals"] else {},
                             "steps": series(h, "gc")[0].tolist(),
                             "curves": {k: series(h, k)[1].tolist() for k in keys
                                        if h["evals"] and k in h["evals"][-1]}})
        out[field] = rows
    return out


def _title(scale, split, source):
    if scale == "paper":
        return "ResNet-18, CIFAR-FS: 64 source classes -> 20 target classes"
    data = "8x8 digits" if scale == "tiny" else "mnist5k"
    model = "MLP 64-32-16" if scale == "tiny" else "MLP 784-256-256-64"
    if source == "fashion_mnist":
        classes = "Fashion-MNIST -> MNIST digits" + (", 4 rotations each" if split == "rotations" else "")
    elif split == "rotations":
        n_target = len(classes_of(scale, split, source)["target_classes"])
        classes = (f"{data}, digits 0-4 x 4 rotations = 20 source classes -> digits 5-9 x 4 rotations = "
                   f"{n_target} target")
    else:
        classes = f"{data}, digits 0-4 (source) -> digits 5-9 (target)"
    return f"{model}, {classes}"


def _fashion_missing(data_root):
    """None when the Fashion-MNIST files can be read, else the reason (where it looked, how to get them)."""
    try:
        data_mod.load("fashion_mnist", "test", root=data_root)
    except FileNotFoundError as e:
        return str(e)
    return None


def main(argv=None):
    """Run the figure from the command line ``argv`` (see the module docstring); returns its paths and claims."""
    p = figure_parser(f"python -m minigcnc.{NAME}", __doc__, epilog=runs_epilog(scale_setup))
    p.add_argument("--split", choices=SPLITS, default=None,
                   help="rotations (default with mnist5k): 20 source / 20 target classes, each digit at 4 angles; "
                        "digits: 5 source / 5 target digits (with fashion_mnist, the default: the plain 10 classes)")
    p.add_argument("--source", choices=SOURCES, default="mnist5k",
                   help="source data (fashion_mnist: local Fashion-MNIST files, target the mnist5k digits)")
    p.add_argument("--probe", action=argparse.BooleanOptionalAction, default=True,
                   help="the logistic-regression probe beside NCC in every episode (default: on; --no-probe: NCC only)")
    args = parse(p, argv)
    if args.split is None:
        args.split = "rotations" if args.source == "mnist5k" else "digits"
    t0 = time.time()
    if args.source == "fashion_mnist" and args.scale != "paper":
        reason = _fashion_missing(args.data_root)
        if reason:
            print(f"figure4: skipped, --source fashion_mnist needs the Fashion-MNIST files.\n{reason}", file=sys.stderr)
            return {"skipped": reason}
    base, grid, seeds = scale_setup(args.scale, seeds=args.seeds, backend=args.backend, data_root=args.data_root,
                                    split=args.split, source=args.source, probe=args.probe)
    sweeps = sweep_configs(base, grid, seeds)  # {field: [[config per value] per seed]}
    cfgs = flat(sweeps)
    histories = run_sweep(NAME, args, cfgs)  # from the cache, or trained
    hist = by_sweep(sweeps, histories)  # {field: [[history per value] per seed]}

    distinct = args.split == "rotations" and args.scale != "paper"  # rotated digits: fewshot5_distinct recorded
    claims = make_claims(grid, hist, args.probe, distinct)

    title = _title(args.scale, args.split, args.source)
    variant = {("mnist5k", "rotations"): "", ("mnist5k", "digits"): "_digits",
               ("fashion_mnist", "digits"): "_fashion", ("fashion_mnist", "rotations"): "_fashion_rotations"}[
        (args.source, args.split)] + ("" if args.probe else "_noprobe")
    scatter = figure_outputs(NAME + "_scatter" + variant, args.scale, args.out)[0]
    save_figure(draw_scatter(grid, hist, title, args.probe), scatter)
    print(f"wrote {scatter}", file=sys.stderr)
    png, js = write_figure(NAME + variant, args.scale, args.out, draw(grid, hist, title, args.probe, base.eval_every), {
        "figure": NAME, "scale": args.scale, "split": args.split, "source": args.source, "probe": args.probe,
        "probe_features": "L2-normalized" if args.probe else None,
        "title": title, "source_digits": list(SOURCE_DIGITS), "target_digits": list(TARGET_DIGITS),
        "grids": grid, "seeds": seeds, "configs": [c.to_dict() for c in {c.key(): c for c in cfgs}.values()],
        "sweeps": summarize(grid, hist), "scatter": str(scatter),
        "run_seconds_total": sum({h["key"]: h["seconds"] for h in histories}.values())}, claims, t0)
    return {"png": str(png), "scatter": str(scatter), "json": str(js), "claims": claims, "histories": histories}


if __name__ == "__main__":
    main()
