"""classes.py: checked features and labels, the class bookkeeping, class statistics, distances between class
means, and the matching of per-class rows to labels (a class one side lacks is named by label)."""
import numpy as np
import pytest

from minigcnc import classes as K

Z = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, -2.0], [4.0, 2.0], [1.0, 3.0], [1.0, 5.0], [1.0, 4.0]])
Y = np.array([7, 7, 3, 3, 9, 9, 9])  # sorted classes 3, 7, 9


# ---- checked inputs ---------------------------------------------------------------------------------------------
def test_as_features_is_float64_2d_and_names_the_first_non_finite_entry():
    out = K.as_features(Z.astype(np.float32))
    assert out.dtype == np.float64 and out.shape == Z.shape
    bad = Z.copy()
    bad[4, 1] = np.inf
    with pytest.raises(ValueError, match=r"Z contains 1 non-finite values \(NaN or inf\) out of 14; the first at index "
                                         r"\(4, 1\)"):
        K.as_features(bad)
    with pytest.raises(ValueError, match=r"W must be a 2-D array of weights; got shape \(7,\)"):
        K.as_features(Z[:, 0], "W", "weights")


def test_as_labels_wants_one_integer_label_per_row():
    assert K.as_labels(Y, 7).dtype.kind == "i"
    with pytest.raises(ValueError, match=r"y must hold integer class labels; got dtype float64"):
        K.as_labels(Y.astype(float), 7)
    with pytest.raises(ValueError, match=r"y has 7 labels but X has 6 rows"):
        K.as_labels(Y, 6, rows_of="X")
    with pytest.raises(ValueError) as error:
        K.as_labels(Y.astype("S1"), 7, name="labels")
    assert str(error.value) == ("labels must hold integer class labels; got strings (dtype |S1): map them to 0..k-1, "
                                "e.g. numpy.unique(labels, return_inverse=True)[1]")


def test_as_class_vector_and_as_means_check_shape_sign_and_rows():
    assert K.as_class_vector([1, 2, 3], 3, "class_gc", "f").dtype == np.float64
    with pytest.raises(ValueError, match=r"class_gc must have shape \(3,\), one value per class .* for f"):
        K.as_class_vector([1.0, 2.0], 3, "class_gc", "f")
    with pytest.raises(ValueError, match=r"rho must be non-negative \(a constant\); got minimum -2"):
        K.as_class_vector([1.0, -2.0], 2, "rho", "f", "a constant")
    with pytest.raises(ValueError, match=r"means must have at least two rows \(classes\) for f"):
        K.as_means(np.ones((1, 3)), "f")


# ---- the classes of a label vector ------------------------------------------------------------------------------
def test_classes_are_the_sorted_labels_with_index_and_counts():
    c = K.Classes(Y)
    assert c.labels.tolist() == [3, 7, 9] and c.k == 3
    assert c.index.tolist() == [1, 1, 0, 0, 2, 2, 2] and c.counts.tolist() == [2, 2, 3]
    with pytest.raises(ValueError, match=r"y holds only one class \(label 4\); f needs at least two classes"):
        K.Classes(np.full(3, 4)).require_pairs("f")
    with pytest.raises(ValueError, match=r"class 9 has 1 sample in y; f needs at least 2 samples per class"):
        K.Classes(np.array([3, 3, 9])).require_two_samples("f")


def test_prepare_checks_everything_at_once():
    xp, Zc, c = K.prepare(Z, Y, "f")
    assert Zc.dtype == np.float64 and c.k == 3
    with pytest.raises(ValueError, match=r"class 9 has 1 sample in y; f needs"):
        K.prepare(Z[:5], Y[:5], "f")
    K.prepare(Z[:5], Y[:5], "f", two_samples=False)


# ---- class statistics -------------------------------------------------------------------------------------------
def test_means_centred_features_and_biased_variances_equal_numpy():
    xp, Zc, c = K.prepare(Z, Y, "f")
    means, centred, hot, counts = K.means_and_centred(xp, Zc, c)
    expected = np.stack([Z[Y == label].mean(axis=0) for label in (3, 7, 9)])
    np.testing.assert_allclose(means, expected, rtol=1e-15)
    np.testing.assert_allclose(K.means_and_counts(xp, Zc, c)[0], expected, rtol=1e-15)
    np.testing.assert_array_equal(hot, np.eye(3)[c.index])
    np.testing.assert_allclose(centred, Z - expected[c.index], rtol=1e-15)
    np.testing.assert_allclose(K.centred_variances(xp, centred, hot, counts),
                               [((Z[Y == label] - Z[Y == label].mean(axis=0)) ** 2).sum(axis=1).mean()
                                for label in (3, 7, 9)], rtol=1e-14)
    np.testing.assert_array_equal(K.onehot(xp, c), hot)


def test_pairwise_sq_dists_stay_exact_for_nearly_coincident_far_away_means():
    base = np.full((3, 4), 1e6)
    means = base + np.array([[0, 0, 0, 0], [1e-4, 0, 0, 0], [0, 3.0, 0, 0]])
    d2 = K.pairwise_sq_dists(means)
    exact = ((means[:, None] - means[None]) ** 2).sum(axis=-1)
    np.testing.assert_allclose(d2, exact, rtol=1e-6)
    assert d2[0, 1] == pytest.approx(1e-8, rel=1e-6) and np.all(np.diag(d2) == 0)


def test_check_distinct_names_the_pair_and_pair_mean_averages_over_i_lt_j():
    means = np.array([[0.0, 1.0], [2.0, 2.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"classes 3 and 9 have coincident means .* f divides"):
        K.check_distinct(K.pairwise_sq_dists(means), means, "f", labels=[3, 7, 9])
    M = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 6.0], [2.0, 6.0, 0.0]])
    assert K.pair_mean(M) == pytest.approx(3.0)


def test_nearest_is_the_row_of_the_closest_mean():
    means = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    pts = np.array([[1.0, 1.0], [9.0, -1.0], [-1.0, 8.0], [6.0, 0.0]])
    assert K.nearest(means, pts).tolist() == [0, 1, 2, 1]


# ---- matching per-class rows to the classes of y -----------------------------------------------------------------
def test_rows_of_classes_without_labels_are_the_sorted_classes_and_a_mismatch_names_the_class():
    c = K.Classes(np.array([0, 1, 2, 4, 4]))  # class 3 missing
    np.testing.assert_array_equal(K.rows_of_classes((4, 2), c, 2), np.arange(4))
    with pytest.raises(ValueError, match=r"means must have shape \(k, p\) = \(4, 2\) .* got shape \(5, 2\): means has 5 "
                                         r"rows \(one per class\) but y holds 4 classes \[0, 1, 2, 4\]; if row c of means "
                                         r"is class c, class\(es\) \[3\] of means are absent from y"):
        K.rows_of_classes((5, 2), c, 2)
    with pytest.raises(ValueError, match=r"class\(es\) \[4\] of y have no row in means"):
        K.rows_of_classes((2, 2), K.Classes(np.array([0, 1, 4])), 2)
    with pytest.raises(ValueError, match=r"means has 3 features per row but Z has 2"):
        K.rows_of_classes((4, 3), c, 2)


def test_rows_of_classes_with_labels_match_by_label_and_name_what_is_missing():
    c = K.Classes(np.array([5, 9, 7]))
    np.testing.assert_array_equal(K.rows_of_classes((3, 2), c, 2, labels=np.array([9, 5, 7])), [1, 2, 0])
    np.testing.assert_array_equal(K.rows_of_classes((4, 2), c, 2, labels=np.array([9, 5, 7, 1]), subset=True),
                                  [1, 2, 0])
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] occur in labels .* but not in y"):
        K.rows_of_classes((4, 2), c, 2, labels=np.array([9, 5, 7, 1]))
    with pytest.raises(ValueError, match=r"class\(es\) \[5\] occur in y but not in labels"):
        K.rows_of_classes((2, 2), c, 2, labels=np.array([9, 7]), subset=True)
    with pytest.raises(ValueError, match=r"labels has 2 labels but means has 3 rows"):
        K.rows_of_classes((3, 2), c, 2, labels=np.array([9, 7]))


def test_class_count_note_gives_no_guess_for_labels_that_are_not_row_numbers():
    note = K.class_count_note(3, K.Classes(np.array([-1, 2])), "W (columns)")
    assert note == "W (columns) has 3 rows (one per class) but y holds 2 classes [-1, 2]"


def test_classes_work_on_the_strict_device_without_leaks():
    from strict_device import register, strict

    register()
    xp, Zd, c = K.prepare(strict.asarray(Z), Y, "f")
    means = K.means_and_counts(xp, Zd, c)[0]
    np.testing.assert_allclose(means.get(), K.means_and_counts(np, Z, c)[0], rtol=1e-15)
    np.testing.assert_array_equal(K.nearest(means, Zd).get(), K.nearest(K.means_and_counts(np, Z, c)[0], Z))
    bad = Z.copy()
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match=r"the first at index \(2, 0\)"):
        K.as_features(strict.asarray(bad))
