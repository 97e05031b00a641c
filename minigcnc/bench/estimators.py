"""`python -m minigcnc.bench.estimators [--quick]`: what each GC estimator of Figure 2 costs against the exact GC.

The MLP 784-256-256-64 (random He-normal parameters, float64) on 500 standardized ``mnist5k`` images, as in
Figure 2's evaluation subset. For the exact GC and every estimator level of ``experiments.measure``'s
``GC_ESTIMATOR_LEVELS`` (subsets of n images, masks keeping entries with probability q, m sampled output
coordinates, Hutchinson probes): the median wall time of one call over a few repeats, its ratio to the exact
GC's time, and the relative standard deviation of one draw (from ``gc.gc_estimator_variance``, exact).

What each saves: a subset of n images pulls back only those images (about n/N of the exact cost); output
sampling pulls back only the m sampled rows of J (about m/p); Hutchinson one random row per probe and image
(about probes/p). Masking saves nothing: it needs every entry of J before it can drop some, while the exact GC
never forms J (the first-layer Gram trick), so it costs more than the exact GC.
"""
import argparse
import statistics
import time

import numpy as onp

from .. import gc
from ..experiments.measure import GC_ESTIMATOR_LEVELS, estimator_key
from ..models import mlp


def inputs(n, seed=0):
    """``n`` standardized mnist5k training images (float64, (n, 1, 28, 28))."""
    from ..data import load

    X, _ = load("mnist5k", "train")
    X = onp.asarray(X, dtype=onp.float64)
    X = (X - X.mean()) / X.std()
    return X[onp.random.default_rng(seed).choice(len(X), size=n, replace=False)]


def median_seconds(fn, repeats):
    """Median wall seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_estimators(report, quick=False):
    """Time the exact GC and every estimator level; ``report(name, seconds, note)`` receives each row.

    Returns {key: (seconds, ratio to exact, relative sd of one draw)}.
    """
    n, repeats = (100, 2) if quick else (500, 5)
    model = mlp([784, 256, 256, 64], 10)
    params = model.init(0)
    X = inputs(n)
    exact_value = gc.geometric_complexity(model, params, X)
    exact = median_seconds(lambda: gc.geometric_complexity(model, params, X), repeats)
    report("estimators.exact", exact, f"GC {exact_value:.4g} on {n} images")
    out = {"gc": (exact, 1.0, 0.0)}
    rng = onp.random.default_rng(0)
    for method, (param, levels) in GC_ESTIMATOR_LEVELS.items():
        for level in levels:
            level = min(level, n) if param == "n" else level
            kw = {param: level, **({"dist": "gaussian"} if method == "hutchinson" else {})}
            secs = median_seconds(lambda: gc.geometric_complexity(model, params, X, method=method, rng=rng, **kw),
                                  repeats)
            sd = onp.sqrt(gc.gc_estimator_variance(model, params, X, method=method, **kw)) / exact_value
            key = estimator_key(method, level)
            out[key] = (secs, secs / exact, float(sd))
            report(f"estimators.{key}", secs, f"{secs / exact:.2f}x the exact GC; one draw's relative sd {sd:.3f}")
    return out


def main(argv=None):
    """Command line: time every estimator and print the rows."""
    p = argparse.ArgumentParser(prog="python -m minigcnc.bench.estimators", description=__doc__)
    p.add_argument("--quick", action="store_true", help="100 images, 2 repeats (a smoke run)")
    args = p.parse_args(argv)
    bench_estimators(lambda name, s, note: print(f"  {name:<34s} {s * 1e3:9.2f} ms  {note}"), quick=args.quick)


if __name__ == "__main__":
    main()
