"""Speed of the collapse metrics: ``cdnv`` and ``nc1`` on 50,000 x 512 random features with 100 classes.

Run ``python -m minigcnc.bench.collapse [--backend numpy|cupy]`` for a small table; ``minigcnc.bench`` calls
``bench_collapse(report)``. Each timing is the best of ``repeats`` calls after one untimed warm-up call.
Target (paper-scale sizes, 2-core laptop): cdnv under 1 s, reached by one-hot matrix products for the class sums
and the Gram trick for the mean distances (``minigcnc.collapse``).
"""
import argparse
import time

import numpy as onp

from ..backend import asarray, get_backend, to_numpy
from ..collapse import cdnv, nc1


def _best_time(fn, repeats):
    """Best wall time of ``repeats`` calls of ``fn()`` (each result is brought to the host, which syncs)."""
    fn()  # warm-up: BLAS threads, device kernels
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        to_numpy(fn())
        best = min(best, time.perf_counter() - start)
    return best


def bench_collapse(report, *, n=50_000, p=512, k=100, repeats=3, seed=0, backend=None, quick=False):
    """Time ``cdnv`` and ``nc1`` on (n, p) Gaussian features with k classes; call ``report(name, seconds, note)``.

    Features are float64 on ``backend`` (default: the current one); ``quick`` shrinks the problem to
    5,000 x 128 with 20 classes (a smoke run). Returns ``{name: seconds}``.
    """
    if quick:
        n, p, k = 5_000, 128, 20
    backend = get_backend() if backend is None else backend
    rng = onp.random.default_rng(seed)
    Z = asarray(rng.standard_normal((n, p)), dtype="float64", backend=backend)  # (n, p)
    y = rng.integers(0, k, size=n)  # (n,), host labels
    note = f"{n} x {p} features, {k} classes, float64, {backend}, best of {repeats}"
    times = {}
    for name, fn in (("collapse.cdnv", lambda: cdnv(Z, y)), ("collapse.nc1", lambda: nc1(Z, y))):
        times[name] = _best_time(fn, repeats)
        report(name, times[name], note)
    return times


def main(argv=None):
    """Command line: print a table of the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None, help="numpy (default) or cupy")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="5,000 x 128 features, 20 classes")
    args = parser.parse_args(argv)
    rows = []
    bench_collapse(lambda name, s, note: rows.append((name, s, note)), repeats=args.repeats, backend=args.backend,
                   quick=args.quick)
    print(f"{'metric':<16} {'seconds':>8}  setup")
    for name, s, note in rows:
        print(f"{name:<16} {s:>8.3f}  {note}")


if __name__ == "__main__":
    main()
