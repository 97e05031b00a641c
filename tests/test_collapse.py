"""Tests of minigcnc.collapse: CDNV, geometric collapse, Papyan's NC1-NC4 and the NCC classifier."""
import sys
import types

import numpy as np
import pytest

from minigcnc import collapse as C

# --------------------------------------------------------------------------------------------------------
# Small hand-computed cases
# --------------------------------------------------------------------------------------------------------

# Case A, 2 classes in 2-D:
#   class 0: (0,0), (2,0) -> mu_0 = (1,0), Var_0 = (1 + 1)/2 = 1
#   class 1: (0,4), (0,6) -> mu_1 = (0,5), Var_1 = (1 + 1)/2 = 1
#   ||mu_0 - mu_1||^2 = 1 + 25 = 26, V(0,1) = (1 + 1) / (2 * 26) = 1/26
ZA = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]])
YA = np.array([0, 0, 1, 1])

# Case B, 3 classes in 2-D:
#   class 0: (0,0), (2,0)          -> mu_0 = (1,0), Var_0 = 1
#   class 1: (4,-2), (4,2)         -> mu_1 = (4,0), Var_1 = 4
#   class 2: (1,3), (1,5), (1,4)   -> mu_2 = (1,4), Var_2 = (1 + 1 + 0)/3 = 2/3
#   d01^2 = 9, d02^2 = 16, d12^2 = 9 + 16 = 25
#   V01 = (1 + 4)/18 = 5/18, V02 = (1 + 2/3)/32 = 5/96, V12 = (4 + 2/3)/50 = 7/75
ZB = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, -2.0], [4.0, 2.0], [1.0, 3.0], [1.0, 5.0], [1.0, 4.0]])
YB = np.array([0, 0, 1, 1, 2, 2, 2])


def test_class_means_hand_computed():
    np.testing.assert_allclose(C.class_means(ZB, YB), [[1, 0], [4, 0], [1, 4]])


def test_class_variances_are_biased_hand_computed():
    np.testing.assert_allclose(C.class_variances(ZB, YB), [1, 4, 2 / 3])


def test_cdnv_matrix_hand_computed():
    V = C.cdnv_matrix(ZB, YB)
    expected = np.array([[0, 5 / 18, 5 / 96], [5 / 18, 0, 7 / 75], [5 / 96, 7 / 75, 0]])
    np.testing.assert_allclose(V, expected, rtol=1e-12, atol=0)


def test_cdnv_two_classes_hand_computed():
    assert C.cdnv(ZA, YA) == pytest.approx(1 / 26, rel=1e-12)


def test_cdnv_is_mean_over_unordered_pairs_hand_computed():
    assert C.cdnv(ZB, YB) == pytest.approx((5 / 18 + 5 / 96 + 7 / 75) / 3, rel=1e-12)


def test_geometric_collapse_hand_computed():
    # GC = (1, 2, 3), means (0,0), (3,0), (0,4): d^2 = 9, 16, 25
    # GCol = ((1+2)/18 + (1+3)/32 + (2+3)/50) / 3 = (1/6 + 1/8 + 1/10) / 3 = 47/360
    means = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    assert C.geometric_collapse([1.0, 2.0, 3.0], means) == pytest.approx(47 / 360, rel=1e-12)


def test_geometric_collapse_equals_cdnv_when_gc_equals_variance():
    assert C.geometric_collapse(C.class_variances(ZB, YB), C.class_means(ZB, YB)) == pytest.approx(C.cdnv(ZB, YB))


def test_nc1_hand_computed():
    # Case A: mu_G = (0.5, 2.5), centred means +-v with v = (0.5, -2.5), ||v||^2 = 6.5
    # Sigma_B = (1/2)(v v^T + v v^T) = v v^T, Sigma_B^+ = v v^T / ||v||^4
    # Sigma_W = (1/4)(2 e1 e1^T + 2 e2 e2^T) = I/2  ->  tr(Sigma_W Sigma_B^+) = (1/2)/||v||^2 = 1/13
    # NC1 = (1/k) * 1/13 = 1/26
    assert C.nc1(ZA, YA) == pytest.approx(1 / 26, rel=1e-12)


# Case C, 3 one-point classes: mu = (0,0), (2,0), (0,2); mu_G = (2/3, 2/3)
#   centred means (-2/3,-2/3), (4/3,-2/3), (-2/3,4/3); norms sqrt(8)/3, sqrt(20)/3, sqrt(20)/3
#   cosines: c01 = c02 = (-8/9 + 4/9) / (sqrt(160)/9) = -1/sqrt(10);  c12 = (-16/9)/(20/9) = -4/5
ZC = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
YC = np.array([0, 1, 2])


def test_nc2_equinorm_hand_computed():
    # norms take two values a = sqrt(8), b = sqrt(20) (times 1/3) with weights 1/3, 2/3:
    # std = |b - a| sqrt(2)/3, mean = (a + 2b)/3  ->  ratio = sqrt(2)(b - a)/(a + 2b)
    a, b = np.sqrt(8), np.sqrt(20)
    assert C.nc2_equinorm(ZC, YC) == pytest.approx(np.sqrt(2) * (b - a) / (a + 2 * b), rel=1e-12)


def test_nc2_equiangularity_hand_computed():
    # ordered pairs: -1/sqrt(10) four times, -4/5 twice -> std = (4/5 - 1/sqrt(10)) sqrt(2)/3
    expected = (0.8 - 1 / np.sqrt(10)) * np.sqrt(2) / 3
    assert C.nc2_equiangularity(ZC, YC) == pytest.approx(expected, rel=1e-12)


def test_nc2_maxangle_hand_computed():
    # |cos + 1/2|: 1/2 - 1/sqrt(10) four times, |-4/5 + 1/2| = 3/10 twice; mean over 6
    expected = (4 * (0.5 - 1 / np.sqrt(10)) + 2 * 0.3) / 6
    assert C.nc2_maxangle(ZC, YC) == pytest.approx(expected, rel=1e-12)


def test_nc3_self_duality_hand_computed():
    # means (1,0), (-1,0): mu_G = 0, M = [[1,-1],[0,0]] (p, k), ||M||_F = sqrt(2)
    # W = I (p, k), ||W||_F = sqrt(2): W/sqrt2 - M/sqrt2 = [[0,1],[0,1]]/sqrt2 -> squared norm 1
    Z, y = np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([0, 1])
    assert C.nc3_self_duality(np.eye(2), Z, y) == pytest.approx(1.0, rel=1e-12)
    assert C.nc3_self_duality(3.0 * np.array([[1.0, -1.0], [0.0, 0.0]]), Z, y) == pytest.approx(0.0, abs=1e-15)


def test_nc4_ncc_mismatch_hand_computed():
    # means (0.5, 0), (10.5, 0): NCC says 0, 0, 1, 1; argmax logits says 0, 1, 1, 1 -> 1 of 4 differ
    Z = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0]])
    logits = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    assert C.nc4_ncc_mismatch(logits, Z, np.array([0, 0, 1, 1])) == pytest.approx(0.25)


def test_ncc_predict_and_error_hand_computed():
    # means (0,0), (4,0): (1,0) -> 0, (3,0) -> 1, (2.5,1) -> 1 (distances^2 7.25 vs 3.25); labels 0,0,1 -> 1/3 wrong
    means = np.array([[0.0, 0.0], [4.0, 0.0]])
    Z = np.array([[1.0, 0.0], [3.0, 0.0], [2.5, 1.0]])
    np.testing.assert_array_equal(C.ncc_predict(means, Z), [0, 1, 1])
    assert C.ncc_error(Z, np.array([0, 0, 1]), means=means) == pytest.approx(1 / 3)


def test_ncc_fit_returns_class_means():
    np.testing.assert_allclose(C.ncc_fit(ZB, YB), C.class_means(ZB, YB))


def test_classes_are_sorted_unique_labels():
    # labels 10, -3, 7 -> rows in order -3, 7, 10
    Z = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 5.0], [0.0, 7.0], [9.0, 9.0], [11.0, 9.0]])
    y = np.array([10, 10, -3, -3, 7, 7])
    np.testing.assert_allclose(C.class_means(Z, y), [[0, 6], [10, 9], [2, 0]])
    np.testing.assert_allclose(C.class_variances(Z, y), [1, 1, 1])


# --------------------------------------------------------------------------------------------------------
# Agreement with direct (loop) references on random data
# --------------------------------------------------------------------------------------------------------

def _reference_nc1(Z, y):
    labels = np.unique(y)
    mu = np.array([Z[y == c].mean(0) for c in labels])
    Zc = Z - mu[np.searchsorted(labels, y)]
    Mc = mu - mu.mean(0)
    Sw, Sb = Zc.T @ Zc / len(Z), Mc.T @ Mc / len(labels)
    return np.trace(Sw @ np.linalg.pinv(Sb, rcond=1e-10, hermitian=True)) / len(labels)


def _random_classes(rng, n=300, p=6, k=5, offset=3.0):
    y = rng.integers(0, k, size=n)
    Z = rng.standard_normal((k, p))[y] * 2.0 + rng.standard_normal((n, p)) + offset
    return Z, y


def test_cdnv_matches_pair_loop_reference():
    Z, y = _random_classes(np.random.default_rng(0))
    assert C.cdnv(Z, y) == pytest.approx(C.reference_cdnv(Z, y), rel=1e-10)


@pytest.mark.parametrize("p, k", [(6, 5), (3, 8)])  # Gram route (p > k) and direct eigh (p <= k)
def test_nc1_matches_pinv_reference(p, k):
    Z, y = _random_classes(np.random.default_rng(1), n=400, p=p, k=k)
    assert C.nc1(Z, y) == pytest.approx(_reference_nc1(Z, y), rel=1e-8)


def test_ncc_predict_matches_brute_force():
    rng = np.random.default_rng(2)
    means, Z = rng.standard_normal((7, 4)) + 50.0, rng.standard_normal((200, 4)) + 50.0
    brute = np.argmin(((Z[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(C.ncc_predict(means, Z), brute)


def test_cdnv_resolves_two_close_means_beside_a_far_one():
    # two means 1e-6 apart, a third 1e3 away: the Gram trick alone loses the small distance to rounding
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1, 2], 50)
    Z = np.array([[0.0, 0.0], [1e-6, 0.0], [1e3, 0.0]])[y] + 1e-7 * rng.standard_normal((150, 2))
    assert C.cdnv(Z, y) == pytest.approx(C.reference_cdnv(Z, y), rel=1e-6)


# --------------------------------------------------------------------------------------------------------
# Invariances and extreme geometries
# --------------------------------------------------------------------------------------------------------

METRICS = [C.cdnv, C.nc1]


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
def test_invariant_to_scaling(metric):
    Z, y = _random_classes(np.random.default_rng(4))
    assert metric(-3.7 * Z, y) == pytest.approx(metric(Z, y), rel=1e-10)


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
def test_invariant_to_rotation(metric):
    rng = np.random.default_rng(5)
    Z, y = _random_classes(rng)
    Q, _ = np.linalg.qr(rng.standard_normal((Z.shape[1], Z.shape[1])))
    assert metric(Z @ Q, y) == pytest.approx(metric(Z, y), rel=1e-10)


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
def test_invariant_to_translation(metric):
    rng = np.random.default_rng(6)
    Z, y = _random_classes(rng)
    assert metric(Z + 1e3 * rng.standard_normal(Z.shape[1]), y) == pytest.approx(metric(Z, y), rel=1e-8)


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
def test_invariant_to_relabelling(metric):
    rng = np.random.default_rng(7)
    Z, y = _random_classes(rng)
    relabel = np.array([42, -1, 7, 3, 100])[rng.permutation(5)]
    assert metric(Z, relabel[y]) == pytest.approx(metric(Z, y), rel=1e-12)


def test_perfectly_collapsed_features_give_cdnv_zero_and_nc1_zero():
    rng = np.random.default_rng(8)
    y = rng.integers(0, 4, size=60)
    Z = rng.standard_normal((4, 6))[y]  # every sample sits on its class mean
    assert C.cdnv(Z, y) == pytest.approx(0.0, abs=1e-20)
    assert C.nc1(Z, y) == pytest.approx(0.0, abs=1e-20)


def _simplex_etf(k, p, rng):
    """k class means forming a simplex ETF in R^p (rows), randomly rotated and translated."""
    M = np.sqrt(k / (k - 1)) * (np.eye(k) - np.ones((k, k)) / k)  # (k, k), unit norms, cosines -1/(k-1)
    M = np.hstack([M, np.zeros((k, p - k))])
    Q, _ = np.linalg.qr(rng.standard_normal((p, p)))
    return M @ Q


def test_simplex_etf_gives_zero_nc2_and_nc3():
    rng = np.random.default_rng(9)
    means = _simplex_etf(4, 5, rng)
    y = np.repeat(np.arange(4), 3)
    Z = means[y] + 5.0  # translated: mu_G is removed by the metrics
    assert C.nc2_equinorm(Z, y) == pytest.approx(0.0, abs=1e-12)
    assert C.nc2_equiangularity(Z, y) == pytest.approx(0.0, abs=1e-12)
    assert C.nc2_maxangle(Z, y) == pytest.approx(0.0, abs=1e-12)
    W = 2.5 * means.T  # (p, k): classifier columns are the (scaled) centred means
    assert C.nc3_self_duality(W, Z, y) == pytest.approx(0.0, abs=1e-12)


def test_nc4_zero_when_logits_are_ncc_scores():
    rng = np.random.default_rng(10)
    Z, y = _random_classes(rng)
    means = C.class_means(Z, y)
    logits = -((Z[:, None, :] - means[None]) ** 2).sum(-1)  # (N, k): the NCC classifier itself
    assert C.nc4_ncc_mismatch(logits, Z, y) == 0.0


def test_float32_features_are_accumulated_in_float64():
    Z, y = _random_classes(np.random.default_rng(11))
    assert C.cdnv(Z.astype(np.float32), y) == pytest.approx(C.cdnv(Z.astype(np.float32).astype(np.float64), y), rel=1e-12)


def test_geometric_collapse_of_uses_gc_class_gc_and_embed(monkeypatch):
    # a linear embedding g(x) = x A has class GC = ||A||_F^2 for every class (docs/theory.md#geometric-complexity)
    rng = np.random.default_rng(12)
    A = rng.standard_normal((5, 3))
    X, y = rng.standard_normal((40, 5)), np.repeat([0, 1, 2, 3], 10)
    fake_gc = types.ModuleType("minigcnc.gc")
    fake_gc.class_gc = lambda model, params, X, y: np.full(len(np.unique(y)), np.sum(params ** 2))
    monkeypatch.setitem(sys.modules, "minigcnc.gc", fake_gc)
    model = types.SimpleNamespace(embed=lambda params, X: X @ params)
    expected = C.geometric_collapse(np.full(4, np.sum(A ** 2)), C.class_means(X @ A, y))
    assert C.geometric_collapse_of(model, A, X, y) == pytest.approx(expected)


# --------------------------------------------------------------------------------------------------------
# Bad inputs: the message names the parameter (or the class) and what is accepted
# --------------------------------------------------------------------------------------------------------

def test_error_features_not_2d():
    with pytest.raises(ValueError, match=r"Z must be a 2-D array .* got shape \(4, 2, 1\)"):
        C.cdnv(ZA[:, :, None], YA)


def test_error_non_finite_features_counted():
    Z = ZB.copy()
    Z[0, 0], Z[3, 1] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"Z contains 2 non-finite values \(NaN or inf\) out of 14"):
        C.cdnv(Z, YB)


def test_error_labels_not_1d():
    with pytest.raises(ValueError, match=r"y must be a 1-D array .* got shape \(4, 1\)"):
        C.cdnv(ZA, YA[:, None])


def test_error_labels_not_integer():
    with pytest.raises(ValueError, match=r"y must hold integer class labels; got dtype float64"):
        C.class_means(ZA, YA.astype(float))


@pytest.mark.parametrize("labels", [np.array(["a", "a", "b", "b"]), np.array(["a", "a", "b", "b"], dtype=object)])
def test_error_string_labels_say_how_to_map_them_to_integers(labels):
    with pytest.raises(ValueError) as error:
        C.cdnv(ZA, labels)
    assert str(error.value) == (f"y must hold integer class labels; got strings (dtype {labels.dtype}): map them to "
                                "0..k-1, e.g. numpy.unique(y, return_inverse=True)[1]")
    np.testing.assert_allclose(C.cdnv(ZA, np.unique(labels, return_inverse=True)[1]), C.cdnv(ZA, YA))


def test_error_labels_length_mismatch():
    with pytest.raises(ValueError, match=r"y has 3 labels but Z has 4 rows"):
        C.cdnv(ZA, YA[:3])


def test_error_only_one_class():
    with pytest.raises(ValueError, match=r"y holds only one class \(label 5\); cdnv needs at least two classes"):
        C.cdnv(ZA, np.full(4, 5))


def test_error_class_with_one_sample_is_named():
    with pytest.raises(ValueError, match=r"class 7 has 1 sample in y; class_variances needs at least 2 samples"):
        C.class_variances(ZB[:5], np.array([0, 0, 3, 3, 7]))
    with pytest.raises(ValueError, match=r"class 7 has 1 sample in y; nc1 needs"):
        C.nc1(ZB[:5], np.array([0, 0, 3, 3, 7]))


def test_error_coincident_class_means_named():
    Z = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [1.0, -1.0], [5.0, 5.0], [6.0, 5.0]])
    with pytest.raises(ValueError, match=r"classes 3 and 8 have coincident means"):
        C.cdnv(Z, np.array([3, 3, 8, 8, 9, 9]))


def test_error_geometric_collapse_coincident_rows_named():
    means = np.array([[0.0, 1.0], [2.0, 2.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"rows 0 and 2 of means have coincident means"):
        C.geometric_collapse([1.0, 1.0, 1.0], means)


def test_error_geometric_collapse_class_gc_shape():
    with pytest.raises(ValueError, match=r"class_gc must have shape \(3,\).* got shape \(2,\)"):
        C.geometric_collapse([1.0, 2.0], np.eye(3))


def test_error_geometric_collapse_negative_class_gc():
    with pytest.raises(ValueError, match=r"class_gc must be non-negative"):
        C.geometric_collapse([1.0, -2.0, 1.0], np.eye(3))


def test_error_nc2_class_mean_at_global_mean_named():
    Z, y = np.array([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]), np.array([4, 5, 6])
    with pytest.raises(ValueError, match=r"class 5 has its mean at the global mean"):
        C.nc2_equiangularity(Z, y)


def test_error_nc3_weight_shape():
    with pytest.raises(ValueError, match=r"W must be the classifier weight of shape \(p, k\) = \(2, 3\).* got shape \(3, 2\)"):
        C.nc3_self_duality(np.ones((3, 2)), ZB, YB)


def test_error_nc4_logits_shape():
    with pytest.raises(ValueError, match=r"logits must have shape \(N, k\) = \(7, 3\).* got shape \(7, 2\)"):
        C.nc4_ncc_mismatch(np.ones((7, 2)), ZB, YB)


def test_error_ncc_error_means_shape():
    with pytest.raises(ValueError, match=r"means must have shape \(k, p\) = \(3, 2\).* got shape \(2, 2\)"):
        C.ncc_error(ZB, YB, means=np.eye(2))


def test_error_ncc_error_names_the_class_that_y_lacks():
    # 10 means fitted on classes 0..9; a test set without class 3
    rng = np.random.default_rng(0)
    means = rng.standard_normal((10, 16))
    y = np.repeat([0, 1, 2, 4, 5, 6, 7, 8, 9], 3)
    Z = means[y] + 0.01 * rng.standard_normal((len(y), 16))
    with pytest.raises(ValueError, match=r"means must have shape \(k, p\) = \(9, 16\).*class\(es\) \[3\] of means are "
                                         r"absent from y.*Pass labels="):
        C.ncc_error(Z, y, means=means)
    # with the label of each row, the rows are matched by label and the error is right
    assert C.ncc_error(Z, y, means=means, labels=np.arange(10)) == 0.0
    assert C.ncc_error(Z, y, means=means[::-1], labels=np.arange(10)[::-1]) == 0.0
    y_wrong = y.copy()
    y_wrong[:3] = 5  # the three samples of class 0 now claim class 5
    assert C.ncc_error(Z, y_wrong, means=means, labels=np.arange(10)) == pytest.approx(3 / len(y))
    with pytest.raises(ValueError, match=r"class\(es\) \[12\] occur in y but not in labels"):
        C.ncc_error(Z, np.where(y == 9, 12, y), means=means, labels=np.arange(10))
    with pytest.raises(ValueError, match=r"labels must name each row of means once; label 4 names 2 rows"):
        C.ncc_error(Z, y, means=means, labels=np.array([0, 1, 2, 4, 4, 5, 6, 7, 8, 9]))


def test_error_classifier_columns_name_the_class_that_y_lacks():
    with pytest.raises(ValueError, match=r"got shape \(2, 4\): W \(columns\) has 4 rows .* class\(es\) \[3\] of W "
                                         r"\(columns\) are absent from y"):
        C.nc3_self_duality(np.ones((2, 4)), ZB, YB)
    with pytest.raises(ValueError, match=r"class\(es\) \[3\] of logits \(columns\) are absent from y"):
        C.nc4_ncc_mismatch(np.ones((7, 4)), ZB, YB)


def test_error_ncc_predict_feature_mismatch():
    with pytest.raises(ValueError, match=r"means has 3 features per row but Z has 2"):
        C.ncc_predict(np.eye(3), ZB)


# --------------------------------------------------------------------------------------------------------
# Device arrays: the strict stand-in refuses any implicit trip to the host
# --------------------------------------------------------------------------------------------------------

@pytest.fixture
def strict():
    import strict_device

    return strict_device.register()


DEVICE_METRICS = {
    "cdnv": lambda Z, y, xp: C.cdnv(Z, y),
    "nc1": lambda Z, y, xp: C.nc1(Z, y),
    "nc2_equinorm": lambda Z, y, xp: C.nc2_equinorm(Z, y),
    "nc2_equiangularity": lambda Z, y, xp: C.nc2_equiangularity(Z, y),
    "nc2_maxangle": lambda Z, y, xp: C.nc2_maxangle(Z, y),
    "nc3_self_duality": lambda Z, y, xp: C.nc3_self_duality(xp.asarray(np.ones((6, 5)) + np.eye(6, 5)), Z, y),
    "nc4_ncc_mismatch": lambda Z, y, xp: C.nc4_ncc_mismatch(Z[:, :5], Z, y),
    "ncc_error": lambda Z, y, xp: C.ncc_error(Z, y, means=C.ncc_fit(Z, y)),
    "geometric_collapse": lambda Z, y, xp: C.geometric_collapse([1.0, 2, 3, 4, 5], C.class_means(Z, y)),
}


@pytest.mark.parametrize("name", list(DEVICE_METRICS))
def test_metrics_stay_on_the_device_and_match_the_host(name, strict):
    Z, y = _random_classes(np.random.default_rng(13))
    metric = DEVICE_METRICS[name]
    assert metric(strict.asarray(Z), y, strict) == pytest.approx(metric(Z, y, np), rel=1e-10)


def test_device_errors_count_non_finite_values_without_leaking(strict):
    Z = ZB.copy()
    Z[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"Z contains 1 non-finite values"):
        C.cdnv(strict.asarray(Z), YB)
    with pytest.raises(ValueError, match=r"classes 0 and 1 have coincident means"):
        C.cdnv(strict.asarray(np.array([[0.0, 0], [2, 0], [1, 1], [1, -1]])), YA)


def test_ncc_error_takes_the_order_of_its_bounds_and_refuses_the_old_one():
    Z = np.array([[0.0], [0.2], [1.0], [0.9]])
    y = np.array([0, 0, 1, 1])
    assert C.ncc_error(Z, y) == 0.0  # means=None: the class means of Z itself
    assert C.ncc_error(Z, y, means=np.array([[1.0], [0.0]])) == 1.0
    with pytest.raises(TypeError, match=r"ncc_error\(Z, y, means=means\)"):
        C.ncc_error(np.array([[0.0], [1.0]]), Z, y)


# ---- library edges (issue 33 item 8) -------------------------------------------------------------------------
@pytest.mark.parametrize("balanced", [False, True])
def test_ncc_error_of_zero_samples_is_an_error_not_nan(balanced):
    means = np.eye(3)
    with pytest.raises(ValueError, match="ncc_error: Z has 0 samples"):
        C.ncc_error(np.zeros((0, 3)), np.zeros(0, dtype=int), means=means, labels=np.arange(3),
                           balanced=balanced)


def test_cdnv_of_huge_features_equals_the_cdnv_of_the_same_features_rescaled(rng):
    Z, y = rng.standard_normal((30, 4)), np.arange(30) % 3
    Z[y == 1] += 3.0
    expected = C.cdnv(Z, y)
    for scale in (1e154, 1e300):
        assert C.cdnv(Z * scale, y) == pytest.approx(expected, rel=1e-12)
    assert C.cdnv_matrix(Z * 1e154, y) == pytest.approx(C.cdnv_matrix(Z, y), rel=1e-12)
