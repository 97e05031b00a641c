"""probe.py: the exact batched logistic-regression probe against scikit-learn's LogisticRegression (decisions,
objective, binary model), rotations, rank-deficient supports, blocks, and its refusals."""
import numpy as np
import pytest

from minigcnc import probe
from probe_problems import close_decisions, episode_problems, sklearn_fit, sklearn_objective


@pytest.mark.parametrize("separated", [True, False], ids=["separated", "overlapping"])
@pytest.mark.parametrize("p", [64, 8])  # p = 8 < ways * shots = 25 for 5 shots: the span of the support is all of R^p
@pytest.mark.parametrize("shots", [1, 5])
def test_fit_logistic_matches_sklearn_decisions_and_accuracy(separated, p, shots):
    X, labels, Zq, q_labels = episode_problems(p, shots, separated, seed=p + shots)
    W, b = probe.fit_logistic(X, labels, 5)
    for e in range(len(X)):
        ours = Zq[e] @ W[e] + b[e]
        default, newton = sklearn_fit(X[e], labels), sklearn_fit(X[e], labels, solver="newton-cholesky")
        close_decisions(ours, newton.decision_function(Zq[e]), 1e-7)
        close_decisions(W[e], newton.coef_.T, 1e-7)
        close_decisions(ours, default.decision_function(Zq[e]), 2e-4)  # lbfgs: see sklearn_fit
        for ref in (default, newton):
            assert np.mean(np.argmax(ours, axis=1) == q_labels) == np.mean(ref.predict(Zq[e]) == q_labels)
        assert abs(b[e].sum()) < 1e-10 * (1 + np.abs(b[e]).max())  # zero-sum intercepts, as scikit-learn's


@pytest.mark.parametrize("separated", [True, False], ids=["separated", "overlapping"])
def test_fit_logistic_binary_is_sklearns_binary_model(separated):
    X, labels, Zq, q_labels = episode_problems(16, 5, separated, ways=2, seed=3)
    W, b = probe.fit_logistic(X, labels, 2)
    for e in range(len(X)):
        assert np.all(W[e][:, 0] == 0) and b[e][0] == 0
        for solver, rel in (("newton-cholesky", 1e-7), ("lbfgs", 2e-4)):
            ref = sklearn_fit(X[e], labels, solver)
            close_decisions((Zq[e] @ W[e] + b[e])[:, 1], ref.decision_function(Zq[e]), rel)
            np.testing.assert_array_equal(np.argmax(Zq[e] @ W[e] + b[e], axis=1), ref.predict(Zq[e]))


@pytest.mark.parametrize("k", [5, 2])
@pytest.mark.parametrize("separated", [True, False], ids=["separated", "overlapping"])
def test_fit_logistic_reaches_the_optimum_objective_no_higher_than_sklearn(k, separated):
    X, labels, _, _ = episode_problems(32, 5, separated, ways=k, seed=5)
    W, b = probe.fit_logistic(X, labels, k)
    for e in range(len(X)):
        ref = sklearn_fit(X[e], labels)
        coef = np.vstack([np.zeros_like(ref.coef_), ref.coef_]) if k == 2 else ref.coef_
        intercept = np.concatenate([[0.0], ref.intercept_]) if k == 2 else ref.intercept_
        ours, theirs = sklearn_objective(W[e], b[e], X[e], labels, k), sklearn_objective(coef.T, intercept, X[e], labels, k)
        assert ours <= theirs + 1e-12 * theirs
        L = X[e] @ W[e] + b[e]
        P = np.exp(L - np.logaddexp.reduce(L, axis=1, keepdims=True))
        R = P - np.eye(k)[labels]
        if k == 2:  # the binary gradient in (w, c) = (W[:, 1], b[1])
            grad = np.concatenate([W[e][:, 1] + X[e].T @ R[:, 1], [R[:, 1].sum()]])
        else:
            grad = np.concatenate([(W[e] + X[e].T @ R).ravel(), R.sum(axis=0)])
        assert np.linalg.norm(grad) < 1e-8 * (1 + np.abs(X[e]).sum())


def test_fit_logistic_with_duplicate_and_rank_deficient_support_matches_sklearn():
    rng = np.random.default_rng(22)
    basis = rng.standard_normal((2, 40))
    low_rank = (rng.standard_normal((5, 4, 2)) + 2.0 * rng.standard_normal((5, 1, 2))) @ basis  # rank 2 in R^40
    duplicated = np.repeat(rng.standard_normal((5, 1, 40)) + rng.standard_normal((5, 1, 40)), 4, axis=1)
    one_point = np.repeat(rng.standard_normal((1, 1, 40)), 20, axis=0).reshape(5, 4, 40)  # every class the same point
    labels = np.repeat(np.arange(5), 4)
    X = np.stack([low_rank.reshape(20, 40), duplicated.reshape(20, 40), one_point.reshape(20, 40)])
    W, b = probe.fit_logistic(X, labels, 5)
    queries = rng.standard_normal((30, 40)) + X[0].mean(axis=0)
    for e in range(len(X)):
        close_decisions(queries @ W[e] + b[e], sklearn_fit(X[e], labels, "newton-cholesky").decision_function(queries), 1e-7)
        close_decisions(queries @ W[e] + b[e], sklearn_fit(X[e], labels).decision_function(queries), 2e-4)
    np.testing.assert_allclose(W[2], 0.0, atol=1e-12)  # identical points of every class: nothing to learn
    np.testing.assert_allclose(b[2], 0.0, atol=1e-12)


def test_fit_logistic_blocks_give_the_same_solutions(monkeypatch):
    X, labels, _, _ = episode_problems(16, 5, False, count=6, seed=25)
    W, b = probe.fit_logistic(X, labels, 5)
    monkeypatch.setattr(probe, "LOGREG_BLOCK_BYTES", 1)  # one problem per block
    W1, b1 = probe.fit_logistic(X, labels, 5)
    np.testing.assert_allclose(W1, W, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b1, b, rtol=0, atol=1e-12)
    labels_each = np.stack([np.random.default_rng(e).permutation(labels) for e in range(6)])  # labels (E, n)
    W2, b2 = probe.fit_logistic(X, labels_each, 5)
    W3, b3 = probe.fit_logistic(X[3:4], labels_each[3], 5)
    np.testing.assert_allclose(W2[3], W3[0], rtol=0, atol=1e-12)


def test_fit_logistic_refuses_to_return_an_unconverged_solution(monkeypatch):
    X, labels, _, _ = episode_problems(16, 5, False, seed=26)
    monkeypatch.setattr(probe, "LOGREG_MAX_ITER", 1)
    with pytest.raises(RuntimeError, match=r"4 of 4 problems did not converge in 1 Newton iterations"):
        probe.fit_logistic(X, labels, 5)


def test_fit_logistic_refuses_an_empty_class_and_features_that_overflow_its_test():
    X, labels, _, _ = episode_problems(16, 5, False, seed=28)
    missing = np.where(labels == 4, 3, labels)  # class 4 has no support point: no optimum exists
    with pytest.raises(ValueError, match=r"no sample of class 4 .* no optimum"):
        probe.fit_logistic(X, missing, 5)
    with pytest.raises(RuntimeError, match="overflowed float64"), np.errstate(over="ignore"):
        probe.fit_logistic(X * 1e160, labels, 5)
    # tiny features are no error: the optimum is W = 0 to rounding, which is what comes back
    W, b = probe.fit_logistic(X * 1e-170, labels, 5)
    assert np.all(W == 0) and np.all(np.abs(b) < 1e-12)




def test_error_labels_in_range_k_at_least_two_and_3d_x():
    with pytest.raises(ValueError, match=r"labels must be integers in 0..2 of shape \(4,\) or \(1, 4\)"):
        probe.fit_logistic(np.ones((1, 4, 2)), np.array([0, 1, 2, 3]), 3)
    with pytest.raises(ValueError, match=r"k must be an integer >= 2"):
        probe.fit_logistic(np.ones((1, 4, 2)), np.zeros(4, dtype=int), 1)
    with pytest.raises(ValueError, match=r"X must be a 3-D array"):
        probe.fit_logistic(np.ones((4, 2)), np.array([0, 1, 0, 1]), 2)
