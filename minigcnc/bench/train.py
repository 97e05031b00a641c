"""Speed of one SGD training step (forward + backward + update) against plain autograd.

Run ``python -m minigcnc.bench.train [--quick] [--repeats R]`` for a table; ``minigcnc.bench`` calls
``bench_train(report)``.

- ``convnet((1, 28, 28), 10)`` at batch 128, float32, random data: minigcnc (im2col convolutions, one GEMM
  each, hand-written VJPs) against the same network written the way a student would with plain autograd:
  ``autograd.scipy.signal.convolve`` (kernel flipped, so it is the same cross-correlation), max-pooling by
  reshape and ``anp.max``, ``anp.dot`` dense layers, ``logsumexp`` cross-entropy. Same parameters; the two
  losses and gradients are checked to agree before anything is timed.
- the MLP [784, 256, 256, 64] at batch 128, float64, for reference.

Each timing is the median of ``repeats`` steps after one untimed warm-up step. Compare ratios, not seconds:
the absolute numbers depend on the machine and its load.
"""
import argparse
import time

import autograd.numpy as anp
import numpy as onp
from autograd import grad, value_and_grad
from autograd.scipy.signal import convolve
from autograd.scipy.special import logsumexp

from ..backend import tree_leaves, tree_unflatten
from ..models import convnet, mlp

LR = 0.01


# --------------------------------------------------------------------------------------------------
# The reference: the same convnet in plain autograd
# --------------------------------------------------------------------------------------------------
def _ref_conv_relu(x, W, b):
    """relu(cross-correlation of x (N, C, H, W) with W (O, C, 3, 3), 'same' padding, + b) -> (N, O, H, W)."""
    x = anp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="constant")
    z = convolve(x, W[:, :, ::-1, ::-1], axes=([2, 3], [2, 3]), dot_axes=([1], [1]), mode="valid")  # (N, O, H, W)
    return anp.maximum(z + anp.reshape(b, (1, -1, 1, 1)), 0.0)


def _ref_maxpool2(x):
    N, C, H, W = x.shape
    return anp.max(anp.reshape(x, (N, C, H // 2, 2, W // 2, 2)), axis=(3, 5))


def ref_convnet_logits(params, X):
    """convnet((1, 28, 28), 10) in plain autograd; params in minigcnc's layout (pool/flatten entries are ())."""
    (W1, b1), _, (W2, b2), _, _, (W3, b3), (W, b) = params
    h = _ref_maxpool2(_ref_conv_relu(X, W1, b1))  # (N, 16, 14, 14)
    h = _ref_maxpool2(_ref_conv_relu(h, W2, b2))  # (N, 32, 7, 7)
    h = anp.reshape(h, (h.shape[0], -1))  # (N, 1568)
    h = anp.maximum(anp.dot(h, W3) + b3, 0.0)  # (N, 128): the embedding
    return anp.dot(h, W) + b


def ref_loss(params, X, y):
    """Mean cross-entropy: mean over n of logsumexp(z_n) - z_n[y_n]."""
    z = ref_convnet_logits(params, X)
    return anp.mean(logsumexp(z, axis=1) - z[onp.arange(z.shape[0]), y])


# --------------------------------------------------------------------------------------------------
def _sgd_step(loss_grad, params, X, y):
    """One step theta <- theta - LR * grad (the update line of ``train.fit``); returns (loss, new params)."""
    value, g = loss_grad(params, X, y)
    return value, tree_unflatten(params, [p - LR * gi for p, gi in zip(tree_leaves(params), tree_leaves(g))])


def _median_step_time(loss_grad, params, X, y, repeats):
    _sgd_step(loss_grad, params, X, y)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _sgd_step(loss_grad, params, X, y)
        times.append(time.perf_counter() - start)
    return float(onp.median(times))


def _random_batch(model, n, dtype, rng):
    X = rng.standard_normal((n,) + model.input_shape).astype(dtype)
    return X, rng.integers(0, model.n_classes, size=n)


def check_same_loss_and_gradient(model, params, X, y, rtol=1e-4):
    """Raise AssertionError unless minigcnc and the plain-autograd reference agree on the loss and gradient."""
    ours, ref = model.loss(params, X, y), ref_loss(params, X, y)
    if not onp.allclose(ours, ref, rtol=rtol):
        raise AssertionError(f"losses differ: minigcnc {ours} vs plain autograd {ref}")
    for a, b in zip(tree_leaves(grad(model.loss)(params, X, y)), tree_leaves(grad(ref_loss)(params, X, y))):
        scale = float(onp.max(onp.abs(b))) or 1.0
        if onp.max(onp.abs(a - b)) > rtol * scale:
            raise AssertionError(f"gradients differ by {onp.max(onp.abs(a - b)):.3g} (scale {scale:.3g})")
    return float(ours), float(ref)


def bench_train(report, quick=False, repeats=None, seed=0):
    """Time one SGD step of minigcnc's convnet and of its plain-autograd twin, and of the reference MLP.

    Calls ``report(name, seconds, note)`` for each; ``quick`` uses batch 32 and 2 repeats (a smoke run).
    Returns ``{name: seconds}``.
    """
    n = 32 if quick else 128
    repeats = repeats or (2 if quick else 5)
    rng = onp.random.default_rng(seed)
    times = {}

    net = convnet((1, 28, 28), 10)
    params = net.init(seed, dtype="float32", backend="numpy")
    X, y = _random_batch(net, n, "float32", rng)
    loss_ours, loss_ref = check_same_loss_and_gradient(net, params, X, y)
    setup = f"batch {n}, float32, median of {repeats}"
    times["ours"] = _median_step_time(value_and_grad(net.loss), params, X, y, repeats)
    times["ref"] = _median_step_time(value_and_grad(ref_loss), params, X, y, repeats)
    ratio = times["ref"] / times["ours"]
    report("train step convnet28 (minigcnc: im2col + hand VJPs)", times["ours"],
           f"{setup}; loss {loss_ours:.6f} = reference {loss_ref:.6f}; {ratio:.1f}x faster")
    report("train step convnet28 (plain autograd: scipy convolve)", times["ref"], setup)

    net = mlp([784, 256, 256, 64], 10)
    params = net.init(seed, dtype="float64", backend="numpy")
    X, y = _random_batch(net, n, "float64", rng)
    times["mlp"] = _median_step_time(value_and_grad(net.loss), params, X, y, repeats)
    report("train step mlp 784-256-256-64 (minigcnc)", times["mlp"], f"batch {n}, float64, median of {repeats}")
    return {
        "train.convnet.minigcnc": times["ours"],
        "train.convnet.autograd_convolve": times["ref"],
        "train.convnet.speedup": ratio,
        "train.mlp.minigcnc": times["mlp"],
    }


def main(argv=None):
    """Command line: print a table of the timings and the speed ratio."""
    parser = argparse.ArgumentParser(prog="python -m minigcnc.bench.train", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 32, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per network (default 5)")
    args = parser.parse_args(argv)
    rows = []
    out = bench_train(lambda name, s, note="": rows.append((name, s, note)), quick=args.quick, repeats=args.repeats)
    print(f"{'one SGD step':<56} {'ms':>9}  setup")
    for name, s, note in rows:
        print(f"{name:<56} {s * 1e3:>9.1f}  {note}")
    print(f"minigcnc / plain autograd speed ratio (convnet): {out['train.convnet.speedup']:.1f}x")
    return out


if __name__ == "__main__":
    main()
