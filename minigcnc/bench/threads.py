"""BLAS threads in ``train.fit``: the library's default against the best fixed setting, idle and beside a busy process.

Run ``python -m minigcnc.bench.threads [--quick] [--rounds R]``; ``python -m minigcnc.bench`` calls
``bench_threads(report)``. What is timed, in one process, in float32 as the laptop runs train:

- two models: the MLP 784-256-256-64 at batch 128 and the laptop convnet of ``figure_mnist`` (channels 8, 16,
  hidden 64) at batch 64, on the first 1,000 mnist5k training images;
- two conditions: the machine as it is (*idle* when nothing else runs), then *busy*: beside one busy process
  (a Python loop) that the bench starts and stops itself;
- three ways: **default** (``fit(...)`` as a user calls it, ``minigcnc.threads``' rule), **one thread**
  (``blas_threads=1``) and **all threads** (``blas_threads="all"``, BLAS left alone).

The ways take turns in rounds and each time is the median over the rounds, in milliseconds per step. The ratio
``default / best fixed`` (the faster of one thread and all threads) is what the rule promises to keep at most 1.1.
Each condition's line gives the load average (``os.getloadavg``) before and after it: a load well above the
bench's own means the *idle* numbers were taken beside other work. ``$MINIGCNC_BLAS_THREADS``, if set, changes
the default; the table says so, and it names the OpenBLAS variables that change its speed when they are set
(``OPENBLAS_CORETYPE``, ``OPENBLAS_L2_SIZE``, ...: a machine's override, not a user's laptop; run the bench with
them unset, e.g. ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m minigcnc.bench --only threads``).
Compare ratios, not milliseconds.
"""
import argparse
import contextlib
import os
import subprocess
import sys
import time

import numpy as onp

from .. import data, threads
from ..models import convnet, mlp
from ..train import fit

WAYS = {"default": None, "one thread": 1, "all threads": "all"}
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def models_to_time():
    """{label: (model, batch size, flat input)} of the two timed models."""
    return {"mlp 784-256-256-64, batch 128": (mlp([784, 256, 256, 64], 10), 128, True),
            "convnet 8-16 (figure_mnist laptop), batch 64": (convnet((1, 28, 28), 10, channels=(8, 16), hidden=(64,)),
                                                            64, False)}


def _blas_note():
    from threadpoolctl import threadpool_info

    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    libs = [f"{lib['internal_api']} {lib['num_threads']} threads" for lib in blas]
    env = os.environ.get(threads.ENV_VAR)
    set_vars = [f"{v}={os.environ[v]}" for v in OPENBLAS_VARS if v in os.environ]
    return (f"BLAS: {', '.join(libs) or 'not found'}" + (f"; {threads.ENV_VAR}={env}" if env else "") +
            (f"; set here: {', '.join(set_vars)} (a machine's override: rerun with them unset)" if set_vars else
             "; no OpenBLAS override set"))


def _load():
    try:
        return "load %.2f" % os.getloadavg()[0]
    except (AttributeError, OSError):
        return "load n/a"


@contextlib.contextmanager
def busy_process():
    """One busy process (a Python loop) beside the block, stopped after it."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it reach the scheduler's steady state
        yield proc
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def _recording(picks):
    """Within the block, each choice of ``threads.auto_threads`` is appended to ``picks``."""
    rule = threads.auto_threads

    def recorded(work, on_host=True):
        n = rule(work, on_host)
        if work:  # (fit first checks its argument with no work)
            picks.append(n)
        return n

    threads.auto_threads = recorded
    try:
        yield
    finally:
        threads.auto_threads = rule


def _time_condition(cases, X, y, steps, rounds):
    """{model label: {way: ms per step (median over rounds)}} for the machine as it is now."""
    out = {}
    for label, (model, batch, flat) in cases.items():
        Xm = X.reshape(len(X), -1) if flat else X
        params = model.init(0, dtype="float32", backend="numpy")
        kw = dict(lr=0.01, batch_size=batch, progress=False)
        fit(model, params, Xm, y, steps=3, **kw)  # warm-up: imports, malloc tuning, BLAS start-up
        times, picks = {way: [] for way in WAYS}, []
        for _ in range(rounds):
            for way, blas_threads in WAYS.items():
                t0 = time.perf_counter()
                with _recording(picks if blas_threads is None else []):
                    fit(model, params, Xm, y, steps=steps[label], blas_threads=blas_threads, **kw)
                times[way].append((time.perf_counter() - t0) / steps[label] * 1e3)
        out[label] = {way: float(onp.median(t)) for way, t in times.items()}
        out[label]["picked"] = ["all" if p is None else p for p in picks]
        best = min(out[label]["one thread"], out[label]["all threads"])
        out[label]["ratio"] = out[label]["default"] / best
    return out


def bench_threads(report, quick=False, steps=None, n=None, rounds=None, conditions=("idle", "busy"), printer=print):
    """Time ``fit`` (see the module docstring), print the table and return
    ``{condition: {model label: {way: ms per step, "ratio": default / best fixed, "picked": the rule's thread
    counts, one per default fit}}, "loads": {...}}``.

    ``report(name, seconds, note)`` receives every timing (seconds per step). Defaults: 400 MLP steps and 200
    convnet steps on 1,000 images, 3 rounds; ``quick``: 10 and 3 steps on 200 images, one round; ``steps``
    (an int) sets both.
    """
    rounds = rounds or (1 if quick else 3)
    n = n or (200 if quick else 1000)
    cases = models_to_time()
    labels = list(cases)
    per_model = (10, 3) if quick else (400, 200)
    steps = {lab: int(steps) if steps else s for lab, s in zip(labels, per_model)}
    X, y = data.load("mnist5k", "train")
    X, y = X[:n].astype("float32"), y[:n]
    result, loads = {}, {}
    for condition in conditions:
        before = _load()
        with busy_process() if condition == "busy" else contextlib.nullcontext():
            seen = threads.idle_cores()
            result[condition] = _time_condition(cases, X, y, steps, rounds)
        loads[condition] = f"{before} -> {_load()}, the rule saw {seen} of {threads.usable_cores()} cores idle"
        for label in labels:
            for way in WAYS:
                report(f"threads.fit {condition} {label.split(',')[0]} ({way})", result[condition][label][way] / 1e3,
                       f"{label}, float32, median of {rounds}")
    result["loads"] = loads
    lines = [f"fit in float32 on {n} mnist5k images, median of {rounds} rounds, ms per step; {_blas_note()}",
             f"{'condition':<9s} {'model':<46s} {'default':>8s} {'1 thread':>9s} {'all':>8s} {'default/best':>13s}"]
    for condition in conditions:
        for label in labels:
            r = result[condition][label]
            lines.append(f"{condition:<9s} {label:<46s} {r['default']:8.2f} {r['one thread']:9.2f} "
                         f"{r['all threads']:8.2f} {r['ratio']:13.2f}   default's threads: "
                         f"{', '.join(map(str, r['picked']))}")
        lines.append(f"  {condition}: {loads[condition]}")
    printer("\n".join(lines))
    return result


def main(argv=None):
    """Command line of ``python -m minigcnc.bench.threads``."""
    p = argparse.ArgumentParser(prog="python -m minigcnc.bench.threads", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10 and 3 steps on 200 images, one round (a smoke run)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the three ways (default 3)")
    args = p.parse_args(argv)
    return bench_threads(lambda *a: None, quick=args.quick, rounds=args.rounds)


if __name__ == "__main__":
    main()
