"""models.py: shapes, the parameter convention, the embedding, input checks, seeds, and exact derivatives.

Gradients are checked against central finite differences in float64 (the layers' input-Jacobian products are
tested in test_layers.py). Parameters are perturbed away from their initial values so residual scales (SkipInit
alpha = 0) and zero biases are exercised.
"""
import numpy as np
import pytest
from autograd import grad

from conftest import assert_vjp_matches_fd
from minigcnc import models
from minigcnc.backend import tree_leaves, tree_map

SMALL = {  # laptop-fast versions of each model kind, for derivative checks
    "mlp-relu": lambda: models.mlp([12, 8, 6], 3),
    "mlp-tanh": lambda: models.mlp([12, 8, 6], 3, activation="tanh"),
    "convnet": lambda: models.convnet((1, 8, 8), 3, channels=(2, 3), hidden=(5,)),
    "vgg11": lambda: models.vgg("vgg11", (3, 8, 8), 3, width=1 / 16, hidden=64),
    "vgg13": lambda: models.vgg("vgg13", (3, 8, 8), 3, width=1 / 16, hidden=64),
    "resnet18": lambda: models.resnet18((3, 8, 8), 3, width=1 / 16),
}


def perturbed_params(model, rng, scale=0.1):
    return tree_map(lambda a: a + scale * rng.standard_normal(np.shape(a)), model.init(0))


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
