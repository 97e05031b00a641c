"""`python -m minigcnc.bench.gpu`: the cupy backend against numpy (same machine) and PyTorch (same GPU).

Also run by ``python -m minigcnc.bench --backend cupy`` and ``python -m minigcnc.bench --only gpu``. Needs CuPy
and a CUDA GPU; without them it prints why and returns. ``--json PATH`` also writes the numbers to a file.

What is timed, in float32, on VGG-13 (``models.vgg("vgg13")``: full width, no batch normalization, p = 512),
random He-normal parameters and standard-normal 3x32x32 ("CIFAR-sized") inputs:

1. **one SGD step at batch 256**: forward, backward (``value_and_grad`` of the mean cross-entropy), the loss
   brought to the host (as ``train.fit`` does every step), update. minigcnc on cupy (median of ``repeats``
   after a warm-up) against minigcnc on numpy (1 timed step after a warm-up: a numpy step takes seconds) and
   against the same network in PyTorch on the same GPU (``torch.nn.functional``; fp32 with TF32 off, as cupy's
   default; cuDNN autotuning on).
2. **exact embedding GC of 256 inputs** (``gc.jacobian_sq_norms``; 512 cotangent rows per input): cupy with
   the plan below, and once with the engine's own default device plan (``jacobian_passes.plan``); numpy on ``numpy_gc_inputs`` inputs (default 1)
   with 64 rows per pass (3x faster than the host default of 1 row per pass at this width), scaled linearly
   to 256 (the exact path costs the same per input); PyTorch: one forward of the 256 inputs, then 512
   backward passes of one-hot cotangents (input gradients only), the textbook exact Jacobian norm.

The clock is read only after ``cupy.cuda.Device().synchronize()`` / ``torch.cuda.synchronize()``. Before
anything is timed, the losses and GC values of cupy, numpy and PyTorch are compared (float32: ~1e-5 apart);
a disagreement above 1e-3 is reported and makes the benchmark fail at the end.

Target: the cupy training step at least 20x faster than numpy on the same machine.

Exact GC memory plan (VGG-13, 256 inputs, p = 512 cotangents, float32). A backward pass of q cotangent rows
for n samples holds arrays of n * q * (per-row width) values. The widest is the transpose of the second
convolution (64 -> 64 channels at 32x32): its patch matrix has Ho*Wo x C*k*k = 1,024 x 576 = 589,824 values per
row (every other layer at most half: 128 -> 128 at 16x16 is 256 x 1,152). the default device budget
(``jacobian_passes.MAX_PASS_ELEMENTS_DEVICE`` = 2**27 values, 512 MiB) allows 227 rows per pass: 3 chunks of 171 rows, one
sample per pass, 768 passes for 256 inputs. This benchmark uses ``chunk=512, batch_size=4`` instead: all 512
rows of 4 samples in one pass, 64 passes. Its largest array is the 2,048 x 589,824 patch matrix, 4.5 GiB,
alive beside the cotangent (2,048, 64, 32, 32) = 512 MiB, its row copy (512 MiB) and col2im's padded output
(2,048, 64, 34, 34) = 578 MiB: about 7 GiB at the peak (less where inactive ReLU rows are dropped), a tenth of
an 80 GB card, for 12x fewer passes, kernel launches and Python steps, and GEMMs of 2M rows. ``--gc-batch 1``
(about 2 GiB) fits a 16 GB card.
"""
import argparse
import json
import statistics
import time

import numpy as onp
from autograd import value_and_grad

from .. import backend, gc, jacobian_passes, jacobians
from ..backend import to_device, to_numpy, tree_leaves, tree_unflatten
from ..models import vgg

LR = 0.01
TARGET_SPEEDUP = 20.0  # cupy training step vs numpy, at least
GC_CHUNK = 512  # cotangent rows per pass on the device: all of p
GC_BATCH = 4  # samples per pass on the device (see the memory plan above)
NUMPY_GC_CHUNK = 64  # rows per pass on the host
AGREE = 1e-3  # largest relative disagreement accepted between implementations (float32)


def cupy_or_reason():
    """(cupy, None) with minigcnc's "cupy" backend registered, or (None, why it cannot run here)."""
    try:
        import cupy
    except ImportError as e:
        return None, f"CuPy is not importable ({e}); install the [gpu] extra on a machine with a CUDA GPU"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 - CUDARuntimeError when no driver or device
        return None, f"CuPy sees no CUDA GPU ({type(e).__name__}: {e})"
    if n < 1:
        return None, "CuPy sees no CUDA GPU (device count 0)"
    previous = backend.get_backend()
    backend.set_backend("cupy")  # registers cupy.ndarray with autograd
    backend.set_backend(previous)
    return cupy, None


def device_info(cupy):
    """Name, memory and versions of the current CUDA device, as a dict of strings and numbers."""
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    free, total = cupy.cuda.Device().mem_info

    def version(v):
        return f"{v // 1000}.{(v % 1000) // 10}"

    return {"device": name, "memory_total_gib": round(total / 2**30, 1), "memory_free_gib": round(free / 2**30, 1),
            "cuda_runtime": version(cupy.cuda.runtime.runtimeGetVersion()),
            "cuda_driver": version(cupy.cuda.runtime.driverGetVersion()), "cupy": cupy.__version__,
            "numpy": onp.__version__}


def timed(fn, sync, repeats, warmup):
    """(median seconds of ``repeats`` calls after ``warmup`` calls, last result); ``sync()`` brackets each call."""
    out = None
    for _ in range(warmup):
        out = fn()
        sync()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def sgd_step(grad_fn, params, X, y):
    """One step of ``train.fit``'s loop: (loss as a host float, params - LR * grad)."""
    value, g = grad_fn(params, X, y)
    loss = float(to_numpy(value))  # fit reads every loss back for divergence detection
    return loss, tree_unflatten(params, [p - LR * gi for p, gi in zip(tree_leaves(params), tree_leaves(g))])


def relative_difference(a, b):
    """max |a - b| / max |b| over two arrays (host copies)."""
    a, b = onp.asarray(to_numpy(a), dtype=onp.float64), onp.asarray(to_numpy(b), dtype=onp.float64)
    return float(onp.max(onp.abs(a - b)) / max(onp.max(onp.abs(b)), 1e-300))


def gc_plan(model, params, X, N, chunk=None, batch_size=None):
    """The engine's (samples per pass, rows per pass, per-row width) for N inputs like X (``jacobian_passes.plan``)."""
    sizing = jacobians.pass_sizing(model, params, X)  # (per-sample width, whether it has convolutions)
    n, c = jacobian_passes.plan(params, N, model.embed_dim, sizing, chunk, batch_size)
    return n, c, sizing[0]


# --------------------------------------------------------------------------------------------------
# The same network in PyTorch
# --------------------------------------------------------------------------------------------------
def _layer_kinds(model):
    """The VGG body as a list of 'conv' | 'pool' | 'flatten' | 'dense' (3x3 'same' convs, 2x2 max-pools)."""
    kinds = []
    for layer in model.layers:
        kind = layer.kind or layer.name
        if kind == "conv" and not layer.name.endswith("k3s1-relu"):
            raise ValueError(f"the torch twin handles 3x3 stride-1 relu convs only; got {layer.name}")
        if kind == "pool" and layer.name != "maxpool2":
            raise ValueError(f"the torch twin handles 2x2 max-pooling only; got {layer.name}")
        kinds.append(kind)
    return kinds


def torch_twin(model, params, torch):
    """(parameters as CUDA tensors in minigcnc's layout, embed(P, x), logits(P, x)) for a minigcnc VGG."""
    F = torch.nn.functional
    kinds = _layer_kinds(model)
    P = [tuple(torch.as_tensor(to_numpy(a), device="cuda") for a in layer) for layer in params]

    def embed(P, x):
        for kind, p in zip(kinds, P[:-1]):
            if kind == "conv":
                x = F.relu(F.conv2d(x, p[0], p[1], stride=1, padding=1))
            elif kind == "pool":
                x = F.max_pool2d(x, 2)
            elif kind == "flatten":
                x = x.reshape(x.shape[0], -1)
            else:  # dense: x W + b with W (n, m), minigcnc's layout
                x = F.relu(x @ p[0] + p[1])
        return x

    def logits(P, x):
        W, b = P[-1]
        return embed(P, x) @ W + b

    return P, embed, logits


def torch_sgd_step(torch, P, logits, X, y):
    """One SGD step in torch (loss read back as a float, as in minigcnc's step)."""
    leaves = [t for layer in P for t in layer]
    loss = torch.nn.functional.cross_entropy(logits(P, X), y)
    grads = torch.autograd.grad(loss, leaves)
    with torch.no_grad():
        for p, g in zip(leaves, grads):
            p.sub_(LR * g)
    return float(loss.item())


def torch_sq_norms(torch, P, embed, X):
    """||J_g(x_n)||_F^2 for every input: one forward, then one backward pass per embedding coordinate."""
    x = X.detach().clone().requires_grad_(True)
    Z = embed(P, x)  # (N, p)
    total = torch.zeros(Z.shape[0], device=Z.device, dtype=Z.dtype)
    E = torch.zeros_like(Z)
    for j in range(Z.shape[1]):
        E.zero_()
        E[:, j] = 1
        (g,) = torch.autograd.grad(Z, x, grad_outputs=E, retain_graph=True)
        total += g.pow(2).sum(dim=(1, 2, 3))
    return total


def _torch_plain_fp32(torch):
    """No TF32 in torch's float32 matmuls and convolutions (cupy's default is plain fp32 too)."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # the API of torch >= 2.9
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def _torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


# --------------------------------------------------------------------------------------------------
def bench_gpu(report, quick=False, *, batch=None, gc_inputs=None, gc_batch=GC_BATCH, numpy_gc_inputs=1,
              repeats=None, numpy_repeats=1, use_torch=True, seed=0, results=None):
    """Time VGG-13's training step and exact GC on cupy, numpy and PyTorch; ``report(name, seconds, note)``.

    ``quick``: batch 32, GC of 8 inputs, 2 repeats, no default-plan GC run (a smoke run). Returns a dict of
    the timings, ratios and device facts, also filled into ``results`` as they come ({"skipped": reason}
    without CuPy or a GPU). Raises AssertionError at the end if two implementations disagree.
    """
    out = results if results is not None else {}
    cupy, reason = cupy_or_reason()
    if cupy is None:
        print(f"  skipped: {reason}", flush=True)
        out["skipped"] = reason
        return out
    batch = batch or (32 if quick else 256)
    gc_inputs = gc_inputs or (8 if quick else 256)
    repeats = repeats or (2 if quick else 5)
    out.update(device_info(cupy))
    print(f"  {out['device']}: {out['memory_total_gib']} GiB ({out['memory_free_gib']} free), CUDA runtime "
          f"{out['cuda_runtime']}, driver {out['cuda_driver']}, cupy {out['cupy']}, numpy {out['numpy']}", flush=True)
    problems = []

    def check(name, diff):
        out[f"agree.{name}"] = diff
        if not diff <= AGREE:
            problems.append(f"{name}: relative difference {diff:.3g} > {AGREE:g}")
        return f"{name} agree to {diff:.1e}"

    def sync_cupy():
        cupy.cuda.Device().synchronize()

    def no_sync():
        pass

    model = vgg("vgg13")
    rng = onp.random.default_rng(seed)
    Ph = model.init(seed, dtype="float32", backend="numpy")
    Pd = to_device(Ph, backend="cupy")
    Xh = rng.standard_normal((max(batch, gc_inputs), 3, 32, 32)).astype(onp.float32)
    yh = rng.integers(0, 10, size=batch)
    Xb_h, Xb_d, yb_d = Xh[:batch], cupy.asarray(Xh[:batch]), cupy.asarray(yh)
    grad_fn = value_and_grad(model.loss)

    # ---- 1. training step ----
    t_cupy, (loss_d, _) = timed(lambda: sgd_step(grad_fn, Pd, Xb_d, yb_d), sync_cupy, repeats, warmup=1)
    setup = f"vgg13 batch {batch} float32"
    report("gpu train step vgg13 (minigcnc, cupy)", t_cupy, f"{setup}, median of {repeats}; loss {loss_d:.5f}")
    t_numpy, (loss_h, _) = timed(lambda: sgd_step(grad_fn, Ph, Xb_h, yh), no_sync, numpy_repeats, warmup=1)
    speedup = t_numpy / t_cupy
    note = check("train loss cupy/numpy", relative_difference(loss_d, loss_h))
    report("gpu train step vgg13 (minigcnc, numpy)", t_numpy,
           f"{setup}, median of {numpy_repeats}; {note}; cupy {speedup:.1f}x faster "
           f"(target >= {TARGET_SPEEDUP:g}x: {'met' if speedup >= TARGET_SPEEDUP else 'NOT MET'})")
    out.update({"train.batch": batch, "train.cupy_s": t_cupy, "train.numpy_s": t_numpy,
                "train.speedup_vs_numpy": speedup, "train.target_met": bool(speedup >= TARGET_SPEEDUP)})

    torch = _torch_or_none() if use_torch else None
    if torch is not None:
        try:
            _torch_plain_fp32(torch)
            torch.backends.cudnn.benchmark = True
            Pt, embed_t, logits_t = torch_twin(model, Ph, torch)
            for t in (t for layer in Pt for t in layer):
                t.requires_grad_(True)
            Xt, yt = torch.as_tensor(Xb_h, device="cuda"), torch.as_tensor(yh, device="cuda")
            with torch.no_grad():
                loss_t0 = float(torch.nn.functional.cross_entropy(logits_t(Pt, Xt), yt).item())
            note = check("train loss torch/cupy", relative_difference(loss_t0, loss_d))
            t_torch, _ = timed(lambda: torch_sgd_step(torch, Pt, logits_t, Xt, yt), torch.cuda.synchronize, repeats,
                               warmup=2)
            report("gpu train step vgg13 (pytorch, same gpu)", t_torch,
                   f"{setup}, fp32 (no TF32), cudnn.benchmark; {note}; minigcnc-cupy takes {t_cupy / t_torch:.1f}x "
                   f"torch's time (torch {torch.__version__})")
            out.update({"torch": torch.__version__, "train.torch_s": t_torch,
                        "train.cupy_over_torch": t_cupy / t_torch})
            del Pt, Xt, yt
            torch.cuda.empty_cache()
        except Exception as e:  # noqa: BLE001 - the comparison is optional; the cupy/numpy numbers still count
            print(f"  pytorch training comparison failed: {type(e).__name__}: {e}", flush=True)
            out["torch_error"] = f"{type(e).__name__}: {e}"
            torch = None
    cupy.get_default_memory_pool().free_all_blocks()

    # ---- 2. exact GC ----
    Xg_d = cupy.asarray(Xh[:gc_inputs])
    plan = gc_plan(model, Pd, Xg_d, gc_inputs, GC_CHUNK, gc_batch)
    plan_note = f"{plan[0]} samples x {plan[1]} rows per pass, width {plan[2]:,}"
    gc.jacobian_sq_norms(model, Pd, Xg_d[:gc_batch], chunk=GC_CHUNK, batch_size=gc_batch)  # warm-up: kernels
    gc_repeats = 1 if quick else 2
    t_gc, norms_d = timed(lambda: gc.jacobian_sq_norms(model, Pd, Xg_d, chunk=GC_CHUNK, batch_size=gc_batch),
                          sync_cupy, gc_repeats, warmup=0)
    gc_value = float(to_numpy(norms_d).mean())
    report("gpu exact gc vgg13 (minigcnc, cupy)", t_gc,
           f"{gc_inputs} inputs, p=512, float32, {plan_note}, median of {gc_repeats}; GC {gc_value:.6g}")
    out.update({"gc.inputs": gc_inputs, "gc.cupy_s": t_gc, "gc.value": gc_value, "gc.plan": plan_note})
    if not quick:
        plan0 = gc_plan(model, Pd, Xg_d, gc_inputs)
        t_gc0, norms0 = timed(lambda: gc.jacobian_sq_norms(model, Pd, Xg_d), sync_cupy, 1, warmup=0)
        note = check("gc default plan", relative_difference(norms0, norms_d))
        report("gpu exact gc vgg13 (minigcnc, cupy, gc's default plan)", t_gc0,
               f"{plan0[0]} samples x {plan0[1]} rows per pass; {note}")
        out["gc.cupy_default_plan_s"] = t_gc0
    cupy.get_default_memory_pool().free_all_blocks()

    n_np = min(numpy_gc_inputs, gc_inputs)
    t_np_part, norms_h = timed(lambda: gc.jacobian_sq_norms(model, Ph, Xh[:n_np], chunk=NUMPY_GC_CHUNK), no_sync, 1,
                               warmup=0)
    t_np = t_np_part * gc_inputs / n_np
    note = check("gc cupy/numpy", relative_difference(to_numpy(norms_d)[:n_np], norms_h))
    report("gpu exact gc vgg13 (minigcnc, numpy, scaled)", t_np,
           f"measured {t_np_part:.1f} s on {n_np} input(s) x {gc_inputs / n_np:g}; {NUMPY_GC_CHUNK} rows per pass; "
           f"{note}; cupy {t_np / t_gc:.1f}x faster")
    out.update({"gc.numpy_s_scaled": t_np, "gc.numpy_inputs_measured": n_np, "gc.speedup_vs_numpy": t_np / t_gc})

    if torch is not None:
        try:
            Pt, embed_t, _ = torch_twin(model, Ph, torch)
            Xt = torch.as_tensor(Xh[:gc_inputs], device="cuda")
            torch_sq_norms(torch, Pt, embed_t, Xt[:2])  # warm-up (cuDNN autotuning)
            t_tgc, norms_t = timed(lambda: torch_sq_norms(torch, Pt, embed_t, Xt), torch.cuda.synchronize, 1,
                                   warmup=0)
            note = check("gc torch/cupy", relative_difference(norms_t.cpu().numpy(), to_numpy(norms_d)))
            report("gpu exact gc vgg13 (pytorch, one-hot backward passes)", t_tgc,
                   f"{gc_inputs} inputs, 512 backward passes of the whole batch; {note}; minigcnc-cupy takes "
                   f"{t_gc / t_tgc:.1f}x torch's time")
            out.update({"gc.torch_s": t_tgc, "gc.cupy_over_torch": t_gc / t_tgc})
            del Pt, Xt
            torch.cuda.empty_cache()
        except Exception as e:  # noqa: BLE001 - optional comparison
            print(f"  pytorch GC comparison failed: {type(e).__name__}: {e}", flush=True)
            out["torch_error"] = f"{type(e).__name__}: {e}"
    out["problems"] = problems
    if problems:
        raise AssertionError("implementations disagree: " + "; ".join(problems))
    return out


def main(argv=None):
    """Command line: the table, the ratios, and optionally a JSON file of every number."""
    p = argparse.ArgumentParser(prog="python -m minigcnc.bench.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="batch 32, GC of 8 inputs, 2 repeats")
    p.add_argument("--batch", type=int, default=None, help="training batch (default 256)")
    p.add_argument("--gc-inputs", type=int, default=None, help="inputs of the exact GC (default 256)")
    p.add_argument("--gc-batch", type=int, default=GC_BATCH, help=f"samples per GC pass on the device ({GC_BATCH})")
    p.add_argument("--numpy-gc-inputs", type=int, default=1, help="inputs timed for numpy's GC, then scaled (1)")
    p.add_argument("--repeats", type=int, default=None, help="timed cupy/torch training steps (default 5)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    rows = []

    def report(name, seconds, note=""):
        rows.append((name, seconds, note))
        print(f"  {name:<56s} {seconds * 1e3:11.1f} ms  {note}", flush=True)

    out = {}
    try:
        bench_gpu(report, quick=args.quick, batch=args.batch, gc_inputs=args.gc_inputs, gc_batch=args.gc_batch,
                  numpy_gc_inputs=args.numpy_gc_inputs, repeats=args.repeats, use_torch=not args.no_torch, results=out)
    finally:
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"results": out, "rows": [{"name": n, "seconds": s, "note": t} for n, s, t in rows]}, f,
                          indent=1, default=str)
    return out


if __name__ == "__main__":
    main()
