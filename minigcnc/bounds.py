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

KINDS = ("markov", "directional")


@dataclass(frozen=True)
class BoundResult:
    """A bound: its ``value`` (float) and the (k, k) host array ``pair_terms`` it is made of (diagonal 0)."""

    value: float
    pair_terms: onp.ndarray


# ----------------------------------------------------------------------------------------------------------
# Poincare constants
# ----------------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------------
# NCC error bounds from embeddings
# ----------------------------------------------------------------------------------------------------------

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
    if kind == "markov":
        terms = _markov_terms(xp, centred, hot, counts, d2)
    else:
        terms = _directional_terms(xp, centred, classes, means)
    return _result(terms, total=True)


# ----------------------------------------------------------------------------------------------------------
# Geometric-complexity forms
# ----------------------------------------------------------------------------------------------------------

def _result(terms, total):
    """BoundResult with host pair terms; value = their sum (total) or their mean over pairs i < j."""
    host = to_numpy(terms)
    value = float(host.sum()) if total else pair_mean(terms)
    return BoundResult(value=value, pair_terms=host)


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
