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

from conftest import (assert_vjp_matches_fd, check_against_finite_differences, conv2d_loop, cross_entropy_logsumexp,
                      inner, maxpool_reshape)
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


# ---- references in autograd.numpy ----------------------------------------------------------------------------
def conv2d_scipy(x, W):
    """Stride 1, no padding: scipy-style convolution with the flipped kernel, summed over input channels."""
    return convolve(x, W[:, :, ::-1, ::-1], axes=([2, 3], [2, 3]), dot_axes=([1], [1]), mode="valid")


def avgpool_reshape(x, s):
    N, C, H, W = x.shape
    x = x[:, :, : H // s * s, : W // s * s]
    return anp.mean(anp.reshape(x, (N, C, H // s, s, W // s, s)), axis=(3, 5))


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


@pytest.mark.parametrize("k,stride,padding,h,w", CONV_CASES, ids=CONV_IDS)
def test_conv_weight_grad_equals_autograds_vjp_of_the_reference_and_its_vjps_match_finite_differences(
        rng, k, stride, padding, h, w):
    x, W = _conv_args(rng, k, h, w)
    g = rng.standard_normal(ops.conv2d(x, W, stride, padding).shape)
    ours = lambda x, g: ops.conv_weight_grad(x, g, W.shape, stride, padding)  # noqa: E731

    def ref(x, g):  # dL/dW of the loop reference: linear in W, so the point W does not matter
        return make_vjp(lambda W: conv2d_loop(x, W, stride, padding))(W)[0](g)

    assert_same_function(ours, ref, (x, g), rng)
    check_against_finite_differences(ours, (x, g), rng)  # its own VJPs (a conv2d_input_grad and a conv2d)


@pytest.mark.parametrize("k,stride,padding,h,w", CONV_CASES, ids=CONV_IDS)
def test_the_second_derivatives_of_a_conv_loss_equal_central_differences_of_its_gradient(rng, k, stride, padding, h, w):
    """d/d(x, W) <grad_(x, W) L, (u, V)> for L = sum(tanh(conv2d(x, W)) * c): every VJP of conv2d's VJPs, against
    central differences of the (first-order) gradient along (u, V)."""
    x, W = _conv_args(rng, k, h, w)
    c = rng.standard_normal(ops.conv2d(x, W, stride, padding).shape)
    u, V = rng.standard_normal(x.shape), rng.standard_normal(W.shape)
    L = lambda x, W: ops.sum(ops.tanh(ops.conv2d(x, W, stride, padding)) * c)  # noqa: E731
    gL = grad(L, (0, 1))
    directional = lambda x, W: ops.sum(gL(x, W)[0] * u) + ops.sum(gL(x, W)[1] * V)  # noqa: E731
    Hx, HW = grad(directional, (0, 1))(x, W)  # the Hessian times (u, V), by reverse over reverse
    eps = 1e-5
    plus, minus = gL(x + eps * u, W + eps * V), gL(x - eps * u, W - eps * V)
    np.testing.assert_allclose(Hx, (plus[0] - minus[0]) / (2 * eps), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(HW, (plus[1] - minus[1]) / (2 * eps), rtol=1e-6, atol=1e-8)


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


@pytest.mark.parametrize("lead", [(2,), (2, 5)])
def test_maxpool_select_is_adjoint_of_maxpool2d_input_grad_and_its_vjp_matches_finite_differences(rng, lead):
    x = rng.standard_normal((2, 3, 5, 6))
    mask = ops.maxpool_mask(x, 2)
    G = rng.standard_normal(lead + (3, 2, 3))
    h = rng.standard_normal(lead + (3, 5, 6))
    picked = ops._maxpool_select(h, mask, 2)
    assert picked.shape == G.shape
    assert np.isclose(inner(ops.maxpool2d_input_grad(G, mask, 2, 5, 6), h), inner(G, picked), rtol=1e-12)
    check_against_finite_differences(lambda h: ops._maxpool_select(h, mask, 2), (h,), rng)


def test_the_second_derivative_of_max_pooling_equals_central_differences_of_its_gradient(rng):
    x = rng.standard_normal((2, 3, 4, 6))
    c, u = rng.standard_normal((2, 3, 2, 3)), rng.standard_normal(x.shape)
    gL = grad(lambda x: ops.sum(ops.tanh(ops.maxpool2d(ops.tanh(x), 2)) * c))
    Hu = grad(lambda x: ops.sum(gL(x) * u))(x)
    eps = 1e-5  # no tie within eps: the mask is the same at x +- eps u
    np.testing.assert_allclose(Hu, (gL(x + eps * u) - gL(x - eps * u)) / (2 * eps), rtol=1e-6, atol=1e-8)


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
