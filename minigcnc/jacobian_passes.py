"""The fast passes of the exact-Jacobian engine: the squared norms ``sum(J**2)`` in cache-sized passes, in threads,
with three exact savings.

``jacobians.py`` defines the Jacobians (``forward``, then identity cotangents pulled back through every layer's
``jtp``); its ``jacobian_sq_norms`` (the exact GC of ``gc.py``) computes the same numbers as ``sum(J**2)`` but
calls on this module for what makes it fast. Nothing here changes a result beyond round-off:

- *pass planning* (``sizing``, ``plan``, ``ranges``): samples and cotangent rows are cut into passes of at most
  ``MAX_PASS_ELEMENTS_*`` values. On the host, cache-sized passes of a convnet run several times faster than big
  ones; a dense net's GEMMs want more rows; a device wants big kernels.
- *threads* (``run_passes``): host passes run in parallel threads with single-threaded BLAS.
- *the top dense layer without a GEMM* (``top_dense_jtp``): ``E diag(d_n) W^T`` for identity rows E is
  ``d_n[rows, None] * W^T[rows]``, an elementwise product.
- *row compaction* (``compact_rows``, ``order_by_active_rows``): where ``d[n, j] = 0`` (an inactive ReLU unit)
  row j of sample n's Jacobian is zero, so for squared norms only each sample's nonzero rows are propagated;
  samples are batched by their number of active units so that little padding is needed.
- *the Gram route* (``dense_gram_applies``, ``gram_sq_norms``): with a first dense layer W1 (D, h), h < D, the
  rows are pulled back only to the cotangent M (N, d_out, h) just before W1, and
  ``||J||_F^2 = sum((M @ (W1^T W1)) * M)``: h x h work per row instead of h x D.

There is no Gram route for a first convolution: ``conv conv^T`` is a convolution with the kernel autocorrelation
(O x O x (2k-1)^2), whose quadratic form costs more than the transposed convolution itself for every 'same' stem
of ``models`` (many times more for the 1 -> 16 channel stem of ``convnet``).

This module does not import ``jacobians`` (which calls it): a function that needs a forward pass takes it as
an argument. Written with ``ops`` primitives on the array module of the params, so it runs on any backend and
autograd can differentiate through it (the GC penalty).
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as onp
from .autograd_internals import isbox

from . import ops, threads
from .backend import get_xp, is_device_array, to_numpy

# Largest (samples x cotangent rows x per-sample width) one backward pass may hold (see ``plan``). On the
# host, a convolutional net's memory-bound backward pass is fastest within the CPU cache (~8 MB of float64),
# a dense net's GEMMs want more rows; a device has more memory and wants bigger kernels.
MAX_PASS_ELEMENTS_HOST = 2**22
MAX_PASS_ELEMENTS_HOST_CONV = 2**20
MAX_PASS_ELEMENTS_DEVICE = 2**27
# Threads running host passes in parallel (``run_passes``); None: the CPUs this process may use.
HOST_THREADS = None


# --------------------------------------------------------------------------------------------------
# Pass planning and threads
# --------------------------------------------------------------------------------------------------
def sizing(model, params, shapes):
    """(width, conv), what sizes a pass of ``plan``, from the per-sample ``shapes`` of the input and of every body
    layer's output.

    width = the largest per-sample array a backward pass makes (an activation, or the im2col patch matrix
    Ho Wo x C k k of a convolution's transpose, bounded by 9 x the output inside residual blocks); conv = whether
    the model has convolutions (a memory-bound backward pass).
    """
    width, conv = model.input_dim, False
    for layer, p, in_shape, out_shape in zip(model.layers, params, shapes, shapes[1:]):
        width = max(width, int(onp.prod(out_shape)))
        if layer.kind == "conv" and len(in_shape) == 3:
            O, C, kh, kw = p[0].shape
            width, conv = max(width, int(onp.prod(out_shape[1:])) * C * kh * kw), True
        elif layer.kind == "residual":  # its 3x3 convolutions are hidden inside: patches <= 9 x its output
            width, conv = max(width, 9 * int(onp.prod(out_shape))), True
    return width, conv


def plan(params, N, r, sizing, chunk=None, batch_size=None):
    """(samples per pass, cotangent rows per pass): samples x rows x width within the pass budget.

    ``sizing`` comes from ``jacobians.pass_sizing``. ``chunk`` / ``batch_size`` fix the rows / samples per pass
    instead. Small passes are faster on the host: the arrays of a convnet's backward pass then stay in the CPU
    cache (``python -m minigcnc.bench`` times it), while an MLP's
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


# --------------------------------------------------------------------------------------------------
# The top dense layer without a GEMM, and row compaction
# --------------------------------------------------------------------------------------------------
def _mul(a, b):
    """a * b with an autograd-traced operand first.

    ``device_array * ArrayBox`` runs the device array's operator first, which need not know autograd's boxes
    (the strict stand-in refuses it; CuPy defers by ``__array_priority__``); ``ArrayBox * device_array``
    always works.
    """
    return b * a if isbox(b) and not isbox(a) else a * b


def per_sample(T, N, xp):
    """T (1, r, ...) -> (N, r, ...): a cotangent shared by all samples becomes one per sample (``*`` keeps it
    traceable); T (N, r, ...) is returned as it is."""
    if T.shape[0] == N:
        return T
    return T * xp.ones((N,) + (1,) * (T.ndim - 1), dtype=T.dtype)


def top_dense_jtp(kind, V, all_rows, W, d, N, compact):
    """The jtp of a top dense layer (weights W (h, p), activation derivative d (N, p) or None): (N, r', h).

    ``kind``, ``V``: the cotangents at the embedding, "rows" with V = E (r, p) rows of the identity
    (``all_rows``: all p of them, in order), "shared" V (r, p) or "per_sample" V (N, r, p). For identity rows,
    ``(E diag(d_n)) W^T = d_n[rows, None] * W^T[rows]``, an elementwise product instead of a GEMM; with
    ``compact``, also without the rows that are zero (``compact_rows``; then r' <= r and only the sum of squares
    over the rows is kept). Otherwise the layer's own jtp ``(V * d) W^T``, with shared V broadcast.
    """
    xp = get_xp(W)
    if kind == "rows":
        # E W^T by a (tiny) GEMM even when E = I: a transposed view would make every later array
        # non-contiguous and each GEMM copy its input
        Wsel = ops.matmul_t(V, W)  # W^T[rows]: (r, h)
        r = Wsel.shape[0]
        Wsel = ops.reshape(Wsel, (1,) + tuple(Wsel.shape))
        if d is None:
            return per_sample(Wsel, N, xp)
        dsel = d if all_rows else ops.matmul_t(d, V)  # (N, r)
        T = compact_rows(Wsel[0], dsel, xp) if compact and not (isbox(W) or isbox(d)) else None
        return _mul(Wsel, ops.reshape(dsel, (N, r, 1))) if T is None else T
    Vb = ops.reshape(V, (1,) + tuple(V.shape)) if kind == "shared" else V
    if d is not None:
        Vb = _mul(ops.reshape(d, (N, 1, d.shape[1])), Vb)
    return per_sample(ops.matmul_t(Vb, W), N, xp)


def compact_rows(Wsel, dsel, xp):
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


def order_by_active_rows(model, top_derivative, N, n_per, on_host):
    """Sample order by the number of nonzero derivatives of a dense top layer (None: nothing to gain).

    ``top_derivative(s, e)``: that layer's cache (its activation derivative d, or None) for samples [s, e), one
    extra forward pass (cheap next to the d_out backward rows per sample), in passes of ``n_per`` samples.
    """
    if model.layers[-1].kind != "dense":
        return None

    def active_counts(bounds):
        d = top_derivative(*bounds)
        return None if d is None else (to_numpy(d) != 0).sum(axis=1)

    counts = run_passes(active_counts, ranges(N, n_per), on_host=on_host)
    if counts[0] is None:
        return None
    counts = onp.concatenate(counts)
    return None if counts.min() == counts.max() else onp.argsort(counts, kind="stable")


# --------------------------------------------------------------------------------------------------
# The Gram route
# --------------------------------------------------------------------------------------------------
def dense_gram_applies(model, params):
    """The first layer is dense and narrower than the input (h < D): the Gram route does less work."""
    layer = model.layers[0]
    if layer.kind != "dense" or layer.pre_linear_jtp is None:
        return False
    W = params[0][0]
    return W.shape[1] < W.shape[0]


def gram_sq_norms(layer, p, cache, T, per_row=False):
    """Squared norms of the rows of T (N, r, h), pulled back to the output of a first dense ``layer``, once
    pulled through it: ``sum((M @ (W1^T W1)) * M)`` with M the cotangent before W1; (N,), or (N, r) with per_row."""
    M = layer.pre_linear_jtp(p, cache, T)  # before W1: (N, r, h)
    G = ops.gram(p[0])  # W1^T W1 (h, h)
    return ops.sum(ops.matmul(M, G) * M, axis=2 if per_row else (1, 2))
