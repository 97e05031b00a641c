"""minigcnc/sharpness.py: Hutchinson's trace of the training-loss Hessian against the full Hessian of a tiny model."""
import numpy as np
import pytest
from autograd import grad
from autograd.misc import flatten

from minigcnc import layers, models, sharpness


@pytest.fixture(scope="module")
def tiny():
    """(model, params, X, y, H): an MLP 5-4-3 (51 parameters) on 20 samples, and its full Hessian."""
    model = models.mlp([5, 4, 3], 3)
    params = model.init(0, dtype="float64")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 5)), np.arange(20) % 3
    return model, params, X, y, sharpness.full_hessian(model, params, X, y)


def test_the_full_hessian_is_symmetric_and_a_hessian_vector_product_is_its_product(tiny):
    model, params, X, y, H = tiny
    P = flatten(params)[0].size
    assert H.shape == (P, P)
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    v = np.random.default_rng(1).standard_normal(P)
    np.testing.assert_allclose(sharpness.hessian_vector_product(model, params, X, y, v), H @ v, rtol=1e-10,
                               atol=1e-12)
    with pytest.raises(ValueError, match=r"v must be a flat vector of the 51 parameters"):
        sharpness.hessian_vector_product(model, params, X, y, v[:3])


# probes -> mean relative error |estimate - tr H| / tr H over seeds 0-19 (measured: 1.11, 0.60, 0.23, 0.14, 0.071,
# 0.041 at 1, 4, 16, 64, 256, 1024 probes): it falls like 1/sqrt(probes). Here one draw of 256 probes, cut into
# groups of 1, 4 and 16 probes, each group one estimate.
def test_hutchinson_is_unbiased_and_its_error_shrinks_with_the_probes(tiny):
    model, params, X, y, H = tiny
    tr = np.trace(H)
    samples = sharpness.hessian_trace_samples(model, params, X, y, probes=256, seed=7)
    errors = {m: np.mean(np.abs(samples.reshape(-1, m).mean(axis=1) - tr)) / tr for m in (1, 4, 16)}
    assert errors[1] > errors[4] > errors[16] and errors[16] < 0.5
    assert abs(samples.mean() - tr) < 4 * samples.std(ddof=1) / np.sqrt(len(samples))  # unbiased
    # each probe's v^T H v with v of +-1 entries, exactly (the probes drawn as the docstring says)
    rng = np.random.default_rng(7)
    v = (rng.integers(0, 2, size=H.shape[0]) * 2.0 - 1.0)
    assert samples[0] == pytest.approx(v @ H @ v, rel=1e-10)
    assert sharpness.hessian_trace(model, params, X, y, probes=4, seed=7) == pytest.approx(samples[:4].mean(),
                                                                                           rel=1e-12)


def test_the_trace_is_seeded_and_its_arguments_are_checked(tiny):
    model, params, X, y, _ = tiny
    a = sharpness.hessian_trace(model, params, X, y, probes=3, seed=5)
    assert a == sharpness.hessian_trace(model, params, X, y, probes=3, seed=5)
    assert a != sharpness.hessian_trace(model, params, X, y, probes=3, seed=6)
    with pytest.raises(ValueError, match="probes"):
        sharpness.hessian_trace(model, params, X, y, probes=0, seed=5)
    with pytest.raises(ValueError, match="seed"):
        sharpness.hessian_trace(model, params, X, y, probes=3, seed=None)
    with pytest.raises(ValueError, match=r"y must hold one integer label per sample of X \(20\)"):
        sharpness.hessian_trace(model, params, X, y[:5], probes=3, seed=5)


def test_the_float32_laptop_mlp_gives_a_finite_positive_trace():
    model = models.mlp([784, 32, 16], 10)
    params = model.init(0, dtype="float32")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((50, 784)).astype("float32"), np.arange(50) % 10
    t = sharpness.hessian_trace(model, params, X, y, probes=2, seed=0)
    assert np.isfinite(t) and t > 0


def _gradient_differences(model, params, X, y, eps=1e-5):
    """The Hessian by central differences of the (first-order) gradient, one column per flat parameter."""
    flat, unflatten = flatten(params)
    g = lambda w: flatten(grad(lambda p: model.loss(p, X, y, fused=False))(unflatten(w)))[0]  # noqa: E731
    cols = []
    for i in range(flat.size):
        e = np.zeros(flat.size)
        e[i] = eps
        cols.append((g(flat + e) - g(flat - e)) / (2 * eps))
    return np.stack(cols, axis=1)


def _tiny_resnet():
    """A conv stem, one residual block (stride 2, a 1x1 projection shortcut), global average pooling: its params
    with the block's scale alpha set to 0.7 (at its SkipInit value 0 the main branch would not reach the loss)."""
    block = layers.Residual(layers.Serial(layers.Conv(3, stride=2), layers.Conv(3, activation="identity")),
                            layers.Serial(layers.Conv(3, kernel=1, stride=2, padding=0, activation="identity",
                                                      bias=False)))
    model = models.Model("tinyresnet", (1, 6, 6), [layers.Conv(2), block, layers.AvgPool(), layers.Flatten()], 3)
    params = model.init(0, dtype="float64")
    pm, ps, _ = params[1]
    params[1] = (pm, ps, np.array(0.7))
    return model, params


@pytest.mark.parametrize("which", ["convnet", "resnet"])
def test_the_hessian_of_a_convnet_equals_differences_of_its_gradient_and_hutchinson_uses_it(which):
    """Conv, max- and average pooling and a residual block: the full Hessian (autograd, reverse over reverse through
    ops' conv VJPs) against central differences of the first-order gradient, and the trace estimate's samples."""
    if which == "convnet":
        model = models.convnet((1, 6, 6), 3, channels=(2, 3), hidden=(4,))
        params = model.init(0, dtype="float64")
    else:
        model, params = _tiny_resnet()
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((5,) + model.input_shape), np.arange(5) % 3
    assert sharpness.twice_differentiable(model)
    H = sharpness.full_hessian(model, params, X, y)
    fd = _gradient_differences(model, params, X, y)
    scale = np.abs(H).max()
    assert np.abs(H - fd).max() < 1e-7 * scale and np.abs(H - H.T).max() < 1e-12 * scale
    assert np.trace(H) == pytest.approx(np.trace(fd), rel=1e-8)
    v = rng.standard_normal(H.shape[0])
    np.testing.assert_allclose(sharpness.hessian_vector_product(model, params, X, y, v), H @ v, rtol=1e-10,
                               atol=1e-12 * scale)
    samples = sharpness.hessian_trace_samples(model, params, X, y, probes=3, seed=7)
    probe = np.random.default_rng(7).integers(0, 2, size=H.shape[0]) * 2.0 - 1.0
    assert samples[0] == pytest.approx(probe @ H @ probe, rel=1e-10)


def test_a_layer_of_an_unknown_kind_is_refused_and_a_convnet_gets_its_trace_recorded():
    from minigcnc.experiments import measure

    dense = layers.DenseAct(3)
    odd = layers.Layer("odd", dense.init, dense.apply, dense.jtp, kind="odd")
    model = models.Model("oddnet", (4,), [odd], 2)
    params = model.init(0, dtype="float64")
    assert not sharpness.twice_differentiable(model)
    with pytest.raises(ValueError, match=r"layers of kind \['odd'\].*build the model from minigcnc.layers"):
        sharpness.hessian_trace(model, params, np.zeros((3, 4)), np.arange(3) % 2, probes=1, seed=0)
    conv = models.convnet((1, 8, 8), 3, channels=(2,), hidden=(5,))
    X = np.random.default_rng(0).standard_normal((6, 1, 8, 8))
    data = type("Data", (), {"X_train": X, "y_train": np.arange(6) % 3})()
    rec = measure.flatness(conv, conv.init(0, dtype="float64"), data, 0, 0)
    assert np.isfinite(rec["hessian_trace"]) and "warnings" not in rec
