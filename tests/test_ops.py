"""ops.py: every primitive equals autograd's own NumPy version of the same function, value and gradient, and its
VJP matches central finite differences; the transposes are exact adjoints. All in float64.

Oracle (a): ``ref`` written with autograd.numpy / autograd.scipy; both are differentiated by autograd through a
random scalar projection ``sum(f(...) * R)``. Oracle (b): ``conftest.assert_vjp_matches_fd``.
"""
import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, make_vjp
from autograd.scipy.signal import convolve
from autograd.scipy.special import logsumexp

from conftest import assert_vjp_matches_fd, inner
from minigcnc import ops

RTOL = 1e-10


def assert_same_function(ours, ref, args, rng, argnums=None):
    """ours(*args) == ref(*args), and the gradients of sum(f * R) w.r.t. each of ``argnums`` agree to ~1e-10."""
    argnums = range(len(args)) if argnums is None else argnums
    out, expected = ours(*args), ref(*args)
    assert np.shape(out) == np.shape(expected)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    R = rng.standard_normal(np.shape(out))
    for i in argnums:
        g_ours = grad(lambda *a: anp.sum(ours(*a) * R), i)(*args)
        g_ref = grad(lambda *a: anp.sum(ref(*a) * R), i)(*args)
        scale = max(1.0, float(np.max(np.abs(g_ref))))
        np.testing.assert_allclose(g_ours, g_ref, rtol=0, atol=RTOL * scale, err_msg=f"gradient of argument {i}")


def check_against_finite_differences(f, args, rng, argnums=None):
    argnums = range(len(args)) if argnums is None else argnums
    for i in argnums:
        def fi(a, i=i):
            full = list(args)
            full[i] = a
            return f(*full)

        assert_vjp_matches_fd(fi, args[i], rng)


# ---- references in autograd.numpy ----------------------------------------------------------------------------
def conv2d_loop(x, W, stride=1, padding=0):
    """Cross-correlation as a sum over kernel offsets (i, j) of shifted, strided slices times W[:, :, i, j]."""
    O, C, kh, kw = W.shape
    x = anp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), mode="constant")
    Ho, Wo = (x.shape[2] - kh) // stride + 1, (x.shape[3] - kw) // stride + 1
    out = 0.0
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i : i + stride * (Ho - 1) + 1 : stride, j : j + stride * (Wo - 1) + 1 : stride]
            out = out + anp.einsum("nchw,oc->nohw", patch, W[:, :, i, j])
    return out


def conv2d_scipy(x, W):
    """Stride 1, no padding: scipy-style convolution with the flipped kernel, summed over input channels."""
    return convolve(x, W[:, :, ::-1, ::-1], axes=([2, 3], [2, 3]), dot_axes=([1], [1]), mode="valid")


def maxpool_reshape(x, s):
    N, C, H, W = x.shape
    x = x[:, :, : H // s * s, : W // s * s]
    return anp.max(anp.reshape(x, (N, C, H // s, s, W // s, s)), axis=(3, 5))


def avgpool_reshape(x, s):
    N, C, H, W = x.shape
    x = x[:, :, : H // s * s, : W // s * s]
    return anp.mean(anp.reshape(x, (N, C, H // s, s, W // s, s)), axis=(3, 5))


def cross_entropy_logsumexp(z, y):
    return anp.mean(logsumexp(z, axis=1) - z[np.arange(z.shape[0]), y])


# ---- dense algebra -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape", [(5, 4), (2, 3, 4)])
def test_matmul_equals_dot_with_the_same_gradients(rng, x_shape):
    x, W = rng.standard_normal(x_shape), rng.standard_normal((4, 6))
    assert_same_function(ops.matmul, anp.dot, (x, W), rng)
    check_against_finite_differences(ops.matmul, (x, W), rng)


@pytest.mark.parametrize("T_shape", [(5, 6), (2, 3, 6)])
def test_matmul_t_equals_dot_with_transpose_and_is_the_vjp_of_matmul(rng, T_shape):
    T, W = rng.standard_normal(T_shape), rng.standard_normal((4, 6))
    assert_same_function(ops.matmul_t, lambda T, W: anp.dot(T, W.T), (T, W), rng)
    check_against_finite_differences(ops.matmul_t, (T, W), rng)
    x = rng.standard_normal(T_shape[:-1] + (4,))
    vjp, _ = make_vjp(lambda x: anp.dot(x, W))(x)
    np.testing.assert_allclose(ops.matmul_t(T, W), vjp(T), rtol=1e-12)


def test_gram_equals_w_transpose_w_with_the_same_gradient(rng):
    W = rng.standard_normal((5, 3))
    assert_same_function(ops.gram, lambda W: anp.dot(W.T, W), (W,), rng)
    check_against_finite_differences(ops.gram, (W,), rng)


def test_add_bias_on_the_last_axis_equals_broadcast_addition(rng):
    x, b = rng.standard_normal((4, 3)), rng.standard_normal(3)
    assert_same_function(ops.add_bias, lambda x, b: x + b, (x, b), rng)
    check_against_finite_differences(ops.add_bias, (x, b), rng)


def test_add_bias_on_the_channel_axis_equals_nchw_broadcast_addition(rng):
    x, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal(3)
    f = lambda x, b: ops.add_bias(x, b, axis=1)  # noqa: E731
    assert_same_function(f, lambda x, b: x + anp.reshape(b, (1, 3, 1, 1)), (x, b), rng)
    check_against_finite_differences(f, (x, b), rng)


def test_linear_is_x_w_plus_b(rng):
    x, W, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal(2)
    assert_same_function(ops.linear, lambda x, W, b: anp.dot(x, W) + b, (x, W, b), rng)


# ---- activations ---------------------------------------------------------------------------------------------
def test_relu_equals_maximum_with_zero_with_the_same_gradient(rng):
    x = rng.standard_normal((4, 5))
    assert_same_function(ops.relu, lambda x: anp.maximum(x, 0.0), (x,), rng)
    check_against_finite_differences(ops.relu, (x,), rng)


def test_tanh_equals_numpy_tanh_with_the_same_gradient(rng):
    x = rng.standard_normal((4, 5))
    assert_same_function(ops.tanh, anp.tanh, (x,), rng)
    check_against_finite_differences(ops.tanh, (x,), rng)


# ---- shapes and reductions -----------------------------------------------------------------------------------
def test_reshape_and_flatten_equal_numpy_reshape_with_the_same_gradient(rng):
    x = rng.standard_normal((2, 3, 4))
    assert_same_function(lambda x: ops.reshape(x, (4, -1)), lambda x: anp.reshape(x, (4, -1)), (x,), rng)
    assert_same_function(ops.flatten, lambda x: anp.reshape(x, (2, 12)), (x,), rng)
    check_against_finite_differences(lambda x: ops.reshape(x, (6, 4)), (x,), rng)


@pytest.mark.parametrize("axes", [(1, 0, 2), (2, 0, 1), (0, 2, 1)])
def test_transpose_equals_numpy_transpose_with_the_same_gradient(rng, axes):
    x = rng.standard_normal((2, 3, 4))
    assert_same_function(lambda x: ops.transpose(x, axes), lambda x: anp.transpose(x, axes), (x,), rng)
    check_against_finite_differences(lambda x: ops.transpose(x, axes), (x,), rng)


REDUCTIONS = [(None, False), (None, True), (0, False), (-1, True), (1, False), ((0, 2), False), ((0, 2), True)]


@pytest.mark.parametrize("name", ["sum", "mean"])
@pytest.mark.parametrize("axis,keepdims", REDUCTIONS)
def test_sum_and_mean_equal_numpy_for_every_axis_and_keepdims(rng, name, axis, keepdims):
    x = rng.standard_normal((2, 3, 4))
    op, reference = getattr(ops, name), getattr(anp, name)
    f = lambda x: op(x, axis=axis, keepdims=keepdims)  # noqa: E731
    assert_same_function(f, lambda x: reference(x, axis=axis, keepdims=keepdims), (x,), rng)
    check_against_finite_differences(f, (x,), rng)


def test_sum_squares_is_the_squared_frobenius_norm(rng):
    x = rng.standard_normal((3, 4))
    assert_same_function(ops.sum_squares, lambda x: anp.sum(x**2), (x,), rng)


# ---- cross-entropy -------------------------------------------------------------------------------------------
def test_cross_entropy_equals_the_logsumexp_formula_with_the_same_gradient(rng):
    z, y = 3 * rng.standard_normal((6, 4)), rng.integers(0, 4, size=6)
    assert_same_function(ops.cross_entropy, cross_entropy_logsumexp, (z, y), rng, argnums=[0])
    check_against_finite_differences(ops.cross_entropy, (z, y), rng, argnums=[0])


def test_cross_entropy_is_finite_and_exact_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]])
    y = np.array([0, 0])
    # sample 0 is certain and right (loss e^-1e4 ~ 0); sample 1 puts half its mass on each of two wrong classes
    expected = (0.0 + 1e4 + np.log(2.0)) / 2
    loss = ops.cross_entropy(z, y)
    assert np.isfinite(loss) and abs(loss - expected) < 1e-9
    g = grad(ops.cross_entropy)(z, y)
    np.testing.assert_allclose(g, np.array([[0, 0, 0], [-1, 0.5, 0.5]]) / 2, atol=1e-15)
    np.testing.assert_allclose(g, grad(cross_entropy_logsumexp)(z, y), atol=1e-15)


# ---- convolution ---------------------------------------------------------------------------------------------
CONV_CASES = [  # (kernel, stride, padding, H, W)
    (3, 1, 1, 7, 5),
    (3, 1, 0, 6, 8),
    (3, 2, 1, 7, 6),
    (3, 2, 0, 9, 7),
    (1, 1, 0, 5, 4),
    (1, 2, 0, 6, 5),
]
CONV_IDS = [f"k{k}s{s}p{p}-{h}x{w}" for k, s, p, h, w in CONV_CASES]


def _conv_args(rng, k, h, w, N=2, C=2, O=3):
    return rng.standard_normal((N, C, h, w)), rng.standard_normal((O, C, k, k))


@pytest.mark.parametrize("k,stride,padding,h,w", CONV_CASES, ids=CONV_IDS)
def test_conv2d_equals_a_loop_over_kernel_offsets_with_the_same_gradients(rng, k, stride, padding, h, w):
    x, W = _conv_args(rng, k, h, w)
    ours = lambda x, W: ops.conv2d(x, W, stride, padding)  # noqa: E731
    assert_same_function(ours, lambda x, W: conv2d_loop(x, W, stride, padding), (x, W), rng)
    check_against_finite_differences(ours, (x, W), rng)


@pytest.mark.parametrize("k", [1, 3])
def test_conv2d_equals_scipy_convolve_with_the_flipped_kernel(rng, k):
    x, W = _conv_args(rng, k, 6, 5)
    assert_same_function(ops.conv2d, conv2d_scipy, (x, W), rng)


def test_conv2d_rejects_an_input_whose_channels_do_not_match_the_kernel(rng):
    with pytest.raises(ValueError, match=r"x must be \(N, 2, H, W\)"):
        ops.conv2d(rng.standard_normal((1, 3, 5, 5)), rng.standard_normal((4, 2, 3, 3)))


@pytest.mark.parametrize("k,stride,padding,h,w", CONV_CASES, ids=CONV_IDS)
def test_conv2d_input_grad_is_adjoint_of_conv2d(rng, k, stride, padding, h, w):
    x, W = _conv_args(rng, k, h, w)
    y = ops.conv2d(x, W, stride, padding)
    g = rng.standard_normal(y.shape)
    assert np.isclose(inner(y, g), inner(x, ops.conv2d_input_grad(g, W, x.shape[1:], stride, padding)), rtol=1e-12)


@pytest.mark.parametrize("k,stride,padding,h,w", CONV_CASES, ids=CONV_IDS)
def test_conv2d_input_grad_equals_autograds_vjp_of_the_reference_and_is_differentiable(rng, k, stride, padding, h, w):
    x, W = _conv_args(rng, k, h, w)
    g = rng.standard_normal(ops.conv2d(x, W, stride, padding).shape)

    def ref(g, W):  # the VJP of a linear map does not depend on the point x
        return make_vjp(lambda x: conv2d_loop(x, W, stride, padding))(x)[0](g)

    ours = lambda g, W: ops.conv2d_input_grad(g, W, x.shape[1:], stride, padding)  # noqa: E731
    assert_same_function(ours, ref, (g, W), rng)
    check_against_finite_differences(ours, (g, W), rng)


def test_conv2d_gradient_is_differentiable_again_like_autograds(rng):
    """d/dW ||d/dx <conv2d(x, W), g>||^2 (the shape of the GC penalty) agrees with the reference."""
    x, W = _conv_args(rng, 3, 6, 5)
    g = rng.standard_normal(ops.conv2d(x, W, 2, 1).shape)

    def penalty(conv):
        return lambda W: anp.sum(grad(lambda x: anp.sum(conv(x, W, 2, 1) * g))(x) ** 2)

    np.testing.assert_allclose(grad(penalty(ops.conv2d))(W), grad(penalty(conv2d_loop))(W), rtol=1e-10)


# ---- pooling -------------------------------------------------------------------------------------------------
POOL_SHAPES = [(2, 3, 4, 6), (1, 2, 7, 5)]  # the second does not divide by 2: the last row/column is dropped


@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_maxpool2d_equals_reshape_and_max_with_the_same_gradient(rng, shape):
    x = rng.standard_normal(shape)
    assert_same_function(ops.maxpool2d, lambda x: maxpool_reshape(x, 2), (x,), rng)
    check_against_finite_differences(ops.maxpool2d, (x,), rng)


def test_maxpool2d_routes_the_gradient_of_a_tie_to_one_element_only():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 2:, 2:] = [[3.0, 3.0], [1.0, 3.0]]  # a three-way tie in the last window
    g = grad(lambda x: anp.sum(ops.maxpool2d(x, 2)))(x)
    windows = g[0, 0].reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).reshape(4, 4)
    assert np.array_equal(windows.sum(axis=1), np.ones(4))  # total gradient 1 per window
    assert np.array_equal(np.count_nonzero(windows, axis=1), np.ones(4))  # carried by a single element
    assert np.array_equal(g[0, 0, ::2, ::2], np.ones((2, 2)))  # the first maximum of each window wins


@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_maxpool2d_input_grad_is_adjoint_of_maxpool_with_its_mask(rng, shape):
    x = rng.standard_normal(shape)
    mask = ops.maxpool_mask(x, 2)
    g = rng.standard_normal(ops.maxpool2d(x, 2).shape)
    back = ops.maxpool2d_input_grad(g, mask, 2, shape[2], shape[3])
    assert back.shape == x.shape
    # for a fixed mask, max-pooling is linear in x, and maxpool2d_input_grad is its transpose
    assert np.isclose(inner(ops.maxpool2d(x, 2), g), inner(x, back), rtol=1e-12)
    np.testing.assert_allclose(back, make_vjp(lambda x: maxpool_reshape(x, 2))(x)[0](g), rtol=1e-14)


def test_maxpool2d_input_grad_handles_a_batch_of_cotangents_per_sample(rng):
    x = rng.standard_normal((2, 3, 4, 6))
    mask = ops.maxpool_mask(x, 2)
    G = rng.standard_normal((2, 5, 3, 2, 3))  # (N, q, C, Ho, Wo)
    back = ops.maxpool2d_input_grad(G, mask, 2, 4, 6)
    assert back.shape == (2, 5, 3, 4, 6)
    for j in range(5):
        np.testing.assert_array_equal(back[:, j], ops.maxpool2d_input_grad(G[:, j], mask, 2, 4, 6))
    check_against_finite_differences(lambda G: ops.maxpool2d_input_grad(G, mask, 2, 4, 6), (G,), rng)


@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_avgpool2d_equals_reshape_and_mean_with_the_same_gradient(rng, shape):
    x = rng.standard_normal(shape)
    assert_same_function(ops.avgpool2d, lambda x: avgpool_reshape(x, 2), (x,), rng)
    check_against_finite_differences(ops.avgpool2d, (x,), rng)


def test_global_avgpool_is_the_mean_over_the_whole_map(rng):
    x = rng.standard_normal((2, 3, 5, 5))
    assert_same_function(lambda x: ops.avgpool2d(x, 5), lambda x: anp.mean(x, axis=(2, 3), keepdims=True), (x,), rng)


@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_avgpool2d_input_grad_is_adjoint_of_avgpool2d(rng, shape):
    x = rng.standard_normal(shape)
    g = rng.standard_normal(ops.avgpool2d(x, 2).shape)
    back = ops.avgpool2d_input_grad(g, 2, shape[2], shape[3])
    assert back.shape == x.shape
    assert np.isclose(inner(ops.avgpool2d(x, 2), g), inner(x, back), rtol=1e-12)
    check_against_finite_differences(lambda g: ops.avgpool2d_input_grad(g, 2, shape[2], shape[3]), (g,), rng)


# ---- fused training primitives (one tape node per layer) -----------------------------------------------------
# Each equals its one-op-per-primitive reference (``*_reference``), value and every gradient, matches finite
# differences, keeps float32 in float32, and stays differentiable a second time (through the reference).
ACTS = ["relu", "tanh", "identity"]


def all_gradients(f, args, R, argnums):
    return [grad(lambda *a: anp.sum(f(*a) * R), i)(*args) for i in argnums]


def assert_fused_equals_reference(fused, ref, args, rng, argnums, rtol=1e-12):
    out, expected = fused(*args), ref(*args)
    assert np.shape(out) == np.shape(expected)
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol)
    R = rng.standard_normal(np.shape(out))
    for i, a, b in zip(argnums, all_gradients(fused, args, R, argnums), all_gradients(ref, args, R, argnums)):
        scale = max(1.0, float(np.max(np.abs(b))))
        np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale, err_msg=f"gradient of argument {i}")


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("x_shape", [(5, 4), (2, 3, 4)])
def test_dense_act_equals_matmul_add_bias_activation_with_the_same_gradients(rng, activation, x_shape):
    args = (rng.standard_normal(x_shape), rng.standard_normal((4, 6)), rng.standard_normal(6))
    f = lambda x, W, b: ops.dense_act(x, W, b, activation)  # noqa: E731
    r = lambda x, W, b: ops.dense_act_reference(x, W, b, activation)  # noqa: E731
    assert_fused_equals_reference(f, r, args, rng, (0, 1, 2))
    check_against_finite_differences(f, args, rng)


def test_linear_cross_entropy_equals_the_head_then_cross_entropy_with_the_same_gradients(rng):
    Z, W, b, y = rng.standard_normal((7, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4), np.arange(7) % 4
    f = lambda Z, W, b: ops.linear_cross_entropy(Z, W, b, y)  # noqa: E731
    r = lambda Z, W, b: cross_entropy_logsumexp(anp.dot(Z, W) + b, y)  # noqa: E731
    assert_fused_equals_reference(f, r, (Z, W, b), rng, (0, 1, 2))
    assert ops.linear_cross_entropy(Z, W, b, y) == ops.linear_cross_entropy_reference(Z, W, b, y)
    check_against_finite_differences(f, (Z, W, b), rng)


FUSED_CONV_CASES = [  # (kernel, stride, padding, h, w, bias)
    (3, 1, 1, 6, 6, True), (3, 2, 0, 7, 7, True), (1, 1, 0, 5, 4, False), (5, 1, 2, 7, 5, True)]


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("k,stride,padding,h,w,bias", FUSED_CONV_CASES)
def test_conv2d_act_equals_conv_add_bias_activation_with_the_same_gradients(rng, activation, k, stride, padding, h,
                                                                            w, bias):
    x, W, b = rng.standard_normal((2, 3, h, w)), rng.standard_normal((4, 3, k, k)), rng.standard_normal(4)
    f = lambda x, W, b: ops.conv2d_act(x, W, b if bias else None, stride, padding, activation)  # noqa: E731
    r = lambda x, W, b: ops.conv2d_act_reference(x, W, b if bias else None, stride, padding, activation)  # noqa: E731
    assert_fused_equals_reference(f, r, (x, W, b), rng, (0, 1, 2) if bias else (0, 1))
    check_against_finite_differences(f, (x, W, b), rng, (0, 1, 2) if bias else (0, 1))


FUSED_POOL_CASES = [  # (kernel, padding, pool, h, w): even and odd maps, rows a window does not reach, pool 1 and 3
    (3, 1, 2, 8, 8), (3, 1, 2, 7, 9), (3, 0, 2, 8, 7), (1, 0, 2, 6, 6), (5, 2, 3, 9, 7), (3, 1, 1, 5, 5)]


@pytest.mark.parametrize("activation", ["relu", "identity"])
@pytest.mark.parametrize("k,padding,pool,h,w", FUSED_POOL_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_act_pool_equals_conv_activation_then_maxpool_with_the_same_gradients(rng, activation, k, padding, pool,
                                                                                     h, w, bias):
    x, W, b = rng.standard_normal((3, 2, h, w)), rng.standard_normal((4, 2, k, k)), rng.standard_normal(4)
    f = lambda x, W, b: ops.conv2d_act_pool(x, W, b if bias else None, padding, activation, pool)  # noqa: E731
    r = lambda x, W, b: maxpool_reshape(conv2d_loop(x, W, 1, padding) + (  # noqa: E731
        anp.reshape(b, (1, -1, 1, 1)) if bias else 0.0), pool)
    if activation == "relu":
        r_ = r
        r = lambda x, W, b: anp.maximum(r_(x, W, b), 0.0)  # noqa: E731  (relu and max commute exactly)
    argnums = (0, 1, 2) if bias else (0, 1)
    assert_fused_equals_reference(f, r, (x, W, b), rng, argnums, rtol=1e-10)
    def g(x, W, b):
        return ops.conv2d_act_pool_reference(x, W, b if bias else None, padding, activation, pool)

    assert_fused_equals_reference(f, g, (x, W, b), rng, argnums)
    check_against_finite_differences(f, (x, W, b), rng, argnums)


def test_conv2d_act_pool_routes_a_tie_to_the_first_maximum_like_maxpool2d(rng):
    x = np.ones((2, 1, 4, 4))  # a constant image: every window of the conv output is one big tie
    W, b = rng.standard_normal((3, 1, 3, 3)), rng.standard_normal(3)
    R = rng.standard_normal((2, 3, 2, 2))
    for i in (0, 1, 2):
        a = grad(lambda *a: anp.sum(ops.conv2d_act_pool(*a, 1, "identity", 2) * R), i)(x, W, b)
        r = grad(lambda *a: anp.sum(ops.conv2d_act_pool_reference(*a, 1, "identity", 2) * R), i)(x, W, b)
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)


def test_conv2d_act_pool_weight_gradient_of_a_long_batch_takes_the_blocked_product_and_stays_exact(rng):
    # 40 images of 28 x 28 through a 1 -> 4 channel stem: K = 4 * 14 * 15 * 40 = 33,600 output pixels, so the
    # weight gradient is summed over 8 blocks of 4,096 plus a remainder (the first layer of every convnet step)
    x, W, b = rng.standard_normal((40, 1, 28, 28)), rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4)
    f = lambda x, W, b: ops.conv2d_act_pool(x, W, b, 1, "relu", 2)  # noqa: E731
    assert_fused_equals_reference(f, lambda x, W, b: ops.conv2d_act_pool_reference(x, W, b, 1, "relu", 2),
                                  (x, W, b), rng, (0, 1, 2), rtol=1e-11)


def test_conv2d_act_pool_reads_inputs_of_any_memory_layout(rng):
    x = rng.standard_normal((3, 2, 8, 8))
    W, b = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    expected = ops.conv2d_act_pool(x, W, b, 1, "relu", 2)
    for layout in ((0, 1, 2, 3), (1, 2, 3, 0), (3, 2, 1, 0)):  # standard, batch-last (a fused layer's), reversed
        x_other = np.ascontiguousarray(x.transpose(layout)).transpose(np.argsort(layout))
        np.testing.assert_array_equal(ops.conv2d_act_pool(x_other, W, b, 1, "relu", 2), expected)


@pytest.mark.parametrize("shape", POOL_SHAPES + [(2, 2, 4, 4)])
def test_maxpool2d_train_equals_maxpool2d_with_the_same_gradient_ties_included(rng, shape):
    x = rng.standard_normal(shape)
    x[0, 0] = 1.0  # a map of ties
    assert_fused_equals_reference(lambda x: ops.maxpool2d_train(x, 2), lambda x: ops.maxpool2d(x, 2), (x,), rng, (0,))


@pytest.mark.parametrize("case", ["dense", "conv", "conv_pool", "loss"])
def test_fused_gradients_are_differentiable_again_through_the_reference(rng, case):
    x = rng.standard_normal((2, 2, 5, 5))
    if case == "dense":
        args, f = (rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)), ops.dense_act
        r, extra = ops.dense_act_reference, ("tanh",)
    elif case == "conv":
        args, f, r, extra = (x, rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)), ops.conv2d_act, \
            ops.conv2d_act_reference, (1, 1, "tanh")
    elif case == "conv_pool":
        args, f, r, extra = (x, rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)), ops.conv2d_act_pool, \
            ops.conv2d_act_pool_reference, (1, "identity", 2)
    else:
        y = np.array([1, 0, 2])
        args, f, r, extra = (rng.standard_normal((3, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)), \
            ops.linear_cross_entropy, ops.linear_cross_entropy_reference, (y,)
    R = rng.standard_normal(np.shape(f(*args, *extra)))
    # d/dW of ||d/dx <f, R>||^2: a gradient of a gradient, with the cotangent and the forward values boxed
    def second(fn):
        inner = lambda W: grad(lambda x: anp.sum(fn(x, W, args[2], *extra) * R))(args[0])  # noqa: E731
        return grad(lambda W: anp.sum(inner(W) ** 2))

    np.testing.assert_allclose(second(f)(args[1]), second(r)(args[1]), rtol=1e-10, atol=1e-12)
    if case in ("conv", "conv_pool"):
        return  # the reference's own conv2d weight VJP is not differentiable in its cotangent
    # the VJP of the fused primitive, differentiated in its cotangent
    vjp, _ = make_vjp(lambda W: f(args[0], W, args[2], *extra))(args[1])
    vjp_ref, _ = make_vjp(lambda W: r(args[0], W, args[2], *extra))(args[1])
    u = rng.standard_normal(np.shape(args[1]))
    np.testing.assert_allclose(grad(lambda c: anp.sum(vjp(c) * u))(R if case != "loss" else 1.0),
                               grad(lambda c: anp.sum(vjp_ref(c) * u))(R if case != "loss" else 1.0), rtol=1e-10)


@pytest.mark.parametrize("case", ["dense", "conv", "conv_pool", "loss", "maxpool"])
def test_fused_primitives_keep_float32_in_float32(rng, case):
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    x = f32(2, 2, 6, 6)
    if case == "dense":
        fn, args = (lambda x, W, b: ops.dense_act(x, W, b, "relu")), (f32(3, 4), f32(4, 5), f32(5))
    elif case == "conv":
        fn, args = (lambda x, W, b: ops.conv2d_act(x, W, b, 1, 1, "relu")), (x, f32(3, 2, 3, 3), f32(3))
    elif case == "conv_pool":
        fn, args = (lambda x, W, b: ops.conv2d_act_pool(x, W, b, 1, "relu", 2)), (x, f32(3, 2, 3, 3), f32(3))
    elif case == "loss":
        y = np.array([0, 2, 1])
        fn, args = (lambda Z, W, b: ops.linear_cross_entropy(Z, W, b, y)), (f32(3, 4), f32(4, 3), f32(3))
    else:
        fn, args = (lambda x: ops.maxpool2d_train(x, 2)), (x,)
    out = fn(*args)
    assert out.dtype == np.float32
    for i in range(len(args)):
        assert grad(lambda *a: anp.sum(fn(*a) * np.ones(np.shape(out), np.float32)), i)(*args).dtype == np.float32


def test_fused_primitives_refuse_unknown_activations_and_unsupported_pooling(rng):
    x, W, b = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    with pytest.raises(ValueError, match="activation must be one of"):
        ops.dense_act(rng.standard_normal((2, 3)), rng.standard_normal((3, 2)), np.zeros(2), "gelu")
    with pytest.raises(ValueError, match="activation 'relu' or 'identity'"):
        ops.conv2d_act_pool(x, W, b, 1, "tanh", 2)
    with pytest.raises(ValueError, match="x must be"):
        ops.conv2d_act(rng.standard_normal((1, 3, 4, 4)), W, b, 1, 1, "relu")
