"""Rotation-augmented classes: each image at 0, 90, 180, 270 degrees, each (class, quarter turn) its own class."""
import numpy as np
import pytest

from minigcnc import data


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
