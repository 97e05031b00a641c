"""minigcnc/sharpness.py: Hutchinson's trace of the training-loss Hessian against the full Hessian of a tiny model."""
import numpy as np
import pytest
from autograd.misc import flatten

from minigcnc import models, sharpness


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


def test_a_convnet_is_refused_with_the_reason_and_the_extra_records_nan():
    from minigcnc.experiments import measure

    model = models.convnet((1, 8, 8), 3, channels=(2,), hidden=(5,))
    params = model.init(0, dtype="float64")
    X, y = np.random.default_rng(0).standard_normal((6, 1, 8, 8)), np.arange(6) % 3
    assert not sharpness.twice_differentiable(model) and sharpness.twice_differentiable(models.mlp([4, 3], 2))
    with pytest.raises(ValueError, match="convolutions .* dense models \\(mlp\\) only"):
        sharpness.hessian_trace(model, params, X, y, probes=1, seed=0)
    rec = measure.flatness(model, params, None, 0, 0)
    assert np.isnan(rec["hessian_trace"]) and "dense models only" in rec["warnings"][0]
