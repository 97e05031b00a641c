"""Layers as small (init, apply, jtp) triples with shape inference, in the style of stax.

A layer is a ``Layer`` with three pure functions:

- ``init(rng, in_shape, dtype) -> (out_shape, params)``: shapes exclude the batch axis; ``rng`` is a
  ``numpy.random.Generator``; params are host (NumPy) arrays, moved to a device by the model.
- ``apply(params, x) -> (y, cache)``: forward on a batch ``x (N, *in_shape)``; ``cache`` holds what the
  transpose-Jacobian product needs (activation masks, derivatives, shapes).
- ``jtp(params, cache, T) -> T_in``: the batched transpose-Jacobian product. ``T (N, q, *out_shape)``
  holds q cotangents per sample; the result ``(N, q, *in_shape)`` is ``T_n J_n`` for each sample n,
  computed for all q at once (one matrix product for dense and conv layers).
- ``forward(params, x) -> y``: the training fast path, the output of ``apply`` without its cache, built
  from the fused primitives of ``fused`` (``dense_act``, ``conv2d_act``, ...): one tape node per layer
  instead of three, and no jtp cache made. Same values as ``apply``; a layer made without one uses
  ``apply(params, x)[0]``.

Exact input Jacobians come from pushing the identity of the output space back through ``jtp``
(see ``jacobians.py``). All functions are written with ``ops`` primitives, so autograd can differentiate the
Jacobian itself with respect to the parameters (the GC regularizer).
"""
from dataclasses import dataclass
from typing import Callable

import numpy as onp
from .autograd_internals import getval

from . import fused, ops


@dataclass(frozen=True)
class Layer:
    """One layer: ``init``, ``apply``, ``jtp`` and ``forward`` as described in the module docstring.

    Optional fields, read by the input-Jacobian engine and by ``Serial.forward`` (defaults: none):

    - ``kind``: "dense", "conv", "pool" or "residual" ("" for the rest). the fast Jacobian route pulls identity
      rows through a top "dense" layer without a GEMM (``jacobian_passes.top_dense_jtp``) and sizes its passes
      by the "conv" and "residual" layers (``jacobian_passes.sizing``);
    - ``pre_linear_jtp(params, cache, T)``: a dense layer's jtp up to its weight matrix, the activation part
      alone (the first-layer Gram route of ``jacobian_passes``);
    - ``forward_pool(params, x, size)``: ``forward`` of this convolution and of a ``MaxPool(size)`` after it, as one
      fused primitive (``Serial.forward`` takes it);
    - ``pool_size``: a ``MaxPool``'s window, for that fusion.
    """

    name: str
    init: Callable
    apply: Callable
    jtp: Callable
    forward: Callable = None
    kind: str = ""
    pre_linear_jtp: Callable = None
    forward_pool: Callable = None
    pool_size: int = None

    def __post_init__(self):
        if self.forward is None:
            apply = self.apply
            object.__setattr__(self, "forward", lambda params, x: apply(params, x)[0])


def _expand(a, q_axis=1):
    """a (N, *s) -> (N, 1, *s), to broadcast over the cotangent axis."""
    return ops.reshape(a, a.shape[:q_axis] + (1,) + a.shape[q_axis:])


def _normal(rng, shape, std, dtype):
    return (rng.standard_normal(shape) * std).astype(dtype)


def _weight_std(init, fan_in):
    """He-normal sqrt(2/fan_in) for relu nets, LeCun-normal sqrt(1/fan_in) otherwise."""
    if init == "he":
        return onp.sqrt(2.0 / fan_in)
    if init == "lecun":
        return onp.sqrt(1.0 / fan_in)
    raise ValueError(f"weight init must be 'he' or 'lecun'; got {init!r}")


# ---- Activations -------------------------------------------------------------------------------------------
ACTIVATIONS = ("relu", "tanh", "identity")  # the names every layer's ``activation=`` accepts


def _activation_apply(name, x):
    """Apply activation ``name`` and return (y, derivative factor for jtp)."""
    if name == "relu":
        y = ops.relu(x)
        return y, (getval(x) > 0).astype(getval(x).dtype)  # piecewise constant: no gradient flows
    if name == "tanh":
        y = ops.tanh(x)
        return y, 1 - y * y  # depends on the parameters: kept traced for the GC penalty
    if name == "identity":
        return x, None
    raise ValueError(f"activation must be one of {', '.join(repr(a) for a in ACTIVATIONS)}; got {name!r}")


def _activation_jtp(d, T):
    return T if d is None else T * _expand(d)


def Activation(name):
    """Elementwise activation ``name`` (one of ``ACTIVATIONS``); jtp multiplies by its derivative."""
    _activation_apply(name, onp.zeros(1))  # validate the name now

    def init(rng, in_shape, dtype):
        return in_shape, ()

    def apply(params, x):
        return _activation_apply(name, x)

    def jtp(params, d, T):
        return _activation_jtp(d, T)

    def forward(params, x):
        return ops.activate(x, name)

    return Layer(name, init, apply, jtp, forward=forward)


# ---- Dense -------------------------------------------------------------------------------------------------
def DenseAct(out_dim, activation="relu", init="he"):
    """Dense layer followed by an activation: y = act(x W + b); params (W (n, out_dim), b (out_dim,)).

    The activation sits in the same layer so that an MLP's parameters are a plain list of (W, b) pairs.
    ``pre_linear_jtp`` is the activation part of the jtp alone: for a first dense layer
    ``||J||_F^2 = sum((M @ (W^T W)) * M)`` with M that cotangent (the Gram route of ``jacobian_passes``).
    """
    _activation_apply(activation, onp.zeros(1))
    if init == "he" and activation != "relu":
        init = "lecun"

    def init_fn(rng, in_shape, dtype):
        if len(in_shape) != 1:
            raise ValueError(f"DenseAct expects flat inputs (n,); got input shape {in_shape}: add Flatten() first")
        W = _normal(rng, (in_shape[0], out_dim), _weight_std(init, in_shape[0]), dtype)
        return (out_dim,), (W, onp.zeros(out_dim, dtype=dtype))

    def apply(params, x):
        W, b = params
        return _activation_apply(activation, ops.linear(x, W, b))

    def pre_linear_jtp(params, d, T):
        return _activation_jtp(d, T)

    def jtp(params, d, T):
        return ops.matmul_t(_activation_jtp(d, T), params[0])  # (N, q, out) -> (N, q, in)

    def forward(params, x):
        W, b = params
        return fused.dense_act(x, W, b, activation)

    return Layer(f"dense{out_dim}-{activation}", init_fn, apply, jtp, forward, kind="dense",
                 pre_linear_jtp=pre_linear_jtp)


def Dense(out_dim, init="lecun"):
    """Affine layer y = x W + b (no activation)."""
    return DenseAct(out_dim, "identity", init)


# ---- Convolution and pooling -------------------------------------------------------------------------------
def Conv(out_channels, kernel=3, stride=1, padding=None, activation="relu", init="he", bias=True):
    """Convolution (+ bias) followed by an activation; params (W (O, C, k, k), b (O,)) or (W,) without bias.

    padding defaults to k // 2 ('same' for odd k and stride 1).
    """
    padding = kernel // 2 if padding is None else padding
    _activation_apply(activation, onp.zeros(1))
    if init == "he" and activation != "relu":
        init = "lecun"

    def init_fn(rng, in_shape, dtype):
        if len(in_shape) != 3:
            raise ValueError(f"Conv expects image inputs (C, H, W); got input shape {in_shape}")
        C, H, W = in_shape
        Ho, Wo = ops.conv_output_size(H, kernel, stride, padding), ops.conv_output_size(W, kernel, stride, padding)
        if Ho < 1 or Wo < 1:
            raise ValueError(f"Conv {kernel}x{kernel} stride {stride} does not fit an input of shape {in_shape}")
        Wt = _normal(rng, (out_channels, C, kernel, kernel), _weight_std(init, C * kernel * kernel), dtype)
        params = (Wt, onp.zeros(out_channels, dtype=dtype)) if bias else (Wt,)
        return (out_channels, Ho, Wo), params

    def apply(params, x):
        z = ops.conv2d(x, params[0], stride, padding)
        if bias:
            z = ops.add_bias(z, params[1], axis=1)
        y, d = _activation_apply(activation, z)
        return y, (d, tuple(x.shape[1:]))

    def jtp(params, cache, T):
        d, in_shape = cache
        T = _activation_jtp(d, T)
        N, q = T.shape[:2]
        T = ops.reshape(T, (N * q,) + tuple(T.shape[2:]))  # (N*q, O, Ho, Wo)
        T = ops.conv2d_input_grad(T, params[0], in_shape, stride, padding)
        return ops.reshape(T, (N, q) + in_shape)

    def forward(params, x):
        return fused.conv2d_act(x, params[0], params[1] if bias else None, stride, padding, activation)

    def forward_pool(params, x, size):  # this layer and a MaxPool(size) after it, fused (see Serial)
        return fused.conv2d_act_pool(x, params[0], params[1] if bias else None, padding, activation, size)

    fusable = stride == 1 and activation in ("relu", "identity")
    return Layer(f"conv{out_channels}k{kernel}s{stride}-{activation}", init_fn, apply, jtp, forward, kind="conv",
                 forward_pool=forward_pool if fusable else None)


def _pool_init(size, kind):
    def init(rng, in_shape, dtype):
        if len(in_shape) != 3:
            raise ValueError(f"{kind} expects image inputs (C, H, W); got input shape {in_shape}")
        C, H, W = in_shape
        s = H if size is None else size
        if H // s < 1 or W // s < 1:
            raise ValueError(f"{kind} window {s} does not fit an input of shape {in_shape}")
        return (C, H // s, W // s), ()

    return init


def MaxPool(size=2):
    """Max-pooling over non-overlapping size x size windows."""

    def apply(params, x):
        # the cache is the input itself: the arg-max mask is made only when a jtp needs it, so that a
        # training step (which never calls jtp) does not pay for it
        return ops.maxpool2d(x, size), getval(x)

    def jtp(params, raw, T):
        mask = ops.maxpool_mask(raw, size)
        return ops.maxpool2d_input_grad(T, mask, size, raw.shape[2], raw.shape[3])  # (N,q,C,Ho,Wo) -> (N,q,C,H,W)

    def forward(params, x):
        return fused.maxpool2d_train(x, size)

    return Layer(f"maxpool{size}", _pool_init(size, "MaxPool"), apply, jtp, forward, kind="pool", pool_size=size)


def AvgPool(size=None):
    """Average pooling over non-overlapping size x size windows; size=None pools the whole map (global)."""

    def apply(params, x):
        s = x.shape[2] if size is None else size
        return ops.avgpool2d(x, s), (s, x.shape[2], x.shape[3])

    def jtp(params, cache, T):
        s, H, W = cache
        N, q = T.shape[:2]
        T = ops.reshape(T, (N * q,) + tuple(T.shape[2:]))
        T = ops.avgpool2d_input_grad(T, s, H, W)
        return ops.reshape(T, (N, q) + tuple(T.shape[1:]))

    return Layer("avgpool" if size else "globalavgpool", _pool_init(size, "AvgPool"), apply, jtp, kind="pool")


def Flatten():
    """(N, C, H, W) -> (N, C*H*W)."""

    def init(rng, in_shape, dtype):
        return (int(onp.prod(in_shape)),), ()

    def apply(params, x):
        return ops.flatten(x), tuple(x.shape[1:])

    def jtp(params, in_shape, T):
        return ops.reshape(T, tuple(T.shape[:2]) + in_shape)

    def forward(params, x):
        return ops.flatten(x)

    return Layer("flatten", init, apply, jtp, forward=forward)


# ---- Composition -------------------------------------------------------------------------------------------
def Serial(*layers):
    """Layers applied in order; params are a list with one entry per layer."""

    def init(rng, in_shape, dtype):
        params = []
        for layer in layers:
            in_shape, p = layer.init(rng, in_shape, dtype)
            params.append(p)
        return in_shape, params

    def apply(params, x):
        caches = []
        for layer, p in zip(layers, params):
            x, c = layer.apply(p, x)
            caches.append(c)
        return x, caches

    def jtp(params, caches, T):
        for layer, p, c in reversed(list(zip(layers, params, caches))):
            T = layer.jtp(p, c, T)
        return T

    def forward(params, x):
        i = 0
        while i < len(layers):
            fuse = layers[i].forward_pool
            if fuse is not None and i + 1 < len(layers) and layers[i + 1].pool_size is not None:
                x = fuse(params[i], x, layers[i + 1].pool_size)  # conv + max-pooling as one primitive
                i += 2
            else:
                x = layers[i].forward(params[i], x)
                i += 1
        return x

    return Layer("serial", init, apply, jtp, forward)


def Residual(main, shortcut=None):
    """y = relu(shortcut(x) + alpha * main(x)) with a learned scalar alpha initialised to 0 (SkipInit).

    SkipInit (De & Smith 2020) replaces batch normalization in residual nets: each block starts as the
    identity, so deep nets train without batch statistics and every metric stays a pure function of one
    input (no train/eval modes). params: (main params, shortcut params, alpha ()).
    """
    shortcut = shortcut or Serial()

    def init(rng, in_shape, dtype):
        out_shape, pm = main.init(rng, in_shape, dtype)
        s_shape, ps = shortcut.init(rng, in_shape, dtype)
        if tuple(s_shape) != tuple(out_shape):
            raise ValueError(f"Residual: main branch gives {out_shape} but shortcut gives {s_shape}")
        return out_shape, (pm, ps, onp.zeros((), dtype=dtype))

    def apply(params, x):
        pm, ps, alpha = params
        m, cm = main.apply(pm, x)
        s, cs = shortcut.apply(ps, x)
        y, d = _activation_apply("relu", s + alpha * m)
        return y, (cm, cs, d)

    def jtp(params, cache, T):
        pm, ps, alpha = params
        cm, cs, d = cache
        T = _activation_jtp(d, T)
        return shortcut.jtp(ps, cs, T) + main.jtp(pm, cm, alpha * T)

    def forward(params, x):
        pm, ps, alpha = params
        return ops.relu(shortcut.forward(ps, x) + alpha * main.forward(pm, x))

    return Layer("residual", init, apply, jtp, forward, kind="residual")
