"""Figure 3: a GC-based bound on the nearest-class-centre (NCC) test error, over training.

    python -m minigcnc.figure3                  # laptop scale, under a minute on 2 cores
    python -m minigcnc.figure3 --scale tiny     # seconds
    python -m minigcnc.figure3 --scale paper --data-root DIR   # VGG-13 on CIFAR-10, on a GPU

Five seeds of the default model are trained with plain SGD. At every evaluation the NCC classifier is built
from the class means mu_i of the training embeddings and tested on held-out images; beside its error we
compute bounds on it (``bounds.py``; derived in docs/theory.md#bounds-on-the-ncc-test-error -- this
project's derivation, built on the paper's Proposition 4.1, not the paper's own bound):

- GC bound: (1/k) sum_i sum_{j!=i} 4 (rho_i GC_i + ||m_i - mu_i||^2) / ||mu_i - mu_j||^2, with every term
  on the images the error is measured on: GC_i the exact embedding GC of class i on a fixed subset of its
  *test* images, m_i the test class mean, and rho_i = lambda_max(Cov(x | class i)), the Poincare constant
  of a Gaussian with the class's input covariance (a proxy: the true constant of image classes is unknown);
- its directional form, with the directional GC E||J^T u_ij||^2 of the test images and the offset of m_i
  along u_ij;
- the rho-free CDNV (Markov) bound (1/k) sum_i sum_{j!=i} 4 E||g(x) - mu_i||^2 / ||mu_i - mu_j||^2 over the
  test images, and the directional one-sided Chebyshev bound.

The claim table tests whether each bound *tracks* the error over training (a Pearson correlation per seed,
tested by permutation; checkpoints are autocorrelated, so it measures co-movement). Below it, apart, are the
checks: the Markov and directional bounds stay above the error, and the directional one is never looser,
*by construction* (Markov's inequality holds for every distribution, the empirical one of the test set
included): they catch bugs, not science. Whether the GC bound stays above the error is a measured check of
the proxy rho. The JSON stores, per class, the proxy rho and the implied rho Var_i / GC_i (the smallest
constant that makes the Poincare step hold on the test images), which says why the GC bound is loose.

Scales: tiny = sklearn digits, MLP 64-32-16, 2 seeds, 300 steps; laptop = mnist5k, MLP 784-256-256-64,
lr 0.05, batch 128, 3,000 steps, 5 seeds, float32 (3x faster than float64 here; GC and the
bounds agree to 3 digits); paper = VGG-13 on CIFAR-10, lr 0.01, batch 128, 5 seeds (GPU).
"""
from .experiments import claims as C
from .experiments.config import scale_base, with_options
from .experiments.driver import training_figure
from .experiments.history import series

NAME = "figure3"
SEEDS = {"tiny": 2, "laptop": 5, "paper": 5}
BOUNDS = [  # (metric, label, colour, line style)
    ("bound_gc", "GC bound (test GC + offset), rho = lambda_max Cov(x|c)", "C0", "-"),
    ("bound_gc_directional", "directional GC bound (same rho)", "C0", "--"),
    ("bound_markov", "CDNV (Markov) bound, rho-free", "C2", "-"),
    ("bound_directional", "directional (one-sided Chebyshev) bound", "C2", "--"),
]


def base_run(scale):
    """The training run of Figures 2 and 3 at ``scale``: the scale's base run, longer, evaluated more often."""
    if scale == "tiny":
        return scale_base("tiny", steps=300)
    if scale == "laptop":
        return scale_base("laptop", steps=3000, eval_every=150)
    return scale_base("paper", lr=0.01, batch_size=128)


def configs(scale, seeds=None, backend=None, data_root=None):
    """The runs of Figure 3 at ``scale``: one config per seed."""
    base = with_options(base_run(scale), scale, backend, data_root)
    return [base.replace(seed=s) for s in range(seeds or SEEDS[scale])]


def make_claims(histories):
    """Figure 3's claims (each bound tracks the NCC test error over training) and its checks (which bounds
    stay above the error; the rho-free ones by construction)."""
    runs = [h for h in histories if h["evals"]]
    err = [series(h, "ncc_test_error")[1] for h in runs]
    curve = lambda metric, start=0: [series(h, metric)[1][start:] for h in runs]  # noqa: E731
    out = []
    for metric, label, _, _ in BOUNDS:
        out.append(C.correlation_claim(NAME, f"the {label.split(',')[0]} tracks the NCC test error over training",
                                       curve(metric), err, metric, "ncc_test_error"))
    out.append(C.correlation_claim(NAME, "the GC bound tracks the NCC test error after step 0 (the untrained "
                                   "network left out)", curve("bound_gc", 1), [e[1:] for e in err], "bound_gc",
                                   "ncc_test_error"))
    for metric, label, _, _ in BOUNDS:
        rigorous = metric in ("bound_markov", "bound_directional")
        what = ("holds for the empirical test distribution whatever the network" if rigorous else
                "a measured check of the Gaussian-proxy rho")
        out.append(C.inequality_check(NAME, f"the {label.split(',')[0]} stays above the NCC test error ({what})",
                                      curve(metric), err, metric, "ncc_test_error", by_construction=rigorous))
    out.append(C.inequality_check(NAME, "the directional bound is never looser than the Markov bound",
                                  curve("bound_markov"), curve("bound_directional"), "bound_markov",
                                  "bound_directional", by_construction=True))
    return out


def draw(histories, title):
    """Two panels: (a) the GC bound and the NCC test error on one log axis, with the rho-free bounds;
    (b) the two quantities that make the GC bound loose: the proxy rho against the implied rho."""
    import matplotlib.pyplot as plt

    from .experiments.plotting import plot_band, style

    style()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2))
    ax.axhline(1.0, color="gray", lw=0.8, ls=":")
    ax.text(0.01, 0.02, "dotted line: error = 1; a bound above it is vacuous", transform=ax.transAxes,
            va="bottom", ha="left", fontsize=7, color="gray")
    for metric, label, color, ls in BOUNDS:
        plot_band(ax, histories, metric, color, label=label, ls=ls)
    plot_band(ax, histories, "ncc_test_error", "C3", label="NCC test error", lw=2.2)
    ax.set_yscale("log")
    ax.set_xlabel("training iteration")
    ax.set_ylabel("bound or error (one log axis)")
    ax.set_title("(a) bounds on the NCC test error and the error itself")
    ax.legend(loc="upper right", fontsize=7)

    plot_band(bx, histories, "rho_max", "C0", label="proxy rho: max_c lambda_max Cov(x|c)")
    plot_band(bx, histories, "implied_rho_test_max", "C1", label="implied rho: max_c Var_c / GC_c (test images)")
    plot_band(bx, histories, "implied_rho", "C4", label="implied ratio NC / GCol (train)", ls="--")
    bx.set_yscale("log")
    bx.set_xlabel("training iteration")
    bx.set_title("(b) why the GC bound is loose: the proxy rho against the implied rho")
    bx.legend(loc="center right", fontsize=7)
    fig.suptitle(f"Figure 3: {title}; lines = mean, bands = min-max over seeds", y=1.02)
    fig.tight_layout()
    return fig


def summarize(histories):
    """Per-seed curves of the plotted metrics, and per class at the last evaluation the proxy rho and the
    implied rho, for the JSON."""
    keys = ["ncc_test_error", "bound_gc", "bound_gc_directional", "bound_markov", "bound_directional", "gc",
            "gc_test", "gcol", "nc_train", "nc_test", "test_acc", "rho_max", "implied_rho", "implied_rho_test_max"]
    last = lambda h, k: h["evals"][-1].get(k) if h["evals"] else None  # noqa: E731
    return [{"seed": h["config"]["seed"], "status": h["status"], "message": h["message"],
             "steps": series(h, "gc")[0].tolist(), **{k: series(h, k)[1].tolist() for k in keys},
             "final_per_class": {k: last(h, k) for k in ("rho", "implied_rho_test", "class_gc_test", "offset_sq")}}
            for h in histories]


def main(argv=None):
    """Run the figure from the command line ``argv`` (see the module docstring); returns its paths and claims."""
    return training_figure(argv, NAME, __doc__, lambda a: configs(a.scale, a.seeds, a.backend, a.data_root),
                           make_claims, draw, summarize)

if __name__ == "__main__":
    main()
