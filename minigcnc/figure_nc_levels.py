"""Figure: neural collapse at three levels, source-train, source-test and unseen target classes, on Figure 4's runs.

    python -m minigcnc.figure_nc_levels                # laptop scale: Figure 4's runs, read from the cache
    python -m minigcnc.figure_nc_levels --scale tiny   # a plumbing check

The paper's transfer argument is about the third level: collapse on the source training images (``nc_train``)
should carry to the source test images (``nc_test``; NC is known to be weaker there: Hui, Belkin, Nakkiran 2022)
and to classes never trained on (``target_nc``). Every run of Figure 4 records the three (the CDNV of the
embeddings), so this figure trains nothing: it reads Figure 4's runs (the default rotated-digits split, its
measured target pool) from the cache. Panels: the three over training for each sweep's values (mean over
seeds), and each config's final values against its final source GC.

The claim table, configs as the units (``claims.config_rank_claim``, over every config of Figure 4's three
sweeps): does a lower final source GC go with a lower final NC at each level (expected positive, three claims)?
And, per config, the final test NC against the train NC (a description: the share of configs where NC is weaker
on test images).

The runs of each scale: the last lines of ``--help``. Why: docs/figures.md#figure_nc_levels.
"""
import time

import numpy as onp

from .experiments import claims as C
from .experiments.cli import figure_parser, parse, run_sweep, write_figure
from .experiments.driver import runs_epilog
from .experiments.history import final, series
from .experiments.table import print_table
from .registry import figure_configs

NAME = "figure_nc_levels"
LEVELS = (("nc_train", "source train NC"), ("nc_test", "source test NC"), ("target_nc", "target-class NC"))


def runs_of(scale, *, seeds=None, backend=None, data_root=None):
    """Figure 4's runs on its default target pool (the first config's target classes; the sensitivity pool's
    runs left out), in Figure 4's order."""
    cfgs = figure_configs("figure4", scale, seeds=seeds, backend=backend, data_root=data_root)
    return [c for c in cfgs if c.target_classes == cfgs[0].target_classes]


def scale_setup(scale, *, seeds=None, backend=None, data_root=None):
    """(Figure 4's base run: its first config at seed 0, {} (the sweeps are Figure 4's), seeds)."""
    cfgs = runs_of(scale, seeds=seeds, backend=backend, data_root=data_root)
    return cfgs[0], {}, sorted({c.seed for c in cfgs})


def configs(scale, *, seeds=None, backend=None, data_root=None):
    """The runs this figure reads: Figure 4's (``runs_of``); it trains none of its own."""
    return runs_of(scale, seeds=seeds, backend=backend, data_root=data_root)


def per_config(histories):
    """[[history per seed] per distinct config] (configs in order of first appearance; a shared run once)."""
    out, seen = {}, set()
    for h in histories:
        if h["key"] in seen:
            continue
        seen.add(h["key"])
        cfg = {k: v for k, v in h["config"].items() if k != "seed"}
        out.setdefault(repr(sorted(cfg.items())), []).append(h)
    return list(out.values())


def level_claims(histories):
    """Config-level claims: lower final source GC -> lower final NC at each level; test vs train NC (described)."""
    units = per_config(histories)
    seeds = min(len(hs) for hs in units)
    units = [hs[:seeds] for hs in units]
    fin = lambda m: [[final(h, m) for h in hs] for hs in units]  # noqa: E731
    gc = fin("gc")
    out = C.mark_forced([C.config_rank_claim(NAME, f"across configs: a lower final source GC goes with a lower final "
                                             f"{name}", gc, fin(metric), +1, "gc", metric) for metric, name in LEVELS])
    tr = onp.array(fin("nc_train"), dtype=float).mean(axis=1)
    te = onp.array(fin("nc_test"), dtype=float).mean(axis=1)
    tg = onp.array(fin("target_nc"), dtype=float).mean(axis=1)
    ok = onp.isfinite(tr) & onp.isfinite(te) & onp.isfinite(tg)
    out.append(C.check(NAME, "share of configs whose final test NC exceeds their train NC (collapse weaker on test "
                       "images)", "mean_c [nc_test > nc_train]", float(onp.mean(te[ok] > tr[ok])) if ok.any() else
                       float("nan"), None, n_seeds=seeds, n_points=int(ok.sum()),
                       detail="a description over the seed-averaged configs"))
    out.append(C.check(NAME, "median over configs of target NC / train NC (final)", "median_c target_nc / nc_train",
                       float(onp.median(tg[ok] / tr[ok])) if ok.any() else float("nan"), None, n_seeds=seeds,
                       n_points=int(ok.sum()), detail="a description over the seed-averaged configs"))
    return out, units


def draw(units, title):
    """Left: the three levels over training, one line per config (seed mean); right: finals against source GC."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    for j, (metric, name) in enumerate(LEVELS):
        ax = axes[j]
        for i, hs in enumerate(units):
            curves = [series(h, metric) for h in hs]
            n = min(len(s[1]) for s in curves)
            ax.plot(curves[0][0][:n], onp.nanmean([s[1][:n] for s in curves], axis=0), color=f"C{i % 10}",
                    alpha=0.7, lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{name} (one line per config)", fontsize=10)
    ax = axes[3]
    g = [onp.nanmean([final(h, "gc") for h in hs]) for hs in units]
    for j, (metric, name) in enumerate(LEVELS):
        ax.plot(g, [onp.nanmean([final(h, metric) for h in hs]) for hs in units], "o", color=f"C{j}", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("final source GC (config mean)")
    ax.set_title("final NC at three levels", fontsize=10)
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
    histories = run_sweep(NAME, args, cfgs)  # Figure 4's runs: from the cache when Figure 4 ran
    claims, units = level_claims(histories)
    title = f"NC on source train, source test and target classes: Figure 4's {len(units)} configs ({cfgs[0].dataset})"
    fig = draw(units, title)
    doc = {"figure": NAME, "scale": args.scale, "configs": [c.to_dict() for c in cfgs],
           "finals": {m: [[final(h, m) for h in hs] for hs in units] for m in ("gc",) + tuple(m for m, _ in LEVELS)}}
    C.judge(claims)  # q-values over the figure's family, verdicts on q
    png, js = write_figure(NAME, args.scale, args.out, fig, doc, claims, t0)
    print_table(claims, args.scale, cfgs)
    return {"png": str(png), "json": str(js), "claims": claims, "histories": histories}


if __name__ == "__main__":
    main()
