"""Small logistic-regression problems and scikit-learn's answers to them, for test_probe.py and test_fewshot.py."""
import numpy as np


def sklearn_fit(X, labels, solver="lbfgs"):
    """scikit-learn's LogisticRegression (C=1, L2, intercept) fitted to a tight tolerance.

    Its default solver (lbfgs) stops on a relative change of the objective of ~1e-14, with the gradient still
    ~1e-6 here, so its coefficients are only good to ~1e-4 relative on well-separated classes;
    ``solver="newton-cholesky"`` (the same objective) reaches the optimum to ~1e-9 or better.
    """
    import warnings

    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newton-cholesky may warn that it finished a line search with lbfgs
        return LogisticRegression(C=1.0, tol=1e-12, max_iter=100000, solver=solver).fit(X, labels)


def close_decisions(ours, theirs, rel):
    """Decision values equal to ``rel`` of their largest size, after removing a shift common to all classes."""
    if theirs.ndim == 2:
        ours, theirs = ours - ours.mean(axis=1, keepdims=True), theirs - theirs.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=rel * max(np.abs(theirs).max(), 1e-3))


def sklearn_objective(W, b, X, labels, k):
    """scikit-learn's objective at (W, b): 0.5 ||W||^2 + sum_i [logsumexp(x_i W + b) - (x_i W + b)_{y_i}]
    (k = 2: its binary objective with w = W[:, 1] - W[:, 0], c = b[1] - b[0])."""
    if k == 2:
        w, c = W[:, 1] - W[:, 0], b[1] - b[0]
        s = X @ w + c
        return 0.5 * w @ w + np.sum(np.logaddexp(0.0, s) - (labels == 1) * s)
    L = X @ W + b
    return 0.5 * np.sum(W * W) + np.sum(np.logaddexp.reduce(L, axis=1) - L[np.arange(len(X)), labels])


def episode_problems(p, shots, separated, ways=5, count=4, seed=0):
    """``count`` support sets (count, ways*shots, p) with class-major labels, and query sets, Gaussian classes."""
    rng = np.random.default_rng(seed)
    centres = (8.0 if separated else 0.5) * rng.standard_normal((count, ways, 1, p))
    X = (centres + rng.standard_normal((count, ways, shots, p))).reshape(count, ways * shots, p)
    Zq = (centres + rng.standard_normal((count, ways, 15, p))).reshape(count, ways * 15, p)
    return X, np.repeat(np.arange(ways), shots), Zq, np.repeat(np.arange(ways), 15)
