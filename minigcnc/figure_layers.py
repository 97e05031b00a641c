"""Figure: where in depth collapse happens. Per-layer NC1 (He & Su's D_l), per-layer GC and per-layer transfer.

    python -m minigcnc.figure_layers                  # laptop scale: 8 seeds of an 8 x 100 ReLU MLP
    python -m minigcnc.figure_layers --scale tiny     # seconds (a plumbing check)

An MLP of 8 hidden layers of 100 ReLU units trained on digits 0-4 (SGD), recording the ``"layers"`` extra at
every evaluation: per layer l (0 = the pixels) the CDNV, D_l = tr(Sigma_W Sigma_B^+) = k NC1 and the exact GC of
the map from the input to layer l on the evaluation images, the 5-way 5-shot NCC accuracy of the layer's
features on the unseen digits 5-9, and the embedding's AGOP spectrum. Step 0 of each run is its untrained
network, the control. Panels: D_l, GC_l and few-shot accuracy against depth (trained solid, untrained dashed,
one line per seed), and the AGOP's cumulative spectrum at step 0 and at the end.

The claim table (layers 1..L; per seed): Pearson(l, log D_l) of the trained network (expected negative: He &
Su's constant geometric rate), the same statistic untrained (the control, a description) and the paired
difference trained - untrained (expected negative, exact sign-flip test over seeds); Pearson(l, log GC_l),
trained, untrained and paired (no sign predicted: descriptions); Spearman(l, 5-shot accuracy) over layers 0..L
(expected positive if deeper features transfer better), the embedding's 5-shot accuracy trained - untrained
(expected positive, sign-flip test) and the best layer per seed (a description).

The runs of each scale: the last lines of ``--help``. Why these runs: docs/figures.md#figure_layers.
"""
import itertools
import math
import time

import numpy as onp

from .experiments import claims as C
from .experiments import stats as S
from .experiments.cli import figure_parser, parse, run_sweep, write_figure
from .experiments.config import scale_base, with_options
from .experiments.driver import runs_epilog
from .experiments.table import print_table

NAME = "figure_layers"
SEEDS = {"tiny": 3, "laptop": 8, "paper": 10}
SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


def base_run(scale):
    """The run of this figure at ``scale`` (seed 0): a deep MLP on 5 source digits, the 5 others as targets."""
    if scale == "tiny":
        return scale_base("tiny", hidden=(32,) * 6, classes=SOURCE, target_classes=TARGET, steps=300,
                          eval_every=100, extras=("layers",))
    if scale not in ("laptop", "paper"):
        raise ValueError(f"scale must be one of 'tiny', 'laptop', 'paper'; got {scale!r}")
    return scale_base("laptop", hidden=(100,) * 8, classes=SOURCE, target_classes=TARGET, steps=6000,
                      eval_every=1000, extras=("layers",))


def scale_setup(scale, *, seeds=None, backend=None, data_root=None):
    """(base RunConfig, {} (no sweep), seeds) at ``scale``, with the command line's backend and data root."""
    return with_options(base_run(scale), scale, backend, data_root), {}, list(range(seeds or SEEDS[scale]))


def configs(scale, *, seeds=None, backend=None, data_root=None):
    """The runs of the figure: the base run for each seed."""
    base, _, seeds = scale_setup(scale, seeds=seeds, backend=backend, data_root=data_root)
    return [base.replace(seed=s) for s in seeds]


# ---- the figure's two tests (their false-"holds" rates on noise: tests/test_figure_layers.py) ----------------
def depth_rate_claim(statement, logs_per_seed, expected_sign, y_name, *, kind="claim", alpha=0.05, n_perm=4999,
                     seed=0):
    """Per-seed Pearson of the depth l = 1..L with ``logs_per_seed[s]`` (log of a per-layer quantity), mean over
    seeds; p: ``stats.permutation_test`` (the layers' values shuffled within each seed: under no depth order the
    layers are exchangeable); ci: t-interval over seeds (Fisher z); verdict ``stats.verdict_of``.
    ``kind="description"`` for a question with no predicted sign (shown, never counted)."""
    per_seed, zxs, zys = [], [], []
    for ys in logs_per_seed:
        ys = onp.asarray(ys, dtype=float)
        ls = onp.arange(1, len(ys) + 1, dtype=float)
        ok = onp.isfinite(ys)
        if ok.sum() < 3 or S.is_constant(ys[ok]):
            per_seed.append(float("nan"))
            continue
        per_seed.append(float(onp.corrcoef(ls[ok], ys[ok])[0, 1]))
        zxs.append((ls[ok] - ls[ok].mean()) / ls[ok].std())
        zys.append((ys[ok] - ys[ok].mean()) / ys[ok].std())
    used = [v for v in per_seed if math.isfinite(v)]
    if not used:
        return C.Claim(NAME, statement, f"pearson(l, {y_name})", float("nan"), 0, "", "n/a", per_seed, "no seed",
                       kind=kind)
    value = float(onp.mean(used))
    p, method, p_min = S.permutation_test(zxs, zys, n_perm=n_perm, seed=seed)
    ci = (float("nan"), float("nan"))  # the engine's rule for a mean of per-seed coefficients (stats.NO_SEED_CI)
    sign = expected_sign if expected_sign else 0
    verdict = S.verdict_of(value, used, p, sign, alpha, ci) if sign else "n/a"
    detail = (f"value = mean of {len(used)} per-seed Pearson coefficients over layers; p: layers shuffled within "
              f"each seed, {method}; {S.NO_SEED_CI}")
    if p_min >= alpha:
        detail += f"; underpowered: the smallest p here is {p_min:.3g}"
    if kind == "description":
        detail = "a description (no sign predicted; p two-sided): " + detail
    return C.Claim(NAME, statement, f"pearson(l, {y_name})", value, len(used),
                   {1: "positive", -1: "negative"}.get(sign, "either"), verdict, per_seed, detail, ci=ci, p_value=p,
                   alpha=alpha, n_points=sum(len(z) for z in zxs), kind=kind, expected_sign=sign)


def sign_flip_p(diffs):
    """Two-sided exact sign-flip p-value of the mean of paired differences (all 2^n sign patterns), and the
    smallest p these n allow."""
    d = onp.asarray(diffs, dtype=float)
    signs = onp.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    means = onp.abs(signs @ d) / len(d)
    obs = abs(d.mean())
    return float(onp.mean(means >= obs - 1e-12)), 2.0 / len(signs)


def paired_claim(statement, trained, untrained, expected_sign, y_name, *, kind="claim", alpha=0.05):
    """Per seed the difference ``trained[s] - untrained[s]`` of a statistic (e.g. two Pearson coefficients of one
    network before and after training); value = their mean; p: exact two-sided sign-flip test over seeds;
    ci: t-interval over seeds; verdict ``stats.verdict_of``."""
    diffs = [a - b for a, b in zip(trained, untrained)]
    used = [v for v in diffs if math.isfinite(v)]
    if len(used) < 2:
        return C.Claim(NAME, statement, f"trained - untrained {y_name}", float("nan"), len(used), "", "n/a", diffs,
                       "fewer than 2 seeds", kind=kind)
    value = float(onp.mean(used))
    p, p_min = sign_flip_p(used)
    ci = S.t_interval(used, limits=(-math.inf, math.inf))
    sign = expected_sign if expected_sign else 0
    verdict = S.verdict_of(value, used, p, sign, alpha, ci) if sign else "n/a"
    detail = f"value = mean over {len(used)} seeds; p: exact sign-flip test over seeds; ci: 95% t-interval"
    if p_min >= alpha:
        detail += f"; underpowered: the smallest p {len(used)} seeds allow is {p_min:.3g}"
    if kind == "description":
        detail = "a description (no sign predicted): " + detail
    return C.Claim(NAME, statement, f"trained - untrained {y_name}", value, len(used),
                   {1: "positive", -1: "negative"}.get(sign, "either"), verdict, diffs, detail, ci=ci, p_value=p,
                   alpha=alpha, n_points=len(used), kind=kind, expected_sign=sign)


# ---- reading the runs ------------------------------------------------------------------------------------------
def per_layer(histories, key, which):
    """[per seed: the list ``key`` at the first (``which=0``) or last (-1) evaluation] as float arrays."""
    return [onp.asarray(h["evals"][which].get(key, []), dtype=float) for h in histories]


def layer_claims(histories, k):
    """The claim table of the figure from its runs (see the module docstring); ``k``: the source classes."""
    D = {w: [k * v for v in per_layer(histories, "layer_nc1", i)] for w, i in (("trained", -1), ("untrained", 0))}
    G = {w: per_layer(histories, "layer_gc", i) for w, i in (("trained", -1), ("untrained", 0))}
    F = {w: per_layer(histories, "layer_fewshot5", i) for w, i in (("trained", -1), ("untrained", 0))}
    logD = {w: [onp.log(d[1:]) for d in ds] for w, ds in D.items()}
    logG = {w: [onp.log(g[1:]) for g in gs] for w, gs in G.items()}
    out = [
        depth_rate_claim("trained network: separation improves at a constant geometric rate with depth "
                         "(He & Su: log D_l linear in l, falling)", logD["trained"], -1, "log D_l"),
        depth_rate_claim("control, untrained network (step 0): the same statistic", logD["untrained"], 0, "log D_l",
                         kind="description"),
    ]
    out.append(paired_claim("training makes log D_l fall faster with depth than at initialization (paired by seed)",
                            out[0].per_seed, out[1].per_seed, -1, "pearson(l, log D_l)"))
    g_tr = depth_rate_claim("trained network: per-layer GC changes with depth at a constant rate (two-sided)",
                            logG["trained"], 0, "log GC_l", kind="description")
    g_un = depth_rate_claim("control, untrained network: the same statistic", logG["untrained"], 0, "log GC_l",
                            kind="description")
    out += [g_tr, g_un, paired_claim("per-layer GC against depth, trained - untrained (paired by seed)",
                                     g_tr.per_seed, g_un.per_seed, 0, "pearson(l, log GC_l)", kind="description")]
    depth = [onp.arange(len(f), dtype=float) for f in F["trained"]]
    out.append(C.rank_correlation_claim(NAME, "trained network: deeper features transfer better to unseen digits "
                                        "(5-way 5-shot NCC accuracy, layers 0..L)", depth, F["trained"], +1,
                                        "layer", "fewshot5"))
    out.append(paired_claim("training improves the embedding's transfer (5-shot accuracy at the last layer, trained "
                            "- untrained, paired by seed)", [f[-1] if len(f) else float("nan") for f in F["trained"]],
                            [f[-1] if len(f) else float("nan") for f in F["untrained"]], +1, "fewshot5_L"))
    out.append(depth_rate_claim("control, untrained network: 5-shot accuracy against depth (layers 1..L)",
                                [f[1:] for f in F["untrained"]], 0, "fewshot5",
                                kind="description"))
    best = [float(onp.argmax(f)) if len(f) else float("nan") for f in F["trained"]]
    out.append(C.check(NAME, "the layer whose features transfer best, per seed (0 = pixels, L = the embedding)",
                       "argmax_l fewshot5_l", float(onp.median(best)) if best else float("nan"), None,
                       per_seed=best, n_seeds=len(best), detail="a description: the median over seeds is shown"))
    return out, D, G, F


def draw(histories, D, G, F, title):
    """Four panels: D_l, GC_l and 5-shot accuracy against depth (trained solid, untrained dashed), AGOP spectrum."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    for ax, values, name, log in ((axes[0], D, "D_l = tr(Sigma_W Sigma_B^+)", True),
                                  (axes[1], G, "GC of input -> layer l", True),
                                  (axes[2], F, "5-way 5-shot NCC accuracy (digits 5-9)", False)):
        for which, style, colour in (("trained", "-", "C0"), ("untrained", "--", "C3")):
            for s, v in enumerate(values[which]):
                ax.plot(onp.arange(len(v)), v, style, color=colour, alpha=0.6, lw=1,
                        label=which if s == 0 else None)
        ax.set_xlabel("layer l (0 = pixels)")
        ax.set_title(name, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax = axes[3]
    for which, i, style, colour in (("untrained", 0, "--", "C3"), ("trained", -1, "-", "C0")):
        for s, h in enumerate(histories):
            e = h["evals"][i]
            lam = onp.clip(onp.asarray(e.get("agop_eigs", []), dtype=float), 0, None)
            if len(lam) and e.get("agop_trace"):
                ax.plot(onp.arange(1, len(lam) + 1), onp.cumsum(lam) / e["agop_trace"], style, color=colour,
                        alpha=0.6, lw=1, label=f"{which} (90% in {e['agop_dirs90']} dirs)" if s == 0 else None)
    ax.set_xlabel("AGOP eigenvalues, largest first")
    ax.set_title("share of the embedding's GC carried (trace AGOP = GC)", fontsize=10)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def main(argv=None):
    """Run the figure from the command line ``argv`` (see the module docstring); returns its paths and claims."""
    parser = figure_parser(f"python -m minigcnc.{NAME}", __doc__, epilog=runs_epilog(scale_setup))
    args = parse(parser, argv)
    t0 = time.time()
    cfgs = configs(args.scale, seeds=args.seeds, backend=args.backend, data_root=args.data_root)
    histories = run_sweep(NAME, args, cfgs)
    claims, D, G, F = layer_claims(histories, len(SOURCE))
    base = cfgs[0]
    title = (f"MLP {len(base.hidden)} x {base.hidden[0]} ReLU trained on digits 0-4 of {base.dataset} "
             f"({base.steps:,} steps), {len(cfgs)} seeds; transfer to digits 5-9")
    fig = draw(histories, D, G, F, title)
    doc = {"figure": NAME, "scale": args.scale, "configs": [c.to_dict() for c in cfgs],
           "keys": [h.get("key") for h in histories],
           "D_l": {w: [v.tolist() for v in vs] for w, vs in D.items()},
           "gc_l": {w: [v.tolist() for v in vs] for w, vs in G.items()},
           "fewshot5_l": {w: [v.tolist() for v in vs] for w, vs in F.items()},
           "agop_dirs90": {"untrained": [h["evals"][0].get("agop_dirs90") for h in histories],
                           "trained": [h["evals"][-1].get("agop_dirs90") for h in histories]},
           "seconds_layers_per_eval": float(onp.mean([e.get("seconds_layers", onp.nan) for h in histories
                                                      for e in h["evals"]]))}
    C.judge(claims)  # q-values over the figure's family, verdicts on q
    png, js = write_figure(NAME, args.scale, args.out, fig, doc, claims, t0)
    print_table(claims, args.scale, cfgs)
    return {"png": str(png), "json": str(js), "claims": claims, "histories": histories}


if __name__ == "__main__":
    main()
