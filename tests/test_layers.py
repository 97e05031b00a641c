"""layers.py: every layer's batched transpose-Jacobian product (jtp) is the exact input-Jacobian product, and the
layer constructors check their arguments and input shapes.

The jtp is checked through each model kind's body (``Serial`` of its layers) against central finite differences
in float64, for the embedding and, through the head, for the logits. Parameters are perturbed away from their
initial values so residual scales (SkipInit alpha = 0) and zero biases are exercised. Each layer's ``forward``
(the training fast path, fused primitives) equals the output of its ``apply``, value and gradients.
"""
import numpy as np
import pytest
from autograd import grad

from minigcnc import fused, layers, ops
from conftest import SMALL, perturbed_params
from minigcnc.backend import tree_leaves, tree_map

@pytest.mark.parametrize("kind", list(SMALL))
@pytest.mark.parametrize("target", ["embed", "logits"])
def test_jtp_is_the_exact_input_jacobian_product(rng, kind, target):
    """For every sample n and cotangent q: <T[n, q], J_n V_n> (central differences) == <jtp(T)[n, q], V_n>."""
    model = SMALL[kind]()
    params = perturbed_params(model, rng)
    N, q, eps = 3, 2, 1e-6
    X = rng.standard_normal((N, model.input_dim))
    f = model.embed if target == "embed" else model.logits
    _, caches = model.embed_with_cache(params, X)
    T = rng.standard_normal((N, q, f(params, X).shape[1]))
    T_embed = T if target == "embed" else ops.matmul_t(T, params[-1][0])  # through the head: (N, q, k) -> (N, q, p)
    JT = model.body.jtp(params[:-1], caches, T_embed).reshape(N, q, -1)
    assert JT.shape == (N, q, model.input_dim)
    for _ in range(2):
        V = rng.standard_normal(X.shape)
        JV = (f(params, X + eps * V) - f(params, X - eps * V)) / (2 * eps)  # (N, p)
        fd = np.einsum("nqp,np->nq", T, JV)
        exact = np.einsum("nqd,nd->nq", JT, V)
        np.testing.assert_allclose(exact, fd, rtol=1e-6, atol=1e-7)


def test_activations_are_named_by_the_registry_and_unknown_names_are_refused():
    assert layers.ACTIVATIONS == ("relu", "tanh", "identity")
    for name in layers.ACTIVATIONS:
        assert layers.Activation(name).name == name
    with pytest.raises(ValueError, match=r"activation must be one of 'relu', 'tanh', 'identity'; got 'gelu'"):
        layers.DenseAct(4, activation="gelu")


def test_layers_refuse_inputs_of_the_wrong_rank_and_name_the_fix(rng):
    with pytest.raises(ValueError, match=r"DenseAct expects flat inputs .* add Flatten\(\) first"):
        layers.DenseAct(4).init(rng, (1, 4, 4), "float64")
    with pytest.raises(ValueError, match=r"Conv expects image inputs \(C, H, W\)"):
        layers.Conv(4).init(rng, (16,), "float64")
    with pytest.raises(ValueError, match=r"Residual: main branch gives \(4, 4, 4\) but shortcut gives \(2, 4, 4\)"):
        layers.Residual(layers.Serial(layers.Conv(4, 3))).init(rng, (2, 4, 4), "float64")


# ---- the training fast path: forward -------------------------------------------------------------------------
EVERY_LAYER = {  # one of each layer kind and option, alone, on an input it takes
    "dense-relu": (lambda: layers.DenseAct(5), (7,)),
    "dense-tanh": (lambda: layers.DenseAct(5, "tanh"), (7,)),
    "dense-identity": (lambda: layers.Dense(5), (7,)),
    "activation-tanh": (lambda: layers.Activation("tanh"), (4, 3)),
    "conv-relu": (lambda: layers.Conv(3, 3), (2, 6, 6)),
    "conv-tanh-stride2": (lambda: layers.Conv(3, 3, stride=2, activation="tanh"), (2, 7, 7)),
    "conv-no-bias": (lambda: layers.Conv(3, 1, padding=0, activation="identity", bias=False), (2, 5, 5)),
    "maxpool": (lambda: layers.MaxPool(2), (2, 5, 6)),
    "avgpool": (lambda: layers.AvgPool(2), (2, 6, 6)),
    "flatten": (lambda: layers.Flatten(), (2, 3, 3)),
    "conv+maxpool (fused)": (lambda: layers.Serial(layers.Conv(3, 3), layers.MaxPool(2)), (2, 7, 6)),
    "residual": (lambda: layers.Residual(layers.Serial(layers.Conv(2, 3), layers.Conv(2, 3, activation="identity"))),
                 (2, 4, 4)),
}


@pytest.mark.parametrize("name", list(EVERY_LAYER))
def test_forward_equals_the_output_of_apply_and_has_the_same_gradients(rng, name):
    make, in_shape = EVERY_LAYER[name]
    layer = make()
    _, params = layer.init(rng, in_shape, "float64")
    params = tree_map(lambda a: a + 0.3 * rng.standard_normal(np.shape(a)), params)
    x = rng.standard_normal((3,) + in_shape)
    y = layer.forward(params, x)
    np.testing.assert_allclose(y, layer.apply(params, x)[0], rtol=1e-12, atol=1e-12)
    R = rng.standard_normal(np.shape(y))
    for i in (0, 1) if tree_leaves(params) else (1,):
        fused = grad(lambda p, x: ops.sum(layer.forward(p, x) * R), i)(params, x)
        ref = grad(lambda p, x: ops.sum(layer.apply(p, x)[0] * R), i)(params, x)
        for a, b in zip(tree_leaves(fused), tree_leaves(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


def test_serial_fuses_a_conv_and_the_max_pool_after_it_and_a_layer_without_forward_uses_apply(rng, monkeypatch):
    conv = layers.Conv(3, 3)
    assert conv.forward_pool is not None and layers.MaxPool(2).pool_size == 2
    assert layers.Conv(3, 3, activation="tanh").forward_pool is None  # tanh: two primitives
    assert layers.Conv(3, 3, stride=2).forward_pool is None
    assert layers.AvgPool(2).pool_size is None  # only max-pooling fuses
    calls = []
    monkeypatch.setattr(fused, "conv2d_act_pool", lambda *a: calls.append(a) or fused.conv2d_act_pool_reference(*a))
    body = layers.Serial(conv, layers.MaxPool(2), layers.Flatten())
    _, params = body.init(rng, (1, 6, 6), "float64")
    body.forward(params, rng.standard_normal((2, 1, 6, 6)))
    assert len(calls) == 1
    plain = layers.Layer("double", lambda rng, s, d: (s, ()), lambda p, x: (2 * x, None), lambda p, c, T: 2 * T)
    assert np.array_equal(plain.forward((), np.ones(3)), 2 * np.ones(3))
    assert (plain.kind, plain.pre_linear_jtp, plain.forward_pool, plain.pool_size) == ("", None, None, None)


def test_the_kinds_the_jacobian_engine_reads_and_the_dense_pre_linear_jtp():
    kinds = {"dense": layers.DenseAct(3), "conv": layers.Conv(2), "pool": layers.MaxPool(2),
             "residual": layers.Residual(layers.Serial(layers.Conv(2)))}
    assert {kind: layer.kind for kind, layer in kinds.items()} == {kind: kind for kind in kinds}
    assert layers.AvgPool().kind == "pool" and layers.Flatten().kind == layers.Serial().kind == ""
    dense = layers.DenseAct(3, "tanh")
    assert dense.pre_linear_jtp is not None and layers.Conv(2).pre_linear_jtp is None
    d, T = np.full((2, 3), 0.5), np.ones((2, 4, 3))
    np.testing.assert_array_equal(dense.pre_linear_jtp(None, d, T), T * 0.5)  # the activation part of the jtp
