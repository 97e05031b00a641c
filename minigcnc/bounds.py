"""Bounds of docs/theory.md: Poincare constants, NCC error bounds, and their geometric-complexity forms.

- Poincare constant of a class's input distribution: for a Gaussian N(m, Sigma) it is exactly
  lambda_max(Sigma); for real images that Gaussian value is the proxy we report (``poincare_gaussian``).
- Applied to each coordinate of the embedding g, the Poincare inequality gives ``Var_c <= rho_c GC_c``, so
  ``V(i, j) <= (rho_i GC_i + rho_j GC_j) / (2 ||mu_i - mu_j||^2)`` and ``NC <= max_c rho_c * GCol``
  (Munn, Dherin, Gonzalvo 2024, Prop. 4.1, constants as derived in docs/theory.md#proposition-41-nc-is-controlled-by-gc).
- Nearest-class-centre (NCC) error bounds [this project's derivation, docs/theory.md#bounds-on-the-ncc-test-error]:
  Markov ``(4/k) sum_i sum_{j!=i} Var_i / ||mu_i - mu_j||^2 = 4 (k-1) NC`` and the tighter directional
  one-sided Chebyshev (Cantelli) bound ``(1/k) sum_i sum_{j!=i} s_ij^2 / (s_ij^2 + d_ij^2/4)``; each has a GC
  form through the Poincare inequality (Galanti, Gyorgy, Hutter 2022 for NCC transfer via the CDNV).

Every bound bounds the *class-averaged* NCC error ``(1/k) sum_i P(error | class i)``, which is the NCC error
of ``collapse.ncc_error`` when the classes are balanced. Classes follow the convention of ``classes``: sorted
unique labels, row c of ``means`` = the c-th class. Results are ``BoundResult(value, pair_terms)`` with host
arrays; ``value`` is the sum (NCC bounds) or the pair mean (NC bounds) of ``pair_terms``.
"""
from dataclasses import dataclass

import numpy as onp

from . import checks
from .backend import get_xp, to_numpy
from .classes import (
    Classes,
    as_class_vector,
    as_features,
    as_labels,
    as_means,
    centred_variances,
    check_distinct,
    means_and_centred,
    onehot,
    pair_mean,
    pairwise_sq_dists,
    prepare,
    rows_of_classes,
    scalar,
)
from .collapse import cdnv, class_means, geometric_collapse

KINDS = ("markov", "directional", "sharp")


@dataclass(frozen=True)
class BoundResult:
    """A bound: its ``value`` (float), the (k, k) host ``pair_terms`` it is made of, and the (k,) ``class_terms``.

    ``pair_terms`` has a zero diagonal. ``class_terms`` (NCC error bounds only) is the bound on
    ``P(error | class i)`` of each class. For the union bounds (markov, directional, their GC forms) ``class_terms[i] = k sum_j pair_terms[i, j]``
    (uncapped, so ``value == class_terms.mean()`` up to rounding); ``capped(result)`` caps each at 1. For the
    sharp bound ``class_terms`` is the per-class SDP value (already in [0, 1]) and ``pair_terms`` is None.
    The NC / CDNV bounds have ``class_terms=None``.
    """

    value: float
    pair_terms: onp.ndarray
    class_terms: onp.ndarray = None


def capped(result):
    """Return the capped union bound ``(1/k) sum_i min(1, class_terms_i)`` as a BoundResult.

    A probability is at most 1, so each class's union bound ``sum_{j != i} term_ij`` (a bound on
    ``P(error | class i)``) can be replaced by ``min(1, .)`` before the average over classes: still a valid bound
    on the class-averaged NCC error, and never vacuous (at most 1; docs/theory.md#g-capped-union-bounds). The result keeps ``pair_terms`` and carries the
    capped ``class_terms``. ``result``: a BoundResult of an NCC error bound (one with ``class_terms``).
    """
    if not isinstance(result, BoundResult):
        raise TypeError(f"result must be a BoundResult of an NCC error bound; got {type(result).__name__}")
    if result.class_terms is None:
        raise ValueError("result has no class_terms (an NC / CDNV bound is not a bound on an error probability); "
                         "capped takes the result of ncc_error_bound or ncc_error_bound_gc / _directional_gc")
    c = onp.minimum(1.0, onp.asarray(result.class_terms, dtype=onp.float64))
    return BoundResult(value=float(c.mean()), pair_terms=result.pair_terms, class_terms=c)


# ---- Poincare constants ------------------------------------------------------------------------------------

def poincare_gaussian(Xc, ddof=1):
    """Return the Gaussian Poincare constant of one class's inputs (float): lambda_max of their covariance.

    ``rho = lambda_max(Cov(x))`` with ``Cov = (1/(N - ddof)) sum_n (x_n - m)(x_n - m)^T`` on the flattened
    inputs; exact for x ~ N(m, Sigma) (docs/theory.md#the-poincare-step; Munn et al. 2024 use rho as a constant of the data).
    ``Xc``: (N, ...) inputs of one class, flattened to (N, D). When N < D the centred (N, N) Gram matrix is
    used: it has the same nonzero eigenvalues as the (D, D) covariance.
    """
    xp = get_xp(Xc)
    Xc = xp.asarray(Xc)
    if Xc.ndim < 2 or Xc.shape[0] < 2:
        raise ValueError(
            f"Xc must be an array of at least 2 inputs of one class, shape (N, ...) with N >= 2; got shape {tuple(Xc.shape)}"
        )
    X = Xc.reshape(Xc.shape[0], -1).astype(xp.float64, copy=False)  # (N, D)
    checks.finite(X, "Xc")
    N, D = X.shape
    C = X - xp.mean(X, axis=0)
    gram = C @ C.T if N < D else C.T @ C  # (min(N, D), min(N, D)): same nonzero spectrum
    return scalar(xp.linalg.eigvalsh(gram / (N - ddof))[-1])


def poincare_constants(X, y, ddof=1):
    """Return the per-class Gaussian Poincare constants, a host array (k,) in sorted label order.

    ``rho_c = lambda_max(Cov(x | y = c))`` on the flattened inputs (see ``poincare_gaussian``; docs/theory.md#the-poincare-step). ``X``: (N, ...) inputs; ``y``: (N,) integer labels; each class needs at least two samples.
    """
    xp = get_xp(X)
    X = xp.asarray(X)
    classes = Classes(as_labels(y, X.shape[0] if X.ndim else 0, rows_of="X"))
    classes.require_two_samples("poincare_constants")
    return onp.array([poincare_gaussian(X[xp.asarray(onp.nonzero(classes.index == c)[0])], ddof) for c in range(classes.k)])


# ---- NCC error bounds from embeddings ----------------------------------------------------------------------

def _markov_terms(xp, centred, hot, counts, d2):
    """(4/k) m2_i / d_ij^2 with m2_i = E_{class i} ||z - mu_i||^2: (k, k), zero diagonal."""
    k = d2.shape[0]
    m2 = centred_variances(xp, centred, hot, counts)  # (k,) second moments around the given centres
    off = ~xp.eye(k, dtype=bool)
    return xp.where(off, (4.0 / k) * m2[:, None] / xp.where(off, d2, 1.0), 0.0)


def _directional_terms(xp, centred, classes, means):
    """(1/k) Cantelli terms s^2 / (s^2 + (d/2 - m)^2) along u_ij, one matrix product per class: (k, k)."""
    k = classes.k
    order = xp.asarray(onp.argsort(classes.index, kind="stable"))
    sorted_centred = centred[order]  # (N, p), class-major
    stops = onp.cumsum(classes.counts)
    rows = []
    for i in range(k):
        A = sorted_centred[stops[i] - classes.counts[i]:stops[i]]  # (n_i, p): z - mu_i for class i
        diff = means - means[i]  # (k, p): mu_j - mu_i
        d = xp.sqrt(xp.sum(diff * diff, axis=1))  # (k,)
        U = diff / xp.where(d > 0, d, 1.0)[:, None]  # (k, p), row i is 0
        proj = A @ U.T  # (n_i, k): (z - mu_i) . u_ij for every j at once
        m = xp.mean(proj, axis=0)  # 0 when mu_i is the class mean
        s2 = xp.mean((proj - m) ** 2, axis=0)  # u^T Sigma_i u
        gap = d / 2.0 - m
        term = xp.where(gap > 0, s2 / xp.where(gap > 0, s2 + gap * gap, 1.0), 1.0)
        rows.append(xp.where(xp.arange(k) == i, 0.0, term))
    return xp.stack(rows) / k


def ncc_error_bound(Z, y, means=None, kind="markov", *, labels=None):
    """Return an upper bound on the class-averaged NCC error as a BoundResult (value, pair_terms (k, k)).

    A point z of class i is misclassified as j only if ``||z - mu_j|| <= ||z - mu_i||``, i.e.
    ``(z - mu_i).u_ij >= d_ij / 2`` with ``u_ij = (mu_j - mu_i)/d_ij``, ``d_ij = ||mu_i - mu_j||``, which by the
    triangle inequality forces ``||z - mu_i|| >= d_ij / 2``. Union bound over j, average over i:

    - ``kind="markov"``: Markov on ||z - mu_i||^2 gives
      ``(4/k) sum_i sum_{j!=i} Var_i / d_ij^2`` (= 4 (k-1) NC when ``means`` is None);
    - ``kind="sharp"``: per class the generalized Chebyshev bound, the least upper bound on ``P(z not in C_i)``
      over every distribution with class i's mean m_i and covariance Sigma_i (see ``ncc_error_bound_sharp_from_moments``;
      ddof 0, as the directional bound's ``s_ij^2``), averaged over the classes; never above the capped
      directional bound, which uses less of the same moments. ``pair_terms`` is None.
    - ``kind="directional"``: Cantelli (one-sided Chebyshev) on the projection, ``P(X - m >= t - m) <=
      s^2 / (s^2 + (t - m)^2)`` for t > m (else 1), gives ``(1/k) sum_i sum_{j!=i} s_ij^2 / (s_ij^2 + (d_ij/2 - m_ij)^2)``
      with ``s_ij^2 = u^T Sigma_i u``, ``m_ij = E (z - mu_i).u``; when ``means`` is None, m = 0 and this is
      ``s^2 / (s^2 + d^2/4)``. Never looser than Markov, pair by pair.

    (docs/theory.md#bounds-on-the-ncc-test-error, this project's derivation; Galanti, Gyorgy, Hutter 2022; Munn et al. 2024, Figure 3.)
    ``Z``: (N, p) embeddings, ``y``: (N,) labels. ``means``: optional (k, p) centres of the NCC classifier (for
    instance ``ncc_fit`` on the training set; row c = c-th class of y) while Z, y are test embeddings. Then
    ``Var_i = E_{test class i} ||z - mu_i||^2`` is the second moment around the given centre, and the
    directional bound uses the test mean offset m_ij and the test covariance Sigma_i: both remain valid bounds
    on the NCC error on (the distribution of) Z, y. Markov alone with a second moment in the directional form
    would not be (a class shifted towards mu_j breaks it), hence the offset m_ij. ``labels``: the class label of
    each row of ``means`` (e.g. ``numpy.unique(y_train)``), to match rows to the classes of y by label; y must
    then hold exactly those classes. A class that one side lacks is named by label.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    xp, Z, classes = prepare(Z, y, "ncc_error_bound", two_samples=means is None)
    if means is None:
        if labels is not None:
            raise ValueError("labels= names the rows of means=; give means= too (or neither)")
        means, centred, hot, counts = means_and_centred(xp, Z, classes)
    else:
        means = xp.asarray(as_means(means, "ncc_error_bound"))
        means = means[xp.asarray(rows_of_classes(means.shape, classes, Z.shape[1], labels=labels))]  # y's order
        centred = Z - means[xp.asarray(classes.index)]  # (N, p) around the classifier's centres
        hot = onehot(xp, classes)
        counts = xp.asarray(classes.counts.astype(onp.float64))
    d2 = pairwise_sq_dists(means)
    check_distinct(d2, means, "ncc_error_bound", labels=classes.labels)
    if kind == "sharp":
        mu = to_numpy(means)
        Zh, idx = to_numpy(Z), classes.index
        test_means = onp.stack([Zh[idx == c].mean(axis=0) for c in range(classes.k)])  # (k, p)
        covs = onp.stack([_cov0(Zh[idx == c]) for c in range(classes.k)])  # (k, p, p), ddof 0
        return _sharp(test_means, covs, mu, "ncc_error_bound")
    if kind == "markov":
        terms = _markov_terms(xp, centred, hot, counts, d2)
    else:
        terms = _directional_terms(xp, centred, classes, means)
    return _result(terms, total=True)


# ---- Geometric-complexity forms ----------------------------------------------------------------------------

def _result(terms, total):
    """BoundResult with host pair terms; value = their sum (total: an NCC bound, class_terms = k x row sums) or
    their mean over pairs i < j (an NC bound, no class terms)."""
    host = to_numpy(terms)
    if total:
        return BoundResult(value=float(host.sum()), pair_terms=host, class_terms=host.sum(axis=1) * host.shape[0])
    return BoundResult(value=pair_mean(terms), pair_terms=host)


def _as_rho(rho, k, xp, what):
    """``rho`` (scalar or (k,)) as a finite non-negative float64 (k,) array of module ``xp``."""
    r = xp.asarray(rho).astype(xp.float64)
    if r.ndim == 0:
        r = r * xp.ones(k)
    if r.shape != (k,):
        raise ValueError(
            f"rho must be a scalar or have shape ({k},), one Poincare constant per class (row of means) for {what}; "
            f"got shape {tuple(r.shape)}"
        )
    return as_class_vector(r, k, "rho", what, "a Poincare constant bounds a variance by a mean squared gradient")


def _gc_setup(class_gc, means, rho, what):
    """Checked means (k, p), class GC (k,), rho (k,), squared mean distances (k, k) and the off-diagonal mask."""
    means = as_means(means, what)
    xp = get_xp(means)
    k = means.shape[0]
    gc = xp.asarray(as_class_vector(class_gc, k, "class_gc", what))
    r = _as_rho(rho, k, xp, what)
    d2 = pairwise_sq_dists(means)
    check_distinct(d2, means, what)
    off = ~xp.eye(k, dtype=bool)
    return xp, gc, r, xp.where(off, d2, 1.0), off


def _sample_means(sample_means, means, what):
    """The class means of the sample the error is measured on, checked against the centres ``means``."""
    m = as_means(sample_means, what, name="sample_means")
    if tuple(m.shape) != tuple(means.shape):
        raise ValueError(f"sample_means must have the shape of means {tuple(means.shape)}: row i is the mean "
                         f"embedding of class i on the sample the error is measured on; got {tuple(m.shape)}")
    return get_xp(means).asarray(m)


def ncc_error_bound_gc(class_gc, means, rho, sample_means):
    """Return the GC form of the Markov NCC bound as a BoundResult (value, pair_terms (k, k)).

    ``(1/k) sum_i sum_{j!=i} 4 (rho_i GC_i + ||m_i - mu_i||^2) / ||mu_i - mu_j||^2``
    (docs/theory.md#c-the-gc-form-every-term-on-its-own-distribution; this project's bound, built on Munn et
    al. 2024, Prop. 4.1). The NCC rule uses the centres ``means`` mu (k, p), e.g. the training class means;
    ``class_gc`` (k,) is the embedding GC of each class and ``sample_means`` m (k, p) its mean embedding, both
    on the distribution the error is measured on (the test images). Misclassifying x of class i as j needs
    ``||g(x) - mu_i|| >= ||mu_i - mu_j|| / 2``; Markov bounds that by ``4 E||g(x) - mu_i||^2 / d_ij^2``, and
    ``E||g(x) - mu_i||^2 = Var_i + ||m_i - mu_i||^2 <= rho_i GC_i + ||m_i - mu_i||^2`` (Poincare bounds the
    variance about the class's own mean m_i, not about mu_i: without the offset term this is no bound).
    ``rho``: scalar or (k,) Poincare constants of the classes' input distributions.
    """
    xp, gc, r, d2, off = _gc_setup(class_gc, means, rho, "ncc_error_bound_gc")
    mu = as_means(means, "ncc_error_bound_gc")
    offset = xp.sum((_sample_means(sample_means, mu, "ncc_error_bound_gc") - mu) ** 2, axis=1)  # (k,)
    k = gc.shape[0]
    return _result(xp.where(off, (4.0 / k) * (r * gc + offset)[:, None] / d2, 0.0), total=True)


def ncc_error_bound_directional_gc(dir_gc, means, rho, sample_means):
    """Return the GC form of the directional NCC bound as a BoundResult (value, pair_terms (k, k)).

    ``(1/k) sum_i sum_{j!=i} S_ij / (S_ij + (d_ij/2 - delta_ij)^2)`` where ``delta_ij < d_ij/2``, and 1/k per
    pair otherwise (docs/theory.md#d-directional-gc-form; this project's bound). With
    ``u_ij = (mu_j - mu_i)/d_ij``, ``d_ij = ||mu_j - mu_i||``: x of class i goes to j only if
    ``u_ij^T (g(x) - mu_i) >= d_ij/2``; the mean of ``u_ij^T (g(x) - mu_i)`` is ``delta_ij = u_ij^T (m_i - mu_i)``
    and its variance ``s_ij^2 <= S_ij = rho_i dir_gc[i, j]`` (Poincare on ``f = u^T g``), so Cantelli gives
    ``s^2 / (s^2 + (d/2 - delta)^2)``, which increases with s^2. ``dir_gc[i, j] = E ||J(x)^T u_ij||^2`` over
    class i of the sample the error is measured on, (k, k), diagonal ignored; ``means``: the centres (k, p);
    ``sample_means``: the sample's class means (k, p); ``rho``: scalar or (k,).
    """
    means = as_means(means, "ncc_error_bound_directional_gc")
    xp = get_xp(means)
    k = means.shape[0]
    D = as_features(dir_gc, "dir_gc", "directional GC (k classes, k directions)")
    if D.shape != (k, k):
        raise ValueError(f"dir_gc must have shape (k, k) = ({k}, {k}), one value per ordered class pair; got shape {tuple(D.shape)}")
    D = xp.asarray(D)
    off = ~xp.eye(k, dtype=bool)
    if bool(to_numpy(xp.any(xp.where(off, D, 0.0) < 0))):
        raise ValueError("dir_gc must be non-negative off the diagonal (it is a mean of squared norms)")
    r = _as_rho(rho, k, xp, "ncc_error_bound_directional_gc")
    d2 = pairwise_sq_dists(means)
    check_distinct(d2, means, "ncc_error_bound_directional_gc")
    d = xp.sqrt(xp.where(off, d2, 1.0))  # (k, k)
    diff = means[None, :, :] - means[:, None, :]  # (k, k, p): mu_j - mu_i
    u = diff / d[:, :, None]
    delta = xp.sum(u * (_sample_means(sample_means, means, "ncc_error_bound_directional_gc") - means)[:, None, :],
                   axis=2)  # (k, k): u_ij . (m_i - mu_i)
    gap = d / 2.0 - delta
    S = r[:, None] * D
    cantelli = S / xp.where(gap > 0, S + gap ** 2, 1.0)
    terms = xp.where(off, xp.where(gap > 0, cantelli, 1.0), 0.0) / k
    return _result(terms, total=True)


def nc_gc_bound(class_gc, means, rho):
    """Return the bound NC <= rho * GCol as a BoundResult (value = max_c rho_c * GCol, pair_terms (k, k)).

    ``rho_max (GC_i + GC_j) / (2 ||mu_i - mu_j||^2)`` per pair, averaged over i < j: the Proposition of
    Munn, Dherin, Gonzalvo 2024 (Prop. 4.1; docs/theory.md#proposition-41-nc-is-controlled-by-gc), with ``rho_max = max_c rho_c``.
    ``class_gc``: (k,); ``means``: (k, p); ``rho``: scalar or (k,).
    """
    xp, gc, r, d2, off = _gc_setup(class_gc, means, rho, "nc_gc_bound")
    rho_max = xp.max(r)
    return _result(xp.where(off, rho_max * (gc[:, None] + gc[None, :]) / (2.0 * d2), 0.0), total=False)


def cdnv_bound_gc(class_gc, means, rho):
    """Return the per-class-rho bound on the CDNV as a BoundResult (value <= nc_gc_bound, pair_terms (k, k)).

    ``V(i, j) <= (rho_i GC_i + rho_j GC_j) / (2 ||mu_i - mu_j||^2)``, averaged over i < j (Munn et al. 2024,
    Prop. 4.1 before taking the max over rho; docs/theory.md#proposition-41-nc-is-controlled-by-gc). Equals ``nc_gc_bound`` for a scalar rho.
    ``class_gc``: (k,); ``means``: (k, p); ``rho``: scalar or (k,).
    """
    xp, gc, r, d2, off = _gc_setup(class_gc, means, rho, "cdnv_bound_gc")
    rg = r * gc
    return _result(xp.where(off, (rg[:, None] + rg[None, :]) / (2.0 * d2), 0.0), total=False)


def implied_rho(Z, y, class_gc):
    """Return the implied Poincare ratio NC / GCol (float): the smallest scalar rho with NC <= rho * GCol.

    ``cdnv(Z, y) / geometric_collapse(class_gc, class_means(Z, y))`` (docs/theory.md#the-poincare-step: report it beside the
    Gaussian-proxy rho; Munn et al. 2024, Prop. 4.1). ``Z``: (N, p); ``y``: (N,); ``class_gc``: (k,).
    """
    nc = cdnv(Z, y)
    gcol = geometric_collapse(class_gc, class_means(Z, y))
    if gcol == 0.0:
        raise ValueError("class_gc is zero for every class, so the geometric collapse is 0 and NC / GCol is not defined")
    return nc / gcol


def poincare_margins(class_gc, variances, rho):
    """Return, per class, the margin of the Poincare step ``rho_c GC_c / Var_c`` as a host array (k,).

    The GC bounds replace each class variance ``Var_c = E||g(x) - m_c||^2`` by ``rho_c GC_c``; that step is
    valid only when the margin is at least 1 (docs/theory.md#the-poincare-step). With the true Poincare
    constant it always is; with a proxy (``poincare_constants``: the Gaussian value lambda_max Cov(x | c)) a
    margin below 1 shows the proxy failing, e.g. for a class made of two clusters that a saturating network maps
    to two points (small GC, large variance). ``class_gc``, ``variances``: (k,) measured on the same images;
    ``rho``: scalar or (k,). A class of zero variance has an infinite margin.
    """
    gc = onp.asarray(to_numpy(class_gc), dtype=float)
    var = onp.asarray(to_numpy(variances), dtype=float)
    if gc.shape != var.shape or gc.ndim != 1:
        raise ValueError(f"class_gc and variances must be two (k,) vectors of one length; got {gc.shape} and {var.shape}")
    r = onp.broadcast_to(onp.asarray(to_numpy(rho), dtype=float), gc.shape)
    with onp.errstate(divide="ignore", invalid="ignore"):
        return onp.where(var > 0, r * gc / onp.where(var > 0, var, 1.0), onp.inf)


# ---- The sharp moment bound: generalized Chebyshev by semidefinite programming -----------------------------
SHARP_RANK_RTOL = 1e-9  # singular values below this times the largest count as 0 (span of mu_j - mu_i, range of S)
SHARP_SOLVERS = ("CLARABEL", "SCS")  # tried in this order; the first that reports an optimal solution is used
_SHARP_PROBLEMS = {}  # (halfspaces m, dimension r) -> the compiled DPP problem, built once per process
_INSTALLED = None  # cvxpy.installed_solvers(), looked up once


def _cov0(A):
    """Covariance with ddof 0 of the rows of A (n, p): (1/n) sum (a - mean)(a - mean)^T, float64."""
    A = onp.asarray(A, dtype=onp.float64)
    C = A - A.mean(axis=0)
    return C.T @ C / A.shape[0]


def _sharp_problem(m, r):
    """The parametrized SDP for m halfspaces ``c_j^T u >= d_j`` (unit c_j, d_j > 0) of a zero-mean, identity-covariance u
    in R^r: maximize sum_j lambda_j s.t. c_j^T z_j >= d_j lambda_j, P_j = [[Z_j, z_j], [z_j^T, lambda_j]] PSD,
    sum_j P_j <= I (PSD order). Compiled once per (m, r) (cvxpy DPP), re-solved with new parameters."""
    key = (m, r)
    if key not in _SHARP_PROBLEMS:
        import cvxpy as cp

        C = cp.Parameter((m, r), name="C")
        d = cp.Parameter(m, nonneg=True, name="d")
        blocks = [cp.Variable((r + 1, r + 1), PSD=True) for _ in range(m)]
        cons = [C[j] @ blocks[j][:r, r] >= d[j] * blocks[j][r, r] for j in range(m)]
        cons.append(onp.eye(r + 1) - sum(blocks) >> 0)
        prob = cp.Problem(cp.Maximize(sum(B[r, r] for B in blocks)), cons)
        _SHARP_PROBLEMS[key] = (prob, C, d, blocks)
    return _SHARP_PROBLEMS[key]


def _solve_sharp(C, d, what):
    """Solve the SDP of ``_sharp_problem`` for C (m, r), d (m,): (value, lambdas (m,), z (m, r))."""
    import cvxpy as cp

    m, r = C.shape
    prob, Cp, dp, blocks = _sharp_problem(m, r)
    Cp.value, dp.value = C, d
    global _INSTALLED
    if _INSTALLED is None:
        _INSTALLED = frozenset(cp.installed_solvers())
    errors = []
    for solver in SHARP_SOLVERS:
        if solver not in _INSTALLED:
            errors.append(f"{solver}: not installed")
            continue
        try:
            prob.solve(solver=solver)
        except cp.error.SolverError as e:
            errors.append(f"{solver}: {e}")
            continue
        if prob.status == cp.OPTIMAL and prob.value is not None and onp.isfinite(prob.value):
            lam = onp.array([B.value[r, r] for B in blocks])
            z = onp.stack([B.value[:r, r] for B in blocks])
            return float(prob.value), lam, z
        errors.append(f"{solver}: status {prob.status}")
    raise ValueError(f"{what}: the sharp-bound SDP ({m} halfspaces in {r} dimensions) was not solved "
                     f"({'; '.join(errors)}); install clarabel (pip install clarabel) or use kind='directional'")


def _reduce_class(i, test_mean, cov, means):
    """The problem of class i in whitened coordinates: (C (m, r) unit rows, d (m,), G (p, r), trivially_one).

    The event ``z not in C_i`` is ``a_j^T z >= b_j`` for some j != i with ``a_j = 2 (mu_j - mu_i)``,
    ``b_j = ||mu_j||^2 - ||mu_i||^2``. It depends on z through ``w = Q^T z`` only (Q: orthonormal basis of the
    span of the a_j), and ``w - E w`` lies in the range of ``S_w = Q^T S Q`` almost surely: with
    ``S_w = U diag(e) U^T`` (e > tolerance) and ``u = diag(e)^(-1/2) U^T (w - E w)`` (mean 0, covariance I),
    ``a_j^T z >= b_j`` iff ``c_j^T u >= d_j`` with ``c_j = diag(e)^(1/2) U^T Q^T a_j`` and ``d_j = b_j - a_j^T m``,
    both divided by ``||c_j||``. A halfspace with ``c_j = 0`` is either never entered (d_j > 0: dropped) or
    entered surely (d_j <= 0); any ``d_j <= 0`` makes the bound 1 (sharp: Cantelli at a non-positive gap).
    ``G = S Q U diag(e)^(-1/2)`` maps u back to z (``E[z u^T] = G``) for the worst-case distribution.
    """
    k = means.shape[0]
    others = [j for j in range(k) if j != i]
    A = 2.0 * (means[others] - means[i])  # (k-1, p)
    b = onp.sum(means[others] ** 2, axis=1) - onp.sum(means[i] ** 2)
    dgap = b - A @ test_mean  # (k-1,)
    _, sv, Vt = onp.linalg.svd(A, full_matrices=False)
    Q = Vt[sv > SHARP_RANK_RTOL * sv[0]].T  # (p, q): the span of the a_j
    Sw = Q.T @ cov @ Q
    e, U = onp.linalg.eigh((Sw + Sw.T) / 2)
    keep = e > SHARP_RANK_RTOL * max(e[-1], 0.0) if e[-1] > 0 else onp.zeros(e.shape, bool)
    e, U = e[keep], U[:, keep]
    Cfull = (A @ Q @ U) * onp.sqrt(e)  # (k-1, r): c_j = diag(e)^(1/2) U^T Q^T a_j
    norms = onp.linalg.norm(Cfull, axis=1)
    scale = onp.linalg.norm(A @ Q, axis=1) * onp.sqrt(e[-1]) if e.size else onp.zeros(len(others))
    moving = norms > SHARP_RANK_RTOL * onp.maximum(scale, 1e-300)
    if onp.any(dgap <= 0):  # the test mean is on or beyond a boundary of the cell
        return None, None, None, True, None
    G = cov @ Q @ U / onp.sqrt(e) if e.size else onp.zeros((means.shape[1], 0))
    C = Cfull[moving] / norms[moving, None]
    d = dgap[moving] / norms[moving]
    return C, d, G, False, onp.asarray(others)[moving]


def _sharp_class(i, test_mean, cov, means, what, worst=False):
    """The sharp bound of class i (float), or with ``worst`` also the solution in z coordinates."""
    red = _reduce_class(i, test_mean, cov, means)
    if red[3]:
        return (1.0, None) if worst else 1.0
    C, d, G, _, halfspaces = red
    if C.shape[0] == 0:  # no halfspace can be entered: the class's mass never leaves its cell
        return (0.0, (onp.zeros(0), onp.zeros((0, means.shape[1])), halfspaces)) if worst else 0.0
    # padded to k-1 halfspaces in k-1 dimensions (one compiled problem per k), exactly: a padded coordinate is
    # met by no halfspace, and a padded halfspace 0^T u >= 1 forces its lambda to 0
    m0, r0 = C.shape
    K = means.shape[0] - 1
    Cp = onp.zeros((K, K))
    Cp[:m0, :r0] = C
    dp = onp.ones(K)
    dp[:m0] = d
    value, lam, z = _solve_sharp(Cp, dp, what)
    # B_i lies between the largest one-halfspace (Cantelli) term and their capped sum, exactly; clipping there only
    # removes the solver's tolerance (each end is itself a valid bound, so the result stays one)
    cantelli = 1.0 / (1.0 + d * d)  # s^2 / (s^2 + gap^2) in whitened units
    value = float(onp.clip(value, cantelli.max(), min(1.0, float(cantelli.sum()))))
    if not worst:
        return value
    lam, z = onp.clip(lam[:m0], 0.0, None), z[:m0, :r0]
    with onp.errstate(divide="ignore", invalid="ignore"):
        atoms = test_mean[None, :] + (z / onp.where(lam > 0, lam, 1.0)[:, None]) @ G.T  # x_j = m + G z_j / lambda_j
    return value, (lam, atoms, halfspaces)


def _sharp_inputs(test_means, covs, means, what):
    """Checked float64 host arrays test_means (k, p), covs (k, p, p) symmetric PSD, means (k, p) distinct."""
    means = to_numpy(as_means(means, what))
    k, p = means.shape
    tm = to_numpy(as_features(test_means, "test_means", "class means (k classes, p features)"))
    if tm.shape != (k, p):
        raise ValueError(f"test_means must have the shape of means ({k}, {p}): row i is the mean embedding of class i "
                         f"on the sample the error is measured on; got shape {tm.shape}")
    S = onp.asarray(to_numpy(covs), dtype=onp.float64)
    if S.shape != (k, p, p):
        raise ValueError(f"covs must have shape (k, p, p) = ({k}, {p}, {p}), one covariance matrix per class; got shape "
                         f"{S.shape}")
    checks.finite(S, "covs")
    if not onp.allclose(S, S.transpose(0, 2, 1), rtol=1e-8, atol=1e-12 * max(1.0, float(onp.abs(S).max()))):
        raise ValueError("covs must be symmetric matrices (covariances); symmetrize with (S + S^T) / 2")
    S = (S + S.transpose(0, 2, 1)) / 2
    eig = onp.linalg.eigvalsh(S)
    lo, top = eig[:, 0], onp.abs(eig[:, -1])
    bad = onp.flatnonzero(lo < -1e-8 * onp.maximum(top, 1e-300))
    if bad.size:
        raise ValueError(f"covs must be positive semidefinite (covariances); class row {int(bad[0])} has eigenvalue "
                         f"{lo[bad[0]]:.3g}")
    d2 = pairwise_sq_dists(means)
    check_distinct(d2, means, what)
    return tm, S, means


def _sharp(test_means, covs, means, what):
    """BoundResult of the sharp bound: class_terms = per-class SDP values in [0, 1], value = their mean."""
    terms = onp.array([_sharp_class(i, test_means[i], covs[i], means, what) for i in range(means.shape[0])])
    return BoundResult(value=float(terms.mean()), pair_terms=None, class_terms=terms)


def ncc_error_bound_sharp_from_moments(test_means, covs, means):
    """Return the sharp (generalized Chebyshev) bound on the class-averaged NCC error as a BoundResult.

    ``(1/k) sum_i B_i`` with ``B_i = sup { P(z not in C_i) : E z = m_i, Cov z = S_i }``, where
    ``C_i = {z : 2 (mu_j - mu_i)^T z < ||mu_j||^2 - ||mu_i||^2 for all j != i}`` is the NCC cell of centre mu_i
    (``means`` row i) and ``m_i`` (``test_means`` row i), ``S_i`` (``covs[i]``) the moments of class i on the
    sample the error is measured on. ``B_i`` is the value of the SDP (Vandenberghe, Boyd & Comanor 2007,
    "Generalized Chebyshev bounds via semidefinite programming"; Boyd & Vandenberghe, Convex Optimization 7.4.3)

        maximize sum_j lambda_j  over  P_j = [[Z_j, z_j], [z_j^T, lambda_j]] PSD,  j != i,
        subject to  a_j^T z_j >= b_j lambda_j,   sum_j P_j <= [[S_i + m_i m_i^T, m_i], [m_i^T, 1]],

    ``a_j = 2 (mu_j - mu_i)``, ``b_j = ||mu_j||^2 - ||mu_i||^2``. Valid: for any such distribution split the
    complement of C_i into disjoint parts E_j within ``{a_j^T z >= b_j}``; ``lambda_j = P(E_j)``,
    ``z_j = E[z 1_{E_j}]``, ``Z_j = E[z z^T 1_{E_j}]`` are feasible with objective ``P(z not in C_i)``. Sharp: the
    SDP value is the supremum. It is solved exactly in the span of the a_j (the event depends on z only
    through that projection) and whitened coordinates (docs/theory.md#f-the-sharp-moment-bound): k - 1 blocks of
    size k (smaller problems padded exactly to that size, so one compiled problem serves every class). It increases with S_i in the PSD order, so an upper bound on the covariance (e.g.
    ``rho_i E_i[J J^T]`` under the Poincare inequality) gives a valid bound too. Each ``B_i`` is clipped into
    ``[max_j T_ij, min(1, sum_j T_ij)]`` with ``T_ij`` the one-sided Chebyshev (Cantelli) term of halfspace j alone,
    where it lies exactly (this removes only the solver's tolerance); a solver failure raises ValueError.
    ``test_means`` (k, p), ``covs`` (k, p, p), ``means`` (k, p).
    """
    tm, S, mu = _sharp_inputs(test_means, covs, means, "ncc_error_bound_sharp_from_moments")
    return _sharp(tm, S, mu, "ncc_error_bound_sharp_from_moments")


def sharp_worst_case(test_mean, cov, means, i):
    """Return a worst-case distribution of the sharp bound of class ``i`` as a dict.

    Keys: ``value`` (the bound B_i), ``masses`` (m',) the atoms' probabilities lambda_j, ``atoms`` (m', p) the atoms
    ``x_j = m + G z_j / lambda_j`` (in the coordinates of ``means``; ``G = E[z u^T]`` maps the whitened solution
    back), ``halfspaces`` (m',) the class row j whose halfspace ``a_j^T x >= b_j`` atom j lies in, and
    ``remainder`` (p+1, p+1) ``[[S + m m^T, m], [m^T, 1]] - sum_j lambda_j [[x_j x_j^T, x_j], [x_j^T, 1]]``, PSD:
    the moments left for the mass ``1 - sum_j lambda_j`` inside the cell. The atoms carry ``sum_j lambda_j = B_i``
    outside the cell. ``test_mean`` (p,), ``cov`` (p, p), ``means`` (k, p), ``i`` the class row. When the bound is
    trivially 1 (the mean on or past a boundary) the atoms are empty and ``trivial`` is True.
    """
    means_ = to_numpy(as_means(means, "sharp_worst_case"))
    k, p = means_.shape
    if isinstance(i, bool) or not isinstance(i, (int, onp.integer)) or not 0 <= int(i) < k:
        raise ValueError(f"i must be a class row of means, an integer in 0..{k - 1}; got {i!r}")
    tm, S, mu = _sharp_inputs(onp.asarray(test_mean)[None].repeat(k, 0), onp.asarray(cov)[None].repeat(k, 0),
                              means_, "sharp_worst_case")
    value, sol = _sharp_class(int(i), tm[0], S[0], mu, "sharp_worst_case", worst=True)
    M = onp.block([[S[0] + onp.outer(tm[0], tm[0]), tm[0][:, None]], [tm[0][None, :], onp.ones((1, 1))]])
    if sol is None:
        return {"value": value, "masses": onp.zeros(0), "atoms": onp.zeros((0, p)), "halfspaces": onp.zeros(0, int),
                "remainder": M, "trivial": True}
    lam, atoms, halfspaces = sol
    use = lam > 1e-9
    lam, atoms, halfspaces = lam[use], atoms[use], halfspaces[use]
    ext = onp.hstack([atoms, onp.ones((len(lam), 1))])  # (m', p+1): [x_j, 1]
    R = M - (ext * lam[:, None]).T @ ext
    return {"value": value, "masses": lam, "atoms": atoms, "halfspaces": halfspaces, "remainder": R, "trivial": False}


# ---- Confidence bound on a measured error ------------------------------------------------------------------
def clopper_pearson_upper(errors, n, confidence=0.95):
    """Return the one-sided Clopper-Pearson upper confidence bound on an error probability (float, or an array).

    For ``errors`` = x failures among ``n`` independent trials, the exact upper bound at level ``confidence`` =
    1 - alpha is the (1 - alpha) quantile of Beta(x + 1, n - x), i.e. the p with ``P(Bin(n, p) <= x) = alpha``
    (Clopper & Pearson 1934; docs/theory.md#i-a-confidence-bound-on-the-measured-error), and 1 when x = n:
    ``P_p(upper >= p) >= confidence`` for every p. Equals the upper
    end of ``scipy.stats.binomtest(x, n, alternative="less").proportion_ci(confidence, method="exact")``.
    ``errors``, ``n``: integers (or integer arrays of one shape) with 0 <= errors <= n, n >= 1;
    ``confidence`` in (0, 1).
    """
    from scipy.stats import beta

    x, m = onp.asarray(errors), onp.asarray(n)
    for name, v in (("errors", x), ("n", m)):
        if v.dtype.kind not in "iu" and not (v.dtype.kind == "f" and onp.all(v == onp.round(v))):
            raise TypeError(f"{name} must be an integer count (or an array of them); got {v.dtype} {v!r}")
    if onp.any(m < 1) or onp.any(x < 0) or onp.any(x > m):
        raise ValueError(f"errors and n must satisfy 0 <= errors <= n and n >= 1 (errors among n trials); got "
                         f"errors={x.tolist()}, n={m.tolist()}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, onp.floating)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a probability in (0, 1), e.g. 0.95; got {confidence!r}")
    x, m = onp.broadcast_arrays(x.astype(onp.float64), m.astype(onp.float64))
    with onp.errstate(invalid="ignore", divide="ignore"):
        up = onp.where(x >= m, 1.0, beta.ppf(confidence, x + 1, onp.where(x >= m, 1.0, m - x)))
    return float(up) if up.ndim == 0 else up


def ncc_error_cp_upper(wrong, y, confidence=0.95):
    """Return a ``confidence`` upper bound on the class-averaged error ``(1/k) sum_c p_c`` from per-sample outcomes.

    ``clopper_pearson_upper(x, k n, confidence)`` with n = the smallest class count and x the errors among the
    first n samples of each class (in the order given; all of them when the classes are balanced). Those k n
    trials are independent with mean error ``(1/k) sum_c p_c`` each on average, chosen by the labels and order
    alone (never by the outcomes), so the pooled count x has mean ``k n p_bar``. It is Poisson-binomial rather
    than binomial; its lower tail is no heavier than Bin(k n, p_bar)'s below ``k n p_bar - 1`` (Hoeffding 1956,
    Theorem 4), so the Clopper-Pearson level holds (the one exception needs ``p_bar`` within ``alpha/(k n)`` of 1).
    Unbalanced classes lose the samples past n of the larger classes; when the counts differ little this is much
    tighter than a Bonferroni average of per-class bounds. ``wrong``: (N,) booleans (sample misclassified), ``y``: (N,) labels.
    """
    w = onp.asarray(to_numpy(wrong))
    if w.ndim != 1 or w.dtype.kind not in "bui" or (w.size and not onp.all((w == 0) | (w == 1))):
        raise ValueError(f"wrong must be a (N,) array of booleans (True: sample misclassified); got shape {w.shape} "
                         f"and dtype {w.dtype}")
    if w.size == 0:
        raise ValueError("wrong has 0 samples; a confidence bound needs at least one trial per class")
    y = as_labels(y, w.shape[0], rows_of="wrong")
    classes = onp.unique(y)
    n = min(int(onp.sum(y == c)) for c in classes)
    x = sum(int(onp.sum(w[onp.flatnonzero(y == c)[:n]])) for c in classes)
    return clopper_pearson_upper(x, n * len(classes), confidence)
