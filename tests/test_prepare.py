"""experiments/prepare.py: a run's arrays (the source classes, standardized with the training statistics), the fixed
GC subsets, the target pool, and the Poincare proxies rho, checked against the raw dataset (8x8 digits)."""
import numpy as np
import pytest

from minigcnc import data as data_mod
from minigcnc.experiments import prepare
from minigcnc.experiments.config import scale_base

SOURCE, TARGET = (3, 5, 7), (0, 1, 2, 4, 6)
CONFIG = scale_base("tiny", classes=SOURCE, target_classes=TARGET, eval_per_class=6)


@pytest.fixture(scope="module")
def run_data():
    return prepare.prepare_data(CONFIG)


@pytest.fixture(scope="module")
def raw():
    """{split: (X, y)} of the digits as loaded, before any selection or standardization."""
    return {split: data_mod.load("digits", split) for split in ("train", "test")}


def rows_of(X, pool):
    """For each row of ``X``, the index of the equal row of ``pool`` (-1 if none); rows compared exactly."""
    index = {row.tobytes(): i for i, row in enumerate(pool.reshape(len(pool), -1))}
    return np.array([index.get(row.tobytes(), -1) for row in X.reshape(len(X), -1)])


def test_the_source_classes_relabelled_and_standardized_with_the_training_statistics(run_data, raw):
    (Xtr, ytr), (Xte, yte) = raw["train"], raw["test"]
    Xs, ys = data_mod.class_split(Xtr, ytr, SOURCE)
    mean, std = Xs.mean(), Xs.std()  # one channel: over all training images and pixels of the source classes
    np.testing.assert_allclose(run_data.X_train, (Xs - mean) / std, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(run_data.y_train, ys)
    Xs_te, ys_te = data_mod.class_split(Xte, yte, SOURCE)
    np.testing.assert_allclose(run_data.X_test, (Xs_te - mean) / std, rtol=1e-12, atol=1e-12)  # the train statistics
    np.testing.assert_array_equal(run_data.y_test, ys_te)
    assert abs(run_data.X_train.mean()) < 1e-6 and run_data.X_train.std() == pytest.approx(1.0)  # (float32 images)
    assert abs(run_data.X_test.mean()) > 1e-3  # the test images were not standardized with their own statistics
    assert run_data.n_classes == 3 and run_data.input_shape == (1, 8, 8)
    assert set(run_data.y_train) == {0, 1, 2}  # digit SOURCE[j] is label j


def test_the_gc_subsets_are_fixed_rows_of_each_split_with_eval_per_class_images_of_each_class(run_data):
    for X, y, Xs, ys in ((run_data.X_train, run_data.y_train, run_data.X_eval, run_data.y_eval),
                         (run_data.X_test, run_data.y_test, run_data.X_eval_test, run_data.y_eval_test)):
        where = rows_of(Xs, X)
        assert (where >= 0).all() and len(set(where)) == len(where)  # distinct images of that split
        np.testing.assert_array_equal(ys, y[where])
        np.testing.assert_array_equal(np.bincount(ys), [CONFIG.eval_per_class] * 3)
    again = prepare.prepare_data(CONFIG.replace(seed=9, lr=0.5))  # another run: the same images
    np.testing.assert_array_equal(again.X_eval, run_data.X_eval)
    np.testing.assert_array_equal(again.X_eval_test, run_data.X_eval_test)
    np.testing.assert_array_equal(run_data.y_eval_test_dev, run_data.y_eval_test)


def test_a_class_with_fewer_test_images_than_eval_per_class_gives_all_of_them():
    y = np.array([0] * 5 + [1] * 2 + [2] * 4)
    idx = prepare.eval_subset(y, per_class=3, seed=0)
    np.testing.assert_array_equal(np.bincount(y[idx]), [2, 2, 2])  # the smallest class sets the count
    assert list(idx) == sorted(idx)


def test_the_target_pool_is_every_image_of_the_target_classes_standardized_with_the_source_statistics(run_data, raw):
    (Xtr, ytr), (Xte, yte) = raw["train"], raw["test"]
    mean, std = data_mod.class_split(Xtr, ytr, SOURCE)[0].mean(), data_mod.class_split(Xtr, ytr, SOURCE)[0].std()
    Xt, yt = data_mod.class_split(np.concatenate([Xtr, Xte]), np.concatenate([ytr, yte]), TARGET)
    np.testing.assert_allclose(run_data.X_target, (Xt - mean) / std, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(run_data.y_target, yt)
    assert run_data.n_target_classes == len(TARGET) and len(yt) == np.isin(np.concatenate([ytr, yte]), TARGET).sum()
    assert run_data.target_groups is None  # not rotated classes


def test_rotated_target_classes_know_their_digit():
    rotated = scale_base("tiny", dataset="digits_rot", target_classes=(8, 9, 13, 38))
    np.testing.assert_array_equal(prepare.target_groups(rotated, 4), [2, 2, 3, 9])  # class c is digit c // 4
    np.testing.assert_array_equal(prepare.target_groups(rotated.replace(target_classes=()), 8), [0] * 4 + [1] * 4)
    assert prepare.target_groups(CONFIG, 5) is None and prepare.target_groups(rotated, 0) is None


def test_rho_is_the_largest_covariance_eigenvalue_of_each_classs_standardized_training_images(run_data):
    X = run_data.X_train.reshape(len(run_data.X_train), -1)
    expected = [np.linalg.eigvalsh(np.cov(X[run_data.y_train == c].T)).max() for c in range(3)]
    np.testing.assert_allclose(run_data.rho, expected, rtol=1e-10)
    Xte = run_data.X_test.reshape(len(run_data.X_test), -1)
    on_test = [np.linalg.eigvalsh(np.cov(Xte[run_data.y_test == c].T)).max() for c in range(3)]
    assert not np.allclose(run_data.rho, on_test, rtol=1e-3)  # not the test images


def test_the_run_data_follows_the_configs_dtype_and_the_model_its_fields():
    data32 = prepare.prepare_data(CONFIG.replace(dtype="float32"))
    assert data32.X_train.dtype == np.float32 and data32.X_target.dtype == np.float32
    assert data32.y_train.dtype.kind == "i"
    model = prepare.build_model(CONFIG, 3, (1, 8, 8))
    assert model.embed_dim == CONFIG.hidden[-1] and model.n_classes == 3 and model.input_dim == 64
    conv = prepare.build_model(CONFIG.replace(model="convnet", channels=(2, 3), hidden=(5,)), 3, (1, 8, 8))
    assert conv.embed_dim == 5 and "conv" in conv.name


def test_gaussians_get_the_exact_poincare_constants_and_covariance_factors_of_their_standardized_inputs():
    d = prepare.prepare_data(scale_base("tiny", dataset="gaussians", eval_per_class=4))
    _, std, _ = data_mod.standardize(data_mod.load("gaussians", "train")[0])
    np.testing.assert_allclose(d.rho, data_mod.GAUSSIANS_SIGMAS ** 2 / float(std[0]) ** 2, rtol=1e-6)
    F = prepare.input_cov_factors(d)
    assert len(F) == 10 and F[0].dtype == d.X_train.dtype
    for c in (0, 9):
        np.testing.assert_allclose(F[c].T @ F[c], data_mod.gaussians_covariances()[c] / float(std[0]) ** 2, rtol=1e-6)
    sub = prepare.prepare_data(scale_base("tiny", dataset="gaussians", classes=(2, 7), eval_per_class=4))
    _, std2, _ = data_mod.standardize(data_mod.class_split(*data_mod.load("gaussians", "train"), [2, 7])[0])
    np.testing.assert_allclose(sub.rho, data_mod.GAUSSIANS_SIGMAS[[2, 7]] ** 2 / float(std2[0]) ** 2, rtol=1e-6)


def test_the_input_cov_factors_of_images_give_the_sample_covariance_whose_lambda_max_is_rho(run_data):
    assert run_data.input_cov_factors is None  # computed on demand: no second copy of the training set
    F = prepare.input_cov_factors(run_data)
    X = run_data.X_train.reshape(len(run_data.X_train), -1)
    for c in range(3):
        S = np.cov(X[run_data.y_train == c].T)
        np.testing.assert_allclose(F[c].T @ F[c], S, rtol=1e-9, atol=1e-12)
        assert np.linalg.eigvalsh(F[c].T @ F[c]).max() == pytest.approx(run_data.rho[c], rel=1e-9)
