"""fused.py: every fused training primitive equals its one-op-per-primitive reference (``*_reference``, built
from ``ops``), value and every gradient, matches finite differences, keeps float32 in float32, and stays
differentiable a second time (through the reference). All in float64 unless said.
"""
import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, make_vjp

from conftest import (assert_vjp_matches_fd, check_against_finite_differences, conv2d_loop, cross_entropy_logsumexp,
                      inner, maxpool_reshape)
from minigcnc import fused, ops

POOL_SHAPES = [(2, 3, 4, 6), (1, 2, 7, 5)]  # the second does not divide by 2: the last row/column is dropped

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
    f = lambda x, W, b: fused.dense_act(x, W, b, activation)  # noqa: E731
    r = lambda x, W, b: fused.dense_act_reference(x, W, b, activation)  # noqa: E731
    assert_fused_equals_reference(f, r, args, rng, (0, 1, 2))
    check_against_finite_differences(f, args, rng)


def test_linear_cross_entropy_equals_the_head_then_cross_entropy_with_the_same_gradients(rng):
    Z, W, b, y = rng.standard_normal((7, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4), np.arange(7) % 4
    f = lambda Z, W, b: fused.linear_cross_entropy(Z, W, b, y)  # noqa: E731
    r = lambda Z, W, b: cross_entropy_logsumexp(anp.dot(Z, W) + b, y)  # noqa: E731
    assert_fused_equals_reference(f, r, (Z, W, b), rng, (0, 1, 2))
    assert fused.linear_cross_entropy(Z, W, b, y) == fused.linear_cross_entropy_reference(Z, W, b, y)
    check_against_finite_differences(f, (Z, W, b), rng)


FUSED_CONV_CASES = [  # (kernel, stride, padding, h, w, bias)
    (3, 1, 1, 6, 6, True), (3, 2, 0, 7, 7, True), (1, 1, 0, 5, 4, False), (5, 1, 2, 7, 5, True)]


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("k,stride,padding,h,w,bias", FUSED_CONV_CASES)
def test_conv2d_act_equals_conv_add_bias_activation_with_the_same_gradients(rng, activation, k, stride, padding, h,
                                                                            w, bias):
    x, W, b = rng.standard_normal((2, 3, h, w)), rng.standard_normal((4, 3, k, k)), rng.standard_normal(4)
    f = lambda x, W, b: fused.conv2d_act(x, W, b if bias else None, stride, padding, activation)  # noqa: E731
    r = lambda x, W, b: fused.conv2d_act_reference(x, W, b if bias else None, stride, padding, activation)  # noqa: E731
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
    f = lambda x, W, b: fused.conv2d_act_pool(x, W, b if bias else None, padding, activation, pool)  # noqa: E731
    r = lambda x, W, b: maxpool_reshape(conv2d_loop(x, W, 1, padding) + (  # noqa: E731
        anp.reshape(b, (1, -1, 1, 1)) if bias else 0.0), pool)
    if activation == "relu":
        r_ = r
        r = lambda x, W, b: anp.maximum(r_(x, W, b), 0.0)  # noqa: E731  (relu and max commute exactly)
    argnums = (0, 1, 2) if bias else (0, 1)
    assert_fused_equals_reference(f, r, (x, W, b), rng, argnums, rtol=1e-10)
    def g(x, W, b):
        return fused.conv2d_act_pool_reference(x, W, b if bias else None, padding, activation, pool)

    assert_fused_equals_reference(f, g, (x, W, b), rng, argnums)
    check_against_finite_differences(f, (x, W, b), rng, argnums)


def test_conv2d_act_pool_routes_a_tie_to_the_first_maximum_like_maxpool2d(rng):
    x = np.ones((2, 1, 4, 4))  # a constant image: every window of the conv output is one big tie
    W, b = rng.standard_normal((3, 1, 3, 3)), rng.standard_normal(3)
    R = rng.standard_normal((2, 3, 2, 2))
    for i in (0, 1, 2):
        a = grad(lambda *a: anp.sum(fused.conv2d_act_pool(*a, 1, "identity", 2) * R), i)(x, W, b)
        r = grad(lambda *a: anp.sum(fused.conv2d_act_pool_reference(*a, 1, "identity", 2) * R), i)(x, W, b)
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)


def test_conv2d_act_pool_weight_gradient_of_a_long_batch_takes_the_blocked_product_and_stays_exact(rng):
    # 40 images of 28 x 28 through a 1 -> 4 channel stem: K = 4 * 14 * 15 * 40 = 33,600 output pixels, so the
    # weight gradient is summed over 8 blocks of 4,096 plus a remainder (the first layer of every convnet step)
    x, W, b = rng.standard_normal((40, 1, 28, 28)), rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4)
    f = lambda x, W, b: fused.conv2d_act_pool(x, W, b, 1, "relu", 2)  # noqa: E731
    assert_fused_equals_reference(f, lambda x, W, b: fused.conv2d_act_pool_reference(x, W, b, 1, "relu", 2),
                                  (x, W, b), rng, (0, 1, 2), rtol=1e-11)


def test_conv2d_act_pool_reads_inputs_of_any_memory_layout(rng):
    x = rng.standard_normal((3, 2, 8, 8))
    W, b = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    expected = fused.conv2d_act_pool(x, W, b, 1, "relu", 2)
    for layout in ((0, 1, 2, 3), (1, 2, 3, 0), (3, 2, 1, 0)):  # standard, batch-last (a fused layer's), reversed
        x_other = np.ascontiguousarray(x.transpose(layout)).transpose(np.argsort(layout))
        np.testing.assert_array_equal(fused.conv2d_act_pool(x_other, W, b, 1, "relu", 2), expected)


@pytest.mark.parametrize("shape", POOL_SHAPES + [(2, 2, 4, 4)])
def test_maxpool2d_train_equals_maxpool2d_with_the_same_gradient_ties_included(rng, shape):
    x = rng.standard_normal(shape)
    x[0, 0] = 1.0  # a map of ties
    assert_fused_equals_reference(lambda x: fused.maxpool2d_train(x, 2), lambda x: ops.maxpool2d(x, 2), (x,), rng, (0,))


@pytest.mark.parametrize("case", ["dense", "conv", "conv_pool", "loss"])
def test_fused_gradients_are_differentiable_again_through_the_reference(rng, case):
    x = rng.standard_normal((2, 2, 5, 5))
    if case == "dense":
        args, f = (rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)), fused.dense_act
        r, extra = fused.dense_act_reference, ("tanh",)
    elif case == "conv":
        args, f, r, extra = (x, rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)), fused.conv2d_act, \
            fused.conv2d_act_reference, (1, 1, "tanh")
    elif case == "conv_pool":
        args, f, r, extra = (x, rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)), fused.conv2d_act_pool, \
            fused.conv2d_act_pool_reference, (1, "identity", 2)
    else:
        y = np.array([1, 0, 2])
        args, f, r, extra = (rng.standard_normal((3, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)), \
            fused.linear_cross_entropy, fused.linear_cross_entropy_reference, (y,)
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
        fn, args = (lambda x, W, b: fused.dense_act(x, W, b, "relu")), (f32(3, 4), f32(4, 5), f32(5))
    elif case == "conv":
        fn, args = (lambda x, W, b: fused.conv2d_act(x, W, b, 1, 1, "relu")), (x, f32(3, 2, 3, 3), f32(3))
    elif case == "conv_pool":
        fn, args = (lambda x, W, b: fused.conv2d_act_pool(x, W, b, 1, "relu", 2)), (x, f32(3, 2, 3, 3), f32(3))
    elif case == "loss":
        y = np.array([0, 2, 1])
        fn, args = (lambda Z, W, b: fused.linear_cross_entropy(Z, W, b, y)), (f32(3, 4), f32(4, 3), f32(3))
    else:
        fn, args = (lambda x: fused.maxpool2d_train(x, 2)), (x,)
    out = fn(*args)
    assert out.dtype == np.float32
    for i in range(len(args)):
        assert grad(lambda *a: anp.sum(fn(*a) * np.ones(np.shape(out), np.float32)), i)(*args).dtype == np.float32


def test_fused_primitives_refuse_unknown_activations_and_unsupported_pooling(rng):
    x, W, b = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    with pytest.raises(ValueError, match="activation must be one of"):
        fused.dense_act(rng.standard_normal((2, 3)), rng.standard_normal((3, 2)), np.zeros(2), "gelu")
    with pytest.raises(ValueError, match="activation 'relu' or 'identity'"):
        fused.conv2d_act_pool(x, W, b, 1, "tanh", 2)
    with pytest.raises(ValueError, match="x must be"):
        fused.conv2d_act(rng.standard_normal((1, 3, 4, 4)), W, b, 1, 1, "relu")
