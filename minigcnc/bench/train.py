"""Speed of one SGD training step (forward + backward + update) against PyTorch's and JAX's CPU step.

Run ``python -m minigcnc.bench.train [--quick] [--repeats R] [--threads T]`` for the table; ``python -m
minigcnc.bench`` calls ``bench_train(report)``.

What is timed, for the MLP [784, 256, 256, 64] and ``convnet((1, 28, 28), 10)`` (16-32 channels, 128 hidden),
float32 and float64, batch 128, 10 classes, random data:

- **minigcnc**: the step of ``train.fit`` - ``value_and_grad_leaves`` of the fused loss, the loss read back as
  a float, the update ``theta - lr * g`` written over the fresh gradient;
- **reference**: the same with the one-op-per-primitive loss (``model.loss(..., fused=False)``) and
  autograd's own ``value_and_grad`` (the step as it was before the fused layers);
- **torch**: PyTorch eager on the CPU, the same network with ``torch.nn.functional`` (``linear``, ``conv2d``,
  ``max_pool2d``, ``cross_entropy``), ``optimizer.zero_grad()``, ``backward()``, ``torch.optim.SGD.step()``,
  ``loss.item()``;
- **jax**: ``jax.jit`` of the whole step (``value_and_grad`` and the update), the loss read back as a float;
  the compilation is done before timing.

All run in one process on the same parameters (copied in from minigcnc's) and the same batch; before anything
is timed, every framework's loss must equal minigcnc's (relative 1e-5) and torch's gradient must match
(relative 1e-4 of the largest entry). Frameworks take turns in rounds (each round: one untimed step, then 5 timed
steps of each framework), and each timing is the median over all rounds: a machine that is busy now and then
slows all of them alike, and no framework's idle-spinning threads slow the next one's timed steps.

Threads are kept fair: numpy's BLAS (threadpoolctl) and torch's intra-op pool (``torch.set_num_threads``) use
the same number, ``--threads`` (default: the CPUs this process may use); JAX's XLA CPU backend runs one thread
pool of its own over those CPUs (``--threads 1`` sets XLA's single-threaded Eigen flag, which takes effect
only when this process imports jax first). The table says which.

Optional frameworks (a column reads n/a without them): ``pip install -e ".[bench]"`` brings JAX. PyTorch is
not an extra, because a plain ``torch`` requirement may pull a CUDA build; install its CPU wheel by hand::

    pip install torch --index-url https://download.pytorch.org/whl/cpu

(on this project's machines the CPU wheel is on disk: ``pip install torch==2.13.0``). Compare ratios, not
seconds: the absolute numbers depend on the machine and its load.
"""
import argparse
import os
import sys
import time

import numpy as onp
from autograd import value_and_grad

from ..backend import tree_leaves
from ..models import convnet, mlp
from ..fast_step import axpy_tree, reuse_freed_memory, value_and_grad_leaves

LR = 0.01
MODELS = ("mlp", "convnet")
DTYPES = ("float32", "float64")
FRAMEWORKS = ("minigcnc", "reference", "torch", "jax")
LOSS_RTOL = 1e-5


# --------------------------------------------------------------------------------------------------
# The networks
# --------------------------------------------------------------------------------------------------
def make_model(kind):
    """The benchmarked network: 'mlp' (784-256-256-64, relu) or 'convnet' (convnet((1, 28, 28), 10))."""
    if kind == "mlp":
        return mlp([784, 256, 256, 64], 10)
    if kind == "convnet":
        return convnet((1, 28, 28), 10)
    raise ValueError(f"model must be one of {MODELS}; got {kind!r}")


# --------------------------------------------------------------------------------------------------
# One step in each framework: step() -> loss as a Python float
# --------------------------------------------------------------------------------------------------
def minigcnc_step(model, params, X, y, fused=True):
    """``train.fit``'s step (fused) or the reference step (one op per primitive, autograd's value_and_grad)."""
    if fused:
        grad_fn = value_and_grad_leaves(lambda p, Xb, yb: model.loss(p, Xb, yb, fused=True))

        def step():
            value, g = grad_fn(params, X, y)
            axpy_tree(-LR, g, params, into_x=True)  # theta - lr g over the fresh gradient, as fit does
            return float(value)
    else:
        grad_fn = value_and_grad(lambda p, Xb, yb: model.loss(p, Xb, yb, fused=False))

        def step():
            value, g = grad_fn(params, X, y)
            axpy_tree(-LR, g, params)
            return float(value)

    return step


def minigcnc_gradient(model, params, X, y):
    """(loss, gradient) of minigcnc's fused loss, as ``train.fit`` computes them."""
    return value_and_grad_leaves(lambda p, Xb, yb: model.loss(p, Xb, yb))(params, X, y)


def optional_torch():
    """torch, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


_XLA_SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _jax(threads=None):
    """jax or None; ``threads=1`` asks XLA for one thread (only before this process's first import of jax)."""
    if threads == 1 and "jax" not in sys.modules:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _XLA_SINGLE_THREAD).strip()
    try:
        import jax
    except ImportError:
        return None
    return jax


def torch_step(torch, kind, params, X, y):
    """(step, (loss, grads)): PyTorch eager SGD on a copy of ``params``; grads in minigcnc's leaf order."""
    F = torch.nn.functional
    P = [tuple(torch.tensor(onp.array(a), requires_grad=True) for a in p) for p in params]
    leaves = [t for p in P for t in p]
    tX, ty = torch.tensor(X), torch.tensor(y)
    dense = [p for p in P if len(p) == 2 and p[0].ndim == 2]

    def loss_fn():
        h = tX
        if kind == "convnet":
            for W, b in (P[0], P[2]):
                h = F.max_pool2d(F.relu(F.conv2d(h, W, b, padding=1)), 2)
            h = h.reshape(h.shape[0], -1)
        for i, (W, b) in enumerate(dense):
            h = h @ W + b
            if i < len(dense) - 1:
                h = F.relu(h)
        return F.cross_entropy(h, ty)

    opt = torch.optim.SGD(leaves, lr=LR)
    loss = loss_fn()
    loss.backward()
    check = (float(loss.item()), [t.grad.numpy().copy() for t in leaves])
    opt.zero_grad()

    def step():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        return loss.item()

    return step, check


def jax_step(jax, kind, params, X, y):
    """(step, loss): ``jax.jit`` of value_and_grad and the update on a copy of ``params``, compiled here."""
    jnp = jax.numpy
    P = [tuple(jnp.asarray(a) for a in p) for p in params]
    jX, jy = jnp.asarray(X), jnp.asarray(y.astype(onp.int32))

    def loss_fn(P, X, y):
        h = X
        dense = [p for p in P if len(p) == 2 and p[0].ndim == 2]
        if kind == "convnet":
            for W, b in (P[0], P[2]):
                h = jax.lax.conv_general_dilated(h, W, (1, 1), ((1, 1), (1, 1)),
                                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
                h = jax.nn.relu(h + b[None, :, None, None])
                h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
            h = h.reshape(h.shape[0], -1)
        for i, (W, b) in enumerate(dense):
            h = h @ W + b
            if i < len(dense) - 1:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h, axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def update(P, X, y):
        value, g = jax.value_and_grad(loss_fn)(P, X, y)
        return value, jax.tree_util.tree_map(lambda p, gi: p - LR * gi, P, g)

    value, _ = update(P, jX, jy)  # compiles
    loss = float(value)

    def step():
        value, new = update(P, jX, jy)
        jax.block_until_ready(new)
        return float(value)

    return step, loss


# --------------------------------------------------------------------------------------------------
def available_cpus():
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _interleaved_medians(steps, rounds, block=5):
    """{name: median seconds}: ``rounds`` rounds, each running ``block`` + 1 steps of every framework in turn.

    The first step of each block is not timed: thread pools that spin a while after their last task (OpenMP,
    OpenBLAS, XLA) would otherwise steal the CPUs from whichever framework runs next.
    """
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, f in steps.items():
            f()
            for _ in range(block):
                t0 = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - t0)
    return {name: float(onp.median(t)) for name, t in times.items()}


def _check_close(name, loss, ours, rtol=LOSS_RTOL):
    if not abs(loss - ours) <= rtol * max(1.0, abs(ours)):
        raise AssertionError(f"{name}'s loss {loss!r} differs from minigcnc's {ours!r} (rtol {rtol})")


def bench_train(report, quick=False, repeats=None, seed=0, threads=None, batch=128, models=MODELS, dtypes=DTYPES,
                frameworks=FRAMEWORKS, printer=print):
    """Time one SGD step of minigcnc, its reference route, PyTorch and JAX; print the table and return its rows.

    ``report(name, seconds, note)`` receives every timing. ``repeats`` rounds (default 6) of 5 timed steps per
    framework; ``quick``: 1 round of 2 (a smoke run).
    ``frameworks``: any of minigcnc, reference, torch, jax (missing libraries are skipped, their cells n/a).
    Returns ``{"rows": [{model, dtype, <framework>_ms..., ratio_torch, ratio_jax, loss}], "threads": ...}``.
    """
    from threadpoolctl import threadpool_limits

    repeats = repeats or (1 if quick else 6)
    malloc = reuse_freed_memory()  # as train.fit does; it serves torch and jax alike
    threads = threads or available_cpus()
    torch = optional_torch() if "torch" in frameworks else None
    jax = _jax(threads) if "jax" in frameworks else None
    x64_before = None
    if jax is not None:
        x64_before = bool(jax.config.jax_enable_x64)
        jax.config.update("jax_enable_x64", True)  # float64 rows; float32 arrays stay float32
    if torch is not None:
        torch_threads_before = torch.get_num_threads()
        torch.set_num_threads(threads)
    rows = []
    try:
        with threadpool_limits(threads, user_api="blas"):
            for kind in models:
                for dtype in dtypes:
                    rows.append(_bench_one(report, kind, dtype, batch, seed, repeats, quick, frameworks, torch, jax))
    finally:
        if jax is not None:
            jax.config.update("jax_enable_x64", x64_before)
        if torch is not None:
            torch.set_num_threads(torch_threads_before)
    if jax is None:
        xla = "n/a"
    elif _XLA_SINGLE_THREAD in os.environ.get("XLA_FLAGS", ""):
        xla = "1 (XLA single-threaded Eigen)"
    else:
        xla = f"XLA's own pool over the {available_cpus()} CPUs"
    thread_note = (f"threads: numpy BLAS {threads} (threadpoolctl), torch {threads if torch else 'n/a'} "
                   f"(set_num_threads), jax {xla}; malloc keeps freed memory: {'yes' if malloc else 'no'}")
    printer(format_table(rows, batch, repeats, thread_note, torch, jax))
    return {"rows": rows, "threads": thread_note}


def _bench_one(report, kind, dtype, batch, seed, repeats, quick, frameworks, torch, jax):
    model = make_model(kind)
    params = model.init(seed, dtype=dtype, backend="numpy")
    rng = onp.random.default_rng(seed)
    X = rng.standard_normal((batch,) + model.input_shape).astype(dtype)
    y = rng.integers(0, model.n_classes, size=batch)
    loss, g = minigcnc_gradient(model, params, X, y)
    loss = float(loss)
    steps = {}
    if "minigcnc" in frameworks:
        steps["minigcnc"] = minigcnc_step(model, params, X, y)
    if "reference" in frameworks:
        ref = float(model.loss(params, X, y, fused=False))
        _check_close("the reference route", ref, loss)
        steps["reference"] = minigcnc_step(model, params, X, y, fused=False)
    if torch is not None:
        steps["torch"], (t_loss, t_grads) = torch_step(torch, kind, params, X, y)
        _check_close("torch", t_loss, loss)
        for a, b in zip(tree_leaves(g), t_grads):
            scale = float(onp.max(onp.abs(b))) or 1.0
            if onp.max(onp.abs(a - b)) > 1e-4 * scale:
                raise AssertionError(f"torch's gradient differs from minigcnc's by {onp.max(onp.abs(a - b)):.3g}")
    if jax is not None:
        steps["jax"], j_loss = jax_step(jax, kind, params, X, y)
        _check_close("jax", j_loss, loss)
    times = _interleaved_medians(steps, repeats, block=2 if quick else 5)
    row = {"model": kind, "dtype": dtype, "loss": loss}
    for name in FRAMEWORKS:
        row[f"{name}_ms"] = times[name] * 1e3 if name in times else None
    for other in ("reference", "torch", "jax"):
        ok = row["minigcnc_ms"] is not None and row[f"{other}_ms"] is not None
        row[f"ratio_{other}"] = row["minigcnc_ms"] / row[f"{other}_ms"] if ok else None
    for name, s in times.items():
        report(f"train step {kind} {dtype} ({name})", s, f"batch {batch}, median of {repeats}; loss {loss:.6f}")
    return row


def format_table(rows, batch, repeats, thread_note, torch=None, jax=None):
    """The table: one row per (model, dtype), ms per framework and minigcnc's time over each baseline's."""
    def cell(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    head = (f"one SGD step, batch {batch}, median over {repeats} rounds taken in turn; {thread_note}\n"
            f"versions: numpy {onp.__version__}, torch {getattr(torch, '__version__', 'n/a')}, "
            f"jax {getattr(jax, '__version__', 'n/a')}\n"
            f"{'model':<8} {'dtype':<8} {'minigcnc ms':>11} {'reference ms':>12} {'torch ms':>9} {'jax ms':>8} "
            f"{'/reference':>10} {'/torch':>7} {'/jax':>6}  loss")
    lines = [head]
    for r in rows:
        lines.append(f"{r['model']:<8} {r['dtype']:<8} {cell(r['minigcnc_ms'], '11.2f')} "
                     f"{cell(r['reference_ms'], '12.2f'):>12} {cell(r['torch_ms'], '9.2f'):>9} "
                     f"{cell(r['jax_ms'], '8.2f'):>8} {cell(r['ratio_reference'], '10.2f'):>10} "
                     f"{cell(r['ratio_torch'], '7.2f'):>7} {cell(r['ratio_jax'], '6.2f'):>6}  {r['loss']:.6f}")
    lines.append("ratios: minigcnc's step time over the other's (< 1: minigcnc is faster)")
    return "\n".join(lines)


def main(argv=None):
    """Command line: the table of step times and ratios."""
    parser = argparse.ArgumentParser(prog="python -m minigcnc.bench.train", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 2 timed steps (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds of 5 timed steps each (default 6)")
    parser.add_argument("--threads", type=int, default=None, help="BLAS / torch threads (default: all CPUs)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-jax", action="store_true")
    args = parser.parse_args(argv)
    frameworks = [f for f in FRAMEWORKS if not (f == "torch" and args.no_torch) and not (f == "jax" and args.no_jax)]
    return bench_train(lambda name, s, note="": None, quick=args.quick, repeats=args.repeats, threads=args.threads,
                       batch=args.batch, models=args.models, dtypes=args.dtypes, frameworks=frameworks)


if __name__ == "__main__":
    main()
