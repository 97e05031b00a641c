"""Tiny float64 test problems and the reference input Jacobian, shared by test_jacobians.py and test_gc.py.

The reference path is deliberately independent of ``minigcnc.jacobians``: autograd ``make_vjp`` of the model's
forward function with one one-hot cotangent per output coordinate (one backward pass each), and central finite
differences, one input coordinate at a time.
"""
import numpy as np
from autograd import make_vjp

from minigcnc import models
from minigcnc.backend import tree_leaves, tree_unflatten

MODELS = ["mlp-relu", "mlp-tanh", "convnet", "resnet18", "vgg11"]


def with_nonzero_alphas(model, params, value=0.7):
    """SkipInit residual scales set to ``value`` so the residual branches matter."""
    params = list(params)
    for i, layer in enumerate(model.layers):
        if layer.name == "residual":
            pm, ps, _ = params[i]
            params[i] = (pm, ps, np.array(value))
    return params


def with_random_biases(params, rng, scale=0.3):
    """Every bias (1-D leaf) drawn at random, so that activations are not centred at zero."""
    leaves = [a + scale * rng.standard_normal(a.shape) if np.ndim(a) == 1 else a for a in tree_leaves(params)]
    return tree_unflatten(params, leaves)


def build(name):
    """(model, params, X) for one tiny test problem, float64 on the host."""
    rng = np.random.default_rng(7)
    if name == "mlp-relu":
        m = models.mlp([9, 6, 5, 4], 3, "relu")  # first layer narrower than the input: Gram route
    elif name == "mlp-tanh":
        m = models.mlp([5, 7, 4], 3, "tanh")  # first layer wider than the input: direct route
    elif name == "convnet":
        m = models.convnet((1, 8, 8), 3, channels=(3, 4), hidden=(5,))
    elif name == "resnet18":
        m = models.resnet18((2, 8, 8), 3, width=1 / 16)
    elif name == "vgg11":
        m = models.vgg("vgg11", (1, 8, 8), 3, width=1 / 16, hidden=64)
    else:
        raise KeyError(name)
    P = with_random_biases(m.init(3, dtype="float64", backend="numpy"), rng)
    if name == "resnet18":
        P = with_nonzero_alphas(m, P)
    X = rng.standard_normal((3,) + m.input_shape)
    return m, P, X


def out_fn(model, params, target):
    return (lambda x: model.embed(params, x)) if target == "embed" else (lambda x: model.logits(params, x))


def reference_jacobian(model, params, X, target="embed"):
    """(N, q, D) from one autograd backward pass per output coordinate with one-hot cotangents."""
    Xf = X.reshape(X.shape[0], -1)
    vjp, Y = make_vjp(out_fn(model, params, target))(Xf)
    rows = []
    for j in range(Y.shape[1]):
        u = np.zeros_like(Y)
        u[:, j] = 1.0
        rows.append(vjp(u))
    return np.stack(rows, axis=1)


def jacobian_by_finite_differences(model, params, X, target, eps=1e-6):
    """(N, q, D) by central differences, one input coordinate of every sample at a time."""
    Xf = X.reshape(X.shape[0], -1)
    f = out_fn(model, params, target)
    cols = []
    for d in range(Xf.shape[1]):
        E = np.zeros_like(Xf)
        E[:, d] = eps
        cols.append((f(Xf + E) - f(Xf - E)) / (2 * eps))
    return np.stack(cols, axis=2)


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(np.asarray(b))), 1e-300))
