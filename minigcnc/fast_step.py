"""The fast SGD step of ``train.fit``: speed code, not needed to follow the training.

``fit`` reads ``value, g = loss_and_grad(params, X_b, y_b, step)`` and ``params, velocity = sgd_update(...)``,
which compute exactly (bit for bit) what autograd's ``value_and_grad`` and the expressions
``v <- momentum * v + g; theta <- theta - lr * v`` compute. They are faster in three ways:

- ``value_and_grad_leaves`` traces every parameter array as its own autograd root: no container boxes, and no
  zero-filled copy of the whole parameter tree per parameter in the backward pass;
- ``sgd_update`` writes the update over the fresh gradient arrays (or fit's own velocity) when nothing else
  can hold them (``axpy_tree``), instead of allocating new ones;
- ``reuse_freed_memory`` tunes glibc's malloc so that a step reuses the previous step's pages.
"""
import ctypes
import os
import sys

import numpy as onp
from .autograd_internals import VJPNode, add_outgrads, isbox, new_box, toposort, trace_stack, vspace

from .backend import tree_leaves, tree_unflatten


def sgd_update(params, velocity, grads, *, lr, momentum, grads_owned):
    """One SGD step: ``(params - lr * grads, None)``, or with momentum ``v = momentum * velocity + grads`` and
    ``(params - lr * v, v)``; the same rounding as those expressions.

    ``grads_owned``: the gradient arrays were made by this step alone (nothing else holds them), so they may
    be overwritten; ``velocity`` is always the caller's own.
    """
    if momentum:
        velocity = axpy_tree(momentum, velocity, grads, into_x=True)
        return axpy_tree(-lr, velocity, params, scratch=grads if grads_owned else None), velocity
    return axpy_tree(-lr, grads, params, into_x=grads_owned), velocity


_MALLOC_TUNED = None


def reuse_freed_memory():
    """Ask glibc's malloc to keep freed memory for reuse (Linux only); True when it took effect.

    A training step allocates and frees the same large temporaries every step (patches, activations, their
    gradients: megabytes each). By default glibc returns such blocks to the OS when they are freed, and the
    next step's first touch of every page faults again: thousands of page faults per step, a third of a
    convnet step's time on two cores. Here blocks up to 32 MiB come from the heap (``M_MMAP_THRESHOLD``) and
    up to 512 MiB of free heap is kept (``M_TRIM_THRESHOLD``), so a step reuses the previous step's pages.
    The process keeps that much memory once it has used it. Called by ``fit``; once per process; set
    ``MINIGCNC_KEEP_MALLOC=1`` to leave malloc alone.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED is None:
        _MALLOC_TUNED = False
        if sys.platform.startswith("linux") and os.environ.get("MINIGCNC_KEEP_MALLOC", "") in ("", "0"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
                _MALLOC_TUNED = bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(
                    libc.mallopt(M_TRIM_THRESHOLD, 512 << 20))
            except (OSError, AttributeError):  # not glibc
                pass
    return _MALLOC_TUNED


def axpy_tree(a, x, y, into_x=False, scratch=None):
    """a * x + y over matching parameter trees (the same rounding as the expression ``a * x + y``).

    ``into_x``: written over the leaves of x, ``scratch``: over the leaves of that tree, wherever such a leaf is
    a host array that owns its memory, is writable and appears once (a fresh gradient or fit's own velocity);
    elsewhere a new array.
    """
    xs, ys = tree_leaves(x), tree_leaves(y)
    target = x if into_x else scratch
    outs = tree_leaves(target) if target is not None else [None] * len(xs)
    usable = _overwritable(outs)
    new = []
    for xi, yi, oi, ok in zip(xs, ys, outs, usable):
        if ok and oi.shape == yi.shape and oi.dtype == onp.result_type(xi, yi):
            onp.multiply(xi, a, out=oi)
            onp.add(oi, yi, out=oi)
            new.append(oi)
        else:
            new.append(a * xi + yi)
    return tree_unflatten(y, new)


def _overwritable(arrays):
    """For each array: may it be overwritten? A host ndarray owning its writable memory, not seen twice."""
    seen = {}
    for a in arrays:
        seen[id(a)] = seen.get(id(a), 0) + 1
    return [type(a) is onp.ndarray and a.flags.owndata and a.flags.writeable and seen[id(a)] == 1 for a in arrays]


def value_and_grad_leaves(fun):
    """``value_and_grad`` of ``fun(params, *args)`` in ``params``, with every array leaf traced as its own root.

    autograd's ``value_and_grad`` boxes the whole parameter list: every ``params[i]`` inside ``fun`` is then a
    node of its own, and its backward pass fills a zero copy of the entire tree for each and adds them up. Here
    each leaf is boxed alone and one backward pass collects the gradient of every leaf (zeros for a leaf
    the value does not depend on). ``fun`` sees a plain tree of boxes. Returns ``(value, grads)`` with grads
    shaped like params.
    """

    def value_and_grad(params, *args, **kwargs):
        leaves = tree_leaves(params)
        with trace_stack.new_trace() as t:
            roots = [VJPNode.new_root() for _ in leaves]
            boxed = tree_unflatten(params, [new_box(a, t, r) for a, r in zip(leaves, roots)])
            end = fun(boxed, *args, **kwargs)
            traced = isbox(end) and end._trace == t
        if not traced:
            return end, tree_unflatten(params, [vspace(a).zeros() for a in leaves])
        value, end_node = end._value, end._node
        vs = vspace(value)
        if vs.size != 1:
            raise TypeError(f"value_and_grad_leaves: fun must return a scalar; got shape {vs.shape}")
        index = {r: i for i, r in enumerate(roots)}
        grads = [None] * len(leaves)
        outgrads = {end_node: (vs.ones(), False)}
        for node in toposort(end_node):
            g = outgrads.pop(node)[0]
            i = index.get(node)
            if i is not None:
                grads[i] = g
                continue
            for parent, ingrad in zip(node.parents, node.vjp(g)):
                outgrads[parent] = add_outgrads(outgrads.get(parent), ingrad)
        grads = [vspace(a).zeros() if gi is None else gi for a, gi in zip(leaves, grads)]
        return value, tree_unflatten(params, grads)

    return value_and_grad
