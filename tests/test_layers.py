"""layers.py: every layer's batched transpose-Jacobian product (jtp) is the exact input-Jacobian product, and the
layer constructors check their arguments and input shapes.

The jtp is checked through each model kind's body (``Serial`` of its layers) against central finite differences
in float64, for the embedding and, through the head, for the logits. Parameters are perturbed away from their
initial values so residual scales (SkipInit alpha = 0) and zero biases are exercised.
"""
import numpy as np
import pytest

from minigcnc import layers, models, ops
from minigcnc.backend import tree_map

SMALL = {  # laptop-fast versions of each model kind: together they use every layer
    "mlp-relu": lambda: models.mlp([12, 8, 6], 3),
    "mlp-tanh": lambda: models.mlp([12, 8, 6], 3, activation="tanh"),
    "convnet": lambda: models.convnet((1, 8, 8), 3, channels=(2, 3), hidden=(5,)),
    "vgg11": lambda: models.vgg("vgg11", (3, 8, 8), 3, width=1 / 16, hidden=64),
    "vgg13": lambda: models.vgg("vgg13", (3, 8, 8), 3, width=1 / 16, hidden=64),
    "resnet18": lambda: models.resnet18((3, 8, 8), 3, width=1 / 16),
}


def perturbed_params(model, rng, scale=0.1):
    return tree_map(lambda a: a + scale * rng.standard_normal(np.shape(a)), model.init(0))


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
