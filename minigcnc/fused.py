"""Fused training primitives: a whole layer - or the head and the loss - as one autograd primitive.

Speed code, not needed to follow the paper: ``ops`` holds the definitions. ``dense_act``, ``conv2d_act``,
``maxpool2d_train``, ``conv2d_act_pool`` and ``linear_cross_entropy`` each compute what a short composition of
``ops`` primitives computes (their ``*_reference``, same arithmetic), but as one primitive whose VJP is written
by hand with the raw array module, so that a training step puts one node per layer on the tape and reuses its
own fresh arrays in place. Where a fused VJP is itself differentiated (a boxed cotangent or argument), it
hands over to the VJP of its reference, so higher derivatives (the GC penalty) stay exact. ``Layer.forward``
(``layers.py``) is built from these; ``Layer.apply`` and everything that takes a Jacobian uses ``ops``.
"""
import numpy as onp
import autograd.numpy as anp
from autograd.core import make_vjp
from autograd.extend import defvjp_argnums, primitive
from .autograd_internals import getval, isbox

from . import ops
from .backend import get_xp

# Inside a primitive every value is a raw array, so these use the raw array module (``_raw_xp``: numpy
# itself on the host, no autograd wrapper per call) and update their own fresh arrays in place.
FUSED_ACTIVATIONS = ("relu", "tanh", "identity")


def _raw_xp(*arrays):
    """numpy for host arrays, the device module for device arrays: for code that never sees a box."""
    xp = get_xp(*arrays)
    return onp if xp is anp else xp


def _check_activation(activation):
    if activation not in FUSED_ACTIVATIONS:
        raise ValueError(f"activation must be one of {FUSED_ACTIVATIONS}; got {activation!r}")


def _act_inplace(z, activation, xp):
    """act(z) written over the fresh array z."""
    if activation == "relu":
        xp.maximum(z, 0, out=z)
    elif activation == "tanh":
        xp.tanh(z, out=z)
    return z


def _act_grad(g, ans, activation):
    """g * act'(z), with act' written in terms of ans = act(z) (the formulas of the ``relu``/``tanh`` VJPs)."""
    if activation == "relu":
        return g * (ans > 0)
    if activation == "tanh":
        return g * (1 - ans * ans)
    return g


def _reference_vjp(reference, argnums, args, kwargs):
    """The VJP of ``reference(*args, **kwargs)`` with respect to ``argnums``, built from the reference's own
    primitives, so that it is differentiable again (the fallback of every fused VJP)."""

    def f(diff):
        full = list(args)
        for a, v in zip(argnums, diff):
            full[a] = v
        return reference(*full, **kwargs)

    vjp, _ = make_vjp(f, tuple(args[a] for a in argnums))
    return lambda g: tuple(vjp(g))


def _fused_vjp(reference, fast):
    """A ``defvjp_argnums`` maker: ``fast(argnums, ans, args, kwargs) -> (g -> grads)`` on raw values, the
    reference's VJP whenever a value is boxed (the fused VJP is being differentiated)."""

    def vjpmaker(argnums, ans, args, kwargs):
        if isbox(ans) or any(isbox(a) for a in args):
            return _reference_vjp(reference, argnums, args, kwargs)
        vjp = fast(argnums, ans, args, kwargs)

        def checked(g):
            if isbox(g):
                return _reference_vjp(reference, argnums, args, kwargs)(g)
            return vjp(g)

        return checked

    return vjpmaker


def _arg(args, kwargs, i, name, default):
    return args[i] if len(args) > i else kwargs.get(name, default)


# ---- dense + bias + activation --------------------------------------------------------------------
def dense_act_reference(x, W, b, activation="identity"):
    """act(x W + b) as three primitives (``matmul``, ``add_bias``, the activation): the reference of ``dense_act``."""
    return ops.activate(ops.add_bias(ops.matmul(x, W), b), activation)


@primitive
def dense_act(x, W, b, activation="identity"):
    """act(x W + b) for x (..., n), W (n, m), b (m,) -> (..., m): a dense layer as one primitive.

    activation: 'relu', 'tanh' or 'identity'. Same values as ``dense_act_reference``.
    """
    _check_activation(activation)
    z = _raw_xp(x, W).matmul(x, W) if x.ndim <= 2 else ops.gemm(x, W)
    z += b
    return _act_inplace(z, activation, _raw_xp(z))


def _dense_act_fast(argnums, ans, args, kwargs):
    x, W = args[0], args[1]
    activation = _arg(args, kwargs, 3, "activation", "identity")

    def vjp(g):
        gd = _act_grad(g, ans, activation)  # dL/dz, once for all three arguments
        grads = []
        for a in argnums:
            if a == 0:
                grads.append(ops.gemm(gd, W.T))  # dL/dx = gd W^T
            elif a == 1:
                grads.append(ops.outer_sum(x, gd))  # dL/dW = x^T gd
            else:
                grads.append(ops.sum_except(gd, -1))  # dL/db = sum of gd over the batch
        return grads

    return vjp


defvjp_argnums(dense_act, _fused_vjp(dense_act_reference, _dense_act_fast))


# ---- linear head + mean cross-entropy --------------------------------------------------------------
def linear_cross_entropy_reference(Z, W, b, y):
    """cross_entropy(Z W + b, y) as three primitives: the reference of ``linear_cross_entropy``."""
    return ops.cross_entropy(ops.linear(Z, W, b), y)


def _raw_log_softmax(z, xp):
    z = z - xp.max(z, axis=-1, keepdims=True)
    return z - xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))


@primitive
def linear_cross_entropy(Z, W, b, y):
    """Mean cross-entropy of the logits Z W + b against integer labels y: the head and the loss as one primitive.

    Z (N, p), W (p, k), b (k,), y (N,). Same values as ``linear_cross_entropy_reference``.
    """
    xp = _raw_xp(Z, W)
    logits = xp.matmul(Z, W)
    logits += b
    logp = _raw_log_softmax(logits, xp)
    # divided by N in the logits' dtype: NumPy 1.x would turn a float32 scalar divided by a Python int into float64
    return -xp.sum(logp * ops.one_hot(y, logits.shape[-1], logits)) / logits.dtype.type(logits.shape[0])


def _linear_cross_entropy_fast(argnums, ans, args, kwargs):
    Z, W, b, y = args[:4]

    def vjp(g):
        xp = _raw_xp(Z, W)
        logits = xp.matmul(Z, W)
        logits += b
        # d/dlogits of the mean CE = (softmax - onehot(y)) / N, as in the ``cross_entropy`` VJP
        G = g * (xp.exp(_raw_log_softmax(logits, xp)) - ops.one_hot(y, logits.shape[-1], logits)) / logits.shape[0]
        grads = []
        for a in argnums:
            if a == 0:
                grads.append(ops.gemm(G, W.T))
            elif a == 1:
                grads.append(ops.outer_sum(Z, G))
            elif a == 2:
                grads.append(ops.sum_except(G, -1))
            else:
                raise NotImplementedError("linear_cross_entropy is not differentiable in the labels y")
        return grads

    return vjp


defvjp_argnums(linear_cross_entropy, _fused_vjp(linear_cross_entropy_reference, _linear_cross_entropy_fast))


# ---- convolution + bias + activation ---------------------------------------------------------------
def conv2d_act_reference(x, W, b=None, stride=1, padding=0, activation="identity"):
    """act(conv2d(x, W) + b) as primitives (``conv2d``, ``add_bias``, the activation); b None: no bias."""
    z = ops.conv2d(x, W, stride, padding)
    if b is not None:
        z = ops.add_bias(z, b, axis=1)
    return ops.activate(z, activation)


def conv2d_act(x, W, b=None, stride=1, padding=0, activation="identity"):
    """act(conv2d(x, W) + b): x (N, C, H, W), W (O, C, kh, kw), b (O,) or None -> (N, O, Ho, Wo), one primitive.

    The im2col patches of x are made once, here, and kept on the tape for dL/dW (the reference makes them
    again in its backward pass). Same values as ``conv2d_act_reference``.
    """
    O, C, kh, kw = W.shape
    if x.ndim != 4 or x.shape[1] != C:
        raise ValueError(f"conv2d: x must be (N, {C}, H, W) for a kernel {tuple(W.shape)}; got {tuple(x.shape)}")
    _check_activation(activation)
    cols, _, _ = ops.im2col(getval(x), kh, kw, stride, padding)  # a constant of the primitive below
    return _conv2d_cols_act(x, W, b, cols, stride, padding, activation)


@primitive
def _conv2d_cols_act(x, W, b, cols, stride, padding, activation):
    """``conv2d_act`` given cols = the im2col patches of x (not differentiated: x carries the gradient)."""
    xp = _raw_xp(x, W)
    O = W.shape[0]
    N, _, H, Wd = x.shape
    Ho = ops.conv_output_size(H, W.shape[2], stride, padding)
    Wo = ops.conv_output_size(Wd, W.shape[3], stride, padding)
    out = xp.matmul(ops.weight_matrix(W), cols)  # (O, N*Ho*Wo)
    if b is not None:
        out += b.reshape(O, 1)
    _act_inplace(out, activation, xp)
    return out.reshape(O, N, Ho, Wo).transpose(1, 0, 2, 3)  # (N, O, Ho, Wo), channel-major in memory


def _conv2d_cols_act_reference(x, W, b, cols, stride, padding, activation):
    return conv2d_act_reference(x, W, b, stride, padding, activation)


def _conv2d_cols_act_fast(argnums, ans, args, kwargs):
    x, W, b, cols, stride, padding, activation = args

    def vjp(g):
        xp = _raw_xp(g, W)
        O, C, kh, kw = W.shape
        N, _, Ho, Wo = ans.shape
        gd = xp.empty((O, N, Ho, Wo), dtype=ans.dtype)  # dL/dz, channel-major like cols
        g_cm, ans_cm = g.transpose(1, 0, 2, 3), ans.transpose(1, 0, 2, 3)
        if activation == "relu":
            xp.multiply(g_cm, ans_cm > 0, out=gd)
        elif activation == "tanh":
            xp.multiply(g_cm, 1 - ans_cm * ans_cm, out=gd)
        else:
            gd[...] = g_cm
        g_mat = gd.reshape(O, -1)  # (O, L)
        grads = []
        for a in argnums:
            if a == 0:
                grads.append(ops.conv2d_input_grad.fun(gd.transpose(1, 0, 2, 3), W, tuple(x.shape[1:]), stride, padding))
            elif a == 1:
                dW = xp.matmul(cols, g_mat.T)  # (kh*kw*C, O), rows in (i, j, c) order, as ``ops.conv_weight_grad``
                grads.append(dW.reshape(kh, kw, C, O).transpose(3, 2, 0, 1))
            elif a == 2:
                grads.append(xp.sum(g_mat, axis=1))
            else:
                raise NotImplementedError("conv2d_act is not differentiable in its patches")
        return grads

    return vjp


defvjp_argnums(_conv2d_cols_act, _fused_vjp(_conv2d_cols_act_reference, _conv2d_cols_act_fast))


# ---- max-pooling for training ----------------------------------------------------------------------
@primitive
def maxpool2d_train(x, size=2):
    """``maxpool2d`` whose VJP routes the gradient itself, on raw arrays (no mask primitive, no second
    primitive on the tape): the same values and the same gradient (the first maximum of a window wins ties)."""
    return ops.maxpool2d.fun(x, size)


def _maxpool2d_train_fast(argnums, ans, args, kwargs):
    x = args[0]
    size = _arg(args, kwargs, 1, "size", 2)

    def vjp(g):
        xp = _raw_xp(g, x)
        out = xp.zeros(x.shape, dtype=g.dtype)
        taken = None
        for v, o in zip(ops.window_views(x, size), ops.window_views(out, size)):
            hit = v == ans
            if taken is None:
                taken = hit
            else:
                hit &= ~taken
                taken |= hit
            xp.multiply(g, hit, out=o)
        return (out,)

    return vjp


defvjp_argnums(maxpool2d_train, _fused_vjp(lambda x, size=2: ops.maxpool2d(x, size), _maxpool2d_train_fast))


# ---- convolution + bias + activation + max-pooling -------------------------------------------------
# A stride-1 convolution followed by max-pooling over p x p windows, as one primitive. Inside it, arrays are kept
# batch-last ("C H W N"): the images of a batch are the innermost, contiguous axis, so every copy below moves runs
# of (positions x N) numbers at once (the gradient's scatter-add is faster so than with the batch outside).
# The im2col columns are ordered (a, b, h2, w, n) - the position (a, b) inside the pooling window first - so the
# p*p members of every window lie in p*p contiguous blocks of the conv output: the pooling, its arg-max and the
# routing of the gradient are contiguous elementwise passes, and only outputs inside a window are computed. The
# patches come from a space-to-depth copy of the zero-padded input,
# xs[c, r, s, hs, ws, n] = xpad[n, c, p*hs + r, p*ws + s]: for a kernel offset (i, j) and window position (a, b),
# the patch entries of all outputs (h2, w2) of all images are ONE contiguous run of xs[c, r, s] (of H2 * Ws * N
# values, starting at (q * Ws + t) * N, where a + i = p q + r and b + j = p t + s). Each run carries Ws - W2
# columns (w >= W2) past the real outputs; those columns compute throwaway values, get a zero gradient, and are
# left out of the output. The output is returned as an (N, O, H2, W2) view of batch-last memory, which is what
# the next fused layer reads fastest; values and shapes are those of the reference.
def conv2d_act_pool_reference(x, W, b=None, padding=0, activation="identity", pool=2):
    """maxpool2d(act(conv2d(x, W) + b), pool) by the one-op primitives: the reference of ``conv2d_act_pool``."""
    return ops.maxpool2d(conv2d_act_reference(x, W, b, 1, padding, activation), pool)


def _pool_geometry(H, W, k, padding, p):
    """(H2, W2, Hs, Ws): the pooled output size and the space-to-depth planes' size (one spare row: a run that
    starts at the last offset stays inside its plane)."""
    H2 = ops.conv_output_size(H, k, 1, padding) // p
    W2 = ops.conv_output_size(W, k, 1, padding) // p
    return H2, W2, -(-(H + 2 * padding) // p) + 1, -(-(W + 2 * padding) // p)


def _pooled_runs(k, p, Ws):
    """[(i, j, a, b, r, s, start)]: which run of xs feeds kernel offset (i, j) at window position (a, b)."""
    runs = []
    for i in range(k):
        for j in range(k):
            for a in range(p):
                q, r = divmod(a + i, p)
                for b in range(p):
                    t, s = divmod(b + j, p)
                    runs.append((i, j, a, b, r, s, q * Ws + t))
    return runs


def _plane_rows(p, padding):
    """For each residue r < p: (first plane row, first input row) of xpad rows p*hs + r = input row + padding."""
    out = []
    for r in range(p):
        hs = max(0, -(-(padding - r) // p))  # the first hs with p*hs + r >= padding
        out.append((hs, p * hs + r - padding))
    return out


def _pooled_im2col(x, k, padding, p, xp):
    """Patches of x (N, C, H, W) as columns (k*k*C, p*p*H2*Ws*N): rows (i, j, c), columns (a, b, h2, w, n)."""
    N, C, H, W = x.shape
    H2, W2, Hs, Ws = _pool_geometry(H, W, k, padding, p)
    xs = xp.zeros((C, p, p, Hs, Ws, N), dtype=x.dtype)
    xc = x.transpose(1, 2, 3, 0)  # (C, H, W, N): a contiguous view when x came from a fused layer
    for r, (hs, h0) in enumerate(_plane_rows(p, padding)):
        for s, (ws, w0) in enumerate(_plane_rows(p, padding)):
            src = xc[:, h0::p, w0::p]
            xs[:, r, s, hs : hs + src.shape[1], ws : ws + src.shape[2]] = src
    xs = xs.reshape(C, p, p, Hs * Ws, N)
    L = H2 * Ws
    cols = xp.empty((k, k, C, p, p, L, N), dtype=x.dtype)
    for i, j, a, b, r, s, start in _pooled_runs(k, p, Ws):
        cols[i, j, :, a, b] = xs[:, r, s, start : start + L]
    return cols.reshape(k * k * C, -1)


def _pooled_col2im(cg, x_shape, k, padding, p, xp):
    """Adjoint of ``_pooled_im2col``: cg (k*k*C, p*p*H2*Ws*N) -> (N, C, H, W) (batch-last in memory)."""
    N, C, H, W = x_shape
    H2, W2, Hs, Ws = _pool_geometry(H, W, k, padding, p)
    L = H2 * Ws
    cg = cg.reshape(k, k, C, p, p, L, N)
    xs = xp.zeros((C, p, p, Hs * Ws, N), dtype=cg.dtype)
    for i, j, a, b, r, s, start in _pooled_runs(k, p, Ws):
        xs[:, r, s, start : start + L] += cg[i, j, :, a, b]
    xs = xs.reshape(C, p, p, Hs, Ws, N)
    out = xp.empty((C, H, W, N), dtype=cg.dtype)
    for r, (hs, h0) in enumerate(_plane_rows(p, padding)):
        for s, (ws, w0) in enumerate(_plane_rows(p, padding)):
            dst = out[:, h0::p, w0::p]
            dst[...] = xs[:, r, s, hs : hs + dst.shape[1], ws : ws + dst.shape[2]]
    return out.transpose(3, 0, 1, 2)


def _thin_matmul(A, B, xp):
    """A (m, K) @ B (K, n) for a long inner axis K: on the host, in blocks of 4,096 summed at the end.

    OpenBLAS runs a thin product (m, n <= 32, K in the hundred thousands: the weight gradient of a first
    convolution, K = every output pixel of the batch) at a few GFLOP/s; as a stack of 4,096-long products it
    runs several times faster (``python -m minigcnc.bench``). Other shapes, and other devices, take one plain matmul.
    """
    m, K = A.shape
    n = B.shape[1]
    blocks = K // 4096
    if xp is not onp or max(m, n) > 32 or blocks < 4:
        return xp.matmul(A, B)
    cut = blocks * 4096
    out = xp.matmul(A[:, :cut].reshape(m, blocks, 4096).transpose(1, 0, 2), B[:cut].reshape(blocks, 4096, n)).sum(0)
    if cut < K:
        out += xp.matmul(A[:, cut:], B[cut:])
    return out


def conv2d_act_pool(x, W, b=None, padding=0, activation="relu", pool=2):
    """maxpool2d(act(conv2d(x, W) + b), pool) as one primitive: x (N, C, H, W), W (O, C, k, k) (stride 1),
    b (O,) or None, activation 'relu' or 'identity' -> (N, O, H2, W2) with H2 = Ho // pool.

    Same values as ``conv2d_act_pool_reference`` (max(relu(v)) = relu(max(v)) exactly, so the activation is
    applied to the pooled values only; ties go to the first maximum of a window, as ``maxpool2d``).
    The patches, the conv output and its window maxima are made here and kept on the tape for the VJP.
    """
    O, C, kh, kw = W.shape
    if x.ndim != 4 or x.shape[1] != C:
        raise ValueError(f"conv2d: x must be (N, {C}, H, W) for a kernel {tuple(W.shape)}; got {tuple(x.shape)}")
    if activation not in ("relu", "identity") or kh != kw:
        raise ValueError("conv2d_act_pool: activation 'relu' or 'identity' and a square kernel; use conv2d_act and "
                         "maxpool2d_train otherwise")
    xv, Wv, bv = getval(x), getval(W), getval(b)
    xp = _raw_xp(xv, Wv)
    N, _, H, Wd = x.shape
    H2, W2, Hs, Ws = _pool_geometry(H, Wd, kh, padding, pool)
    cols = _pooled_im2col(xv, kh, padding, pool, xp)
    z = xp.matmul(ops.weight_matrix(Wv), cols)  # (O, p*p*M), M = H2*Ws*N
    if bv is not None:
        z += bv.reshape(O, 1)
    z3 = z.reshape(O, pool * pool, -1)
    top = z3[:, 0].copy() if pool == 1 else xp.maximum(z3[:, 0], z3[:, 1])  # window maxima before the activation
    for m in range(2, pool * pool):
        xp.maximum(top, z3[:, m], out=top)
    return _conv2d_pool_act(x, W, b, cols, z, top.reshape(O, H2, Ws, N), padding, activation, pool)


@primitive
def _conv2d_pool_act(x, W, b, cols, z, top, padding, activation, pool):
    """The output of ``conv2d_act_pool`` given its patches, conv output and window maxima (computed there)."""
    W2 = ops.conv_output_size(x.shape[3], W.shape[3], 1, padding) // pool
    out = _raw_xp(top).maximum(top, 0) if activation == "relu" else top
    return out[:, :, :W2].transpose(3, 0, 1, 2)  # (N, O, H2, W2), batch-last in memory


def _conv2d_pool_act_reference(x, W, b, cols, z, top, padding, activation, pool):
    return conv2d_act_pool_reference(x, W, b, padding, activation, pool)


def _conv2d_pool_act_fast(argnums, ans, args, kwargs):
    x, W, b, cols, z, top, padding, activation, pool = args

    def vjp(g):
        xp = _raw_xp(g, z)
        O, C, k, _ = W.shape
        W2 = ans.shape[3]
        gr = xp.empty(top.shape, dtype=top.dtype)  # dL/d(window maximum), (O, H2, Ws, N)
        gr[:, :, W2:] = 0  # the throwaway columns
        g_last = g.transpose(1, 2, 3, 0)  # (O, H2, W2, N)
        if activation == "relu":
            xp.multiply(g_last, top[:, :, :W2] > 0, out=gr[:, :, :W2])
        else:
            gr[:, :, :W2] = g_last
        gr, top_flat = gr.reshape(O, -1), top.reshape(O, -1)
        # route each window's gradient to its first maximum (bools: hit > taken is hit and not taken)
        P = pool * pool
        z3 = z.reshape(O, P, -1)
        gz = xp.empty(z3.shape, dtype=z.dtype)
        taken = None
        for m in range(P):
            hit = z3[:, m] == top_flat
            if taken is None:
                taken = hit  # used below before any later update of taken
            else:
                xp.greater(hit, taken, out=hit)
                if m < P - 1:
                    taken |= hit
            xp.multiply(gr, hit, out=gz[:, m])
        gz = gz.reshape(O, -1)
        grads = []
        for a in argnums:
            if a == 0:
                grads.append(_pooled_col2im(xp.matmul(ops.weight_matrix(W).T, gz), x.shape, k, padding, pool, xp))
            elif a == 1:
                dW = _thin_matmul(cols, gz.T, xp)  # (k*k*C, O), rows (i, j, c)
                grads.append(dW.reshape(k, k, C, O).transpose(3, 2, 0, 1))
            elif a == 2:
                grads.append(xp.sum(gr, axis=1))  # every window passes its gradient to one conv output
            else:
                raise NotImplementedError("conv2d_act_pool is differentiable in x, W and b only")
        return grads

    return vjp


defvjp_argnums(_conv2d_pool_act, _fused_vjp(_conv2d_pool_act_reference, _conv2d_pool_act_fast))
