"""Flatness: the trace of the training-loss Hessian, by Hutchinson's estimator with Hessian-vector products.

The loss is the mean cross-entropy of the head's logits on (X, y), ``L(theta) = model.loss(theta, X, y)`` (the
reference route, ``fused=False``: autograd differentiates it twice), as a function of *all* parameters theta
(body and head, flattened to one vector of P numbers by ``autograd.misc.flatten``). An L2 term ``l2 ||theta||^2``
is left out: it would only add the constant ``2 l2 P`` to the trace. docs/theory.md#flatness.

- ``hessian_vector_product(model, params, X, y, v)``: ``H v`` (reverse over reverse: the gradient of
  ``<grad L(theta), v>``), about twice the cost of one gradient on X;
- ``hessian_trace_samples(...)``: ``v^T H v`` for ``probes`` Rademacher probes v (entries +-1, ``E v v^T = I``);
- ``hessian_trace(model, params, X, y, *, probes, seed)``: their mean, Hutchinson's unbiased estimate of
  ``tr H`` (Hutchinson 1990); its variance per probe is ``2 (||H||_F^2 - sum_i H_ii^2)``;
- ``full_hessian(model, params, X, y)``: the P x P Hessian itself (``autograd.hessian``), for tiny models (tests).

Every model of ``minigcnc.models`` is covered, convnets, VGG and ResNet included (``twice_differentiable``): each
primitive in a gradient of the loss has a VJP of its own (``ops.conv2d``, ``conv2d_input_grad`` and
``conv_weight_grad`` are each other's VJPs; each pooling and its transpose likewise), so reverse over reverse
works through every layer.

A smaller trace is a flatter minimum (Keskar et al. 2017 on large batches; Jastrzebski et al. 2017/2020 and
Cohen et al. 2021 on the learning rate). Everything runs on the params' backend; probes are drawn on the host.
"""
import numpy as onp
from autograd import grad, hessian
from autograd.misc import flatten

from . import checks
from .backend import get_xp, to_numpy


KNOWN_KINDS = ("dense", "conv", "pool", "residual", "")  # the ``Layer.kind`` values of minigcnc.layers


def twice_differentiable(model):
    """True when every body layer is of a ``minigcnc.layers`` kind (``KNOWN_KINDS``), which autograd differentiates twice.

    Dense, convolution, pooling, flattening and residual layers: their VJPs are ``ops`` primitives with VJPs of
    their own. A layer of another kind (made by hand) may not be, and is refused."""
    return all(layer.kind in KNOWN_KINDS for layer in model.layers)


def _flat_loss(model, params, X, y):
    """(L as a function of the flat parameter vector, that vector): the mean cross-entropy on (X, y)."""
    from .train import check_params  # train imports nothing from here: no cycle

    check_params(model, params)
    if not twice_differentiable(model):
        kinds = sorted({layer.kind for layer in model.layers} - set(KNOWN_KINDS))
        raise ValueError(f"the Hessian of {model.name} is not available: its layers of kind {kinds} are not among "
                         f"minigcnc.layers' kinds {KNOWN_KINDS}, whose gradients autograd differentiates again; "
                         "build the model from minigcnc.layers")
    Xc = checks.finite(model.check_input(X), "X")
    y = onp.asarray(to_numpy(y))
    if y.ndim != 1 or len(y) != Xc.shape[0]:
        raise ValueError(f"y must hold one integer label per sample of X ({Xc.shape[0]}); got shape {y.shape}")
    yd = get_xp(params[-1][0]).asarray(y)
    flat, unflatten = flatten(params)
    return (lambda w: model.loss(unflatten(w), Xc, yd, fused=False)), flat


def hessian_vector_product(model, params, X, y, v):
    """Return ``H v`` (flat, P values), H the Hessian of the mean cross-entropy on (X, y) w.r.t. all parameters.

    ``v``: a flat vector of P values, in the order of ``autograd.misc.flatten(params)``. Reverse over reverse.
    """
    f, flat = _flat_loss(model, params, X, y)
    v = get_xp(flat).asarray(v, dtype=flat.dtype)
    if v.shape != flat.shape:
        raise ValueError(f"v must be a flat vector of the {flat.size} parameters (autograd.misc.flatten order); "
                         f"got shape {tuple(v.shape)}")
    g = grad(f)
    return grad(lambda w: (g(w) * v).sum())(flat)


def hessian_trace_samples(model, params, X, y, *, probes, seed):
    """Return ``v_i^T H v_i`` (host float64, (probes,)) for ``probes`` Rademacher probes drawn from ``seed``.

    ``seed``: an int or a numpy Generator (required: the estimate is random). Their mean is ``hessian_trace``.
    """
    probes = checks.integer("probes", probes, minimum=1, meaning="Rademacher probe vectors")
    rng = checks.as_rng(seed, name="seed", why_needed="hessian_trace draws its Rademacher probes from seed=")
    f, flat = _flat_loss(model, params, X, y)
    xp = get_xp(flat)
    g = grad(f)
    out = onp.empty(probes)
    for i in range(probes):
        v = xp.asarray((rng.integers(0, 2, size=flat.shape) * 2.0 - 1.0).astype(flat.dtype))
        Hv = grad(lambda w: (g(w) * v).sum())(flat)
        out[i] = float(to_numpy((Hv.astype(onp.float64) * v.astype(onp.float64)).sum()))
    return out


def hessian_trace(model, params, X, y, *, probes, seed):
    """Return Hutchinson's estimate (float) of ``tr H``, the trace of the training-loss Hessian on (X, y).

    ``tr H ~ (1/m) sum_{i<=m} v_i^T H v_i`` with m = ``probes`` Rademacher vectors (``E v v^T = I``: unbiased;
    variance ``2 (||H||_F^2 - sum_i H_ii^2) / m``), each ``H v`` an autograd Hessian-vector product (about two
    gradients' cost on X). Loss: mean cross-entropy of the logits w.r.t. all parameters (no L2 term).
    ``seed``: an int or a numpy Generator; the same seed gives the same probes. docs/theory.md#flatness.
    """
    return float(hessian_trace_samples(model, params, X, y, probes=probes, seed=seed).mean())


def full_hessian(model, params, X, y):
    """Return the full Hessian (P, P) of the mean cross-entropy on (X, y) w.r.t. the flat parameters (host).

    ``autograd.hessian`` on the flattened parameters: P^2 values, so for tiny models only (the tests' oracle).
    """
    f, flat = _flat_loss(model, params, X, y)
    return onp.asarray(to_numpy(hessian(f)(flat)), dtype=onp.float64)
