"""Class bookkeeping shared by ``collapse``, ``bounds``, ``fewshot`` and ``gc``: checked features and labels,
class means and variances, distances between class means, and the matching of per-class rows to labels.

Class convention (everywhere in minigcnc): the classes are the sorted unique values of ``y``, so arbitrary
integer labels work; row ``c`` of a means matrix, column ``c`` of the classifier weight ``W`` (p, k) and column
``c`` of ``logits`` (N, k) belong to the ``c``-th class in that sorted order. With labels ``0..k-1`` this is
just label ``c``. Where per-class rows and a label vector may disagree (means fitted on a training set, labels
of a test set), ``rows_of_classes`` matches them by label and names any class one side lacks.

Data arrays are handled through ``get_xp`` only (NumPy via autograd on the host, CuPy on a device) and
accumulated in float64; label bookkeeping is done on the host.
"""
import numpy as onp

from . import checks
from .backend import get_xp, to_numpy

# ----------------------------------------------------------------------------------------------------------
# Checked inputs
# ----------------------------------------------------------------------------------------------------------


def as_features(Z, name="Z", layout="features (N samples, p features)"):
    """``Z`` as a finite float64 2-D array of its own array module, or a ValueError naming ``name``."""
    xp = get_xp(Z)
    Z = xp.asarray(Z)
    if Z.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of {layout}; got shape {tuple(Z.shape)}")
    Z = Z.astype(xp.float64, copy=False)
    checks.finite(Z, name)
    return Z


def as_labels(y, n_rows, name="y", rows_of="Z"):
    """``y`` as a host 1-D integer array with ``n_rows`` entries, or a ValueError naming ``name``."""
    y = checks.no_string_labels(to_numpy(y), name)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer class labels; got shape {tuple(y.shape)}")
    if y.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must hold integer class labels; got dtype {y.dtype} "
            "(cast with y.astype(int) if the values are whole numbers)"
        )
    if y.shape[0] != n_rows:
        raise ValueError(f"{name} has {y.shape[0]} labels but {rows_of} has {n_rows} rows; they must match (one label per row)")
    return y


def as_class_vector(v, k, name, what, meaning="it is a mean of squared norms"):
    """``v`` as a finite non-negative float64 (k,) array on the module of ``v``."""
    xp = get_xp(v)
    v = xp.asarray(v).astype(xp.float64, copy=False)
    if v.shape != (k,):
        raise ValueError(f"{name} must have shape ({k},), one value per class (row of means) for {what}; got shape {tuple(v.shape)}")
    checks.finite(v, name)
    if bool(to_numpy(xp.any(v < 0))):
        raise ValueError(f"{name} must be non-negative ({meaning}); got minimum {scalar(xp.min(v)):.3g}")
    return v


def as_means(means, what, name="means"):
    """``means`` as a checked finite (k, p) float64 array with at least two rows."""
    means = as_features(means, name, "class means (k classes, p features)")
    if means.shape[0] < 2:
        raise ValueError(f"{name} must have at least two rows (classes) for {what}; got shape {tuple(means.shape)}")
    return means


def scalar(a):
    """A 0-d array of any backend as a Python float."""
    return float(to_numpy(a))


# ----------------------------------------------------------------------------------------------------------
# The classes of a label vector
# ----------------------------------------------------------------------------------------------------------


class Classes:
    """The classes of a label vector: sorted labels, per-sample class index, per-class counts (host arrays)."""

    def __init__(self, y):
        self.labels, self.index, self.counts = onp.unique(y, return_inverse=True, return_counts=True)
        self.index = self.index.reshape(-1)  # (N,) position of each sample's class in self.labels
        self.k = len(self.labels)

    def require_pairs(self, what, name="y"):
        """Raise unless there are at least two classes (pairwise quantities need a pair)."""
        if self.k == 0:
            raise ValueError(f"{name} is empty; {what} needs at least two classes")
        if self.k < 2:
            raise ValueError(
                f"{name} holds only one class (label {self.labels[0]}); {what} needs at least two classes"
            )

    def require_two_samples(self, what, name="y"):
        """Raise, naming the class, when a class has fewer than two samples (its variance is not defined)."""
        small = onp.nonzero(self.counts < 2)[0]
        if len(small):
            c = small[0]
            more = f" (and {len(small) - 1} more classes)" if len(small) > 1 else ""
            raise ValueError(
                f"class {self.labels[c]} has {self.counts[c]} sample in {name}{more}; {what} needs at least "
                "2 samples per class (the variance of one point is not defined)"
            )


def prepare(Z, y, what, pairs=True, two_samples=True):
    """(xp, Z, classes): checked float64 features, their array module and the class bookkeeping of ``y``."""
    Z = as_features(Z)
    classes = Classes(as_labels(y, Z.shape[0]))
    if pairs:
        classes.require_pairs(what)
    if two_samples:
        classes.require_two_samples(what)
    return get_xp(Z), Z, classes


def class_count_note(n_rows, classes, rows="means", y_name="y"):
    """Why ``n_rows`` per-class rows do not fit the k classes of y, naming by label the classes one side lacks.

    The rows carry no labels, so the classes are named under the convention row c = class c (labels 0..k-1).
    """
    labels = classes.labels.tolist()
    shown = labels if len(labels) <= 12 else labels[:12] + ["..."]
    note = f"{rows} has {n_rows} rows (one per class) but {y_name} holds {classes.k} classes {shown}"
    if classes.k and classes.labels.dtype.kind in "iu" and min(labels) >= 0:
        parts = []
        absent_from_y = sorted(set(range(n_rows)) - set(labels))
        absent_from_rows = [c for c in labels if c >= n_rows]
        if absent_from_y:
            parts.append(f"class(es) {absent_from_y} of {rows} are absent from {y_name}")
        if absent_from_rows:
            parts.append(f"class(es) {absent_from_rows} of {y_name} have no row in {rows}")
        if parts:
            note += f"; if row c of {rows} is class c, " + " and ".join(parts)
    return note


def rows_of_classes(shape, classes, p, labels=None, subset=False, name="means", features_of="Z"):
    """The row of a per-class matrix of ``shape`` (rows, p) for each class of y: host ints (k,).

    Without ``labels`` the rows are the k classes of y in sorted order, so ``shape`` must be (k, p); otherwise
    a ValueError names the classes one side lacks (as far as rows without labels allow: ``class_count_note``).
    ``labels`` (one distinct label per row, e.g. ``numpy.unique(y_train)``) matches rows to classes by label:
    every class of y needs a row, and unless ``subset`` every row a class of y; a missing class is named.
    """
    n_rows, n_feat = tuple(shape)
    k = classes.k
    if labels is None:
        if (n_rows, n_feat) == (k, p):
            return onp.arange(k)
        head = (f"{name} must have shape (k, p) = ({k}, {p}) (one row per class in y, in sorted label order); got "
                f"shape {(n_rows, n_feat)}")
        if n_rows != k:
            raise ValueError(f"{head}: {class_count_note(n_rows, classes, name)}. Pass labels= (the class label of each "
                             f"row of {name}, e.g. numpy.unique(y_train)) to match rows to classes by label")
        raise ValueError(f"{head}: {name} has {n_feat} features per row but {features_of} has {p}")
    if n_feat != p:
        raise ValueError(f"{name} has {n_feat} features per row but {features_of} has {p}; they must match")
    labels = as_labels(labels, n_rows, name="labels", rows_of=name)
    uniq, counts = onp.unique(labels, return_counts=True)
    if onp.any(counts > 1):
        raise ValueError(f"labels must name each row of {name} once; label {uniq[counts > 1][0]} names "
                         f"{counts[counts > 1][0]} rows")
    what = f"labels (the classes of the rows of {name})"
    if subset:
        missing = sorted(set(classes.labels.tolist()) - set(labels.tolist()))
        if missing:
            raise ValueError(f"class(es) {missing} occur in y but not in {what}: every class of y needs a row")
    else:
        checks.classes_match(classes.labels, labels, "y", what)
    order = onp.argsort(labels, kind="stable")
    return order[onp.searchsorted(labels[order], classes.labels)]


# ----------------------------------------------------------------------------------------------------------
# Class means and variances
# ----------------------------------------------------------------------------------------------------------


def onehot(xp, classes):
    """The (N, k) float64 one-hot matrix of the class index, on the features' device."""
    index = xp.asarray(classes.index)
    return (index[:, None] == xp.arange(classes.k)[None, :]).astype(xp.float64)  # (N, k)


def means_and_counts(xp, Z, classes):
    """Class means (k, p) by one matrix product, with the one-hot matrix (N, k) and the counts (k,)."""
    hot = onehot(xp, classes)  # (N, k)
    counts = xp.asarray(classes.counts.astype(onp.float64))
    return (hot.T @ Z) / counts[:, None], hot, counts


def means_and_centred(xp, Z, classes):
    """Class means (k, p), the features centred on their own class mean (N, p), one-hot (N, k), counts (k,)."""
    means, hot, counts = means_and_counts(xp, Z, classes)
    centred = Z - means[xp.asarray(classes.index)]  # (N, p)
    return means, centred, hot, counts


def centred_variances(xp, centred, hot, counts):
    """Biased class variances (k,) from class-centred features: mean over the class of ||z - mu_c||^2."""
    sq = xp.einsum("np,np->n", centred, centred)  # (N,) squared norms without an (N, p) temporary
    return (hot.T @ sq) / counts


# ----------------------------------------------------------------------------------------------------------
# Distances between class means
# ----------------------------------------------------------------------------------------------------------


def pairwise_sq_dists(means):
    """Squared distances ||mu_i - mu_j||^2 between the rows of ``means`` (k, p) -> (k, k), diagonal 0.

    Gram trick on the centred means; pairs the trick cannot resolve (distance tiny next to the norms)
    are recomputed exactly from their differences.
    """
    xp = get_xp(means)
    M = means - xp.mean(means, axis=0)  # centring keeps the Gram trick accurate under translation
    sq = xp.sum(M * M, axis=1)  # (k,)
    d2 = xp.maximum(sq[:, None] + sq[None, :] - 2.0 * (M @ M.T), 0.0)  # (k, k)
    k = means.shape[0]
    off = ~xp.eye(k, dtype=bool)
    close = (d2 <= 1e-6 * (sq[:, None] + sq[None, :])) & off
    ii, jj = xp.nonzero(close)
    if ii.shape[0]:
        diff = means[ii] - means[jj]  # (n_close, p), exact
        d2[ii, jj] = xp.sum(diff * diff, axis=1)
    d2 = xp.where(off, d2, 0.0)
    return d2


def check_distinct(d2, means, what, labels=None, name="means"):
    """Raise, naming the first pair, when two class means coincide (to within float64 rounding)."""
    xp = get_xp(d2)
    k = d2.shape[0]
    scale = scalar(xp.max(xp.sum(means * means, axis=1)))
    tol = (1e-12) ** 2 * scale  # squared distance below rounding of the means themselves
    bad = to_numpy((d2 <= tol) & ~xp.eye(k, dtype=bool))
    if bad.any():
        i, j = onp.argwhere(bad)[0]
        if labels is None:
            who, a, b = f"rows {i} and {j} of {name}", i, j
        else:
            who, a, b = f"classes {labels[i]} and {labels[j]}", labels[i], labels[j]
        raise ValueError(
            f"{who} have coincident means (||mu_{a} - mu_{b}||^2 = {float(to_numpy(d2[i, j])):.3g}); "
            f"{what} divides by the squared distance between class means, so it needs distinct means"
        )


def pair_mean(matrix):
    """Mean (float) of a symmetric (k, k) matrix over the k(k-1)/2 unordered pairs i < j."""
    xp = get_xp(matrix)
    k = matrix.shape[0]
    iu, ju = onp.triu_indices(k, 1)
    return scalar(xp.mean(matrix[xp.asarray(iu), xp.asarray(ju)]))


def nearest(means, Z):
    """Row index of the nearest mean for every row of ``Z``: argmin_c ||mu_c||^2 - 2 z.mu_c (Gram trick)."""
    xp = get_xp(means, Z)
    centre = xp.mean(means, axis=0)  # translating both sides changes nothing but rounding
    M = means - centre
    scores = xp.sum(M * M, axis=1)[None, :] - 2.0 * ((Z - centre) @ M.T)  # (N, k), ||z - mu||^2 - ||z||^2
    return xp.argmin(scores, axis=1)
