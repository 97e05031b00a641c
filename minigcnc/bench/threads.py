"""BLAS threads in ``train.fit``: the library's default against BLAS left alone and against one thread.

Run ``python -m minigcnc.bench.threads [--quick] [--rounds R]``; ``python -m minigcnc.bench`` calls
``bench_threads(report)``. What is timed: ``fit`` of the MLP 784-256-256-64 (float64) for 300 steps of batch 64
on the first 1,000 mnist5k training images, in one process, three ways:

- **default**: ``fit(...)`` as a user calls it (``minigcnc.threads``: one BLAS thread for this small problem);
- **BLAS left alone**: ``fit(..., blas_threads="all")``, NumPy's BLAS with its own threads (one per core);
- **one thread**: ``fit(...)`` inside the user's own ``threadpoolctl.threadpool_limits(1)``.

The three take turns in rounds and each time is the median over the rounds. All three must end at the same
parameters (relative 1e-12: threads change only BLAS's summation order). ``$MINIGCNC_BLAS_THREADS``, if set,
changes the default; the table says so. Compare ratios, not seconds.
"""
import argparse
import os
import time

import numpy as onp

from .. import data, threads
from ..backend import tree_leaves
from ..models import mlp
from ..train import fit

SIZES = [784, 256, 256, 64]


def _blas_note():
    from threadpoolctl import threadpool_info

    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    libs = [f"{lib['internal_api']} {lib['num_threads']} threads" for lib in blas]
    env = os.environ.get(threads.ENV_VAR)
    return f"BLAS: {', '.join(libs) or 'not found'}" + (f"; {threads.ENV_VAR}={env}" if env else "")


def bench_threads(report, quick=False, steps=None, n=None, batch=64, rounds=None, printer=print):
    """Time ``fit`` three ways (see the module docstring), print the table and return ``{way: seconds, ...}``.

    ``report(name, seconds, note)`` receives every timing. Defaults: 300 steps on 1,000 images, 3 rounds;
    ``quick``: 20 steps on 200 images, one round. The result also holds ``"ratio_alone"`` (BLAS left alone /
    one thread) and ``"ratio_default"`` (default / one thread).
    """
    from threadpoolctl import threadpool_limits

    steps = steps or (20 if quick else 300)
    n = n or (200 if quick else 1000)
    rounds = rounds or (1 if quick else 3)
    X, y = data.load("mnist5k", "train")
    X, y = X[:n], y[:n]
    model = mlp(SIZES, 10)
    params = model.init(0, dtype="float64", backend="numpy")

    def one_thread(**kw):
        with threadpool_limits(1, user_api="blas"):
            return fit(**kw)

    ways = {"default": fit, "BLAS left alone": lambda **kw: fit(blas_threads="all", **kw), "one thread": one_thread}
    kw = dict(model=model, X=X, y=y, lr=0.01, batch_size=batch, steps=steps, progress=False)
    fit(params=params, **{**kw, "steps": min(steps, 5)})  # warm-up: imports, malloc tuning, BLAS start-up
    times, finals = {way: [] for way in ways}, {}
    for _ in range(rounds):
        for way, run in ways.items():
            t0 = time.perf_counter()
            result = run(params=params, **kw)
            times[way].append(time.perf_counter() - t0)
            finals[way] = tree_leaves(result.params)
    for way in ways:
        for a, b in zip(finals[way], finals["one thread"]):
            onp.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"{way} differs from one thread")
    out = {way: float(onp.median(t)) for way, t in times.items()}
    out["ratio_alone"] = out["BLAS left alone"] / out["one thread"]
    out["ratio_default"] = out["default"] / out["one thread"]
    setup = f"fit {model.name}, {steps} steps, batch {batch}, {n} mnist5k images, float64, median of {rounds}"
    for way in ways:
        report(f"threads.fit ({way})", out[way], setup)
    printer("\n".join([
        f"{setup}; {_blas_note()}",
        f"{'way':<18s} {'seconds':>8s} {'/ one thread':>13s}",
        *(f"{way:<18s} {out[way]:8.2f} {out[way] / out['one thread']:13.2f}" for way in ways),
    ]))
    return out


def main(argv=None):
    """Command line of ``python -m minigcnc.bench.threads``."""
    p = argparse.ArgumentParser(prog="python -m minigcnc.bench.threads", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="20 steps on 200 images, one round (a smoke run)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the three ways (default 3)")
    args = p.parse_args(argv)
    return bench_threads(lambda *a: None, quick=args.quick, rounds=args.rounds)


if __name__ == "__main__":
    main()
