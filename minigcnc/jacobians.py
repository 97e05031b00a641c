"""Exact input Jacobians, as defined: one forward pass, then the identity of the output space pulled back through
every layer.

For a model ``out(x) = f_L(... f_1(x))`` (the embedding, or the logits through the head) and a batch of N
inputs, row j of the Jacobian ``J(x_n) = d out / dx`` is ``e_j^T J(x_n)``, the transpose-Jacobian product (VJP)
of the one-hot cotangent ``e_j``. So:

1. ``forward`` runs the layers once and keeps each layer's cache;
2. ``pull_back`` maps the cotangents (``Cotangents``; for J the d_out rows of the identity of the output space) of
   all samples at once, as one tensor ``T (N, d_out, *layer shape)``, through each layer's ``jtp(params, cache, T)``
   from the last layer to the first; at the input T is ``J (N, d_out, D)``, the inputs flattened (D = C*H*W):
   ``input_jacobian``;
3. GC needs the squared norms ``||J(x_n)||_F^2 = sum(J[n] ** 2)``: ``jacobian_sq_norms``, whose mean is GC
   (``gc.reference_gc`` computes GC by ``autograd.jacobian`` instead, independently of this module).

``jacobian_sq_norms`` gives the same numbers without forming J where it can. What makes it fast is in
``jacobian_passes``: samples and rows cut into cache-sized passes run in threads, and three exact savings (the top
dense layer without a GEMM, only the rows of active top units, the first-layer Gram route). The second half of
this module is that route: ``pull_back_fast`` (``pull_back`` with the top-layer saving, the same numbers),
``sq_norms``, ``batched_sq_norms`` and ``jacobian_blocks`` (for ``gc.py``). Everything is written with ``ops``
primitives on the array module of ``params``, so it runs on any backend and autograd can differentiate the
norms with respect to the parameters (the GC penalty).
"""
from dataclasses import dataclass

import numpy as onp

from . import checks, jacobian_passes, ops
from .backend import get_xp, is_device_array

TARGETS = ("embed", "logits")


def check_target(target):
    """Raise a ValueError unless ``target`` is 'embed' (the embedding g) or 'logits'."""
    if target not in TARGETS:
        raise ValueError(f"target must be 'embed' or 'logits'; got {target!r}")


def output_dim(model, target):
    """d_out, the dimension of the target space: p (embedding) or k (logits)."""
    check_target(target)
    return model.embed_dim if target == "embed" else model.n_classes


@dataclass(frozen=True, eq=False)
class Cotangents:
    """The r vectors u of the target space whose products ``u^T J(x_n)`` ``pull_back`` computes.

    ``kind`` and ``values``, made by one of three constructors:

    - ``Cotangents.rows(rows)``: rows of the identity of R^d_out (host integers (r,)), the same for every sample:
      ``u^T J`` are rows of J (exact Jacobians and norms);
    - ``Cotangents.shared(V)``: V (r, d_out), the same r vectors for every sample (directional GC);
    - ``Cotangents.per_sample(V)``: V (N, r, d_out), r vectors per sample (Hutchinson probes).

    ``count`` is r; ``select(a, b, samples)`` is the part one pass takes: cotangents [a, b) of some samples.
    """

    kind: str
    values: object

    def __post_init__(self):
        if self.kind not in ("rows", "shared", "per_sample"):
            raise ValueError(f"Cotangents kind must be 'rows', 'shared' or 'per_sample'; got {self.kind!r}")

    @classmethod
    def rows(cls, rows):
        """Rows ``rows`` of the identity of the target space, for every sample."""
        return cls("rows", onp.asarray(rows))

    @classmethod
    def shared(cls, V):
        """The rows of V (r, d_out), the same for every sample."""
        return cls("shared", V)

    @classmethod
    def per_sample(cls, V):
        """V (N, r, d_out): r cotangents for each of the N samples."""
        return cls("per_sample", V)

    @property
    def count(self):
        """r, the number of cotangents of each sample."""
        return self.values.shape[1] if self.kind == "per_sample" else self.values.shape[0]

    def select(self, a, b, samples=slice(None)):
        """Cotangents [a, b) of each sample, of the ``samples`` (a slice) for per-sample ones: what one pass takes."""
        if self.kind == "per_sample":
            return Cotangents(self.kind, self.values[samples, a:b])
        return Cotangents(self.kind, self.values[a:b])


# --------------------------------------------------------------------------------------------------
# The definition: a forward pass, then the cotangents pulled back through each layer
# --------------------------------------------------------------------------------------------------
def forward(model, params, X):
    """(Z (N, p), caches): the embedding and every body layer's jtp cache (``model.embed_with_cache``)."""
    return model.embed_with_cache(params, X)


def _identity_rows(rows, q, dtype, xp):
    """One-hot rows E (r, d_out) of the identity of R^d_out (``q`` here), built on the host and copied to the device
    once."""
    E = onp.zeros((len(rows), q), dtype=dtype)
    E[onp.arange(len(rows)), rows] = 1
    return xp.asarray(E)


def at_embedding(model, params, cot, target, dtype, xp):
    """(kind, V, all_rows): the cotangents ``cot`` of the target space as cotangents of the embedding.

    Identity rows stay rows ("rows", E (r, p), ``all_rows`` when they are all p in order) for the embedding; for
    the logits (out = Z W_head + b) a cotangent u of R^k becomes ``W_head u`` of R^p ("shared" (r, p), or
    "per_sample" (N, r, p)).
    """
    kind, V, all_rows = cot.kind, cot.values, False
    if kind == "rows":
        q = output_dim(model, target)
        all_rows = len(V) == q and bool(onp.all(V == onp.arange(q)))
        V = _identity_rows(V, q, dtype, xp)
        if target == "logits":  # rows of the head: E W_head^T (r, p), the same for every sample
            kind, V = "shared", ops.matmul_t(V, params[-1][0])
    elif target == "logits":
        V = ops.matmul_t(V, params[-1][0])  # (.., r, k) -> (.., r, p)
    return kind, V, all_rows


def pull_back(model, params, caches, Z, cot, target):
    """The cotangents ``cot`` pulled back to the input: (N, r, D), row i of sample n is ``u_i^T J(x_n)``.

    ``u_i`` is the i-th cotangent of ``cot`` (a ``Cotangents``: for J itself, rows of the identity) and J(x_n)
    the Jacobian of the target at x_n; ``Z``, ``caches`` come from ``forward``. The cotangents of the embedding,
    one copy per sample (N, r, p), go through every layer's ``jtp``, last layer first (``model.body.jtp``).
    """
    xp = get_xp(Z)
    N = Z.shape[0]
    kind, V, _ = at_embedding(model, params, cot, target, Z.dtype, xp)
    if kind != "per_sample":  # the same r vectors for every sample: (r, p) -> (N, r, p)
        V = ops.reshape(V, (1,) + tuple(V.shape)) * xp.ones((N, 1, 1), dtype=V.dtype)
    T = model.body.jtp(params[:-1], caches, V)
    return ops.reshape(T, (N, T.shape[1], model.input_dim))


def input_jacobian(model, params, X, *, target="embed", chunk=None):
    """Return the exact input Jacobians J (N, d_out, D) of the embedding (d_out = p) or of the logits (d_out = k).

    ``J[n, j, d] = d out_j(x_n) / d x_{n,d}`` with the input flattened (D = C*H*W). One forward pass, then the
    identity rows of the output space are pulled back through the layers' batched transpose-Jacobian
    products; ``chunk`` = output coordinates per pass (default all) bounds the memory of a pass to
    N x chunk x (widest activation). On the backend of ``params``. X must be finite.
    """
    q = output_dim(model, target)
    chunk = checks.integer("chunk", chunk, allow_none=True)
    Xc = checks.finite(model.check_input(X), "X")
    Z, caches = forward(model, params, Xc)
    rows = Cotangents.rows(onp.arange(q))
    step = chunk or q  # output rows per pull-back
    parts = [pull_back(model, params, caches, Z, rows.select(a, min(a + step, q)), target) for a in range(0, q, step)]
    return parts[0] if len(parts) == 1 else get_xp(Z).concatenate(parts, axis=1)


# --------------------------------------------------------------------------------------------------
# Squared norms, fast: in passes, with the savings of ``jacobian_passes``
# --------------------------------------------------------------------------------------------------
def pass_sizing(model, params, Xc):
    """What sizes a pass (``jacobian_passes.sizing``: the widest per-sample array of a backward pass, whether the
    model has convolutions), from the layer shapes of a forward pass of one sample of ``Xc``."""
    x, shapes = Xc[:1], [tuple(Xc.shape[1:])]
    for layer, p in zip(model.layers, params[:-1]):
        x = layer.apply(p, x)[0]
        shapes.append(tuple(x.shape[1:]))
    return jacobian_passes.sizing(model, params, shapes)


def pull_back_fast(model, params, caches, Z, cot, target, first=0, compact=False):
    """``pull_back`` with the top dense layer's saving, to the input of body layer ``first``: (N, r', *shape).

    The same numbers as ``pull_back`` for ``first=0``, ``compact=False``. The top dense layer's jtp is
    ``jacobian_passes.top_dense_jtp`` (an elementwise product for identity rows); ``compact``: drop identity rows
    that it maps to zero; the rows then no longer correspond to output coordinates, only their sum of squares is
    kept (for ``sq_norms``). ``first=1``: stop before the first layer (the Gram route).
    """
    xp = get_xp(Z)
    N = Z.shape[0]
    kind, V, all_rows = at_embedding(model, params, cot, target, Z.dtype, xp)
    top = len(model.layers) - 1
    if top >= first and model.layers[top].kind == "dense":  # its jtp, by an elementwise product for rows
        T = jacobian_passes.top_dense_jtp(kind, V, all_rows, params[top][0], caches[top], N, compact)
        top -= 1
    else:  # the cotangents at the embedding itself, one set per sample
        T = V if kind == "per_sample" else jacobian_passes.per_sample(ops.reshape(V, (1,) + tuple(V.shape)), N, xp)
    for i in range(top, first - 1, -1):
        T = model.layers[i].jtp(params[i], caches[i], T)
    if first == 0:
        T = ops.reshape(T, (N, T.shape[1], model.input_dim))
    return T


def sq_norms(model, params, Z, caches, cot, target, gram=True, per_row=False):
    """Per-sample squared norms ||u^T J_n||^2 of the cotangents ``cot``: (N,) summed over them, or (N, r) with per_row.

    By the first-layer Gram route when it applies and ``gram`` is true (``jacobian_passes.gram_sq_norms``); the
    rows of inactive top units dropped unless ``per_row``.
    """
    if gram and jacobian_passes.dense_gram_applies(model, params):
        T = pull_back_fast(model, params, caches, Z, cot, target, first=1, compact=not per_row)  # (N, r, h)
        return jacobian_passes.gram_sq_norms(model.layers[0], params[0], caches[0], T, per_row)
    J = pull_back_fast(model, params, caches, Z, cot, target, first=0, compact=not per_row)  # (N, r, D)
    return ops.sum(J * J, axis=2 if per_row else (1, 2))


def batched_sq_norms(model, params, Xc, cot, target, chunk=None, batch_size=None, gram=True, per_row=False):
    """``sq_norms`` over sample batches (one forward pass each) and chunks of the cotangents ``cot``.

    ``Xc``: inputs already checked by ``model.check_input``; ``cot``: a ``Cotangents`` of all of them. Returns
    (N,) (summed over the chunks) or (N, r) with ``per_row``, on the params' backend. Passes as planned by
    ``jacobian_passes.plan``; on the host the sample batches run in parallel threads (``run_passes``). For
    identity rows of the embedding, samples with similar numbers of active top units are batched together
    (``order_by_active_rows``), so that row compaction pads little; the result comes back in the order of Xc.
    """
    chunk = checks.integer("chunk", chunk, allow_none=True)
    batch_size = checks.integer("batch_size", batch_size, allow_none=True)
    N, r = Xc.shape[0], cot.count
    if N < 1:
        raise ValueError("X must hold at least one sample; got an empty batch")
    on_host = not is_device_array(params[-1][0])
    sizing = pass_sizing(model, params, Xc)
    n_per, c = jacobian_passes.plan(params, N, r, sizing, chunk, batch_size)
    perm = None
    if cot.kind == "rows" and not per_row and target == "embed" and N > n_per > 1:
        perm = jacobian_passes.order_by_active_rows(model, lambda s, e: forward(model, params, Xc[s:e])[1][-1], N,
                                                    n_per, on_host)
    if perm is not None:
        Xc = Xc[get_xp(params[-1][0]).asarray(perm)]

    def one_batch(bounds):
        s, e = bounds
        Z, caches = forward(model, params, Xc if (s, e) == (0, N) else Xc[s:e])
        parts = [sq_norms(model, params, Z, caches, cot.select(a, b, slice(s, e)), target, gram, per_row)
                 for a, b in jacobian_passes.ranges(r, c)]
        if per_row:
            return parts[0] if len(parts) == 1 else get_xp(Z).concatenate(parts, axis=1)
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    out = jacobian_passes.run_passes(one_batch, jacobian_passes.ranges(N, n_per), on_host=on_host)
    out = out[0] if len(out) == 1 else get_xp(out[0]).concatenate(out)
    if perm is not None:
        out = out[get_xp(out).asarray(onp.argsort(perm))]  # back to the order of X
    return out


def jacobian_blocks(model, params, Xc, target, chunk=None, batch_size=None):
    """Yield exact Jacobian blocks (n, c, D) that tile all samples and output rows, in a fixed order.

    Samples in batches of ``batch_size``, output rows in chunks of ``chunk`` (default: ``jacobian_passes.plan``'s).
    """
    chunk = checks.integer("chunk", chunk, allow_none=True)
    batch_size = checks.integer("batch_size", batch_size, allow_none=True)
    q = output_dim(model, target)
    N = Xc.shape[0]
    sizing = pass_sizing(model, params, Xc)
    n_per, c = jacobian_passes.plan(params, N, q, sizing, chunk, batch_size)
    rows = Cotangents.rows(onp.arange(q))
    for s, e in jacobian_passes.ranges(N, n_per):
        Z, caches = forward(model, params, Xc[s:e])
        for a, b in jacobian_passes.ranges(q, c):
            yield pull_back_fast(model, params, caches, Z, rows.select(a, b), target)


def jacobian_sq_norms(model, params, X, *, target="embed", chunk=None, batch_size=None, gram=True):
    """Return ||J(x_n)||_F^2 for every sample, (N,), without forming J where the structure allows.

    The same numbers as ``sum(input_jacobian(...) ** 2, axis=(1, 2))``; their mean is GC
    (docs/theory.md#geometric-complexity). Uses the savings of ``jacobian_passes``: a dense top layer without
    GEMM, only the rows of active top units (samples batched by their number of active units), and with a
    first dense layer W1 (D, h), h < D, the cotangent M (N, d_out, h) just before W1 with
    ``||J||_F^2 = sum((M @ (W1^T W1)) * M)``; ``gram=False`` forms J instead (a check). ``chunk`` = output
    coordinates per pass, ``batch_size`` = samples per pass; by default both keep a pass within
    ``jacobian_passes.MAX_PASS_ELEMENTS_*``, and host passes run in ``jacobian_passes.HOST_THREADS`` threads.
    Accumulated in the params' dtype, on their backend. X must be finite.
    """
    q = output_dim(model, target)
    Xc = checks.finite(model.check_input(X), "X")
    return batched_sq_norms(model, params, Xc, Cotangents.rows(onp.arange(q)), target, chunk, batch_size, gram)
