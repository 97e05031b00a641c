"""Figure 3: the GC-based bound tracks the nearest-class-centre (NCC) test error over training.

    python -m minigcnc.figure3                  # laptop scale, a few minutes on 2 cores
    python -m minigcnc.figure3 --scale tiny     # seconds
    python -m minigcnc.figure3 --scale paper --data-root DIR   # VGG-13 on CIFAR-10, on a GPU

Five seeds of the default model are trained with plain SGD. At every evaluation the NCC classifier is
built from the class means of the training embeddings and tested on held-out images; beside its error we
compute the bounds of PAPER.md section 4 (``bounds.py``), all with the training class means:

- GC bound: (4/k) sum_i sum_{j!=i} rho_i GC_i / ||mu_i - mu_j||^2, with GC_i the exact embedding GC of class i
  (fixed training subset) and rho_i = lambda_max(Cov(x | class i)), the Poincare constant of a Gaussian with
  the class's input covariance (a proxy: the true constant of image classes is unknown);
- its directional form, with the directional GC E||J^T u_ij||^2 in place of GC_i;
- the rho-free CDNV (Markov) bound (4/k) sum_i sum_{j!=i} E||g(x) - mu_i||^2 / ||mu_i - mu_j||^2 over the
  test images, and the directional one-sided Chebyshev bound; both are rigorous for the test error.

Scales: tiny = sklearn digits, MLP 64-32-16, 2 seeds, 300 steps; laptop = mnist5k, MLP 784-256-256-64,
lr 0.05, batch 128, 3,000 steps, 5 seeds, float32 (3x faster than float64 here; GC and the
bounds agree to 3 digits); paper = VGG-13 on CIFAR-10, lr 0.01, batch 128, 5 seeds (GPU).
"""
import time


from .experiments import claims as C
from .runs import RunConfig, figure_parser, run_sweep, series, write_figure

NAME = "figure3"
TITLES = {"tiny": "MLP on digits", "laptop": "MLP on mnist5k", "paper": "VGG-13 on CIFAR-10"}
BOUNDS = [  # (metric, label, colour, line style)
    ("bound_gc", "GC bound, rho = lambda_max Cov(x|c) (Gaussian proxy)", "C0", "-"),
    ("bound_gc_directional", "directional GC bound (same rho)", "C0", "--"),
    ("bound_markov", "CDNV (Markov) bound, rho-free", "C2", "-"),
    ("bound_directional", "directional (one-sided Chebyshev) bound", "C2", "--"),
]


def configs(scale, backend=None, data_root=None):
    """The runs of Figure 3 at ``scale``: one config per seed."""
    if scale == "tiny":
        base = RunConfig(dataset="digits", model="mlp", hidden=(32, 16), lr=0.1, batch_size=32, steps=300,
                         eval_every=50, eval_per_class=10)
        seeds = range(2)
    elif scale == "laptop":
        base = RunConfig(dataset="mnist5k", model="mlp", hidden=(256, 256, 64), lr=0.05, batch_size=128, steps=3000,
                         eval_every=150, eval_per_class=50, dtype="float32")
        seeds = range(5)
    else:
        base = RunConfig(dataset="cifar10", model="vgg13", lr=0.01, batch_size=128, steps=20000, eval_every=1000,
                         eval_per_class=20, dtype="float32", backend="cupy")
        seeds = range(5)
    base = base.replace(data_root=data_root, **({"backend": backend} if backend else {}))
    if backend == "numpy" and scale == "paper":
        base = base.replace(dtype="float64")
    return [base.replace(seed=s) for s in seeds]


def make_claims(histories):
    """The claim table of Figure 3: each bound tracks the NCC test error; which bounds stay above it."""
    runs = [h for h in histories if h["evals"]]
    err = [series(h, "ncc_test_error")[1] for h in runs]
    out = []
    for metric, label, _, _ in BOUNDS:
        b = [series(h, metric)[1] for h in runs]
        out.append(C.correlation_claim(NAME, f"{label.split(',')[0]} tracks the NCC test error over training",
                                       b, err, metric, "ncc_test_error"))
    b = [series(h, "bound_gc")[1][1:] for h in runs]
    out.append(C.correlation_claim(NAME, "GC bound tracks the NCC test error after step 0",
                                   b, [e[1:] for e in err], "bound_gc", "ncc_test_error"))
    for metric, label, _, _ in BOUNDS:
        b = [series(h, metric)[1] for h in runs]
        rigorous = metric in ("bound_markov", "bound_directional")
        out.append(C.fraction_above_claim(
            NAME, f"{label.split(',')[0]} stays above the NCC test error" + ("" if rigorous else " (rho is a proxy)"),
            b, err, metric, "ncc_test_error"))
    d = [series(h, "bound_directional")[1] for h in runs]
    m = [series(h, "bound_markov")[1] for h in runs]
    out.append(C.fraction_above_claim(NAME, "the directional bound is never looser than the Markov bound",
                                      m, d, "bound_markov", "bound_directional"))
    return out


def draw(histories, title):
    """Two panels: (a) the paper's view, GC bound (left axis) and NCC test error (right axis);
    (b) the hierarchy of bounds and the error on one log axis."""
    import matplotlib.pyplot as plt

    from .plotting import mean_band, plot_band, style

    style()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    plot_band(ax, histories, "bound_gc", "C0", label=BOUNDS[0][1])
    ax.set_xlabel("training iteration")
    ax.set_ylabel("GC-based bound (left)", color="C0")
    ax.set_yscale("log")
    ax2 = ax.twinx()
    plot_band(ax2, histories, "ncc_test_error", "C3", label="NCC test error (right)")
    ax2.set_ylabel("NCC test error (right)", color="C3")
    ax2.grid(False)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper right")
    ax.set_title(f"(a) {title}: GC bound vs NCC test error")

    for metric, label, color, ls in BOUNDS:
        plot_band(bx, histories, metric, color, label=label, ls=ls)
    plot_band(bx, histories, "ncc_test_error", "C3", label="NCC test error")
    steps = mean_band(histories, "ncc_test_error")[0]
    if len(steps):
        bx.axhline(1.0, color="gray", lw=0.8, ls=":")
        bx.text(steps[0], 1.0, "error = 1: a bound above this line is vacuous", va="bottom", ha="left", fontsize=7,
                color="gray")
    bx.set_yscale("log")
    bx.set_xlabel("training iteration")
    bx.set_title("(b) the hierarchy of bounds (log scale), mean and min-max over seeds")
    bx.legend(loc="upper right")
    fig.tight_layout()
    return fig


def summarize(histories):
    """Per-seed curves of the plotted metrics, for the JSON."""
    keys = ["ncc_test_error", "bound_gc", "bound_gc_directional", "bound_markov", "bound_directional", "gc",
            "gcol", "nc_train", "nc_test", "test_acc", "rho_max", "implied_rho"]
    return [{"seed": h["config"]["seed"], "status": h["status"], "message": h["message"],
             "steps": series(h, "gc")[0].tolist(), **{k: series(h, k)[1].tolist() for k in keys}} for h in histories]


def training_figure(argv, name, doc, configs_of, make_claims, draw, summarize, extra=None):
    """Run, draw and check a figure of curves over training, one run per seed (Figures 2 and 3).

    ``configs_of(scale, backend, data_root)`` gives the runs; ``make_claims``, ``draw(histories, title)`` and
    ``summarize`` turn their histories into the claim table, the figure and the JSON's ``runs``; ``extra``
    adds fields to the JSON.
    """
    args = figure_parser(f"python -m minigcnc.{name}", doc).parse_args(argv)
    t0 = time.time()
    cfgs = configs_of(args.scale, args.backend, args.data_root)
    histories = run_sweep(name, args, cfgs)
    claims = make_claims(histories)
    fig = draw(histories, TITLES[args.scale])
    png, js = write_figure(name, args.scale, args.out, fig, {
        "figure": name, "scale": args.scale, "configs": [c.to_dict() for c in cfgs], **(extra or {}),
        "runs": summarize(histories)}, claims, t0)
    return {"png": str(png), "json": str(js), "claims": claims, "histories": histories}


def main(argv=None):
    return training_figure(argv, NAME, __doc__, configs, make_claims, draw, summarize)

if __name__ == "__main__":
    main()
