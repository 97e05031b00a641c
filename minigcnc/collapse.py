"""Neural collapse of an embedding: CDNV (the paper's NC), geometric collapse, Papyan's NC1-NC4, and NCC.

docs/theory.md#neural-collapse, for features ``Z`` (N, p) = the penultimate embedding g(x), labels ``y`` (N,):

- class means ``mu_c`` and biased class variances ``Var_c = mean_{x in c} ||g(x) - mu_c||^2``;
- the class-distance normalized variance (CDNV, Galanti, Gyorgy, Hutter 2022)
  ``V(i, j) = (Var_i + Var_j) / (2 ||mu_i - mu_j||^2)`` and ``NC = mean_{i<j} V(i, j)``, the neural-collapse
  measure of Munn, Dherin, Gonzalvo 2024 (lower = more collapse);
- geometric collapse ``GCol = mean_{i<j} (GC_i + GC_j) / (2 ||mu_i - mu_j||^2)`` (Munn et al. 2024, appendix;
  the class geometric complexity replaces the class variance);
- ``reference_cdnv``: the CDNV in a few NumPy lines, the oracle of ``cdnv``;
- the four neural-collapse properties of Papyan, Han, Donoho 2020 (PNAS), NC1-NC4, each with its convention;
- the nearest-class-centre (NCC) classifier: fit, predict, error.

Classes follow ``classes.py`` (sorted unique labels; row or column c = the c-th class), whose bookkeeping
this module uses. Every metric refuses non-finite features and names, by label, the classes a per-class array
lacks; data arrays stay on their backend, accumulated in float64.
"""
import numpy as onp

from .backend import get_xp, to_numpy
from .threads import host_limited
from .classes import (
    Classes,
    as_class_vector,
    as_features,
    as_labels,
    as_means,
    check_distinct,
    class_count_note,
    centred_variances,
    means_and_centred,
    means_and_counts,
    nearest,
    pair_mean,
    pairwise_sq_dists,
    prepare,
    rows_of_classes,
    scalar,
)

_EPS = onp.finfo(onp.float64).eps


# ---- Class statistics and the CDNV -------------------------------------------------------------------------
def reference_cdnv(Z, y):
    """The CDNV (the paper's NC) from its definition in NumPy, on the host: class means and biased variances,
    then ``(Var_i + Var_j) / (2 ||mu_i - mu_j||^2)`` averaged over the pairs i < j. ``cdnv`` is equal to it."""
    Z, y = onp.asarray(to_numpy(Z), dtype=onp.float64), onp.asarray(to_numpy(y))
    labels = onp.unique(y)
    mu = onp.array([Z[y == c].mean(0) for c in labels])
    var = onp.array([((Z[y == c] - m) ** 2).sum(1).mean() for c, m in zip(labels, mu)])
    k = len(labels)
    return float(onp.mean([(var[i] + var[j]) / (2 * ((mu[i] - mu[j]) ** 2).sum())
                           for i in range(k) for j in range(i + 1, k)]))


def class_means(Z, y):
    """Return the class means mu_c of the features, shape (k, p), rows in sorted label order.

    ``mu_c = (1/n_c) sum_{y_n = c} z_n`` (docs/theory.md#neural-collapse; Papyan, Han, Donoho 2020; Munn et al. 2024).
    ``Z``: (N, p) features; ``y``: (N,) integer labels. Same array module as ``Z``, float64.
    """
    xp, Z, classes = prepare(Z, y, "class_means", pairs=False, two_samples=False)
    return means_and_counts(xp, Z, classes)[0]


def class_variances(Z, y):
    """Return the biased class variances Var_c, shape (k,), in sorted label order.

    ``Var_c = (1/n_c) sum_{y_n = c} ||z_n - mu_c||^2`` (divide by n_c, docs/theory.md#neural-collapse [our choice];
    Galanti, Gyorgy, Hutter 2022). Each class needs at least two samples. ``Z``: (N, p); ``y``: (N,).
    """
    xp, Z, classes = prepare(Z, y, "class_variances", pairs=False)
    _, centred, onehot, counts = means_and_centred(xp, Z, classes)
    return centred_variances(xp, centred, onehot, counts)


_HUGE = 1e100  # features beyond this are rescaled first: their squares would overflow float64


def _cdnv_matrix(Z, y, what):
    xp, Z, classes = prepare(Z, y, what)
    big = scalar(xp.max(xp.abs(Z))) if Z.size else 0.0
    if big > _HUGE:  # the CDNV is scale invariant; squares of 1e154 overflow to inf (inf / inf = NaN)
        Z = Z / big
    means, centred, onehot, counts = means_and_centred(xp, Z, classes)
    var = centred_variances(xp, centred, onehot, counts)  # (k,)
    d2 = pairwise_sq_dists(means)
    check_distinct(d2, means, what, labels=classes.labels)
    k = classes.k
    off = ~xp.eye(k, dtype=bool)
    safe = xp.where(off, d2, 1.0)
    return xp.where(off, (var[:, None] + var[None, :]) / (2.0 * safe), 0.0)


def cdnv_matrix(Z, y):
    """Return the class-distance normalized variances V(i, j), shape (k, k), symmetric with zero diagonal.

    ``V(i, j) = (Var_i + Var_j) / (2 ||mu_i - mu_j||^2)`` with biased class variances (Galanti, Gyorgy,
    Hutter 2022, eq. CDNV; Munn et al. 2024, section 3). ``Z``: (N, p); ``y``: (N,) integer labels.
    """
    return _cdnv_matrix(Z, y, "cdnv_matrix")


@host_limited  # one BLAS thread for small host features (threads.py)
def cdnv(Z, y):
    """Return the paper's neural-collapse measure NC, the mean CDNV over class pairs (float; lower = more collapse).

    ``NC = (2 / (k(k-1))) sum_{i<j} (Var_i + Var_j) / (2 ||mu_i - mu_j||^2)`` (Munn, Dherin, Gonzalvo 2024,
    section 3; CDNV of Galanti, Gyorgy, Hutter 2022). ``Z``: (N, p) embeddings; ``y``: (N,) integer labels.
    Invariant to scaling, rotating and translating the features and to relabelling the classes. Equal to
    ``reference_cdnv`` (batched over classes on the backend of ``Z``, with input checks).
    """
    return pair_mean(_cdnv_matrix(Z, y, "cdnv"))


# ---- Geometric collapse ------------------------------------------------------------------------------------
def geometric_collapse(class_gc, means):
    """Return the geometric collapse GCol (float): the CDNV with class variances replaced by class GC.

    ``GCol = mean_{i<j} (GC_i + GC_j) / (2 ||mu_i - mu_j||^2)`` (docs/theory.md#neural-collapse [our choice]; Munn,
    Dherin, Gonzalvo 2024, appendix). ``class_gc``: (k,) class geometric complexities; ``means``: (k, p)
    class means of the embedding, rows in the same class order. NC <= max_c rho_c * GCol (Prop. 4.1).
    """
    means = as_means(means, "geometric_collapse")
    xp = get_xp(means)
    k = means.shape[0]
    gc = xp.asarray(as_class_vector(class_gc, k, "class_gc", "geometric_collapse"))
    d2 = pairwise_sq_dists(means)
    check_distinct(d2, means, "geometric_collapse")
    off = ~xp.eye(k, dtype=bool)
    ratio = xp.where(off, (gc[:, None] + gc[None, :]) / (2.0 * xp.where(off, d2, 1.0)), 0.0)
    return pair_mean(ratio)


def geometric_collapse_of(model, params, X, y):
    """Return the geometric collapse (float) of ``model``'s embedding on inputs ``X`` with labels ``y``.

    ``geometric_collapse`` of ``gc.class_gc(model, params, X, y)`` and the class means of ``model.embed``."""
    from .gc import class_gc  # gc.py imports the models; a lazy import keeps collapse.py light

    gcs = class_gc(model, params, X, y)
    means = class_means(model.embed(params, X), y)
    return geometric_collapse(gcs, means)


# ---- Papyan, Han, Donoho 2020: NC1-NC4 ---------------------------------------------------------------------
def _centred_means(Z, y, what, two_samples=False):
    """Class means centred on the global mean mu_G = unweighted mean of the class means: (k, p)."""
    xp, Z, classes = prepare(Z, y, what, two_samples=two_samples)
    means = means_and_counts(xp, Z, classes)[0]
    return xp, means - xp.mean(means, axis=0), classes


def _sigma_b_pinv_factor(Mc, rtol):
    """A (p, r) factor F with Sigma_B^+ = F F^T, Sigma_B = (1/k) Mc^T Mc, via eigh of the smaller Gram matrix."""
    xp = get_xp(Mc)
    k, p = Mc.shape
    if p <= k:
        lam, U = xp.linalg.eigh(Mc.T @ Mc / k)  # (p,), (p, p)
    else:
        lam, V = xp.linalg.eigh(Mc @ Mc.T / k)  # same nonzero eigenvalues, (k,), (k, k)
        U = Mc.T @ V / xp.sqrt(xp.maximum(k * lam, _EPS))[None, :]  # eigenvectors of Sigma_B, (p, k)
    keep = lam > rtol * xp.max(lam)
    return U[:, keep] / xp.sqrt(lam[keep])[None, :]


@host_limited
def nc1(Z, y, rtol=None):
    """Return Papyan's NC1 (float): within-class variability relative to the between-class spread.

    ``NC1 = (1/k) tr(Sigma_W Sigma_B^+)`` (Papyan, Han, Donoho 2020, PNAS, Fig. 6), with
    ``Sigma_W = (1/N) sum_n (z_n - mu_{y_n})(z_n - mu_{y_n})^T`` (divided by the total N, so classes weigh by
    their size), ``Sigma_B = (1/k) sum_c (mu_c - mu_G)(mu_c - mu_G)^T`` and ``mu_G`` = the *unweighted* mean of
    the class means. The pseudo-inverse drops eigenvalues of Sigma_B below ``rtol * lambda_max`` (default
    ``max(k, p) * eps``; Sigma_B has rank at most k-1), through eigh of the smaller of the (k, k) and (p, p)
    Gram matrices: ``tr = (1/N) sum_l ||Zc u_l||^2 / lambda_l``. ``Z``: (N, p); ``y``: (N,), two samples a class.
    """
    xp, Z, classes = prepare(Z, y, "nc1")
    means, centred, _, _ = means_and_centred(xp, Z, classes)
    Mc = means - xp.mean(means, axis=0)  # (k, p)
    rtol = max(Mc.shape) * _EPS if rtol is None else rtol
    F = _sigma_b_pinv_factor(Mc, rtol)  # (p, r)
    proj = centred @ F  # (N, r)
    trace = xp.sum(proj * proj) / Z.shape[0]
    return scalar(trace) / classes.k


def _norms_of_centred_means(Mc, labels):
    """Norms ||mu_c - mu_G|| (k,), or a ValueError naming a class whose mean is the global mean."""
    xp = get_xp(Mc)
    norms = xp.sqrt(xp.sum(Mc * Mc, axis=1))
    host = to_numpy(norms)
    zero = onp.nonzero(host <= 1e-12 * host.max())[0] if host.max() > 0 else onp.arange(len(host))
    if len(zero):
        raise ValueError(
            f"class {labels[zero[0]]} has its mean at the global mean mu_G (||mu_c - mu_G|| = {host[zero[0]]:.3g}); "
            "its angle to the other classes is not defined"
        )
    return norms


def nc2_equinorm(Z, y):
    """Return Papyan's NC2 equinorm measure (float): the coefficient of variation of the centred-mean norms.

    ``std_c ||mu_c - mu_G|| / mean_c ||mu_c - mu_G||`` with population std (ddof=0) and ``mu_G`` the unweighted
    mean of the class means (Papyan, Han, Donoho 2020, Fig. 4). 0 for a simplex ETF. ``Z``: (N, p); ``y``: (N,).
    """
    xp, Mc, classes = _centred_means(Z, y, "nc2_equinorm")
    norms = xp.sqrt(xp.sum(Mc * Mc, axis=1))
    mean = scalar(xp.mean(norms))
    if mean == 0.0:
        raise ValueError("all class means coincide (mean ||mu_c - mu_G|| = 0); nc2_equinorm is not defined")
    return scalar(xp.std(norms)) / mean


def _cosines(Z, y, what):
    """Cosines between centred class means for the ordered pairs c != c' ((k(k-1),)) and k."""
    xp, Mc, classes = _centred_means(Z, y, what)
    norms = _norms_of_centred_means(Mc, classes.labels)
    U = Mc / norms[:, None]
    cos = U @ U.T  # (k, k)
    off = xp.asarray(~onp.eye(classes.k, dtype=bool))
    return xp, cos[off], classes.k


def nc2_equiangularity(Z, y):
    """Return Papyan's NC2 equiangularity measure (float): the spread of the cosines between class means.

    ``std_{c != c'} cos(mu_c - mu_G, mu_c' - mu_G)`` with population std (ddof=0) over the k(k-1) ordered pairs
    (the same as over unordered pairs) and ``mu_G`` the unweighted mean of the class means (Papyan, Han,
    Donoho 2020, Fig. 5). 0 when all angles are equal, as in a simplex ETF. ``Z``: (N, p); ``y``: (N,).
    """
    xp, cos, _ = _cosines(Z, y, "nc2_equiangularity")
    return scalar(xp.std(cos))


def nc2_maxangle(Z, y):
    """Return Papyan's NC2 max-angle measure (float): how far the cosines are from the simplex value -1/(k-1).

    ``mean_{c != c'} |cos(mu_c - mu_G, mu_c' - mu_G) + 1/(k-1)|`` (Papyan, Han, Donoho 2020, Fig. 5), ``mu_G``
    the unweighted mean of the class means. 0 exactly for a simplex ETF. ``Z``: (N, p); ``y``: (N,).
    """
    xp, cos, k = _cosines(Z, y, "nc2_maxangle")
    return scalar(xp.mean(xp.abs(cos + 1.0 / (k - 1))))


def nc3_self_duality(W, Z, y):
    """Return Papyan's NC3 self-duality measure (float): distance between normalized classifier and means.

    Papyan, Han, Donoho 2020 (Fig. 7) write ``|| W^T/||W||_F - M/||M||_F ||_F^2`` with their W (k, p) and
    M = [mu_c - mu_G] (p, k). Our ``W`` (p, k) (fan_in, fan_out) *is* their W^T, so this returns
    ``|| W/||W||_F - M/||M||_F ||_F^2``, column c of W the c-th class in sorted label order, ``mu_G`` the
    unweighted mean of the class means. 0 when W is proportional to the centred means; at most 4.
    """
    xp, Mc, classes = _centred_means(Z, y, "nc3_self_duality")
    W = as_features(W, "W", "classifier weights (p features, k classes)")
    p, k = Mc.shape[1], classes.k
    if W.shape != (p, k):
        raise ValueError(
            f"W must be the classifier weight of shape (p, k) = ({p}, {k}) (fan_in = feature dimension, fan_out = "
            f"number of classes in y); got shape {tuple(W.shape)}"
            + (f": {class_count_note(W.shape[1], classes, 'W (columns)')}" if W.shape[1] != k else "")
        )
    M = Mc.T  # (p, k)
    w_norm, m_norm = xp.sqrt(xp.sum(W * W)), xp.sqrt(xp.sum(M * M))
    if scalar(w_norm) == 0.0:
        raise ValueError("W is all zeros (||W||_F = 0); nc3_self_duality normalizes W, so it needs a nonzero W")
    if scalar(m_norm) == 0.0:
        raise ValueError("all class means coincide (||M||_F = 0); nc3_self_duality is not defined")
    D = W / w_norm - M / m_norm
    return scalar(xp.sum(D * D))


def nc4_ncc_mismatch(logits, Z, y):
    """Return Papyan's NC4 (float): the fraction of samples whose classifier and NCC decisions differ.

    ``(1/N) #{n : argmax_c logits[n, c] != argmin_c ||z_n - mu_c||}``, class means from ``Z`` (N, p) and ``y``
    (N,) (Papyan, Han, Donoho 2020, Fig. 8). ``logits``: (N, k), column c the c-th class in sorted label order.
    """
    xp, Z, classes = prepare(Z, y, "nc4_ncc_mismatch", two_samples=False)
    logits = as_features(logits, "logits", "logits (N samples, k classes)")
    if logits.shape != (Z.shape[0], classes.k):
        raise ValueError(
            f"logits must have shape (N, k) = ({Z.shape[0]}, {classes.k}) (one row per row of Z, one column per "
            f"class in y); got shape {tuple(logits.shape)}"
            + (f": {class_count_note(logits.shape[1], classes, 'logits (columns)')}" if logits.shape[1] != classes.k
               else "")
        )
    means = means_and_counts(xp, Z, classes)[0]
    ncc = nearest(means, Z)
    return scalar(xp.mean((xp.argmax(logits, axis=1) != ncc).astype(xp.float64)))


# ---- Nearest class centre ----------------------------------------------------------------------------------
def ncc_fit(Z, y):
    """Return the nearest-class-centre classifier: the class means (k, p), rows in sorted label order.

    NCC (Papyan, Han, Donoho 2020, NC4; Galanti, Gyorgy, Hutter 2022, few-shot transfer) classifies by the
    nearest class mean. ``Z``: (N, p); ``y``: (N,) integer labels.
    """
    return class_means(Z, y)


def ncc_predict(means, Z):
    """Return the NCC prediction (N,): the row index c of the nearest class mean for every row of ``Z``.

    ``argmin_c ||z - mu_c||^2`` computed as ``argmin_c ||mu_c||^2 - 2 z.mu_c`` (Gram trick; Papyan et al.
    2020), the position in sorted label order (``labels[pred]``: the labels). ``means``: (k, p); ``Z``: (N, p).
    """
    means = as_features(means, "means", "class means (k classes, p features)")
    Z = as_features(Z)
    if means.shape[1] != Z.shape[1]:
        raise ValueError(f"means has {means.shape[1]} features per row but Z has {Z.shape[1]}; they must match")
    return nearest(means, Z)


def ncc_error(Z, y, *old_order, means=None, labels=None, balanced=False):
    """Return the NCC error (float): the fraction of samples whose nearest class mean is not their class.

    ``(1/N) #{n : argmin_c ||z_n - mu_c|| != y_n}`` (Galanti et al. 2022; Munn et al. 2024, Fig. 3). ``means``
    (k, p): the class centres (e.g. ``ncc_fit(Z_train, y_train)``; None: the class means of ``Z``), row c the
    c-th class in sorted label order of ``y`` (which must hold exactly k classes), or with ``labels`` the class
    of each row (e.g. ``numpy.unique(y_train)``; y may then lack some, every row still competing, but each class
    of y needs a row). ``balanced=True``: the class-averaged error ``(1/k) sum_c P(error | class c)``, the
    quantity ``bounds.py`` bounds. Means first (``ncc_error(means, Z, y)``) is a TypeError naming the order
    every NCC function shares, ``(Z, y, means=...)``, so a swapped call cannot return a wrong error silently.
    """
    if old_order:
        raise TypeError("ncc_error takes (Z, y, means=...), like ncc_error_bound; the old order "
                        "ncc_error(means, Z, y) is refused: call ncc_error(Z, y, means=means)")
    if means is None:
        means = class_means(Z, y)
    means = as_features(means, "means", "class means (k classes, p features)")
    Z = as_features(Z)
    if Z.shape[0] == 0:
        raise ValueError("ncc_error: Z has 0 samples; the error rate of no samples is undefined (give at least one "
                         "sample)")
    classes = Classes(as_labels(y, Z.shape[0]))
    rows = rows_of_classes(means.shape, classes, Z.shape[1], labels=labels, subset=True)
    xp = get_xp(means, Z)
    pred = nearest(means, Z)
    truth = xp.asarray(rows[classes.index])  # the row of each sample's own class
    wrong = (pred != truth).astype(xp.float64)
    if balanced:
        per_class = onp.bincount(classes.index, weights=to_numpy(wrong), minlength=classes.k) / classes.counts
        return float(per_class.mean())
    return scalar(xp.mean(wrong))
