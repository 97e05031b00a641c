"""Tests of the minigcnc.data API: ``load`` of every dataset, CIFAR-FS class splits, standardization, subsets.

The files, checksums and downloads are tested in test_data_files.py, the parsers in test_data_formats.py;
rotated classes at the end of this file. File-based datasets are loaded from small fakes (fake_datasets.py).
"""
import numpy as np
import pytest

from fake_datasets import REFERENCE_NAMES, cifar10_members, cifar100_members, install_archive
from minigcnc import data


# ----------------------------------------------------------------------------------------------------------------
# Embedded and bundled datasets, names and splits


def test_mnist5k_has_400_train_and_100_test_images_per_class_in_unit_range():
    for split, per_class in (("train", 400), ("test", 100)):
        X, y = data.load("mnist5k", split)
        assert X.shape == (10 * per_class, 1, 28, 28) and X.dtype == np.float32
        assert y.dtype == np.int64 and np.all(np.bincount(y) == per_class)
        assert X.min() == 0.0 and X.max() == 1.0
        assert 0.1 < X.mean() < 0.15  # MNIST's mean intensity is about 0.13


def test_mnist5k_train_and_test_images_are_disjoint():
    X_train, _ = data.load("mnist5k", "train")
    X_test, _ = data.load("mnist5k", "test")
    train_keys = {x.tobytes() for x in X_train}
    assert sum(x.tobytes() in train_keys for x in X_test) < 5  # MNIST has a few exact duplicates at most


def test_digits_is_an_80_20_stratified_split_of_sklearn_digits_in_unit_range():
    X_train, y_train = data.load("digits", "train")
    X_test, y_test = data.load("digits", "test")
    assert X_train.shape[1:] == (1, 8, 8) and X_train.dtype == np.float32 and y_train.dtype == np.int64
    assert len(X_train) + len(X_test) == 1797 and abs(len(X_test) / 1797 - 0.2) < 0.01
    assert np.all(np.abs(np.bincount(y_test) / np.bincount(y_train) * 4 - 1) < 0.05)  # 1:4 in every class
    assert X_train.min() == 0.0 and X_train.max() == 1.0
    again, _ = data.load("digits", "train")
    np.testing.assert_array_equal(X_train, again)


def test_unknown_dataset_name_lists_the_accepted_names():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*mnist5k.*cifarfs"):
        data.load("imagenet")
    with pytest.raises(TypeError, match="name"):
        data.load(3)


def test_unknown_split_lists_the_accepted_splits():
    with pytest.raises(ValueError, match="split: received 'val'.*train, test"):
        data.load("mnist5k", "val")
    with pytest.raises(ValueError, match="split: received 'validation'.*train, val, test"):
        data.load("cifarfs", "validation")


# ----------------------------------------------------------------------------------------------------------------
# Which archive, and CIFAR-FS


def test_binary_archive_is_preferred_when_both_are_present(monkeypatch, tmp_path):
    install_archive(monkeypatch, tmp_path, "cifar10", "python", cifar10_members("python", [[1]] * 6))
    install_archive(monkeypatch, tmp_path, "cifar10", "binary", cifar10_members("binary", [[2]] * 6))
    _, y = data.load("cifar10", "test", root=tmp_path)
    assert y.tolist() == [2]


@pytest.mark.parametrize("kind", ["python", "binary"])
def test_cifarfs_derives_the_class_split_from_the_archive_names(monkeypatch, tmp_path, kind):
    # shuffled names: every class has a different index than in the official archive
    names = [str(n) for n in np.random.default_rng(2).permutation(REFERENCE_NAMES)]
    install_archive(monkeypatch, tmp_path, "cifar100", kind, cifar100_members(kind, names))
    for split, k in (("train", 64), ("val", 16), ("test", 20)):
        X, y = data.load("cifarfs", split, root=tmp_path)
        classes = data.cifarfs_class_names(split)
        assert len(classes) == k and classes == sorted(classes)
        assert np.all(np.bincount(y, minlength=k) == 2)  # one train + one test image per class
        # each image's value is its class's index in the reference name list
        np.testing.assert_allclose(X[:, 0, 0, 0] * 255, [REFERENCE_NAMES.index(classes[j]) for j in y])


def test_cifarfs_splits_partition_the_100_classes():
    splits = [set(data.cifarfs_class_names(s)) for s in ("train", "val", "test")]
    assert [len(s) for s in splits] == [64, 16, 20]
    assert set.union(*splits) == set(REFERENCE_NAMES) and sum(map(len, splits)) == 100
    assert {"baby", "worm", "sweet_pepper"} <= splits[2] and {"beaver", "tractor"} <= splits[1]


# ----------------------------------------------------------------------------------------------------------------
# Standardization, subsets, class splits


def test_standardize_gives_zero_mean_unit_std_per_channel_on_train_and_reuses_train_statistics():
    rng = np.random.default_rng(0)
    X_train = rng.normal([1.0, -2.0, 5.0], [0.5, 2.0, 3.0], size=(50, 4, 4, 3)).transpose(0, 3, 1, 2)  # (50,3,4,4)
    X_test = rng.normal(size=(7, 3, 4, 4))
    mean, std, Z_train, Z_test = data.standardize(X_train, X_test)
    assert mean.shape == std.shape == (3,)
    np.testing.assert_allclose(Z_train.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(Z_train.std(axis=(0, 2, 3)), 1, atol=1e-12)
    np.testing.assert_allclose(Z_test, (X_test - mean[:, None, None]) / std[:, None, None])
    np.testing.assert_allclose(mean, [X_train[:, c].mean() for c in range(3)])


def test_standardize_leaves_a_constant_channel_finite_and_keeps_float32():
    X = np.zeros((4, 1, 2, 2), dtype=np.float32)
    _, std, Z = data.standardize(X)
    assert std[0] == 1 and Z.dtype == np.float32 and np.all(Z == 0)


def test_stratified_subset_draws_n_per_class_reproducibly_and_names_a_short_class():
    y = np.repeat([0, 1, 2], [5, 8, 3])
    idx = data.stratified_subset(y, 3, np.random.default_rng(0))
    assert np.all(np.bincount(y[idx]) == 3) and len(set(idx.tolist())) == 9
    np.testing.assert_array_equal(idx, data.stratified_subset(y, 3, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="class 2 has only 3 examples"):
        data.stratified_subset(y, 4, np.random.default_rng(0))
    np.testing.assert_array_equal(data.stratified_subset(y, 3, 0), idx)  # an int seed means default_rng(seed)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        data.stratified_subset(y, 3, 0.5)
    with pytest.raises(ValueError, match="rng is required"):
        data.stratified_subset(y, 3, None)
    with pytest.raises(ValueError, match="n_per_class must be an integer >= 1; got 0"):
        data.stratified_subset(y, 0, 0)


def test_class_split_keeps_the_listed_classes_relabelled_in_the_given_order():
    y = np.array([0, 5, 7, 5, 9, 1, 7])
    X = np.arange(7)[:, None] * np.ones((1, 2))
    X_sub, y_sub = data.class_split(X, y, [7, 5])
    np.testing.assert_array_equal(X_sub[:, 0], [1, 2, 3, 6])
    np.testing.assert_array_equal(y_sub, [1, 0, 1, 0])
    with pytest.raises(ValueError, match=r"\[3\] do not occur"):
        data.class_split(X, y, [5, 3])


# ---- rotation-augmented classes: each (class, quarter turn) its own class ----------------------------
def test_rotate_classes_labels_each_quarter_turn_as_four_times_the_class_plus_k(rng):
    X = rng.random((6, 1, 5, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 2, 1, 0])
    X_rot, y_rot = data.rotate_classes(X, y)
    assert X_rot.shape == (24, 1, 5, 5) and X_rot.dtype == np.float32
    for k in range(4):
        block = slice(6 * k, 6 * (k + 1))  # rotation-major: all images at k quarter turns together
        np.testing.assert_array_equal(y_rot[block], 4 * y + k)
        np.testing.assert_array_equal(X_rot[block], np.rot90(X, k, axes=(2, 3)))


def test_a_quarter_turn_is_counter_clockwise_and_four_turns_give_the_image_back():
    X = np.zeros((1, 1, 3, 3))
    X[0, 0, 0, 2] = 1.0  # top-right pixel
    X_rot, _ = data.rotate_classes(X, np.array([0]))
    assert X_rot[1, 0, 0, 0] == 1.0  # counter-clockwise: top-right goes to top-left
    np.testing.assert_array_equal(np.rot90(X_rot[3], 1, axes=(1, 2)), X[0])


def test_rotate_classes_with_fewer_turns_and_its_errors():
    X, y = np.ones((2, 1, 4, 4)), np.array([0, 1])
    _, y2 = data.rotate_classes(X, y, n_rotations=2)
    np.testing.assert_array_equal(y2, [0, 2, 1, 3])
    with pytest.raises(ValueError, match="square images"):
        data.rotate_classes(np.ones((2, 1, 4, 5)), y)
    with pytest.raises(ValueError, match="2 examples and 3 labels"):
        data.rotate_classes(X, np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="1..4 quarter turns"):
        data.rotate_classes(X, y, n_rotations=5)


def test_rotated_classes_lists_the_four_labels_of_each_class_in_order():
    assert data.rotated_classes([5, 6]) == [20, 21, 22, 23, 24, 25, 26, 27]
    assert data.rotated_classes([0], n_rotations=2) == [0, 1]


def test_mnist5k_rot_has_40_classes_of_400_train_images_and_its_unturned_classes_are_mnist5k():
    X, y = data.load("mnist5k_rot", "train")
    X0, y0 = data.load("mnist5k", "train")
    assert X.shape == (4 * len(X0), 1, 28, 28) and X.dtype == np.float32
    assert np.array_equal(np.bincount(y), np.full(40, 400))
    Xs, _ = data.class_split(X, y, [4 * 7])  # digit 7 at 0 degrees
    Xd, _ = data.class_split(X0, y0, [7])
    np.testing.assert_array_equal(Xs, Xd)
    Xs90, _ = data.class_split(X, y, [4 * 7 + 1])  # digit 7 turned by 90 degrees
    np.testing.assert_array_equal(Xs90, np.rot90(Xd, 1, axes=(2, 3)))


def test_rotated_dataset_names_are_accepted_and_listed():
    for name in ("mnist5k_rot", "digits_rot", "mnist_rot", "fashion_mnist_rot"):
        assert name in data.DATASETS
    X, y = data.load("digits_rot", "test")
    assert X.shape[1:] == (1, 8, 8) and y.max() == 39


def test_split_per_class_holds_out_the_fraction_of_each_class_deterministically():
    y = np.repeat(np.arange(3), 12)
    tr, te = data.split_per_class(y, 1 / 6, seed=0)
    assert np.array_equal(np.bincount(y[te]), [2, 2, 2]) and np.array_equal(np.bincount(y[tr]), [10, 10, 10])
    assert not set(tr) & set(te)
    tr2, te2 = data.split_per_class(y, 1 / 6, seed=0)
    np.testing.assert_array_equal(te, te2)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        data.split_per_class(y, 1.0, seed=0)


# ---- synthetic Gaussian classes -------------------------------------------------------------------------------
def test_gaussians_are_deterministic_balanced_vectors_of_ten_classes_with_their_true_moments():
    X, y = data.load("gaussians", "train")
    Xt, yt = data.load("gaussians", "test")
    assert X.shape == (4000, 1, 1, 32) and Xt.shape == (1000, 1, 1, 32) and X.dtype == np.float32
    assert y.dtype == np.int64 and np.all(np.bincount(y) == 400) and np.all(np.bincount(yt) == 100)
    X2, y2 = data.load("gaussians", "train")
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    assert not np.array_equal(X[:1000], Xt)  # test is another draw
    mu, S = data.gaussians_means(), data.gaussians_covariances()
    sig = data.GAUSSIANS_SIGMAS
    assert mu.shape == (10, 32) and S.shape == (10, 32, 32) and 0.8 <= sig.min() and sig.max() <= 1.2
    np.testing.assert_allclose(S, sig[:, None, None] ** 2 * np.eye(32))
    iu = np.triu_indices(10, 1)
    assert np.linalg.norm(mu[:, None] - mu[None], axis=-1)[iu].mean() == pytest.approx(6.0 * sig.mean())
    Z = X.reshape(len(X), -1).astype(np.float64)
    for c in (0, 9):  # the sample moments are those of N(mu_c, sigma_c^2 I) (400 samples: loose tolerances)
        Zc = Z[y == c]
        assert np.abs(Zc.mean(axis=0) - mu[c]).max() < 5 * sig[c] / np.sqrt(400)
        assert np.var(Zc - Zc.mean(axis=0)) == pytest.approx(sig[c] ** 2, rel=0.05)
    Zt = Xt.reshape(len(Xt), -1)
    pred = ((Zt[:, None, :] - mu[None]) ** 2).sum(-1).argmin(axis=1)  # NCC with the true means: a few percent
    assert 0.005 < np.mean(pred != yt) < 0.08
    assert data.download("gaussians") == [] and "gaussians" in data.DATASETS
