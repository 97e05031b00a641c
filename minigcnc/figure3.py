"""Figure 3: bounds on the nearest-class-centre (NCC) test error over training, and whether they track it.

    python -m minigcnc.figure3                  # laptop scale, about a minute on 2 cores
    python -m minigcnc.figure3 --scale tiny     # seconds (a plumbing check)
    python -m minigcnc.figure3 --scale paper --data-root DIR   # VGG-13 on CIFAR-10, on a GPU

Five seeds of the default model are trained with plain SGD. At every evaluation the NCC classifier is built
from the class means mu_i of the training embeddings and tested on held-out images; beside its error four
bounds on the class-averaged error are computed (``bounds.py``; derived in
docs/theory.md#bounds-on-the-ncc-test-error -- this project's derivation, built on the paper's Proposition
4.1): the GC bound (rho_i GC_i + offset of the test class mean, over squared distances of the centres, with
rho_i = lambda_max Cov(x | class i), the Poincare constant of a Gaussian with the class's input covariance:
a proxy), its directional form, the rho-free CDNV (Markov) bound and the directional one-sided Chebyshev one.

What the table tests:
- *Tracking, by seed pairing.* Within one run every bound and the error fall together, as does almost any
  quantity that changes steadily in training (a within-run correlation is shown as a description only). The
  counted test asks whether a seed's bound follows *that seed's* error better than another seed's error:
  matched minus mismatched correlation, p exact over all 120 pairings of 5 seeds (after step 0).
- *Across seeds*: does the seed with the lower final GC bound end with the lower final NCC error?
- Checks, apart: the rho-free bounds stay above the class-averaged error (by construction: a failure is a
  bug), the directional bound is never looser than the Markov one (by construction), and the Poincare step
  rho_c GC_c >= Var_c holds for every class on the test images (measured: the proxy rho can fail it).
After the table the command prints the final values (mean over seeds) and which bounds are vacuous. Across
*runs that ended differently* the bound is tested in Figure 1 (``figure1_across_runs.png``).

The runs of each scale: the last lines of ``--help`` (the run is ``experiments.presets.training_run``, shared
with Figure 2). More: docs/figures.md#figure3.
"""
import io
import time

import numpy as onp

from .experiments import claims as C
from .experiments.cli import figure_parser, parse, run_sweep, write_figure
from .experiments.config import with_options
from .experiments.driver import model_title, runs_epilog
from .experiments.history import final, series
from .experiments.presets import training_run

NAME = "figure3"
SEEDS = {"tiny": 2, "laptop": 5, "paper": 5}
ERROR = "ncc_test_error_balanced"  # the class-averaged NCC test error: what every bound bounds
BOUNDS = [  # (metric, label, colour, line style)
    ("bound_gc", "GC bound", "C0", "-"),
    ("bound_gc_directional", "directional GC bound", "C0", "--"),
    ("bound_markov", "CDNV (Markov) bound", "C2", "-"),
    ("bound_directional", "directional (Chebyshev) bound", "C2", "--"),
]


def scale_setup(scale, *, seeds=None, backend=None, data_root=None):
    """(base RunConfig, {} (no sweep), seeds) of Figure 3 at ``scale``: the shared training run
    (``presets.training_run``) with the command line's backend and data root."""
    base = with_options(training_run(scale), scale, backend, data_root)
    return base, {}, list(range(seeds or SEEDS[scale]))


def configs(scale, *, seeds=None, backend=None, data_root=None):
    """The runs of Figure 3 at ``scale``: one config per seed."""
    base, _, seeds = scale_setup(scale, seeds=seeds, backend=backend, data_root=data_root)
    return [base.replace(seed=s) for s in seeds]


def curves(runs, metric, start=1):
    """[curve of ``metric`` per seed] from checkpoint ``start`` on (1: the untrained network left out)."""
    return [series(h, metric)[1][start:] for h in runs]


def make_claims(histories):
    """Figure 3's claims (each bound tracks the error by seed pairing; the GC bound ranks the seeds' final
    errors), descriptions (within-run co-movement) and checks (rho-free bounds above the error, the Poincare
    step per class)."""
    runs = [h for h in histories if h["evals"]]
    err = curves(runs, ERROR)
    out = [C.tracking_claim(NAME, f"the {label} tracks the NCC test error over training (seed pairing, after "
                            "step 0)", curves(runs, metric), err, metric, ERROR) for metric, label, _, _ in BOUNDS]
    out.append(C.rank_correlation_claim(
        NAME, "across seeds: the seed with the lower final GC bound has the lower final NCC test error",
        [[final(h, "bound_gc") for h in runs]], [[final(h, ERROR) for h in runs]], +1, "bound_gc", ERROR))
    out.append(C.correlation_claim(NAME, "within each run the GC bound and the NCC test error move together "
                                   "(after step 0)", curves(runs, "bound_gc"), err, +1, "bound_gc", ERROR))
    out.append(C.correlation_claim(NAME, "within each run the raw GC of the training images and the NCC test "
                                   "error move together (after step 0)", curves(runs, "gc"), err, -1, "gc", ERROR))
    for metric in ("bound_markov", "bound_directional"):
        out.append(C.inequality_check(NAME, f"the {dict((m, lb) for m, lb, _, _ in BOUNDS)[metric]} stays above "
                                      "the class-averaged NCC test error", curves(runs, metric, 0), curves(runs, ERROR, 0),
                                      metric, ERROR, by_construction=True))
    out.append(C.inequality_check(NAME, "the directional bound is never looser than the Markov bound",
                                  curves(runs, "bound_markov", 0), curves(runs, "bound_directional", 0),
                                  "bound_markov", "bound_directional", by_construction=True))
    out.append(poincare_check(runs))
    return out


def poincare_check(runs):
    """The Poincare step of the GC bounds, per class, seed and checkpoint: rho_c GC_c >= Var_c on the test
    images, with the smallest margin rho_c GC_c / Var_c (a check of the proxy rho: it can fail)."""
    margins = [onp.concatenate([onp.asarray(e.get("poincare_margin", []), dtype=float) for e in h["evals"]])
               for h in runs]
    allm = onp.concatenate(margins) if margins else onp.array([])
    allm = allm[onp.isfinite(allm)]
    ok = bool(onp.all(allm >= 1.0)) if len(allm) else None
    smallest = float(allm.min()) if len(allm) else float("nan")
    return C.check(NAME, "Poincare step of the GC bound: rho_c GC_c >= Var_c for every class on the test images "
                   "(proxy rho; smallest margin shown)", "min rho_c GC_c / Var_c", smallest, ok,
                   per_seed=[float(m[onp.isfinite(m)].min()) if onp.isfinite(m).any() else float("nan")
                             for m in margins],
                   n_seeds=len(runs), n_points=int(len(allm)), expected=">= 1",
                   detail=f"{int(onp.sum(allm >= 1.0))}/{len(allm)} (seed, checkpoint, class) margins >= 1; a margin "
                          "below 1 means the proxy rho is too small for that class and the GC bound is not a bound there")


FINALS = [(ERROR, "NCC test error (class-averaged)"), ("bound_gc", "GC bound"),
          ("bound_gc_directional", "directional GC bound"), ("bound_markov", "CDNV (Markov) bound"),
          ("bound_directional", "directional (Chebyshev) bound"), ("rho_max", "proxy rho, max over classes"),
          ("implied_rho_test_max", "implied rho Var_c / GC_c, max over classes"),
          ("poincare_margin_min", "Poincare margin rho_c GC_c / Var_c, min over classes")]


def final_means(histories):
    """{metric: mean over seeds of its final value} for FINALS."""
    runs = [h for h in histories if h["evals"]]
    return {m: float(onp.nanmean([final(h, m) for h in runs])) if runs else float("nan") for m, _ in FINALS}


def print_finals(means, out=None):
    """The final values (mean over seeds) and a plain sentence on which bounds are vacuous (above 1)."""
    print("\nFinal values, mean over seeds:", file=out)
    for metric, label in FINALS:
        print(f"  {label:<55s} {means[metric]:>10.4g}", file=out)
    vacuous = [label for metric, label, _, _ in BOUNDS if means[metric] > 1]
    useful = [label for metric, label, _, _ in BOUNDS if means[metric] <= 1]
    if not useful:
        print("All four bounds are vacuous: above 1, so none says anything about the error here.", file=out)
    else:
        print(("Vacuous (above 1, so they say nothing about the error): " + ", ".join(vacuous) + ". " if vacuous
               else "") + "Non-vacuous: " + ", ".join(useful) + ".", file=out)


def draw(histories, title):
    """Two panels: (a) the four bounds and the NCC test error on one log axis; (b) the proxy Poincare constant
    against the implied one (the smallest constant that makes the Poincare step hold on the test images)."""
    import matplotlib.pyplot as plt

    from .experiments.plotting import plot_band, style

    style()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.4))
    ax.axhline(1.0, color="gray", lw=0.8, ls=":")
    ax.text(0.99, 0.8, "error = 1: a bound above this line is vacuous", transform=ax.get_yaxis_transform(),
            va="top", ha="right", fontsize=7, color="gray")
    for metric, label, color, ls in BOUNDS:
        plot_band(ax, histories, metric, color, label=label, ls=ls)
    plot_band(ax, histories, ERROR, "C3", label="NCC test error (class-averaged)", lw=2.2)
    ax.set_yscale("log")
    ax.set_xlabel("training iteration")
    ax.set_ylabel("bound or error (log)")
    ax.set_title("(a) bounds on the NCC test error, and the error")
    ax.legend(loc="upper right", fontsize=7)

    plot_band(bx, histories, "rho_max", "C0", label="proxy: max_c lambda_max Cov(x | c)")
    plot_band(bx, histories, "implied_rho_test_max", "C1", label="implied: max_c Var_c / GC_c (test images)")
    bx.set_yscale("log")
    bx.set_xlabel("training iteration")
    bx.set_ylabel("Poincare constant rho (log)")
    bx.set_title("(b) the proxy rho in the GC bound against the rho the data need")
    bx.legend(loc="center right", fontsize=7)
    fig.suptitle(f"Figure 3: {title}; lines = mean, bands = min-max over seeds", y=1.0)
    fig.tight_layout()
    return fig


def summarize(histories):
    """Per-seed curves of the plotted metrics, and per class at the last evaluation the proxy rho, the implied
    rho and the Poincare margin, for the JSON."""
    keys = ["ncc_test_error", ERROR] + [m for m, *_ in BOUNDS] + [
        "gc", "gc_test", "gcol", "nc_train", "nc_test", "test_acc", "rho_max", "implied_rho_test_max",
        "poincare_margin_min"]
    last = lambda h, k: h["evals"][-1].get(k) if h["evals"] else None  # noqa: E731
    return [{"seed": h["config"]["seed"], "status": h["status"], "message": h["message"],
             "steps": series(h, "gc")[0].tolist(), **{k: series(h, k)[1].tolist() for k in keys},
             "final_per_class": {k: last(h, k) for k in ("rho", "implied_rho_test", "poincare_margin",
                                                           "class_gc_test", "offset_sq")}}
            for h in histories]


def main(argv=None):
    """Run the figure from the command line ``argv`` (see the module docstring); returns its paths and claims."""
    args = parse(figure_parser(f"python -m minigcnc.{NAME}", __doc__, epilog=runs_epilog(scale_setup)), argv)
    t0 = time.time()
    cfgs = configs(args.scale, seeds=args.seeds, backend=args.backend, data_root=args.data_root)
    histories = run_sweep(NAME, args, cfgs)  # from the cache, or trained

    claims = make_claims(histories)

    fig = draw(histories, f"{model_title(cfgs[0])}, {len(cfgs)} seeds")

    means = final_means(histories)
    png, js = write_figure(NAME, args.scale, args.out, fig, {  # judges the claims, prints the claim table
        "figure": NAME, "scale": args.scale, "configs": [c.to_dict() for c in cfgs], "final_means": means,
        "runs": summarize(histories)}, claims, t0)
    summary = io.StringIO()
    print_finals(means, out=summary)
    print(summary.getvalue(), end="")
    return {"png": str(png), "json": str(js), "claims": claims, "histories": histories, "final_means": means,
            "summary": summary.getvalue().strip()}


if __name__ == "__main__":
    main()
