"""The differentiable primitives every model is built from, each forward beside its VJP.

Every primitive is written only with the array module of its inputs (``xp = get_xp(...)``) and is
registered with autograd (``primitive`` + ``defvjp``), so gradients stay on the device the data lives on.
autograd's own VJPs for ``sum``, ``mean``, ``dot`` or indexing allocate host arrays; traced model code uses
the primitives below (and the array operators ``+ - *`` of autograd boxes, whose VJPs are device-safe)
and nothing else.

Shapes: ``x (..., n) @ W (n, m)``; images ``(N, C, H, W)``; conv kernels ``(O, C, kh, kw)``.
Where a VJP is itself written with primitives (``matmul`` <-> ``matmul_t``; ``conv2d``, ``conv2d_input_grad`` and
``conv_weight_grad``, closed under taking VJPs; each pooling and its transpose), the derivative is differentiable
again, which the GC penalty and the Hessian of ``sharpness`` rely on.

The training step uses faster *fused* versions of some layers (``minigcnc.fused``); the primitives here
are their reference.
"""
from autograd.extend import defvjp, primitive

from .backend import get_xp


# --------------------------------------------------------------------------------------------------
# Dense algebra
# --------------------------------------------------------------------------------------------------
def outer_sum(a, g):
    """sum over leading axes of a^T g: a (..., n), g (..., m) -> (n, m)."""
    xp = get_xp(a, g)
    return xp.matmul(a.reshape(-1, a.shape[-1]).T, g.reshape(-1, g.shape[-1]))


def gemm(x, W):
    """x (..., n) @ W (n, m) as one 2-D GEMM: NumPy's stacked matmul loops over the leading axes (slower)."""
    xp = get_xp(x, W)
    if x.ndim <= 2:
        return xp.matmul(x, W)
    return xp.matmul(x.reshape(-1, x.shape[-1]), W).reshape(tuple(x.shape[:-1]) + (W.shape[1],))


@primitive
def matmul(x, W):
    """x @ W for x (..., n), W (n, m) -> (..., m)."""
    return gemm(x, W)


@primitive
def matmul_t(T, W):
    """T @ W^T for T (..., m), W (n, m) -> (..., n): the transpose-Jacobian product of ``matmul``."""
    return gemm(T, W.T)


defvjp(
    matmul,
    lambda ans, x, W: lambda g: matmul_t(g, W),  # dL/dx = g W^T
    lambda ans, x, W: lambda g: outer_sum(x, g),  # dL/dW = sum x^T g
)
defvjp(
    matmul_t,
    lambda ans, T, W: lambda g: matmul(g, W),  # dL/dT = g W
    lambda ans, T, W: lambda g: outer_sum(g, T),  # dL/dW = sum g^T T
)


@primitive
def gram(W):
    """W^T W for W (n, m) -> (m, m)."""
    return get_xp(W).matmul(W.T, W)


defvjp(gram, lambda ans, W: lambda g: get_xp(W, g).matmul(W, g + g.T))  # d tr(G^T W^T W) = W (G + G^T)


@primitive
def add_bias(x, b, axis=-1):
    """x + b with b (n,) broadcast along ``axis`` of x (axis -1 for dense, 1 for NCHW images)."""
    return x + b.reshape(_bias_shape(x.ndim, b.shape[0], axis))


def _bias_shape(ndim, n, axis):
    shape = [1] * ndim
    shape[axis] = n
    return tuple(shape)


def sum_except(g, axis):
    """g summed over every axis but ``axis``: the gradient of a bias broadcast along the other axes."""
    axes = tuple(a for a in range(g.ndim) if a != axis % g.ndim)
    return get_xp(g).sum(g, axis=axes)


defvjp(
    add_bias,
    lambda ans, x, b, axis=-1: lambda g: g,
    lambda ans, x, b, axis=-1: lambda g: sum_except(g, axis),
)


def linear(x, W, b):
    """x @ W + b: x (..., n), W (n, m), b (m,) -> (..., m)."""
    return add_bias(matmul(x, W), b)


# --------------------------------------------------------------------------------------------------
# Elementwise activations
# --------------------------------------------------------------------------------------------------
@primitive
def relu(x):
    """max(x, 0)."""
    return get_xp(x).maximum(x, 0)


defvjp(relu, lambda ans, x: lambda g: g * (x > 0))


@primitive
def tanh(x):
    """tanh(x)."""
    return get_xp(x).tanh(x)


defvjp(tanh, lambda ans, x: lambda g: g * (1 - ans * ans))


# --------------------------------------------------------------------------------------------------
# Shapes and reductions
# --------------------------------------------------------------------------------------------------
@primitive
def reshape(x, shape):
    """x reshaped to ``shape``."""
    return x.reshape(shape)


defvjp(reshape, lambda ans, x, shape: lambda g: reshape(g, x.shape))


def flatten(x):
    """(N, ...) -> (N, prod(...))."""
    return reshape(x, (x.shape[0], -1))


@primitive
def transpose(x, axes):
    """x with its axes permuted by ``axes``."""
    return x.transpose(axes)


def _inverse_perm(axes):
    inv = [0] * len(axes)
    for i, a in enumerate(axes):
        inv[a] = i
    return tuple(inv)


defvjp(transpose, lambda ans, x, axes: lambda g: transpose(g, _inverse_perm(axes)))


def _expand_to(g, shape, axis, keepdims):
    """Broadcast a reduced gradient back to ``shape`` (a fresh, writable array)."""
    xp = get_xp(g)
    if axis is not None and not keepdims:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        axes = sorted(a % len(shape) for a in axes)
        for a in axes:
            g = xp.expand_dims(g, a)
    elif axis is None and not keepdims:
        g = g.reshape((1,) * len(shape))
    return xp.broadcast_to(g, shape).copy()


@primitive
def sum(x, axis=None, keepdims=False):  # noqa: A001 - mirrors numpy's name on purpose
    """Sum of x over ``axis`` (all axes when None)."""
    return get_xp(x).sum(x, axis=axis, keepdims=keepdims)


@primitive
def mean(x, axis=None, keepdims=False):
    """Mean of x over ``axis`` (all axes when None)."""
    return get_xp(x).mean(x, axis=axis, keepdims=keepdims)


def _count(shape, axis):
    if axis is None:
        n = 1
        for s in shape:
            n *= s
        return n
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    n = 1
    for a in axes:
        n *= shape[a]
    return n


defvjp(sum, lambda ans, x, axis=None, keepdims=False: lambda g: _expand_to(g, x.shape, axis, keepdims))
defvjp(
    mean,
    lambda ans, x, axis=None, keepdims=False: lambda g: _expand_to(g, x.shape, axis, keepdims) / _count(x.shape, axis),
)


def sum_squares(x):
    """sum of x**2 over all entries (used by L2 and by squared Jacobian norms)."""
    return sum(x * x)


# --------------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------------
def _log_softmax(z):
    xp = get_xp(z)
    z = z - xp.max(z, axis=-1, keepdims=True)
    return z - xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))


def one_hot(y, k, like):
    """The (N, k) one-hot rows of integer labels y (N,), in the dtype and on the device of ``like``."""
    xp = get_xp(like)
    return (y[:, None] == xp.arange(k)[None, :]).astype(like.dtype)


@primitive
def cross_entropy(logits, y):
    """Mean over the batch of -log softmax(logits)[y]; logits (N, k), y (N,) integer labels.

    Stable form: log softmax(z) = (z - max z) - log sum exp(z - max z).
    """
    logp = _log_softmax(logits)
    return -get_xp(logits).sum(logp * one_hot(y, logits.shape[-1], logits)) / logits.shape[0]


defvjp(
    cross_entropy,
    # d/dz of mean CE = (softmax(z) - onehot(y)) / N
    lambda ans, logits, y: lambda g: g * (get_xp(logits).exp(_log_softmax(logits)) - one_hot(y, logits.shape[-1], logits))
    / logits.shape[0],
    None,
)


# --------------------------------------------------------------------------------------------------
# Convolution by im2col: one matrix product per call
# --------------------------------------------------------------------------------------------------
def conv_output_size(size, k, stride, padding):
    """Output length of a convolution along one axis: floor((size + 2 padding - k) / stride) + 1."""
    return (size + 2 * padding - k) // stride + 1


def im2col(x, kh, kw, stride, padding):
    """Patches of x (N, C, H, W) as columns: (kh*kw*C, N*Ho*Wo), rows in (i, j, c) order, plus (Ho, Wo).

    Column n*Ho*Wo + h*Wo + w holds the patch under output pixel (n, h, w). x is read channel-major and
    padded once; each of the kh*kw shifted views is copied into its own contiguous block of one
    preallocated (kh*kw, C, N, Ho, Wo) array, so every copy moves whole image rows and the flattening is
    free. (Patches as rows, or stacking the shifts on a last axis and transposing, scatter single numbers
    and are slower on the CPU.) ``weight_matrix`` orders a kernel's entries the same way.
    """
    xp = get_xp(x)
    N, C, H, W = x.shape
    Ho, Wo = conv_output_size(H, kh, stride, padding), conv_output_size(W, kw, stride, padding)
    x = x.transpose(1, 0, 2, 3)  # (C, N, H, W), a view
    if padding:
        x = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    hi, wi = stride * (Ho - 1) + 1, stride * (Wo - 1) + 1
    cols = xp.empty((kh * kw, C, N, Ho, Wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[i * kw + j] = x[:, :, i : i + hi : stride, j : j + wi : stride]
    return cols.reshape(kh * kw * C, N * Ho * Wo), Ho, Wo


def weight_matrix(W):
    """A kernel (O, C, kh, kw) as the (O, kh*kw*C) matrix whose columns match ``im2col``'s rows."""
    O = W.shape[0]
    return W.transpose(0, 2, 3, 1).reshape(O, -1)


@primitive
def conv_weight_grad(x, g, W_shape, stride, padding):
    """dL/dW of conv2d: sum over patches of g (N, O, Ho, Wo) times the patches of x -> (O, C, kh, kw).

    Bilinear in (x, g) with ``<H, conv_weight_grad(x, g)> = <g, conv2d(x, H)>`` for a kernel-shaped H, so its
    VJPs are a ``conv2d_input_grad`` (w.r.t. x) and a ``conv2d`` (w.r.t. g): the second derivative of a conv
    layer's loss (the Hessian of ``sharpness``) is made of the same three primitives.
    """
    O, C, kh, kw = W_shape
    cols, _, _ = im2col(x, kh, kw, stride, padding)  # (kh*kw*C, L)
    g_rows = g.transpose(1, 0, 2, 3).reshape(O, -1).T  # (L, O); a view when g is channel-major already
    # (kh*kw*C, L) @ (L, O): OpenBLAS runs the (O, L) @ (L, kh*kw*C) order of the same product several
    # times slower when O is small and L (all patches of the batch) is long
    dW = get_xp(x, g).matmul(cols, g_rows)  # (kh*kw*C, O), rows in (i, j, c) order
    return dW.reshape(kh, kw, C, O).transpose(3, 2, 0, 1)


@primitive
def conv2d(x, W, stride=1, padding=0):
    """2-D cross-correlation: x (N, C, H, W), W (O, C, kh, kw) -> (N, O, Ho, Wo), no bias."""
    O, C, kh, kw = W.shape
    if x.ndim != 4 or x.shape[1] != C:
        raise ValueError(f"conv2d: x must be (N, {C}, H, W) for a kernel {tuple(W.shape)}; got {tuple(x.shape)}")
    cols, Ho, Wo = im2col(x, kh, kw, stride, padding)
    out = get_xp(x, W).matmul(weight_matrix(W), cols)  # (O, N*Ho*Wo)
    return out.reshape(O, x.shape[0], Ho, Wo).transpose(1, 0, 2, 3)  # (N, O, Ho, Wo), channel-major in memory


@primitive
def conv2d_input_grad(g, W, x_shape, stride=1, padding=0):
    """Transpose of conv2d in x: g (M, O, Ho, Wo) -> (M, C, H, W) with x_shape = (C, H, W).

    This is the batched transpose-Jacobian product of a conv layer (M = N * number of cotangents): one
    matrix product W_mat^T (C*kh*kw, O) @ g (O, M*Ho*Wo), then the kh*kw shifted slices are added back.
    Channels-first layout inside keeps every slice contiguous in M, Ho, Wo.
    """
    xp = get_xp(g, W)
    O, C, kh, kw = W.shape
    M, _, Ho, Wo = g.shape
    _, H, Wd = x_shape
    cols = xp.matmul(W.reshape(O, -1).T, g.transpose(1, 0, 2, 3).reshape(O, -1)).reshape(C, kh * kw, M, Ho, Wo)
    out = xp.zeros((C, M, H + 2 * padding, Wd + 2 * padding), dtype=cols.dtype)
    hi, wi = stride * (Ho - 1) + 1, stride * (Wo - 1) + 1
    for i in range(kh):
        for j in range(kw):
            out[:, :, i : i + hi : stride, j : j + wi : stride] += cols[:, i * kw + j]
    return out[:, :, padding : padding + H, padding : padding + Wd].transpose(1, 0, 2, 3).copy()


defvjp(
    conv2d,
    lambda ans, x, W, stride=1, padding=0: lambda g: conv2d_input_grad(g, W, x.shape[1:], stride, padding),
    lambda ans, x, W, stride=1, padding=0: lambda g: conv_weight_grad(x, g, W.shape, stride, padding),
)
defvjp(
    conv2d_input_grad,
    lambda ans, g, W, x_shape, stride=1, padding=0: lambda h: conv2d(h, W, stride, padding),
    lambda ans, g, W, x_shape, stride=1, padding=0: lambda h: conv_weight_grad(h, g, W.shape, stride, padding),
)
defvjp(
    conv_weight_grad,
    lambda ans, x, g, W_shape, stride, padding: lambda H: conv2d_input_grad(g, H, x.shape[1:], stride, padding),
    lambda ans, x, g, W_shape, stride, padding: lambda H: conv2d(x, H, stride, padding),
)


# --------------------------------------------------------------------------------------------------
# Pooling (non-overlapping windows)
# --------------------------------------------------------------------------------------------------
def _windows(x, size):
    """(N, C, H, W) -> (N, C, H/size, W/size, size*size), dropping rows/columns that do not fill a window."""
    N, C, H, W = x.shape
    Ho, Wo = H // size, W // size
    x = x[:, :, : Ho * size, : Wo * size]
    return x.reshape(N, C, Ho, size, Wo, size).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, Ho, Wo, size * size)


def _unwindows(w, size, H, W):
    """Adjoint of ``_windows``: (M, C, Ho, Wo, size*size) -> (M, C, H, W), zeros where no window reached."""
    xp = get_xp(w)
    M, C, Ho, Wo, _ = w.shape
    out = w.reshape(M, C, Ho, Wo, size, size).transpose(0, 1, 2, 4, 3, 5).reshape(M, C, Ho * size, Wo * size)
    if Ho * size != H or Wo * size != W:
        out = xp.pad(out, ((0, 0), (0, 0), (0, H - Ho * size), (0, W - Wo * size)))
    return out


def window_views(x, size):
    """The size*size strided views x[..., a::size, b::size] (cropped to whole windows), in window order
    k = a*size + b: view k holds the k-th entry of every window, (..., H//size, W//size)."""
    Ho, Wo = x.shape[-2] // size, x.shape[-1] // size
    return [x[..., a : Ho * size : size, b : Wo * size : size] for a in range(size) for b in range(size)]


def maxpool_mask(x, size, top=None):
    """One-hot of the arg-max inside each window: (size*size, N, C, Ho, Wo), first maximum wins ties.

    mask[k] marks the windows whose maximum sits at entry k = a*size + b. Built from elementwise
    comparisons of the window views (a reduction over a length-4 last axis is many times slower on the CPU).
    ``top``: ``maxpool2d(x, size)`` when the caller has it already.
    """
    xp = get_xp(x)
    views = window_views(x, size)
    top = maxpool2d(x, size) if top is None else top
    taken = xp.zeros(top.shape, dtype=bool)
    masks = []
    for v in views:
        hit = (v == top) & ~taken
        taken = taken | hit
        masks.append(hit)
    return xp.stack(masks).astype(x.dtype)


@primitive
def maxpool2d(x, size=2):
    """Max over non-overlapping size x size windows: (N, C, H, W) -> (N, C, H//size, W//size)."""
    xp = get_xp(x)
    views = window_views(x, size)
    out = views[0]
    for v in views[1:]:
        out = xp.maximum(out, v)
    return out if len(views) > 1 else out.copy()


@primitive
def maxpool2d_input_grad(g, mask, size, H, W):
    """Transpose of max-pooling: route g to each window's arg-max.

    g (N, C, Ho, Wo) or, batched over cotangents, (N, q, C, Ho, Wo); mask (size*size, N, C, Ho, Wo)
    from ``maxpool_mask`` of the forward input. Returns (N, [q,] C, H, W); rows/columns that no window
    covered get zero.
    """
    lead = tuple(g.shape[:-3])
    out = get_xp(g).zeros(lead + (g.shape[-3], H, W), dtype=g.dtype)
    for k, v in enumerate(window_views(out, size)):
        v[...] = g * (mask[k] if len(lead) == 1 else mask[k][:, None])
    return out


@primitive
def _maxpool_select(h, mask, size):
    """Adjoint of ``maxpool2d_input_grad`` in g: pick each window's arg-max entry of h (mask from ``maxpool_mask``)."""
    lead = tuple(h.shape[:-3])
    out = 0
    for k, v in enumerate(window_views(h, size)):
        out = out + v * (mask[k] if len(lead) == 1 else mask[k][:, None])
    return out


defvjp(
    maxpool2d,
    lambda ans, x, size=2: lambda g: maxpool2d_input_grad(g, maxpool_mask(x, size, ans), size, x.shape[2], x.shape[3]),
)
defvjp(maxpool2d_input_grad, lambda ans, g, mask, size, H, W: lambda h: _maxpool_select(h, mask, size))
defvjp(_maxpool_select, lambda ans, h, mask, size: lambda g: maxpool2d_input_grad(g, mask, size, h.shape[-2], h.shape[-1]))


@primitive
def avgpool2d(x, size=2):
    """Mean over non-overlapping size x size windows: (N, C, H, W) -> (N, C, H//size, W//size)."""
    return get_xp(x).mean(_windows(x, size), axis=-1)


@primitive
def avgpool2d_input_grad(g, size, H, W):
    """Transpose of average pooling: spread g (M, C, Ho, Wo) evenly over each window."""
    xp = get_xp(g)
    w = xp.broadcast_to(g[..., None], g.shape + (size * size,)) / (size * size)
    return _unwindows(w, size, H, W)


defvjp(avgpool2d, lambda ans, x, size=2: lambda g: avgpool2d_input_grad(g, size, x.shape[2], x.shape[3]))
defvjp(avgpool2d_input_grad, lambda ans, g, size, H, W: lambda h: avgpool2d(h, size))


def activate(z, activation):
    """activation(z) by its own primitive (``relu``, ``tanh``; 'identity' returns z): the reference one."""
    if activation == "relu":
        return relu(z)
    if activation == "tanh":
        return tanh(z)
    return z
