"""models.py: shapes, the parameter convention, the embedding, input checks, seeds, and exact derivatives.

Gradients are checked against central finite differences in float64 (the layers' input-Jacobian products are
tested in test_layers.py). Parameters are perturbed away from their initial values so residual scales (SkipInit
alpha = 0) and zero biases are exercised. The fused route (the training fast path, the default) equals the
one-op-per-primitive reference route: loss and parameter gradient, float64 to 1e-12 and float32 to 1e-5.
"""
import numpy as np
import pytest
from autograd import grad

from conftest import assert_vjp_matches_fd
from minigcnc import models
from conftest import SMALL, perturbed_params
from minigcnc.backend import tree_leaves, tree_map

# ---- shapes --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make,input_shape,p",
    [
        (lambda: models.mlp([784, 32, 16], 10), (784,), 16),
        (lambda: models.convnet((1, 28, 28), 10), (1, 28, 28), 128),
        (lambda: models.convnet((3, 32, 32), 10), (3, 32, 32), 128),
        (lambda: models.vgg("vgg11", (3, 32, 32), 10, width=1 / 16), (3, 32, 32), 32),
        (lambda: models.vgg("vgg13", (3, 32, 32), 10, width=1 / 16), (3, 32, 32), 32),
        (lambda: models.vgg("vgg11", (1, 28, 28), 10, width=1 / 16), (1, 28, 28), 32),
        (lambda: models.resnet18((3, 32, 32), 10, width=1 / 16), (3, 32, 32), 32),
    ],
    ids=["mlp", "convnet28", "convnet32", "vgg11", "vgg13", "vgg11-mnist", "resnet18"],
)
def test_embed_is_n_by_p_and_logits_are_n_by_k(rng, make, input_shape, p):
    model = make()
    params = model.init(0)
    X = rng.standard_normal((2,) + input_shape)
    assert model.embed_dim == p and model.input_dim == int(np.prod(input_shape))
    assert model.embed(params, X).shape == (2, p)
    assert model.logits(params, X).shape == (2, 10)


def test_mlp_params_are_w_b_pairs_with_w_fan_in_by_fan_out_and_the_head_last():
    params = models.mlp([784, 256, 64], 10).init(0)
    assert [(W.shape, b.shape) for W, b in params] == [((784, 256), (256,)), ((256, 64), (64,)), ((64, 10), (10,))]
    assert all(isinstance(pair, tuple) and len(pair) == 2 for pair in params)


@pytest.mark.parametrize("activation,act", [("relu", lambda z: np.maximum(z, 0)), ("tanh", np.tanh)])
def test_mlp_embedding_is_the_activation_of_the_last_hidden_layer(rng, activation, act):
    model = models.mlp([6, 5, 4], 3, activation=activation)
    params = perturbed_params(model, rng)
    X = rng.standard_normal((7, 6))
    (W1, b1), (W2, b2), (W, b) = params
    Z = act(act(X @ W1 + b1) @ W2 + b2)  # by hand, in plain numpy
    np.testing.assert_allclose(model.embed(params, X), Z, rtol=1e-13)
    np.testing.assert_allclose(model.logits(params, X), Z @ W + b, rtol=1e-13)


def test_mlp_relu_embedding_is_non_negative(rng):
    model = models.mlp([6, 5, 4], 3)
    assert np.all(model.embed(model.init(0), rng.standard_normal((20, 6))) >= 0)


# ---- inputs --------------------------------------------------------------------------------------------------
def test_models_accept_flat_or_image_shaped_inputs_of_the_right_size(rng):
    X = rng.standard_normal((3, 1, 8, 8))
    conv = models.convnet((1, 8, 8), 3, channels=(2, 3), hidden=(5,))
    pc = conv.init(0)
    np.testing.assert_array_equal(conv.logits(pc, X.reshape(3, 64)), conv.logits(pc, X))
    net = models.mlp([64, 5], 3)
    pm = net.init(0)
    np.testing.assert_array_equal(net.logits(pm, X), net.logits(pm, X.reshape(3, 64)))


def test_a_wrong_input_shape_raises_value_error_naming_the_expected_shape(rng):
    model = models.convnet((1, 28, 28), 10)
    params = model.init(0)
    with pytest.raises(ValueError, match=r"X has shape \(2, 3, 32, 32\).*inputs of shape \(N, \*\(1, 28, 28\)\).*784"):
        model.logits(params, rng.standard_normal((2, 3, 32, 32)))
    with pytest.raises(ValueError, match=r"X must be a batch"):
        model.embed(params, rng.standard_normal(784))


def test_a_model_needs_at_least_two_classes():
    with pytest.raises(ValueError, match="n_classes must be an integer >= 2; got 1"):
        models.mlp([4, 3], 1)


# ---- initialization ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mlp-relu", "convnet", "resnet18"])
def test_init_is_reproducible_from_the_seed(kind):
    model = SMALL[kind]()
    a, b, c = model.init(7), model.init(np.random.default_rng(7)), model.init(8)
    assert all(np.array_equal(x, y) for x, y in zip(tree_leaves(a), tree_leaves(b)))
    assert not all(np.array_equal(x, y) for x, y in zip(tree_leaves(a), tree_leaves(c)))


def test_init_uses_float64_on_the_host_unless_asked_otherwise():
    model = models.mlp([4, 3], 2)
    assert {a.dtype for a in tree_leaves(model.init(0))} == {np.dtype("float64")}
    assert {a.dtype for a in tree_leaves(model.init(0, dtype="float32"))} == {np.dtype("float32")}


def test_mlp_init_is_he_normal_with_zero_biases():
    params = models.mlp([2000, 1000], 10).init(0)
    W, b = params[0]
    assert abs(W.std() - np.sqrt(2 / 2000)) < 0.01 * np.sqrt(2 / 2000)
    assert not b.any() and not params[-1][1].any()


# ---- derivatives ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(SMALL))
def test_loss_gradient_matches_finite_differences(rng, kind):
    model = SMALL[kind]()
    params = perturbed_params(model, rng)
    X = rng.standard_normal((3,) + model.input_shape)
    y = np.array([0, 2, 1])
    g = grad(model.loss)(params, X, y)
    assert [np.shape(a) for a in tree_leaves(g)] == [np.shape(a) for a in tree_leaves(params)]
    assert_vjp_matches_fd(lambda p: model.loss(p, X, y), params, rng)


# ---- the fused route (the training fast path) against the reference route ------------------------------------
ROUTE_MODELS = {  # the benchmarked networks (narrower) and the paper's, small
    "mlp-relu": lambda: models.mlp([20, 16, 16, 8], 4),
    "mlp-tanh": lambda: models.mlp([20, 16, 16, 8], 4, activation="tanh"),
    "convnet": lambda: models.convnet((1, 12, 12), 4, channels=(3, 4), hidden=(8,)),
    "convnet-tanh": lambda: models.convnet((1, 12, 12), 4, channels=(3, 4), hidden=(8,), activation="tanh"),
    "vgg11": SMALL["vgg11"],
    "resnet18": SMALL["resnet18"],
}
ROUTE_RTOL = {"float64": 1e-12, "float32": 1e-5}


def fused_and_reference(model, params, X, y):
    """((loss, gradient) by the fused route, the same by the reference route), both by autograd."""
    fused = (model.loss(params, X, y), grad(lambda p: model.loss(p, X, y))(params))
    ref = (model.loss(params, X, y, fused=False), grad(lambda p: model.loss(p, X, y, fused=False))(params))
    return fused, ref


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", list(ROUTE_MODELS))
def test_the_fused_loss_and_its_parameter_gradient_equal_the_reference_route(rng, kind, dtype):
    model = ROUTE_MODELS[kind]()
    params = tree_map(lambda a: a.astype(dtype), perturbed_params(model, rng))
    X = rng.standard_normal((16,) + model.input_shape).astype(dtype)
    y = rng.integers(0, model.n_classes, size=16)
    (loss, g), (loss_ref, g_ref) = fused_and_reference(model, params, X, y)
    rtol = ROUTE_RTOL[dtype]
    np.testing.assert_allclose(loss, loss_ref, rtol=rtol)
    assert np.asarray(loss).dtype == dtype
    for a, b in zip(tree_leaves(g), tree_leaves(g_ref)):
        assert a.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=rtol * max(1.0, float(np.max(np.abs(b)))))
    np.testing.assert_allclose(model.embed(params, X), model.embed(params, X, fused=False), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(model.logits(params, X), model.logits(params, X, fused=False), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("kind", ["mlp-relu", "mlp-tanh"])
def test_the_fused_mlp_is_the_reference_bit_for_bit(rng, kind):
    """The same GEMMs, the same elementwise operations in the same order: not just close, equal."""
    model = ROUTE_MODELS[kind]()
    params = perturbed_params(model, rng)
    X, y = rng.standard_normal((16, 20)), rng.integers(0, 4, size=16)
    (loss, g), (loss_ref, g_ref) = fused_and_reference(model, params, X, y)
    assert loss == loss_ref
    assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(g), tree_leaves(g_ref)))


@pytest.mark.parametrize("kind", ["mlp-relu", "convnet"])
def test_the_fused_loss_gradient_matches_finite_differences_on_a_tiny_case(rng, kind):
    model = {"mlp-relu": lambda: models.mlp([5, 4, 3], 3),
             "convnet": lambda: models.convnet((1, 6, 6), 3, channels=(2, 2), hidden=(4,))}[kind]()
    params = perturbed_params(model, rng)
    X, y = rng.standard_normal((3,) + model.input_shape), np.array([0, 2, 1])
    assert_vjp_matches_fd(lambda p: model.loss(p, X, y), params, rng)
    assert_vjp_matches_fd(lambda x: model.loss(params, x, y), X, rng)  # and in the input


def test_no_float64_enters_a_float32_training_step(rng, monkeypatch):
    """float32 end to end: every value the fused primitives see or make, forward and backward, stays float32."""
    from autograd.core import primitive_vjps

    from minigcnc import fast_step, fused

    model = models.convnet((1, 12, 12), 4, channels=(3, 4), hidden=(8,))
    params = model.init(0, dtype="float32")
    X, y = rng.standard_normal((8, 1, 12, 12)).astype(np.float32), rng.integers(0, 4, size=8)
    seen = []

    def spying(vjpmaker):
        def maker(argnums, ans, args, kwargs):
            seen.extend(a.dtype for a in (ans,) + tuple(args) if getattr(a, "dtype", np.dtype(int)).kind == "f")
            vjp = vjpmaker(argnums, ans, args, kwargs)

            def spy(g):
                grads = list(vjp(g))
                seen.extend([np.asarray(g).dtype] + [r.dtype for r in grads])
                return grads

            return spy

        return maker

    for prim in (fused._conv2d_pool_act, fused.dense_act, fused.linear_cross_entropy):
        monkeypatch.setitem(primitive_vjps, prim, spying(primitive_vjps[prim]))
    loss, g = fast_step.value_and_grad_leaves(lambda p: model.loss(p, X, y))(params)
    assert len(seen) > 20 and set(seen) == {np.dtype(np.float32)}, set(seen)
    assert np.asarray(loss).dtype == np.float32 and {a.dtype for a in tree_leaves(g)} == {np.dtype(np.float32)}
