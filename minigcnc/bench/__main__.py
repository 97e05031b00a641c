"""`python -m minigcnc.bench`: speed ratios against baselines, every pair measured in the same run.

Sections (each also runnable alone): training step against PyTorch and JAX on the CPU (``bench.train``, a
table; torch and jax are optional, see its docstring), exact GC (``bench.gc``), the cost of each GC estimator
against the exact GC (``bench.estimators``),
collapse metrics (``bench.collapse``), the training floor of ``python -m minigcnc.reproduce`` - its SGD steps alone,
ours and PyTorch's, one thread per job (``bench.floor``) - ``fit`` with the library's BLAS threads against one thread
and all threads, idle and beside a busy process (``bench.threads``) - and on a
CUDA GPU the cupy backend against numpy and PyTorch (``bench.gpu``: run by ``--backend cupy`` or ``--only gpu``). ``--quick`` shrinks the problem sizes;
``--only NAME`` runs one section. Timings are wall-clock medians on this machine; compare ratios, not
absolute seconds.
"""
import argparse
import importlib
import time

SECTIONS = ["train", "gc", "estimators", "collapse", "floor", "threads", "gpu"]
CPU_SECTIONS = ["train", "gc", "estimators", "collapse", "floor", "threads"]  # run by default; --backend cupy runs "gpu"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minigcnc.bench", description=__doc__)
    p.add_argument("--only", choices=SECTIONS, default=None)
    p.add_argument("--quick", action="store_true", help="smaller problems (a smoke run)")
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    args = p.parse_args(argv)
    rows = []

    def report(name, seconds, note=""):
        rows.append((name, seconds, note))
        print(f"  {name:<58s} {seconds * 1e3:10.1f} ms  {note}", flush=True)

    t0 = time.time()
    default = ["gpu"] if args.backend == "cupy" else CPU_SECTIONS
    for section in [args.only] if args.only else default:
        mod = importlib.import_module(f"minigcnc.bench.{section}")
        fn = getattr(mod, f"bench_{section}")
        print(f"[{section}]", flush=True)
        kwargs = {"quick": args.quick} if "quick" in fn.__code__.co_varnames else {}
        if "backend" in fn.__code__.co_varnames:
            kwargs["backend"] = args.backend
        fn(report, **kwargs)
    print(f"total {time.time() - t0:.1f} s")
    return rows


if __name__ == "__main__":
    main()
