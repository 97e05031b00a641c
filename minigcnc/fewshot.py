"""Few-shot transfer: k-way n-shot episodes and nearest-class-centre accuracy on frozen embeddings.

The protocol of docs/theory.md#transfer [our choice, community standard] for the transfer claim of Munn, Dherin,
Gonzalvo 2024 (Props. 4.2-4.3, Figure 4) and Galanti, Gyorgy, Hutter 2022: from the target classes draw
``n_episodes`` episodes of ``ways`` classes (without replacement), ``shots`` support and ``queries`` query
images per class (support and query disjoint), classify the queries by the nearest support-class mean (NCC)
in the frozen embedding, and report the mean accuracy with ``ci95 = 1.96 sd / sqrt(n_episodes)`` together with
the target NC (the CDNV of the embeddings over all the target classes).

Both classifiers are computed for a block of episodes at once (``evaluate_embeddings``): NCC as one batched
computation on the embeddings' device, on the raw features (the paper's); the logistic-regression probe by
``fit_logistic``, an exact batched Newton solver of scikit-learn's ``LogisticRegression()`` objective, on the host,
by default on L2-normalized features (each embedding divided by its Euclidean norm: the usual few-shot protocol,
which makes the probe's C = 1 mean the same thing whatever the scale of the embedding). With ``groups`` (e.g. the
digit of each rotated-digit class) an episode draws its classes from distinct groups.
"""
from dataclasses import dataclass

import numpy as onp

from . import checks
from .backend import get_xp, is_device_array, to_numpy
from .classes import Classes, as_features, as_labels
from .collapse import cdnv

NCC_BLOCK = 1000  # most episodes per batched NCC computation
NCC_HOST_BYTES = 4 * 2**20  # on the host, NCC blocks of about this many gathered bytes (cache-sized: faster)
BLOCK_BYTES = 200 * 2**20  # rough bound on the working memory of one block of episodes
LOGREG_BLOCK_BYTES = 32 * 2**20  # rough bound on the working memory of one block of logistic regressions
LOGREG_GTOL = 1e-10  # Newton stops when |gradient| <= LOGREG_GTOL * (the size of the terms summed into it)
LOGREG_MAX_ITER = 300  # Newton iterations before an episode counts as not converged


@dataclass(frozen=True)
class FewShotResult:
    """Few-shot accuracy: ``mean`` and ``ci95`` over episodes, ``per_episode`` (n_episodes,), ``target_nc``."""

    mean: float
    ci95: float
    per_episode: onp.ndarray
    target_nc: float

    def __str__(self):
        return f"accuracy {self.mean:.4f} +- {self.ci95:.4f} ({len(self.per_episode)} episodes), target NC {self.target_nc:.4g}"


def episodes(y, *, ways=5, shots=5, queries=15, n_episodes=600, rng, groups=None):
    """Return an iterator over few-shot episodes ``(support_idx, support_labels, query_idx, query_labels)``.

    Each episode picks ``ways`` distinct classes of ``y`` uniformly without replacement (with ``groups``, an
    integer array with ``groups[label]`` the group of class ``label``: ``ways`` distinct groups uniformly without
    replacement, then one class of each group uniformly), then for each of them
    ``shots + queries`` distinct images, the first ``shots`` as support and the rest as queries, so no support
    image is ever a query (docs/theory.md#transfer, few-shot protocol; Galanti et al. 2022). Labels are re-indexed
    ``0..ways-1`` in the order the classes were drawn; indices are class-major: support_idx (ways*shots,),
    query_idx (ways*queries,), all host int arrays. ``rng``: numpy Generator or int seed (same seed, same
    episodes; ``groups=None``: the episodes of the plain draw). Raises ValueError, eagerly, when ``ways`` exceeds
    the number of classes (of groups) or a class has fewer than ``shots + queries`` images.
    """
    members, rng = _episode_pool(y, ways, shots, queries, n_episodes, rng)
    return _episode_stream(members, ways, shots, queries, n_episodes, rng, _group_classes(y, groups, ways))


def _episode_pool(y, ways, shots, queries, n_episodes, rng):
    """The checks of ``episodes``; returns ``(members, rng)``, ``members[c]`` the sample indices of class c."""
    y = to_numpy(y)
    y = as_labels(y, y.shape[0] if y.ndim else 0)
    for value, name, minimum, meaning in (
        (ways, "ways", 1, "classes per episode"),
        (shots, "shots", 1, "support images per class"),
        (queries, "queries", 1, "query images per class"),
        (n_episodes, "n_episodes", 1, "number of episodes"),
    ):
        checks.integer(name, value, minimum, meaning=meaning)
    rng = checks.as_rng(rng)
    classes = Classes(y)
    if ways > classes.k:
        raise ValueError(f"ways={ways} is more than the {classes.k} classes in y; accepted: 1 <= ways <= {classes.k}")
    need = shots + queries
    small = onp.nonzero(classes.counts < need)[0]
    if len(small):
        c = small[0]
        more = f" (and {len(small) - 1} more classes)" if len(small) > 1 else ""
        raise ValueError(
            f"class {classes.labels[c]} has {classes.counts[c]} images in y{more}, fewer than shots + queries = "
            f"{shots} + {queries} = {need} needed per episode; lower shots/queries or drop that class"
        )
    members = onp.split(onp.argsort(classes.index, kind="stable"), onp.cumsum(classes.counts)[:-1])
    return members, rng


def _group_classes(y, groups, ways):
    """None without ``groups``, else a list with, per group, the indices (in ``Classes(y)`` order) of its classes."""
    if groups is None:
        return None
    labels = Classes(as_labels(to_numpy(y), len(y))).labels
    groups = onp.asarray(to_numpy(groups))
    if groups.ndim != 1 or groups.dtype.kind not in "iu" or len(groups) <= labels.max():
        raise ValueError(f"groups must be a 1-D integer array with groups[label] the group of each class label "
                         f"(length > {labels.max()}); got {groups.dtype} of shape {groups.shape}")
    of_class = groups[labels]
    by_group = [onp.flatnonzero(of_class == g) for g in onp.unique(of_class)]
    if ways > len(by_group):
        raise ValueError(f"ways={ways} is more than the {len(by_group)} groups of the classes in y; an episode "
                         f"draws its classes from distinct groups, so 1 <= ways <= {len(by_group)}")
    return by_group


def _draw_episodes(members, ways, need, count, rng, by_group=None):
    """``count`` episodes as one host int array (count, ways, need): row j of an episode holds the ``need``
    distinct images drawn for its j-th class. The rng calls are those of ``episodes``, in the same order (one
    ``choice`` of the classes, or of the groups and then one class of each, then one ``choice`` per class), so a
    block of draws is the stream's episodes. ``by_group``: ``_group_classes``."""
    out = onp.empty((count, ways, need), dtype=members[0].dtype)
    for e in range(count):
        if by_group is None:
            picked = rng.choice(len(members), size=ways, replace=False)
        else:
            picked = [rng.choice(by_group[g]) for g in rng.choice(len(by_group), size=ways, replace=False)]
        for j, c in enumerate(picked):
            out[e, j] = rng.choice(members[c], size=need, replace=False)
    return out


def _episode_stream(members, ways, shots, queries, n_episodes, rng, by_group=None):
    """The generator behind ``episodes``: ``members[c]`` holds the sample indices of class c."""
    support_labels = onp.repeat(onp.arange(ways), shots)
    query_labels = onp.repeat(onp.arange(ways), queries)
    for _ in range(n_episodes):
        draws = _draw_episodes(members, ways, shots + queries, 1, rng, by_group)[0]  # (ways, s+q)
        yield draws[:, :shots].reshape(-1), support_labels, draws[:, shots:].reshape(-1), query_labels


def _ncc_accuracies(Z, draws, shots):
    """NCC accuracy of each episode of ``draws`` (E, ways, shots+queries), on the array module of ``Z``.

    The operations of ``classes.nearest`` batched over episodes: support means (E, ways, p), the squared
    distances up to the query's own norm, ``argmin`` (ties to the lowest class index).
    """
    xp = get_xp(Z)
    E, ways, _ = draws.shape
    p = Z.shape[1]
    support = xp.asarray(draws[:, :, :shots].reshape(E, -1))
    query = xp.asarray(draws[:, :, shots:].reshape(E, -1))
    query_labels = xp.asarray(onp.repeat(onp.arange(ways), draws.shape[2] - shots))
    means = xp.mean(Z[support].reshape(E, ways, shots, p), axis=2)  # (E, ways, p)
    centre = xp.mean(means, axis=1, keepdims=True)  # translating both sides changes nothing but rounding
    M = means - centre
    scores = xp.sum(M * M, axis=2)[:, None, :] - 2.0 * ((Z[query] - centre) @ xp.swapaxes(M, 1, 2))
    pred = xp.argmin(scores, axis=2)  # (E, ways*queries)
    return xp.mean((pred == query_labels[None, :]).astype(xp.float64), axis=1)


def _logreg_accuracies(Z_host, draws, shots):
    """Accuracy of the exact logistic-regression probe (``fit_logistic``) of each episode of ``draws``."""
    E, ways, _ = draws.shape
    X = Z_host[draws[:, :, :shots].reshape(E, -1)]  # (E, ways*shots, p)
    W, b = fit_logistic(X, onp.repeat(onp.arange(ways), shots), ways)
    logits = Z_host[draws[:, :, shots:].reshape(E, -1)] @ W + b[:, None, :]  # (E, ways*queries, ways)
    pred = onp.argmax(logits, axis=2)
    return onp.mean(pred == onp.repeat(onp.arange(ways), draws.shape[2] - shots)[None, :], axis=1)


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


def l2_normalized(Z):
    """Each row of ``Z`` (N, p) divided by its Euclidean norm (a zero row stays zero), on ``Z``'s array module."""
    xp = get_xp(Z)
    norms = xp.sqrt(xp.sum(Z * Z, axis=1, keepdims=True))
    return Z / xp.where(norms > 0, norms, 1.0)


def evaluate_embeddings(Z, y, *, ways=5, shots=5, queries=15, n_episodes=600, rng, classifier="ncc", normalize=None,
                        groups=None):
    """Return the FewShotResult of ``ways``-way ``shots``-shot classification on precomputed embeddings.

    Per episode (see ``episodes``) the accuracy on the queries of NCC with the support means (``"ncc"``,
    docs/theory.md#transfer; Galanti et al. 2022; ties to the lowest class index) or of a logistic-regression
    probe on the support set (``"logreg"``: the optimum of scikit-learn's ``LogisticRegression()`` defaults,
    L2 penalty with C = 1 and an unpenalized intercept, computed exactly by ``fit_logistic``; queries to the
    argmax of the logits, ties to the lowest index; needs ``ways >= 2``). ``normalize``: classify
    ``l2_normalized(Z)``, each embedding divided by its Euclidean norm; the default (None) is True for the probe
    (the usual few-shot protocol: its penalty then acts alike on embeddings of any scale) and False for NCC (the
    paper's, on raw features). ``mean`` over episodes, ``ci95 = 1.96 * sd / sqrt(n_episodes)`` with the sample sd
    (ddof=1; nan for one episode), and ``target_nc = cdnv(Z, y)`` over all classes of ``y`` on the raw ``Z``
    (Munn et al. 2024, Figure 4). ``Z``: (N, p) embeddings of the target images; ``y``: (N,) integer labels. The
    episodes are those of ``episodes(y, ..., rng=rng, groups=groups)`` (``groups``: see ``episodes``; each
    episode's classes from distinct groups), drawn and classified in blocks (NCC on ``Z``'s device with one
    device-to-host copy at the end; logreg in float64 on the host).
    """
    if classifier not in ("ncc", "logreg"):
        raise ValueError(f"classifier must be 'ncc' or 'logreg'; got {classifier!r}")
    Z = as_features(Z)
    y = as_labels(y, Z.shape[0])
    members, rng = _episode_pool(y, ways, shots, queries, n_episodes, rng)
    by_group = _group_classes(y, groups, ways)
    need = shots + queries
    Zc = l2_normalized(Z) if (classifier == "logreg" if normalize is None else normalize) else Z  # classified
    if classifier == "ncc":
        xp = get_xp(Z)
        budget = BLOCK_BYTES if is_device_array(Z) else NCC_HOST_BYTES
        block = max(1, min(NCC_BLOCK, budget // (8 * ways * (need + ways) * (Z.shape[1] + 4))))
        acc = [_ncc_accuracies(Zc, _draw_episodes(members, ways, need, min(block, n_episodes - s), rng, by_group),
                               shots) for s in range(0, n_episodes, block)]
        per_episode = to_numpy(xp.concatenate(acc))  # one device-to-host copy for all episodes
    else:
        if ways < 2:
            raise ValueError(f"classifier='logreg' needs ways >= 2 (a probe needs two classes); got ways={ways}")
        Z_host = to_numpy(Zc)
        block = max(1, BLOCK_BYTES // (8 * ways * need * Z.shape[1] * 4))
        acc = [_logreg_accuracies(Z_host, _draw_episodes(members, ways, need, min(block, n_episodes - s), rng,
                                                         by_group), shots) for s in range(0, n_episodes, block)]
        per_episode = onp.concatenate(acc)
    sd = float(onp.std(per_episode, ddof=1)) if n_episodes > 1 else float("nan")
    return FewShotResult(
        mean=float(onp.mean(per_episode)),
        ci95=1.96 * sd / onp.sqrt(n_episodes),
        per_episode=per_episode,
        target_nc=cdnv(Z, y),
    )


def evaluate(embed_fn, X, y, *, ways=5, shots=5, queries=15, n_episodes=600, rng, classifier="ncc", normalize=None,
             groups=None):
    """Return the FewShotResult of few-shot transfer with the frozen embedding ``embed_fn``.

    Embeds all of ``X`` once, ``Z = embed_fn(X)`` (N, p), then ``evaluate_embeddings(Z, y, ...)``: NCC
    (or logistic-regression) accuracy over episodes with ``ci95 = 1.96 sd / sqrt(n_episodes)`` and the target
    NC (Munn, Dherin, Gonzalvo 2024, Figure 4; docs/theory.md#transfer). ``X``: (N, ...) target inputs; ``y``: (N,);
    ``normalize`` and ``groups``: see ``evaluate_embeddings``.
    """
    Z = embed_fn(X)
    n = X.shape[0] if hasattr(X, "shape") else len(X)
    Z = as_features(Z, "embed_fn(X)", "embeddings (N samples, p features)")
    if Z.shape[0] != n:
        raise ValueError(f"embed_fn(X) returned {Z.shape[0]} rows for {n} inputs; it must embed every row of X")
    return evaluate_embeddings(
        Z, y, ways=ways, shots=shots, queries=queries, n_episodes=n_episodes, rng=rng, classifier=classifier,
        normalize=normalize, groups=groups)
