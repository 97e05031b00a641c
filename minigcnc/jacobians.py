"""The exact input-Jacobian engine: batched transpose-Jacobian products of a whole output space at once.

``gc.py`` says what geometric complexity is; this module computes the Jacobians it needs, exactly.

The method. For a model ``out(x) = f_L(... f_1(x))`` and a batch of N inputs,
the Jacobian rows ``e_j^T J(x_n)`` of every output coordinate j are the transpose-Jacobian products (VJPs) of
the one-hot cotangents ``e_j``. Instead of one backward pass per output coordinate, one forward pass keeps
each layer's cache (``forward``), then the identity of the output space (q rows) is pulled back through the
layers as *one* batched tensor ``T (N, q, *layer shape)``: each layer's ``jtp(params, cache, T)`` maps the q
cotangents of every sample at once, by one matrix product for dense and convolutional layers
(``pull_back``). At the input T is ``J (N, q, D)``, the inputs flattened (D = C*H*W).

Cotangents come in three kinds (``pull_back``): ``("rows", rows)`` rows of the identity shared by all
samples (exact Jacobians), ``("shared", V (r, q))`` the same r directions for every sample (directional
GC), ``("per_sample", V (N, r, q))`` (Hutchinson probes).

Three savings, all exact, when only the squared norms ``||J(x_n)||_F^2`` are wanted (``sq_norms``):

- *top dense layer*: ``E diag(d_n) W^T`` for identity rows E is ``d_n[rows, None] * W^T[rows]``, an
  elementwise product instead of a GEMM; where ``d[n, j] = 0`` (an inactive ReLU unit) row j of sample n's
  Jacobian is zero, so only each sample's nonzero rows are propagated (row compaction, ``compact=True``;
  samples are batched by their number of active units so that little padding is needed);
- *first dense layer* (the Gram saving): propagate only to the cotangent M (N, q, h) just before the first
  weight matrix W1 (D, h); then ``||J||_F^2 = sum((M @ (W1^T W1)) * M)``, h x h work per row instead of h x D
  (used when h < D; ``gram=False`` forms J instead);
- *pass planning*: samples and cotangent rows are cut into passes of at most ``MAX_PASS_ELEMENTS_*`` values
  (``plan``): on the host, cache-sized passes of a convnet run several times faster than big ones, and the
  passes run in parallel threads with single-threaded BLAS (``run_passes``).

There is no Gram route for a first convolution: ``conv conv^T`` is a convolution with the kernel
autocorrelation (O x O x (2k-1)^2), whose quadratic form costs more than the transposed convolution itself
for every 'same' stem of ``models`` (22x more for the 1 -> 16 channel stem of ``convnet``).

Public: ``input_jacobian`` (N, q, D) and ``jacobian_sq_norms`` (N,) for users; ``forward``, ``pull_back``,
``sq_norms``, ``plan``, ``batched_sq_norms``, ``jacobian_blocks``, ``run_passes`` for ``gc.py`` and the
benchmarks. Everything is written with ``ops`` primitives on the array module of ``params``, so it runs on
any backend and autograd can differentiate the norms with respect to the parameters (the GC penalty).
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as onp
from autograd.tracer import isbox

from . import checks, ops, threads
from .backend import get_xp, is_device_array, to_numpy

TARGETS = ("embed", "logits")

# Largest (samples x cotangent rows x per-sample width) one backward pass may hold (see ``plan``). On the
# host, a convolutional net's memory-bound backward pass is fastest within the CPU cache (~8 MB of float64),
# a dense net's GEMMs want more rows; a device has more memory and wants bigger kernels.
MAX_PASS_ELEMENTS_HOST = 2**22
MAX_PASS_ELEMENTS_HOST_CONV = 2**20
MAX_PASS_ELEMENTS_DEVICE = 2**27
# Threads running host passes in parallel (``run_passes``); None: the CPUs this process may use.
HOST_THREADS = None


def check_target(target):
    """Raise a ValueError unless ``target`` is 'embed' (the embedding g) or 'logits'."""
    if target not in TARGETS:
        raise ValueError(f"target must be 'embed' or 'logits'; got {target!r}")


def output_dim(model, target):
    """q, the dimension of the target space: p (embedding) or k (logits)."""
    check_target(target)
    return model.embed_dim if target == "embed" else model.n_classes


# --------------------------------------------------------------------------------------------------
# The forward pass and the pull-back of cotangents
# --------------------------------------------------------------------------------------------------
def forward(model, params, X):
    """(Z (N, p), caches, sizing): the embedding, every body layer's jtp cache, and what sizes a pass.

    sizing = (width, conv): width = the largest per-sample array a backward pass makes (an activation, or
    the im2col patch matrix Ho Wo x C k k of a convolution's transpose, bounded by 9 x the output inside
    residual blocks); conv = whether the model has convolutions (a memory-bound backward pass).
    """
    x = model.check_input(X)
    width, conv = model.input_dim, False
    caches = []
    for layer, p in zip(model.layers, params[:-1]):
        in_shape = tuple(x.shape[1:])
        x, c = layer.apply(p, x)
        caches.append(c)
        width = max(width, int(onp.prod(x.shape[1:])))
        kind = layer.info.get("kind")
        if kind == "conv" and len(in_shape) == 3:
            O, C, kh, kw = p[0].shape
            width, conv = max(width, int(onp.prod(x.shape[2:])) * C * kh * kw), True
        elif kind == "residual":  # its 3x3 convolutions are hidden inside: patches <= 9 x its output
            width, conv = max(width, 9 * int(onp.prod(x.shape[1:]))), True
    return x, caches, (width, conv)


def _identity_rows(rows, q, dtype, xp):
    """One-hot rows E (r, q) of the identity of R^q, built on the host and copied to the device once."""
    E = onp.zeros((len(rows), q), dtype=dtype)
    E[onp.arange(len(rows)), rows] = 1
    return xp.asarray(E)


def _mul(a, b):
    """a * b with an autograd-traced operand first.

    ``device_array * ArrayBox`` runs the device array's operator first, which need not know autograd's boxes
    (the strict stand-in refuses it; CuPy defers by ``__array_priority__``); ``ArrayBox * device_array``
    always works.
    """
    return b * a if isbox(b) and not isbox(a) else a * b


def _materialize(T, N, xp):
    """T (1, r, ...) -> (N, r, ...); a shared cotangent becomes one per sample (``*`` keeps it traceable)."""
    if T.shape[0] == N:
        return T
    return T * xp.ones((N,) + (1,) * (T.ndim - 1), dtype=T.dtype)


def _compact_rows(Wsel, dsel, xp):
    """The top dense layer's pulled-back identity rows without the rows that are zero: (N, r', h), or None.

    Row j of sample n is ``dsel[n, j] * W^T[j]``; where the activation derivative is 0 (inactive ReLU units,
    typically half of them) the whole row of the Jacobian is 0, so only each sample's nonzero rows are kept,
    padded with zero rows to the largest count r' of the batch. Only the sum over rows is preserved, so
    this serves squared norms, not Jacobians. None when no row can be dropped. Untraced values only.
    """
    dh = to_numpy(dsel)  # (N, r): the only host copy, to choose rows
    active = dh != 0
    r_keep = max(1, int(active.sum(axis=1).max()))
    if r_keep >= dh.shape[1]:
        return None
    order = onp.argsort(~active, axis=1, kind="stable")[:, :r_keep]  # each sample's active rows first
    weight = onp.take_along_axis(dh, order, axis=1)  # 0 on padding rows
    return xp.asarray(weight[:, :, None]) * Wsel[xp.asarray(order)]  # (N, r', h)


def pull_back(model, params, caches, Z, cot, target, first=0, compact=False):
    """Cotangents pulled back to the input of body layer ``first``: (N, r, *shape) (first=0: (N, r, D)).

    ``cot`` is one of ("rows", rows) - rows of the identity of the target space, shared by all samples -,
    ("shared", V (r, q)) - the same r cotangents for every sample - or ("per_sample", V (N, r, q)).
    ``compact``: drop identity rows that the top dense layer maps to zero; the rows then no longer
    correspond to output coordinates, only their sum of squares is kept (for ``sq_norms``).
    """
    xp = get_xp(Z)
    N, dtype = Z.shape[0], Z.dtype
    kind, V = cot
    if kind == "rows":
        q = output_dim(model, target)
        all_rows = len(V) == q and bool(onp.all(V == onp.arange(q)))
        # E W^T by a (tiny) GEMM even when E = I: a transposed view would make every later array
        # non-contiguous and each GEMM copy its input
        E = _identity_rows(V, q, dtype, xp)
        if target == "logits":  # rows of the head: E W_head^T (r, p), the same for every sample
            kind, V = "shared", ops.matmul_t(E, params[-1][0])
    elif target == "logits":
        V = ops.matmul_t(V, params[-1][0])  # (.., r, k) -> (.., r, p)
    top = len(model.layers) - 1
    T = None
    if top >= first and model.layers[top].info.get("kind") == "dense":
        W, d = params[top][0], caches[top]
        if kind == "rows":
            # (E diag(d_n)) W^T = d_n[rows, None] * W^T[rows]: an elementwise product, no GEMM
            Wsel = ops.matmul_t(E, W)  # W^T[rows]: (r, h)
            r = Wsel.shape[0]
            Wsel = ops.reshape(Wsel, (1,) + tuple(Wsel.shape))
            if d is None:
                T = _materialize(Wsel, N, xp)
            else:
                dsel = d if all_rows else ops.matmul_t(d, E)  # (N, r)
                T = _compact_rows(Wsel[0], dsel, xp) if compact and not (isbox(W) or isbox(d)) else None
                if T is None:
                    T = _mul(Wsel, ops.reshape(dsel, (N, r, 1)))
        else:  # the DenseAct jtp (V * d) W^T
            Vb = ops.reshape(V, (1,) + tuple(V.shape)) if kind == "shared" else V
            if d is not None:
                Vb = _mul(ops.reshape(d, (N, 1, d.shape[1])), Vb)
            T = _materialize(ops.matmul_t(Vb, W), N, xp)
        top -= 1
    if T is None:  # the cotangent at the embedding itself, one per sample
        if kind == "rows":
            T = _materialize(ops.reshape(E, (1,) + tuple(E.shape)), N, xp)
        elif kind == "shared":
            T = _materialize(ops.reshape(V, (1,) + tuple(V.shape)), N, xp)
        else:
            T = V
    for i in range(top, first - 1, -1):
        T = model.layers[i].jtp(params[i], caches[i], T)
    if first == 0:
        T = ops.reshape(T, (N, T.shape[1], model.input_dim))
    return T


def _dense_gram_applies(model, params):
    """The first layer is dense and narrower than the input (h < D): the Gram route does less work."""
    layer = model.layers[0]
    if layer.info.get("kind") != "dense" or "pre_linear_jtp" not in layer.info:
        return False
    W = params[0][0]
    return W.shape[1] < W.shape[0]


def sq_norms(model, params, Z, caches, cot, target, gram=True, per_row=False):
    """Per-sample squared norms ||cot_n J_n||^2: (N,) summed over the r cotangents, or (N, r) with per_row.

    Uses the first-layer Gram route when it applies and ``gram`` is true (see the module docstring).
    """
    if gram and _dense_gram_applies(model, params):
        T = pull_back(model, params, caches, Z, cot, target, first=1, compact=not per_row)  # (N, r, h)
        M = model.layers[0].info["pre_linear_jtp"](params[0], caches[0], T)  # before W1: (N, r, h)
        G = ops.gram(params[0][0])  # W1^T W1 (h, h)
        return ops.sum(ops.matmul(M, G) * M, axis=2 if per_row else (1, 2))
    J = pull_back(model, params, caches, Z, cot, target, first=0, compact=not per_row)  # (N, r, D)
    return ops.sum(J * J, axis=2 if per_row else (1, 2))


# --------------------------------------------------------------------------------------------------
# Passes: planning, batching, threads
# --------------------------------------------------------------------------------------------------
def plan(params, N, r, sizing, chunk=None, batch_size=None):
    """(samples per pass, cotangent rows per pass): samples x rows x width within the pass budget.

    ``sizing`` comes from ``forward``. ``chunk`` / ``batch_size`` fix the rows / samples per pass instead.
    Small passes are faster on the host: the arrays of a convnet's backward pass then stay in the CPU cache
    (measured: 2.5x less CPU time for convnet((1,28,28)) at ~40 rows per pass than at 4,000), while an MLP's
    GEMMs want thousands of rows (``MAX_PASS_ELEMENTS_HOST*``). Row chunks are balanced (128 rows in passes
    of 37 -> 4 x 32).
    """
    width, conv = sizing
    if is_device_array(params[-1][0]):
        budget = MAX_PASS_ELEMENTS_DEVICE
    else:
        budget = MAX_PASS_ELEMENTS_HOST_CONV if conv else MAX_PASS_ELEMENTS_HOST
    per_pass = max(1, budget // max(1, width))
    if chunk is None:
        chunk = -(-r // -(-r // per_pass))  # ceil(r / number of chunks)
    c = min(r, chunk)
    n = batch_size if batch_size is not None else max(1, per_pass // c)
    return min(N, n), c


def ranges(total, step):
    """[(start, stop), ...] cutting range(total) into pieces of ``step``."""
    return [(a, min(total, a + step)) for a in range(0, total, step)]


def identity_cotangents(q):
    """The ``cot_for`` of ``batched_sq_norms`` for the identity rows of R^q (exact norms)."""
    rows = onp.arange(q)
    return lambda s, e, a, b: ("rows", rows[a:b])


def batched_sq_norms(model, params, Xc, r, cot_for, target, chunk=None, batch_size=None, gram=True, per_row=False,
                     presort=False):
    """``sq_norms`` over sample batches (one forward pass each) and cotangent-row chunks.

    ``Xc``: inputs already checked by ``model.check_input``. ``cot_for(s, e, a, b)``: the cotangent spec of
    samples [s, e) and cotangent rows [a, b) of r. Returns (N,) (summed over the row chunks) or (N, r) with
    ``per_row``, on the params' backend. On the host the sample batches run in parallel threads
    (``run_passes``). ``presort`` (identity-row cotangents only, whose spec does not depend on the samples):
    batch samples with similar numbers of active top units together, so that row compaction pads little.
    """
    chunk = checks.integer("chunk", chunk, allow_none=True)
    batch_size = checks.integer("batch_size", batch_size, allow_none=True)
    N = Xc.shape[0]
    if N < 1:
        raise ValueError("X must hold at least one sample; got an empty batch")
    sizing = forward(model, params, Xc[:1])[2]
    n_per, c = plan(params, N, r, sizing, chunk, batch_size)
    perm = _order_by_active_rows(model, params, Xc, n_per) if presort and target == "embed" and N > n_per > 1 else None
    if perm is not None:
        Xc = Xc[get_xp(params[-1][0]).asarray(perm)]

    def one_batch(bounds):
        s, e = bounds
        Z, caches, _ = forward(model, params, Xc if (s, e) == (0, N) else Xc[s:e])
        parts = [sq_norms(model, params, Z, caches, cot_for(s, e, a, b), target, gram, per_row)
                 for a, b in ranges(r, c)]
        if per_row:
            return parts[0] if len(parts) == 1 else get_xp(Z).concatenate(parts, axis=1)
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    out = run_passes(one_batch, ranges(N, n_per), on_host=not is_device_array(params[-1][0]))
    out = out[0] if len(out) == 1 else get_xp(out[0]).concatenate(out)
    if perm is not None:
        out = out[get_xp(out).asarray(onp.argsort(perm))]  # back to the order of X
    return out


def _order_by_active_rows(model, params, Xc, n_per):
    """Sample order by the number of nonzero derivatives of a dense top layer (None: nothing to gain).

    One extra forward pass (cheap next to the q backward rows per sample).
    """
    top = len(model.layers) - 1
    if model.layers[top].info.get("kind") != "dense":
        return None

    def active_counts(bounds):
        d = forward(model, params, Xc[bounds[0]:bounds[1]])[1][top]
        return None if d is None else (to_numpy(d) != 0).sum(axis=1)

    counts = run_passes(active_counts, ranges(Xc.shape[0], n_per), on_host=not is_device_array(params[-1][0]))
    if counts[0] is None:
        return None
    counts = onp.concatenate(counts)
    return None if counts.min() == counts.max() else onp.argsort(counts, kind="stable")


def _host_threads():
    if HOST_THREADS is not None:
        return max(1, int(HOST_THREADS))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_passes(fn, tasks, on_host):
    """[fn(t) for t in tasks], in order; on the host in ``HOST_THREADS`` threads with single-threaded BLAS.

    Small cache-sized passes are what make the host fast, and multi-threaded BLAS on small GEMMs loses
    more to thread synchronisation than it gains (several times slower on a busy 2-core machine), so the
    parallelism is over passes instead: NumPy releases the GIL inside GEMMs and ufuncs. The BLAS limit
    (``threads.blas_limit``) holds for the whole process while the passes run: one thread when passes run in
    parallel, else ``threads``' automatic rule (one thread: a pass is cache-sized by ``plan``) unless
    ``$MINIGCNC_BLAS_THREADS`` says otherwise; a device backend is left alone.
    """
    workers = min(len(tasks), _host_threads()) if on_host else 1
    with threads.blas_limit(1 if workers > 1 else None, work=0, on_host=on_host):
        if workers < 2:
            return [fn(t) for t in tasks]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, tasks))


def jacobian_blocks(model, params, Xc, target, chunk=None, batch_size=None):
    """Yield exact Jacobian blocks (n, c, D) that tile all samples and output rows, in a fixed order.

    Samples in batches of ``batch_size``, output rows in chunks of ``chunk`` (default: ``plan``'s).
    """
    chunk = checks.integer("chunk", chunk, allow_none=True)
    batch_size = checks.integer("batch_size", batch_size, allow_none=True)
    q = output_dim(model, target)
    N = Xc.shape[0]
    sizing = forward(model, params, Xc[:1])[2]
    n_per, c = plan(params, N, q, sizing, chunk, batch_size)
    rows = onp.arange(q)
    for s, e in ranges(N, n_per):
        Z, caches, _ = forward(model, params, Xc[s:e])
        for a, b in ranges(q, c):
            yield pull_back(model, params, caches, Z, ("rows", rows[a:b]), target, first=0)


# --------------------------------------------------------------------------------------------------
# Exact Jacobians and their norms
# --------------------------------------------------------------------------------------------------
def input_jacobian(model, params, X, *, target="embed", chunk=None):
    """Return the exact input Jacobians J (N, q, D) of the embedding (q = p) or of the logits (q = k).

    ``J[n, j, d] = d out_j(x_n) / d x_{n,d}`` with the input flattened (D = C*H*W). One forward pass, then the
    identity rows of the output space are pulled back through the layers' batched transpose-Jacobian
    products; ``chunk`` = output coordinates per pass (default all) bounds the memory of a pass to
    N x chunk x (widest activation). On the backend of ``params``. X must be finite.
    """
    q = output_dim(model, target)
    chunk = checks.integer("chunk", chunk, allow_none=True)
    Xc = checks.finite(model.check_input(X), "X")
    Z, caches, _ = forward(model, params, Xc)
    rows = onp.arange(q)
    parts = [pull_back(model, params, caches, Z, ("rows", rows[a:b]), target) for a, b in ranges(q, chunk or q)]
    return parts[0] if len(parts) == 1 else get_xp(Z).concatenate(parts, axis=1)


def jacobian_sq_norms(model, params, X, *, target="embed", chunk=None, batch_size=None, gram=True):
    """Return ||J(x_n)||_F^2 for every sample, (N,), without forming J where the structure allows.

    Its mean is GC (docs/theory.md#geometric-complexity). Uses the savings of the module docstring: a dense top layer without
    GEMM, only the rows of active top units (samples batched by their number of active units), and with a
    first dense layer W1 (D, h), h < D, the cotangent M (N, q, h) just before W1 with
    ``||J||_F^2 = sum((M @ (W1^T W1)) * M)``; ``gram=False`` forms J instead (a check). ``chunk`` = output
    coordinates per pass, ``batch_size`` = samples per pass; by default both keep a pass within
    ``MAX_PASS_ELEMENTS_*``, and host passes run in ``HOST_THREADS`` threads. Accumulated in the params'
    dtype, on their backend. X must be finite.
    """
    q = output_dim(model, target)
    Xc = checks.finite(model.check_input(X), "X")
    return batched_sq_norms(model, params, Xc, q, identity_cotangents(q), target, chunk, batch_size, gram,
                            presort=True)
