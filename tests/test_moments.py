"""moments.py: per-class Jacobian moments against autograd Jacobians (trace = class GC), the AGOP (trace = GC),
its direction count, their refusals, and the strict stand-in device. All in float64."""
import numpy as np
import pytest

from gc_problems import build
from minigcnc import gc, models, moments
from minigcnc.backend import tree_leaves, tree_unflatten


# ---- Jacobian moments per class ------------------------------------------------------------------------------
def test_class_jacobian_moments_equal_autograd_jacobians_and_their_trace_is_the_class_gc():
    from autograd import jacobian

    m = models.build("mlp", (1, 1, 5), 3, hidden=(7, 4), activation="tanh")
    P = m.init(1, dtype="float64", backend="numpy")
    rng = np.random.default_rng(2)
    X = rng.standard_normal((11, 1, 1, 5))
    y = np.array([2, 0, 1, 2, 0, 1, 2, 2, 0, 1, 1])
    F = [rng.standard_normal((r, 5)) for r in (3, 6, 2)]  # Sigma_c = F_c^T F_c, any rank
    JJ, JSJ = moments.class_jacobian_moments(m, P, X, y, F, batch_size=2)  # batches smaller than a class
    J = np.stack([jacobian(lambda x: m.embed(P, x[None])[0])(x).reshape(m.embed_dim, -1) for x in X])  # (N, p, D)
    for c in range(3):
        Jc = J[y == c]
        np.testing.assert_allclose(JJ[c], np.mean([j @ j.T for j in Jc], axis=0), rtol=1e-10, atol=1e-14)
        S = F[c].T @ F[c]
        np.testing.assert_allclose(JSJ[c], np.mean([j @ S @ j.T for j in Jc], axis=0), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(np.trace(JJ, axis1=1, axis2=2), gc.class_gc(m, P, X, y), rtol=1e-10)
    assert moments.class_jacobian_moments(m, P, X, y)[1] is None


def test_class_jacobian_moments_refuse_factors_of_the_wrong_shape_or_count():
    m = models.build("mlp", (1, 1, 5), 3, hidden=(4,))
    P = m.init(0, dtype="float64", backend="numpy")
    X, y = np.zeros((4, 1, 1, 5)), np.array([0, 1, 2, 0])
    with pytest.raises(ValueError, match=r"one factor F_c .* per class, 3 of them; got 2"):
        moments.class_jacobian_moments(m, P, X, y, [np.eye(5)] * 2)
    with pytest.raises(ValueError, match=r"input_cov_factors\[1\] must have shape \(r_c, D\) = \(r_c, 5\)"):
        moments.class_jacobian_moments(m, P, X, y, [np.eye(5), np.eye(4), np.eye(5)])




def test_class_jacobian_moments_run_on_the_strict_device_and_match_numpy():
    from strict_device import register, strict

    register()
    m, P, X = build("mlp-relu")
    Pd = tree_unflatten(P, [strict.asarray(a) for a in tree_leaves(P)])
    y = np.array([0, 1, 0])
    F = [np.random.default_rng(c).standard_normal((3, m.input_dim)) for c in range(2)]
    on_dev = moments.class_jacobian_moments(m, Pd, strict.asarray(X), strict.asarray(y), [strict.asarray(f) for f in F])
    on_host = moments.class_jacobian_moments(m, P, X, y, F)
    for a, b in zip(on_dev, on_host):
        assert isinstance(a, np.ndarray)  # host results
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------------------
# AGOP (issue 29)
# --------------------------------------------------------------------------------------------------
def test_the_trace_of_the_agop_is_the_exact_gc_to_round_off():
    """trace E[J^T J] = E ||J||_F^2 = GC (measured in float64: at most 3.5e-16 relative over these cases and the
    laptop MLP 784-256-256-64; 1e-7 in float32)."""
    from minigcnc import models as models_

    rng = np.random.default_rng(0)
    worst = 0.0
    for model, N in ((models_.mlp([20, 8, 6], 3), 50), (models_.mlp([20, 16, 16, 4], 3, activation="tanh"), 33),
                     (models_.convnet((1, 8, 8), 3, channels=(2,), hidden=(5,)), 9)):
        params = model.init(1, dtype="float64")
        X = rng.standard_normal((N, model.input_dim))
        A = moments.agop(model, params, X, batch_size=7)
        assert A.shape == (model.input_dim,) * 2
        np.testing.assert_allclose(A, A.T, atol=1e-12)
        assert np.linalg.eigvalsh(A).min() > -1e-10
        exact = gc.geometric_complexity(model, params, X)
        worst = max(worst, abs(np.trace(A) - exact) / exact)
        assert np.trace(moments.agop(model, params, X, target="logits")) == pytest.approx(
            gc.geometric_complexity(model, params, X, target="logits"), rel=1e-12)
    assert worst < 1e-12


def test_agop_directions_count_the_eigenvalues_that_carry_a_share_of_the_trace():
    assert moments.agop_directions(np.diag([5.0, 3.0, 1.0, 1.0]), 0.5) == 1
    assert moments.agop_directions(np.array([1.0, 3.0, 5.0, 1.0]), 0.8) == 2
    assert moments.agop_directions(np.array([1.0, 3.0, 5.0, 1.0]), 1.0) == 4
    assert moments.agop_directions(np.zeros((3, 3))) == 0
    with pytest.raises(ValueError, match=r"fraction must be a share of the trace in \(0, 1\]; got fraction=1.5"):
        moments.agop_directions(np.eye(2), 1.5)
    with pytest.raises(ValueError, match="X has 0 samples"):
        from minigcnc import models as models_
        m = models_.mlp([4, 3], 2)
        moments.agop(m, m.init(0), np.zeros((0, 4)))
