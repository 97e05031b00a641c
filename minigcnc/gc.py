"""Geometric complexity (GC): exact per-sample input-Jacobian norms, unbiased estimators, and the GC regularizer.

For a map ``g: R^D -> R^p`` and a sample ``S = {x_1..x_N}`` (PAPER.md section 2; Dherin et al. 2022,
arXiv 2209.13083; Munn, Dherin & Gonzalvo 2024, arXiv 2405.15706):

    GC(g, S) = (1/N) * sum_i || J_g(x_i) ||_F^2,        J_g(x) = dg/dx   (p x D)

a discrete Dirichlet energy: the mean over samples of the plain sum of all squared Jacobian entries (no
division by p or D). ``target="embed"`` measures the embedding g (the penultimate features, the paper's GC);
``target="logits"`` measures the logits (Dherin et al.'s logit GC). Images are flattened: D = C*H*W.

Exact Jacobians (DESIGN.md "Exact Jacobians"): one forward pass with caches, then the identity of the output
space, ``(N, q, p)``, is pushed backwards through each layer's batched transpose-Jacobian product (``jtp``) as
one tensor, never one backward pass per output element. Three structural savings, all exact:

- *top dense layer*: the identity rows through ``T diag(d) W^T`` are ``d[:, rows, None] * W^T[rows]``, an
  elementwise product instead of a GEMM; and where ``d[n, j] = 0`` (an inactive ReLU unit) row j of sample
  n's Jacobian is zero, so for norms only each sample's nonzero rows are propagated (``_compact_rows``);
- *first dense layer* (the Gram saving): propagate only to the cotangent M (N, q, h) just before the first
  weight matrix W1 (D, h); then ``||J||_F^2 = sum((M @ (W1^T W1)) * M)``, h x h work per row instead of h x D
  (used when h < D).
- *first convolution*: the analogous identity ``||J||^2 = sum_y m_y^T (W_mat W_mat^T) m_y`` (O x O per output
  position y, W_mat the (O, C k k) kernel matrix) holds exactly only when patches neither overlap nor touch
  the padding (stride >= kernel, padding 0), and saves work when O < C k^2 (patch-embedding stems):
  ``_first_conv_gram`` uses it then. For overlapping 'same' convolutions ``conv conv^T`` is a convolution
  with the kernel autocorrelation (O x O x (2k-1)^2) only away from the cropped border, and its quadratic
  form costs ~O^2 (2k-1)^2 / 2 per position against O C k^2 for the transposed convolution itself: more
  whenever O > 2 C k^2 / (2k-1)^2 (O > 0.72 C for 3x3 kernels; 22x more for the 1 -> 16 channel stem of
  ``convnet``), i.e. for every stem here. The direct route is used there: for such stems the input space
  is already the smaller side, which is all the Gram saving exploits.

Public functions: ``input_jacobian`` (N, q, D), ``jacobian_sq_norms`` (N,), ``geometric_complexity`` (float;
``gc_value`` keeps the device scalar), the estimators' exact variances ``gc_estimator_variance``, ``class_gc``
(k,), ``directional_gc`` (k, k), and the differentiable regularizer ``gc_penalty`` / ``make_gc_penalty``.

Everything is written with the array module of the inputs (``get_xp``) and the primitives of ``ops``, so it
runs on the backend of ``params`` and autograd can differentiate the penalty with respect to the parameters.
"""
import contextlib
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as onp
from autograd.tracer import isbox

from . import ops
from .backend import get_xp, is_device_array, to_numpy

TARGETS = ("embed", "logits")
METHODS = ("exact", "subset", "mask", "outputs", "hutchinson")
PENALTY_METHODS = ("exact", "hutchinson")
PROBE_DISTS = ("gaussian", "rademacher")

# Largest (samples x cotangent rows x per-sample width) one backward pass may hold (see ``_plan``). On the
# host, a convolutional net's memory-bound backward pass is fastest within the CPU cache (~8 MB of float64),
# a dense net's GEMMs want more rows; a device has more memory and wants bigger kernels.
MAX_PASS_ELEMENTS_HOST = 2**22
MAX_PASS_ELEMENTS_HOST_CONV = 2**20
MAX_PASS_ELEMENTS_DEVICE = 2**27
# Threads running host passes in parallel (``_run_passes``); None: the CPUs this process may use.
HOST_THREADS = None


# --------------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------------
def _check_target(target):
    if target not in TARGETS:
        raise ValueError(f"target must be 'embed' or 'logits'; got {target!r}")


def _check_positive_int(name, value, allow_none=True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, onp.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}; got {value!r}")
    return int(value)


def _as_rng(rng, method):
    """A numpy Generator from ``rng`` (Generator or int seed); random methods refuse None (no hidden seed)."""
    if isinstance(rng, onp.random.Generator):
        return rng
    if isinstance(rng, (int, onp.integer)) and not isinstance(rng, bool):
        return onp.random.default_rng(int(rng))
    if rng is None:
        raise ValueError(
            f"method={method!r} is random and needs rng= (a numpy.random.Generator or an int seed); got None. "
            "There is no default seed, so that repeated estimates are never silently identical."
        )
    raise ValueError(f"rng must be a numpy.random.Generator or an int seed; got {type(rng).__name__}")


def _output_dim(model, target):
    _check_target(target)
    return model.embed_dim if target == "embed" else model.n_classes


# --------------------------------------------------------------------------------------------------
# Forward pass and the backward propagation of cotangents
# --------------------------------------------------------------------------------------------------
def _forward(model, params, X):
    """(Z (N, p), caches, (width, conv)): the embedding, the jtp caches, and what sizes a pass (``_plan``).

    width = the largest per-sample array a backward pass makes: an activation, or the im2col patch matrix
    (Ho Wo x C k k) of a convolution's transpose (bounded by 9 x the output inside residual blocks);
    conv = whether the model has convolutions (a memory-bound backward pass).
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


def _pull(model, params, caches, Z, cot, target, first, compact=False):
    """Cotangents pulled back to the input of body layer ``first``: (N, r, *shape) (first=0: (N, r, D)).

    ``cot`` is one of ("rows", rows) - rows of the identity of the target space, shared by all samples -,
    ("shared", V (r, q)) - the same r cotangents for every sample - or ("per_sample", V (N, r, q)).
    ``compact``: drop identity rows that the top dense layer maps to zero (``_compact_rows``); the rows
    then no longer correspond to output coordinates, only their sum of squares is kept.
    """
    xp = get_xp(Z)
    N, dtype = Z.shape[0], Z.dtype
    kind, V = cot
    if kind == "rows":
        q = _output_dim(model, target)
        all_rows = len(V) == q and bool(onp.all(V == onp.arange(q)))
        # E W^T by a (tiny) GEMM even when E = I: a transposed view would make every later array
        # non-contiguous and each GEMM copy its input
        E = _identity_rows(V, q, dtype, xp)
        if target == "logits":  # rows of the head: E W_head^T (r, p), the same for every sample
            kind, V = "shared", ops.matmul_t(E, params[-1][0])
    elif target == "logits":
        V = ops.matmul_t(V, params[-1][0])  # (.., r, k) -> (.., r, p)
    L = len(model.layers)
    top = L - 1
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


def _first_conv_gram(model, params):
    """(stride, padding, kernel) when the first layer is a convolution whose Gram route is exact and cheaper.

    A conv maps each output position's input patch x_y (C k k) by W_mat (O, C k k). When patches do not
    overlap (stride >= kernel) and contain no padding (padding 0), the transpose Jacobian scatters every
    position's cotangent m_y (O) to its own patch, so ``||J||^2 = sum_y m_y^T (W_mat W_mat^T) m_y``: O x O work
    per position instead of O x C k^2 (plus the scatter), a saving when O < C k^2 (patch-embedding stems).
    It needs the layer to publish ``stride``, ``padding``, ``kernel`` and ``pre_linear_jtp`` in ``info``.
    """
    layer = model.layers[0]
    info = layer.info
    if info.get("kind") != "conv" or not all(k in info for k in ("stride", "padding", "kernel", "pre_linear_jtp")):
        return None
    s, pad, k = info["stride"], info["padding"], info["kernel"]
    O, C = params[0][0].shape[:2]
    if pad == 0 and s >= k and O < C * k * k:
        return s, pad, k
    return None


def _sq_norms(model, params, Z, caches, cot, target, gram=True, per_row=False):
    """Per-sample squared norms ||cot_n J_n||^2: (N,) summed over the r cotangents, or (N, r) with per_row.

    Uses the first-layer Gram route when it applies and ``gram`` is true (see the module docstring).
    """
    if gram and _dense_gram_applies(model, params):
        T = _pull(model, params, caches, Z, cot, target, first=1, compact=not per_row)  # (N, r, h)
        M = model.layers[0].info["pre_linear_jtp"](params[0], caches[0], T)  # before W1: (N, r, h)
        G = ops.gram(params[0][0])  # W1^T W1 (h, h)
        return ops.sum(ops.matmul(M, G) * M, axis=2 if per_row else (1, 2))
    if gram and _first_conv_gram(model, params) is not None:
        T = _pull(model, params, caches, Z, cot, target, first=1, compact=not per_row)  # (N, r, O, Ho, Wo)
        M = model.layers[0].info["pre_linear_jtp"](params[0], caches[0], T)
        W = params[0][0]
        Wm = ops.reshape(W, (W.shape[0], -1))  # (O, C k k)
        G = ops.gram(ops.transpose(Wm, (1, 0)))  # W_mat W_mat^T (O, O)
        Mr = ops.transpose(M, (0, 1, 3, 4, 2))  # (N, r, Ho, Wo, O)
        return ops.sum(ops.matmul(Mr, G) * Mr, axis=(2, 3, 4) if per_row else (1, 2, 3, 4))
    J = _pull(model, params, caches, Z, cot, target, first=0, compact=not per_row)  # (N, r, D)
    return ops.sum(J * J, axis=2 if per_row else (1, 2))


def _plan(params, N, r, sizing, chunk, batch_size):
    """(samples per pass, cotangent rows per pass): samples x rows x width within the pass budget.

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


def _ranges(total, step):
    return [(a, min(total, a + step)) for a in range(0, total, step)]


def _batched(model, params, Xc, r, cot_for, target, chunk, batch_size, gram=True, per_row=False, presort=False):
    """``_sq_norms`` over sample batches (one forward pass each) and cotangent-row chunks.

    ``cot_for(s, e, a, b)``: the cotangent spec of samples [s, e) and cotangent rows [a, b) of r.
    Returns (N,) (summed over the row chunks) or (N, r) with ``per_row``; on the params' backend.
    On the host the sample batches run in parallel threads (``_run_passes``). ``presort`` (identity-row
    cotangents only, whose spec does not depend on the samples): batch samples with similar numbers of
    active top units together, so that ``_compact_rows`` pads little.
    """
    chunk = _check_positive_int("chunk", chunk)
    batch_size = _check_positive_int("batch_size", batch_size)
    N = Xc.shape[0]
    if N < 1:
        raise ValueError("X must hold at least one sample; got an empty batch")
    sizing = _forward(model, params, Xc[:1])[2]
    n_per, c = _plan(params, N, r, sizing, chunk, batch_size)
    perm = _order_by_active_rows(model, params, Xc, n_per) if presort and target == "embed" and N > n_per > 1 else None
    if perm is not None:
        Xc = Xc[get_xp(params[-1][0]).asarray(perm)]

    def one_batch(bounds):
        s, e = bounds
        Z, caches, _ = _forward(model, params, Xc if (s, e) == (0, N) else Xc[s:e])
        parts = [_sq_norms(model, params, Z, caches, cot_for(s, e, a, b), target, gram, per_row)
                 for a, b in _ranges(r, c)]
        if per_row:
            return parts[0] if len(parts) == 1 else get_xp(Z).concatenate(parts, axis=1)
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    out = _run_passes(one_batch, _ranges(N, n_per), on_host=not is_device_array(params[-1][0]))
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
        d = _forward(model, params, Xc[bounds[0]:bounds[1]])[1][top]
        return None if d is None else (to_numpy(d) != 0).sum(axis=1)

    counts = _run_passes(active_counts, _ranges(Xc.shape[0], n_per), on_host=not is_device_array(params[-1][0]))
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


def _run_passes(fn, tasks, on_host):
    """[fn(t) for t in tasks]; on the host in ``_host_threads()`` threads with single-threaded BLAS.

    Small cache-sized passes are what make the host fast, and multi-threaded BLAS on small GEMMs loses
    more to thread synchronisation than it gains (several times slower on a busy 2-core machine), so the
    parallelism is over passes instead: NumPy releases the GIL inside GEMMs and ufuncs. The BLAS limit
    (threadpoolctl) holds for the whole process while the passes run.
    """
    workers = min(len(tasks), _host_threads()) if on_host else 1
    if workers < 2:
        return [fn(t) for t in tasks]
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it BLAS keeps its own threads
        limit = contextlib.nullcontext()
    else:
        limit = threadpool_limits(1, user_api="blas")
    with limit, ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, tasks))


def _all_rows(q):
    rows = onp.arange(q)
    return lambda s, e, a, b: ("rows", rows[a:b])


# --------------------------------------------------------------------------------------------------
# Exact Jacobians and their norms
# --------------------------------------------------------------------------------------------------
def input_jacobian(model, params, X, *, target="embed", chunk=None):
    """Return the exact input Jacobians J (N, q, D) of the embedding (q = p) or of the logits (q = k).

    ``J[n, j, d] = d out_j(x_n) / d x_{n,d}`` with the input flattened (D = C*H*W). One forward pass, then the
    identity rows of the output space are pushed back through the layers' batched transpose-Jacobian
    products; ``chunk`` = output coordinates per pass (default all) bounds the memory of a pass to
    N x chunk x (widest activation). On the backend of ``params``.
    """
    q = _output_dim(model, target)
    chunk = _check_positive_int("chunk", chunk)
    Z, caches, _ = _forward(model, params, X)
    rows = onp.arange(q)
    parts = [_pull(model, params, caches, Z, ("rows", rows[a:b]), target, first=0) for a, b in _ranges(q, chunk or q)]
    return parts[0] if len(parts) == 1 else get_xp(Z).concatenate(parts, axis=1)


def jacobian_sq_norms(model, params, X, *, target="embed", chunk=None, batch_size=None, gram=True):
    """Return ||J(x_n)||_F^2 for every sample, (N,), without forming J where the structure allows.

    Its mean is GC (PAPER.md section 2). Uses the savings of the module docstring: a dense top layer without
    GEMM, only the rows of active top units (samples batched by their number of active units), and with a
    first dense layer W1 (D, h), h < D, the cotangent M (N, q, h) just before W1 with
    ``||J||_F^2 = sum((M @ (W1^T W1)) * M)``; ``gram=False`` forms J instead (a check). ``chunk`` = output
    coordinates per pass, ``batch_size`` = samples per pass; by default both keep a pass within
    ``MAX_PASS_ELEMENTS_*``, and host passes run in ``HOST_THREADS`` threads. Accumulated in the params'
    dtype, on their backend.
    """
    q = _output_dim(model, target)
    Xc = model.check_input(X)
    return _batched(model, params, Xc, q, _all_rows(q), target, chunk, batch_size, gram, presort=True)


# --------------------------------------------------------------------------------------------------
# GC and its unbiased estimators
# --------------------------------------------------------------------------------------------------
_LEVELS = {"exact": (), "subset": ("n",), "mask": ("q",), "outputs": ("m",), "hutchinson": ("probes", "dist")}


def _check_levels(method, N, p, n, q, m, probes, dist):
    """Validate ``method`` and its level parameter; returns nothing, raises ValueError naming the parameter."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(repr(x) for x in METHODS)}; got {method!r}")
    given = {"n": n, "q": q, "m": m, "probes": probes, "dist": dist}
    extra = [k for k, v in given.items() if v is not None and k not in _LEVELS[method]]
    if extra:
        uses = ", ".join(f"{k}=" for k in _LEVELS[method]) or "no level parameter"
        got = ", ".join(f"{k}={given[k]!r}" for k in extra)
        raise ValueError(f"method={method!r} takes {uses}; got {got}")
    if method == "subset":
        if n is None:
            raise ValueError(f"method='subset' needs n= (samples to draw without replacement, 1..N={N})")
        _check_positive_int("n", n, allow_none=False)
        if n > N:
            raise ValueError(f"n must be at most the number of samples N={N} (drawn without replacement); got n={n}")
    elif method == "mask":
        if q is None:
            raise ValueError("method='mask' needs q= (the probability of keeping each Jacobian entry, in (0, 1])")
        ok = isinstance(q, (int, float, onp.integer, onp.floating)) and not isinstance(q, bool)
        if not ok or not math.isfinite(float(q)) or not 0 < float(q) <= 1:
            raise ValueError(f"q must be a keep probability in (0, 1]; got q={q!r}")
    elif method == "outputs":
        if m is None:
            raise ValueError(f"method='outputs' needs m= (output coordinates to draw, 1..{p})")
        if isinstance(m, bool) or not isinstance(m, (int, onp.integer)) or not 1 <= m <= p:
            raise ValueError(f"m must be an integer in [1, {p}] (output coordinates to draw of the {p}); got m={m!r}")
    elif method == "hutchinson":
        if probes is not None:
            _check_positive_int("probes", probes, allow_none=False)
        if dist is not None and dist not in PROBE_DISTS:
            raise ValueError(f"dist must be 'gaussian' or 'rademacher'; got dist={dist!r}")


def _probes(rng, shape, dist, dtype, xp):
    """Probe vectors v with E[v v^T] = I, drawn on the host (one seed, same numbers on every backend)."""
    if dist == "rademacher":
        V = rng.integers(0, 2, size=shape) * 2.0 - 1.0
    else:
        V = rng.standard_normal(shape)
    return xp.asarray(V.astype(dtype))


def gc_value(model, params, X, *, method="exact", target="embed", rng=None, n=None, q=None, m=None, probes=None,
             dist=None, chunk=None, batch_size=None):
    """Return GC or an unbiased estimate of it as a 0-d array on the params' backend (no host transfer).

    Same arguments as ``geometric_complexity`` (which returns this value as a Python float).
    """
    p = _output_dim(model, target)
    Xc = model.check_input(X)
    N = Xc.shape[0]
    _check_levels(method, N, p, n, q, m, probes, dist)
    if method == "exact":
        return ops.mean(_batched(model, params, Xc, p, _all_rows(p), target, chunk, batch_size, presort=True))
    gen = _as_rng(rng, method)
    W = params[-1][0]
    xp = get_xp(W)
    if method == "subset":
        idx = onp.sort(gen.choice(N, size=n, replace=False))
        Xs = Xc[xp.asarray(idx)]
        return ops.mean(_batched(model, params, Xs, p, _all_rows(p), target, chunk, batch_size, presort=True))
    if method == "outputs":
        rows = onp.sort(gen.choice(p, size=m, replace=False))
        norms = _batched(model, params, Xc, m, lambda s, e, a, b: ("rows", rows[a:b]), target, chunk, batch_size,
                         presort=True)
        return ops.mean(norms) * (p / m)
    if method == "hutchinson":
        k = 1 if probes is None else int(probes)
        V = _probes(gen, (N, k, p), dist, W.dtype, xp)  # (N, probes, p)
        norms = _batched(model, params, Xc, k, lambda s, e, a, b: ("per_sample", V[s:e, a:b]), target, chunk,
                         batch_size)
        return ops.mean(norms) / k
    # mask: keep each entry of J independently with probability q; sum the kept squares, divide by q
    total = None
    for J in _jacobian_blocks(model, params, Xc, target, chunk, batch_size):
        keep = xp.asarray((gen.random(J.shape) < q).astype(J.dtype))
        part = ops.sum(J * J * keep)
        total = part if total is None else total + part
    return total / (float(q) * N)


def _jacobian_blocks(model, params, Xc, target, chunk, batch_size):
    """Yield exact Jacobian blocks (n, c, D) that tile all samples and output rows, in a fixed order."""
    chunk = _check_positive_int("chunk", chunk)
    batch_size = _check_positive_int("batch_size", batch_size)
    q = _output_dim(model, target)
    N = Xc.shape[0]
    sizing = _forward(model, params, Xc[:1])[2]
    n_per, c = _plan(params, N, q, sizing, chunk, batch_size)
    rows = onp.arange(q)
    for s, e in _ranges(N, n_per):
        Z, caches, _ = _forward(model, params, Xc[s:e])
        for a, b in _ranges(q, c):
            yield _pull(model, params, caches, Z, ("rows", rows[a:b]), target, first=0)


def geometric_complexity(model, params, X, *, method="exact", target="embed", rng=None, n=None, q=None, m=None,
                         probes=None, dist=None, chunk=None, batch_size=None):
    """Return the geometric complexity GC(g, X) = (1/N) sum_i ||J_g(x_i)||_F^2, exact or estimated, as a float.

    PAPER.md section 2 (Dherin et al. 2022; Munn et al. 2024, Figure 2 for the estimators). q below is the
    output dimension (p for target="embed", k for "logits"). Each method is an unbiased estimator of GC;
    ``gc_estimator_variance`` computes the variances given here:

    - ``"exact"``: the mean of ``jacobian_sq_norms``.
    - ``"subset"``, ``n=``: the mean of ||J||^2 over n samples drawn without replacement.
      Var = (1 - n/N) S^2 / n, S^2 the sample variance (ddof 1) of the N per-sample norms.
    - ``"mask"``, ``q=`` in (0, 1]: each entry of J kept independently with probability q (B ~ Bernoulli(q)),
      estimate (1/(q N)) sum_{i,j,d} B_ijd J_ijd^2. Var = (1 - q)/q * sum_{i,j,d} J_ijd^4 / N^2.
    - ``"outputs"``, ``m=`` in [1, q]: m output coordinates drawn uniformly without replacement (the same for
      every sample), estimate (q/m) sum_{j picked} a_j with a_j = (1/N) sum_i ||grad_x out_j(x_i)||^2; only the
      m picked rows are propagated. Var = q^2 (1 - m/q) s_a^2 / m (finite population), s_a^2 the variance
      (ddof 1) of the q values a_j.
    - ``"hutchinson"``, ``probes=`` (default 1), ``dist=`` "gaussian" (default) | "rademacher": for each
      sample the mean over independent probes v (E v v^T = I) of ||v^T J||^2, propagating (N, probes, q)
      cotangents. Per sample and probe Var = 2 ||J J^T||_F^2 (Gaussian) or 2 (||J J^T||_F^2 - sum_j
      (J J^T)_jj^2) (Rademacher); the estimate's variance is their sum over samples / (N^2 probes).

    ``rng``: a numpy Generator or an int seed, required by the random methods: there is no default seed,
    because identical "random" estimates on every call would mislead (e.g. averaging repeated draws).
    Draws are made on the host, so a seed gives the same draws on every backend ("mask" also needs the same
    ``chunk``/``batch_size``). ``chunk`` / ``batch_size``: output rows / samples per pass (memory only).
    """
    return float(to_numpy(gc_value(model, params, X, method=method, target=target, rng=rng, n=n, q=q, m=m,
                                   probes=probes, dist=dist, chunk=chunk, batch_size=batch_size)))


def gc_estimator_variance(model, params, X, *, method, target="embed", n=None, q=None, m=None, probes=None,
                          dist=None):
    """Return the exact variance (float) of one draw of ``geometric_complexity(..., method=method)``.

    The formulas are those listed in ``geometric_complexity`` ("exact": 0). Forms the full J (N, q, D) on the
    host, so it is meant for small problems (tests, error bars).
    """
    p = _output_dim(model, target)
    Xc = model.check_input(X)
    N = Xc.shape[0]
    _check_levels(method, N, p, n, q, m, probes, dist)
    if method == "exact":
        return 0.0
    J = to_numpy(input_jacobian(model, params, Xc, target=target)).astype(onp.float64)  # (N, q, D)
    if method == "subset":
        s = (J ** 2).sum(axis=(1, 2))
        return float((1 - n / N) * s.var(ddof=1) / n) if N > 1 else 0.0
    if method == "mask":
        return float((1 - q) / q * (J ** 4).sum() / N ** 2)
    if method == "outputs":
        a = (J ** 2).sum(axis=2).mean(axis=0)  # (q,)
        return float(p ** 2 * (1 - m / p) * a.var(ddof=1) / m) if p > 1 else 0.0
    K = onp.matmul(J, J.transpose(0, 2, 1))  # J J^T per sample: (N, q, q)
    per = 2 * (K ** 2).sum(axis=(1, 2))
    if dist == "rademacher":
        per = per - 2 * (onp.diagonal(K, axis1=1, axis2=2) ** 2).sum(axis=1)
    return float(per.sum() / (N ** 2 * (1 if probes is None else probes)))


# --------------------------------------------------------------------------------------------------
# Per-class and directional GC
# --------------------------------------------------------------------------------------------------
def _labels(y, N):
    y = to_numpy(y)
    if y.ndim != 1 or len(y) != N:
        raise ValueError(f"y must be a 1-D array with one label per sample of X ({N}); got shape {y.shape}")
    return y


def class_gc(model, params, X, y, *, target="embed", chunk=None, batch_size=None):
    """Return GC_c = GC(g, S_c) for every class c (classes = sorted unique y) as a host array (k,).

    PAPER.md section 2 ("class GC"): one ``jacobian_sq_norms`` pass over X, then the mean within each class.
    """
    Xc = model.check_input(X)
    y = _labels(y, Xc.shape[0])
    sq = to_numpy(jacobian_sq_norms(model, params, Xc, target=target, chunk=chunk, batch_size=batch_size))
    return onp.array([sq[y == c].mean() for c in onp.unique(y)])


def directional_gc(model, params, X, y, means, *, batch_size=None):
    """Return dir (k, k) with dir[i, j] = mean over class-i samples of ||J_g(x)^T u_ij||^2 (diagonal 0).

    ``u_ij = (mu_j - mu_i) / ||mu_j - mu_i||`` with ``means`` (k, p) the class means in sorted-label order.
    The directional GC of the tighter NCC bound (PAPER.md section 4, ``bounds.ncc_error_bound_directional_gc``):
    for class i its k directions (u_ii = 0) are propagated as k shared cotangents. Host array.
    """
    Xc = model.check_input(X)
    y = _labels(y, Xc.shape[0])
    classes = onp.unique(y)
    k, p = len(classes), model.embed_dim
    W = params[-1][0]
    xp = get_xp(W)
    mu = to_numpy(means).astype(onp.float64)
    if mu.shape != (k, p):
        raise ValueError(f"means must have shape (k, p) = ({k}, {p}): one row per class of y (sorted labels) and "
                         f"one column per embedding coordinate; got shape {mu.shape}")
    diff = mu[None, :, :] - mu[:, None, :]  # diff[i, j] = mu_j - mu_i: (k, k, p)
    dist = onp.sqrt((diff ** 2).sum(axis=-1))
    off = ~onp.eye(k, dtype=bool)
    if onp.any(dist[off] == 0):
        raise ValueError("means has two equal class means, so u_ij = (mu_j - mu_i)/||mu_j - mu_i|| is undefined")
    U = diff / onp.where(off, dist, 1.0)[:, :, None]
    out = onp.zeros((k, k))
    for i, c in enumerate(classes):
        Xi = Xc[xp.asarray(onp.flatnonzero(y == c))]
        Ui = xp.asarray(U[i].astype(W.dtype))  # (k, p)
        per = _batched(model, params, Xi, k, lambda s, e, a, b: ("shared", Ui[a:b]), "embed", None, batch_size,
                       per_row=True)  # (n_i, k)
        out[i] = to_numpy(per).mean(axis=0)
    out[~off] = 0.0
    return out


# --------------------------------------------------------------------------------------------------
# The GC regularizer (PAPER.md section 2, "GC regularization")
# --------------------------------------------------------------------------------------------------
def gc_penalty(model, params, X, *, method="exact", target="embed", probes=1, dist="gaussian", rng=None,
               chunk=None):
    """Return GC of the batch X as a scalar that autograd differentiates with respect to ``params``.

    ``method="exact"``: (1/N) sum_n ||J(x_n)||_F^2 by the same propagation as ``jacobian_sq_norms`` (Gram
    route included), written with ``ops`` primitives on the traced params, so the parameter gradient is exact.
    ``method="hutchinson"``: (1/N) sum_n (1/probes) sum_r ||v_nr^T J(x_n)||^2 with fresh probes from ``rng``
    (required); its value and its gradient are unbiased for the exact ones and cost ``probes`` instead of q
    backward rows. No sample batching (X is one training batch); ``chunk`` splits the output rows.
    """
    if method not in PENALTY_METHODS:
        raise ValueError(f"gc_penalty method must be 'exact' or 'hutchinson'; got {method!r}")
    q = _output_dim(model, target)
    chunk = _check_positive_int("chunk", chunk)
    Xc = model.check_input(X)
    Z, caches, _ = _forward(model, params, Xc)
    N = Z.shape[0]
    if method == "exact":
        rows, r, scale = onp.arange(q), q, 1.0
        cot_for = lambda a, b: ("rows", rows[a:b])  # noqa: E731
    else:
        r = _check_positive_int("probes", probes, allow_none=False)
        if dist not in PROBE_DISTS:
            raise ValueError(f"dist must be 'gaussian' or 'rademacher'; got dist={dist!r}")
        V = _probes(_as_rng(rng, "hutchinson"), (N, r, q), dist, Z.dtype, get_xp(Z))
        cot_for, scale = (lambda a, b: ("per_sample", V[:, a:b])), 1.0 / r
    total = None
    for a, b in _ranges(r, chunk or r):
        part = ops.sum(_sq_norms(model, params, Z, caches, cot_for(a, b), target))
        total = part if total is None else total + part
    return total * (scale / N)


def make_gc_penalty(model, strength, method="exact", target="embed", probes=1, dist="gaussian", seed=0, chunk=None):
    """Return ``penalty(params, X_b, y_b) = strength * gc_penalty(model, params, X_b, ...)`` for ``train.fit``.

    The explicit GC regularization of the paper's appendix (strengths around 1e-7 .. 1e-4). For
    ``method="hutchinson"`` call t (t = 0, 1, ...) of this penalty draws its probes from
    ``numpy.random.default_rng([seed, t])``: successive steps see fresh probes and a run is reproducible.
    The counter lives in the returned function, so a run resumed from a checkpoint restarts it at 0 (make
    a new penalty per run). ``penalty.calls`` holds the number of calls so far.
    """
    ok = isinstance(strength, (int, float, onp.integer, onp.floating)) and not isinstance(strength, bool)
    if not ok or not math.isfinite(float(strength)) or float(strength) < 0:
        raise ValueError(f"strength must be a finite number >= 0; got {strength!r}")
    if method not in PENALTY_METHODS:
        raise ValueError(f"gc penalty method must be 'exact' or 'hutchinson'; got {method!r}")
    _check_target(target)
    strength = float(strength)

    def penalty(params, X_b, y_b=None):
        t = penalty.calls
        penalty.calls += 1
        rng = onp.random.default_rng([seed, t]) if method == "hutchinson" else None
        return strength * gc_penalty(model, params, X_b, method=method, target=target, probes=probes, dist=dist,
                                     rng=rng, chunk=chunk)

    penalty.calls = 0
    penalty.strength, penalty.method = strength, method
    return penalty
