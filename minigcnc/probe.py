"""The logistic-regression probe of few-shot transfer: an exact batched solver of scikit-learn's
``LogisticRegression(C=C)`` objective (L2 penalty, unpenalized intercept) for many small problems at once.

``fit_logistic`` reduces each problem to the span of its centred samples and the zero-sum class directions
(``_class_basis``), then runs damped Newton (``_newton_logistic``) on the strictly convex reduced objective
(``_logistic_objective``). ``fewshot.evaluate_embeddings(..., classifier="logreg")`` calls it once per block of
episodes (docs/theory.md#transfer).
"""
import numpy as onp

from . import checks
from .backend import to_numpy

LOGREG_BLOCK_BYTES = 32 * 2**20  # rough bound on the working memory of one block of logistic regressions
LOGREG_GTOL = 1e-10  # Newton stops when |gradient| <= LOGREG_GTOL * (the size of the terms summed into it)
LOGREG_MAX_ITER = 300  # Newton iterations before a problem counts as not converged


def _class_basis(k):
    """``Phi`` (k, k-1), the logits as ``L = Lam Phi^T`` with Lam (n, k-1) free.

    k >= 3: the Helmert basis, orthonormal columns orthogonal to the all-ones vector, so ``||A Phi^T||_F =
    ||A||_F`` and the logits keep zero sum over classes (what the multinomial optimum has: its weights and, up
    to the shift that changes no prediction, its intercepts sum to zero over classes). k = 2: scikit-learn's
    binary model, class 0's logit fixed at 0 and class 1's free.
    """
    if k == 2:
        return onp.array([[0.0], [1.0]])
    Phi = onp.zeros((k, k - 1))
    for j in range(1, k):
        Phi[:j, j - 1] = 1.0 / onp.sqrt(j * (j + 1))
        Phi[j, j - 1] = -j / onp.sqrt(j * (j + 1))
    return Phi


def _logistic_objective(Xh, Y, B, Phi, C):
    """Objective of the reduced problem at B, logits ``L = Xh B Phi^T`` (last row of B: the unpenalized intercept).

    Returns f (E,), the softmax P (E, n, k), the residual ``R = P - Y`` and the size that rounding in f is
    relative to (E,). R's true-class entry is computed as minus the sum of the other classes' probabilities and
    the loss as ``(max L - L_y) + log1p(sum of the other exp(L_j - max L))``, without the cancellation of
    ``p_y - 1`` and ``log(1 + tiny)``: on well-separated classes these are far below 1 and carry the gradient.
    """
    L = (Xh @ B) @ Phi.T  # (E, n, k)
    top = onp.argmax(L, axis=2)[:, :, None]
    shifted = L - onp.take_along_axis(L, top, axis=2)  # <= 0, exactly 0 at the first maximum
    ex = onp.exp(shifted)
    onp.put_along_axis(ex, top, 0.0, axis=2)
    rest = onp.sum(ex, axis=2)  # sum of exp(L_j - max L) over all but the first maximum
    onp.put_along_axis(ex, top, 1.0, axis=2)
    total = 1.0 + rest
    P = ex / total[:, :, None]
    R = P * (1.0 - Y) - Y * (onp.sum(ex * (1.0 - Y), axis=2) / total)[:, :, None]
    loss = onp.log1p(rest) - onp.sum(Y * shifted, axis=2)  # (E, n): logsumexp(L_i) - L_{i, y_i} >= 0
    f = 0.5 * onp.sum(B[:, :-1] ** 2, axis=(1, 2)) + C * onp.sum(loss, axis=1)
    size = f + C * onp.sum(onp.max(onp.abs(L), axis=2), axis=1)
    return f, P, R, size


def fit_logistic(X, labels, k, *, C=1.0):
    """Return ``(W, b)``, (E, p, k) and (E, k): the exact L2-regularized logistic regressions of E problems.

    For each problem e, with ``X[e]`` (n, p) and ``labels`` (n,) or (E, n) in ``0..k-1`` (k >= 2), the optimum of
    the problem scikit-learn's ``LogisticRegression(C=C)`` (L2 penalty, ``fit_intercept=True``, lbfgs) solves
    to its tolerance:

    - k >= 3, multinomial: minimize ``0.5 ||W||_F^2 + C sum_i [logsumexp(x_i W + b) - (x_i W + b)_{y_i}]`` over
      W (p, k) and b (k,), the intercept unpenalized. The objective does not change when one constant is added
      to every intercept (nor does any prediction); ``b`` is returned with zero sum (to rounding), as
      scikit-learn's is.
    - k = 2, scikit-learn's binary model: ``0.5 ||w||^2 + C sum_i [log(1 + exp(s_i)) - [y_i = 1] s_i]`` with
      ``s_i = x_i.w + c``, returned as ``W[:, 1] = w``, ``b[1] = c``, class 0's column and intercept zero, so
      ``x W + b`` is ``[0, decision_function(x)]``. (Not the k = 2 multinomial, whose penalty on the logit
      difference is half as strong.)

    Method: stationarity gives ``W = -C sum_i (x_i - mean x) (p_i - y_i)^T``: W lies in the span of the centred
    rows of ``X[e]`` and its rows sum to zero over classes (k >= 3). So ``W = Q A Phi^T``, ``b = c Phi^T -
    (mean x) W`` is an exact change of variables that keeps the optimum and ``||W||_F = ||A||_F`` (Q (p, r):
    orthonormal basis from a batched QR of the first n - 1 centred rows, which span them all, r = min(p, n - 1),
    directions beyond the rank get zero weight; Phi: ``_class_basis``). The objective is strictly convex in
    (A, c), (r + 1)(k - 1) numbers; the intercepts' shift direction is gone. Damped Newton from zero (batched
    Hessian, ``numpy.linalg.solve``, Armijo backtracking per problem) stops when the gradient norm is at most
    ``LOGREG_GTOL`` times the size of the terms summed into it, ``||A|| + C sum_i ||(x_i - mean x, 1)||
    (||p_i - y_i|| + eps)``. Float64 on the host, problems in blocks of bounded memory. Raises RuntimeError,
    rather than return a point that fails this test, when a problem has not converged in ``LOGREG_MAX_ITER``
    iterations or its line search stalls. tests/test_fewshot.py compares the solutions with scikit-learn's.
    Raises ValueError when a problem has no sample of some class of ``0..k-1`` (then there is no optimum: that
    class's intercept goes to minus infinity), and RuntimeError when the numbers of the convergence test
    overflow float64 (features beyond about 1e150 in size), rather than accept the starting point.
    """
    X = onp.asarray(to_numpy(X), dtype=onp.float64)
    if X.ndim != 3:
        raise ValueError(f"X must be a 3-D array (problems, samples, features); got shape {X.shape}")
    checks.finite(X, "X")
    k = checks.integer("k", k, 2, meaning="number of classes")
    C = checks.number("C", C, low_open=True)
    E, n, p = X.shape
    labels = onp.asarray(to_numpy(labels))
    if labels.shape not in ((n,), (E, n)) or labels.dtype.kind not in "iu" or \
            (labels.size and (labels.min() < 0 or labels.max() >= k)):
        raise ValueError(f"labels must be integers in 0..{k - 1} of shape ({n},) or ({E}, {n}); got "
                         f"{labels.dtype} of shape {labels.shape}")
    Y = (onp.broadcast_to(labels, (E, n))[:, :, None] == onp.arange(k)).astype(onp.float64)  # (E, n, k)
    empty = onp.argwhere(Y.sum(axis=1) == 0)
    if len(empty):
        e, c = empty[0]
        raise ValueError(f"labels of problem {e} have no sample of class {c} (of 0..{k - 1}): with an empty class the "
                         "problem has no optimum (that class's intercept goes to minus infinity); give every class at "
                         "least one sample or lower k")
    Phi = _class_basis(k)
    r = min(p, max(n - 1, 1))
    d = (r + 1) * (k - 1)
    per_problem = 8 * (n * (r + 1) ** 2 + 5 * d * d + 4 * n * (p + k * k) + 2 * p * r)
    block = max(1, LOGREG_BLOCK_BYTES // per_problem)
    W = onp.empty((E, p, k))
    b = onp.empty((E, k))
    for start in range(0, E, block):
        sl = slice(start, min(E, start + block))
        W[sl], b[sl] = _newton_logistic(X[sl], Y[sl], Phi, C)
    return W, b


def _newton_logistic(X, Y, Phi, C):
    """``fit_logistic`` on one block of problems: QR reduction, then damped Newton on B = [A; c]."""
    E, n, p = X.shape
    k = Y.shape[2]
    km = k - 1
    mean = onp.mean(X, axis=1, keepdims=True)  # (E, 1, p)
    centred = X - mean
    # the centred rows sum to zero, so the first n - 1 span them all: Q (E, p, r), r = min(p, n - 1)
    Q = onp.linalg.qr(onp.swapaxes(centred[:, : max(n - 1, 1)], 1, 2))[0]
    r = Q.shape[2]
    Xh = onp.concatenate([centred @ Q, onp.ones((E, n, 1))], axis=2)  # ((X - mean) Q, 1): (E, n, r+1)
    d = (r + 1) * km
    B = onp.zeros((E, r + 1, km))
    size_x = onp.linalg.norm(Xh, axis=2)  # (E, n)
    penalized = onp.arange(r * km)  # the entries of B (row-major) under the penalty: all but the intercept row
    eps = onp.finfo(onp.float64).eps
    f, P, Res, size = _logistic_objective(Xh, Y, B, Phi, C)
    for _ in range(LOGREG_MAX_ITER + 1):
        g = C * (onp.swapaxes(Xh, 1, 2) @ (Res @ Phi))  # (E, r+1, km)
        g[:, :-1] += B[:, :-1]
        gnorm = onp.sqrt(onp.sum(g * g, axis=(1, 2)))
        scale = onp.sqrt(onp.sum(B[:, :-1] ** 2, axis=(1, 2))) + \
            C * onp.sum(size_x * (onp.linalg.norm(Res, axis=2) + eps), axis=1)
        finite = onp.isfinite(gnorm) & onp.isfinite(scale)
        if not onp.all(finite):
            raise RuntimeError(
                f"fit_logistic: the convergence test of {int(onp.sum(~finite))} of {E} problems overflowed float64 "
                f"(largest |x| {onp.max(onp.abs(X)):.3g}); rescale the features")
        active = onp.nonzero(gnorm > LOGREG_GTOL * scale)[0]
        if len(active) == 0:
            break
        if _ == LOGREG_MAX_ITER:
            worst = onp.max(gnorm[active] / scale[active])
            raise RuntimeError(
                f"fit_logistic: {len(active)} of {E} problems did not converge in {LOGREG_MAX_ITER} Newton "
                f"iterations (largest relative gradient {worst:.3g} > {LOGREG_GTOL:g})")
        i, ni = active, len(active)
        Pi, Xi = P[i], Xh[i]
        S = -Pi[:, :, :, None] * Pi[:, :, None, :]  # diag(p) - p p^T, (ni, n, k, k), with 1 - p_y = -R_y
        diagonal = onp.arange(k)
        S[:, :, diagonal, diagonal] = Pi * onp.where(Y[i] > 0, -Res[i], 1.0 - Pi)
        S = Phi.T @ S @ Phi  # (ni, n, km, km)
        K = (Xi[:, :, :, None] * Xi[:, :, None, :]).reshape(ni, n, (r + 1) ** 2)
        H = (onp.swapaxes(K, 1, 2) @ S.reshape(ni, n, km * km)).reshape(ni, r + 1, r + 1, km, km)
        H = C * H.transpose(0, 1, 3, 2, 4).reshape(ni, d, d)
        H[:, penalized, penalized] += 1.0
        gi = g[i].reshape(ni, d)
        step = -onp.linalg.solve(H, gi[:, :, None])[:, :, 0]  # the Newton direction (H positive definite)
        slope = onp.sum(gi * step, axis=1)
        step = step.reshape(ni, r + 1, km)
        t = onp.ones(ni)
        todo = onp.arange(ni)  # Armijo backtracking, per problem, with a slack for the rounding in f
        for _halving in range(60):
            e = i[todo]
            trial = B[e] + t[todo, None, None] * step[todo]
            f_new, P_new, R_new, size_new = _logistic_objective(Xh[e], Y[e], trial, Phi, C)
            ok = f_new <= f[e] + 1e-4 * t[todo] * slope[todo] + 64 * eps * size[e]
            B[e[ok]] = trial[ok]
            f[e[ok]], P[e[ok]], Res[e[ok]], size[e[ok]] = f_new[ok], P_new[ok], R_new[ok], size_new[ok]
            t[todo[~ok]] *= 0.5
            todo = todo[~ok]
            if len(todo) == 0:
                break
        if len(todo):
            raise RuntimeError(
                f"fit_logistic: the Newton line search stalled for {len(todo)} of {E} problems (relative "
                f"gradient {onp.max(gnorm[i[todo]] / scale[i[todo]]):.3g} > {LOGREG_GTOL:g}); the inputs may be "
                "too badly scaled for float64")
    W = Q @ B[:, :-1] @ Phi.T  # (E, p, k)
    b = B[:, -1] @ Phi.T - (mean @ W)[:, 0, :]  # x W + b = (x - mean) W + c Phi^T
    return W, b
