"""The arrays and the model of one run: data loaded, split, standardized, the GC subsets, and the Poincare proxies.

``prepare_data(config)`` returns a ``RunData``:

- the source classes' train and test images, standardized with the source-train mean and std per channel;
- two fixed evaluation subsets for the exact GC: ``eval_per_class`` training images of each class (``X_eval``)
  and as many test images of each class (``X_eval_test``; fewer if a class has fewer test images), drawn once
  with a fixed seed so every run and checkpoint measures the same images;
- ``rho``: one Poincare constant per class, the Gaussian proxy ``lambda_max(Cov(x | class c))`` of the
  class's standardized training inputs (``bounds.poincare_constants``; docs/theory.md#the-poincare-step
  says why it is only a proxy for images); for the synthetic ``"gaussians"`` the exact constant
  ``lambda_max(Sigma_c) / std^2`` of the standardized inputs (std: the standardization scale);
- ``input_cov_factors``: for ``"gaussians"`` the exact per-class factors ``F_c = (sigma_c / std) I_D`` (host)
  of the standardized inputs' covariance ``Sigma_c = F_c^T F_c``; None for other datasets, whose factors
  ``input_cov_factors(data)`` computes on demand: the centred standardized training inputs of class c divided
  by ``sqrt(N_c - 1)`` (so ``Sigma_c`` is the sample covariance whose lambda_max is the proxy rho);
- the target classes (transfer), standardized with the same source statistics, and for rotation-augmented
  target classes (``data.rotate_classes``) ``target_groups``, the digit (base class) of each target label.

The host arrays are computed once per process (``functools.lru_cache``) and moved to the run's backend and
dtype by ``prepare_data``. ``build_model(config, ...)`` builds the network the config names.
"""
from dataclasses import dataclass
from functools import lru_cache

import numpy as onp

from .. import data as data_mod
from ..backend import asarray, get_xp
from ..bounds import poincare_constants
from ..models import build

CIFARFS_TEST_FRACTION = 1 / 6  # CIFAR-FS source classes: 500 train / 100 test of each class's 600 images
EVAL_SUBSET_SEED = 12345  # the fixed draw of the GC evaluation subsets, the same for every run


@dataclass
class RunData:
    """The arrays of one run (images on the run's device and dtype; labels on the host, and ``*_dev`` copies)."""

    X_train: object
    y_train: onp.ndarray
    X_test: object
    y_test: onp.ndarray
    X_eval: object
    y_eval: onp.ndarray
    rho: onp.ndarray
    n_classes: int
    input_shape: tuple
    X_eval_test: object = None
    y_eval_test: onp.ndarray = None
    X_target: object = None
    y_target: onp.ndarray = None
    n_target_classes: int = 0
    y_train_dev: object = None
    y_test_dev: object = None
    y_eval_test_dev: object = None
    target_groups: onp.ndarray = None  # target label j -> its base class (rotated targets only; else None)
    input_cov_factors: tuple = None  # exact per-class F_c (r_c, D), host, Sigma_c = F_c^T F_c; None: sample (input_cov_factors)


def source_splits(dataset, data_root):
    """(X_train, y_train, X_test, y_test) of ``dataset``; for ``"cifarfs"`` the 64 train classes, split 5:1 per class."""
    if dataset == "cifarfs":
        X, y = data_mod.load("cifarfs", "train", root=data_root)
        tr, te = data_mod.split_per_class(y, CIFARFS_TEST_FRACTION, seed=0)
        return X[tr], y[tr], X[te], y[te]
    Xtr, ytr = data_mod.load(dataset, "train", root=data_root)
    Xte, yte = data_mod.load(dataset, "test", root=data_root)
    return Xtr, ytr, Xte, yte


def target_pool(dataset, data_root):
    """(X, y): every image of ``dataset`` (train and test) for transfer; for ``"cifarfs"`` its 20 test classes."""
    if dataset == "cifarfs":
        return data_mod.load("cifarfs", "test", root=data_root)
    Xtr, ytr = data_mod.load(dataset, "train", root=data_root)
    Xte, yte = data_mod.load(dataset, "test", root=data_root)
    return onp.concatenate([Xtr, Xte]), onp.concatenate([ytr, yte])


def eval_subset(y, per_class, seed):
    """Indices of ``per_class`` examples of each class of ``y`` (all of a class that has fewer), sorted."""
    rng = onp.random.default_rng(seed)
    counts = onp.bincount(y)
    n = int(min(per_class, counts[counts > 0].min()))
    return data_mod.stratified_subset(y, n, rng)


@lru_cache(maxsize=4)
def host_data(dataset, classes, target_classes, eval_per_class, data_root, target_dataset=""):
    """The host arrays of a run (see the module docstring), computed once per process for these arguments."""
    Xtr, ytr, Xte, yte = source_splits(dataset, data_root)
    Xt = yt = None
    if target_classes or target_dataset:
        if target_dataset or dataset == "cifarfs":
            Xt, yt = target_pool(target_dataset or dataset, data_root)
        else:  # the source dataset's own arrays, already loaded
            Xt, yt = onp.concatenate([Xtr, Xte]), onp.concatenate([ytr, yte])
        if target_classes:
            Xt, yt = data_mod.class_split(Xt, yt, list(target_classes))
    if classes:
        Xtr, ytr = data_mod.class_split(Xtr, ytr, list(classes))
        Xte, yte = data_mod.class_split(Xte, yte, list(classes))
    std = data_mod.standardize(Xtr, Xte, *([Xt] if Xt is not None else []))
    Xtr, Xte = std[2], std[3]
    Xt = std[4] if Xt is not None else None
    idx = data_mod.stratified_subset(ytr, eval_per_class, onp.random.default_rng(EVAL_SUBSET_SEED))
    idx_test = eval_subset(yte, eval_per_class, EVAL_SUBSET_SEED)
    if dataset == "gaussians":  # exact: Sigma_c / std^2 for the standardized inputs
        rho = gaussian_scales(classes, std[1]) ** 2
    else:  # The Poincare constant of each class's input distribution, Gaussian proxy: lambda_max of its covariance
        rho = poincare_constants(Xtr.reshape(len(Xtr), -1), ytr)
    return Xtr, ytr, Xte, yte, idx, idx_test, rho, Xt, yt


def gaussian_scales(classes, std):
    """``sigma_c / std`` (k,) of the synthetic ``"gaussians"`` classes kept (``classes``, or all), after the
    standardization by ``std`` (one channel): the standardized inputs of class c have covariance
    ``(sigma_c / std)^2 I``, so this squared is their exact Poincare constant."""
    sig = data_mod.GAUSSIANS_SIGMAS[list(classes) if classes else slice(None)]
    return onp.asarray(sig, dtype=onp.float64) / float(onp.asarray(std).reshape(-1)[0])


def input_cov_factors(data):
    """Per class ``F_c`` (r_c, D) with ``F_c^T F_c = Sigma_c``, the covariance of class c's standardized inputs,
    on the backend and dtype of ``data.X_train`` (a tuple in class order).

    ``data.input_cov_factors`` when set (host arrays: the exact ``(sigma_c / std) I_D`` of ``"gaussians"``);
    otherwise ``(X_c - mean(X_c)) / sqrt(N_c - 1)`` of the standardized training inputs X_c of class c, so
    ``Sigma_c`` is the sample covariance (ddof 1) whose lambda_max is the proxy rho. Computed on demand (the
    ``"moment_bounds"`` extra), so a run that does not ask for it holds no second copy of its training set.
    """
    xp = get_xp(data.X_train)
    if data.input_cov_factors is not None:
        return tuple(xp.asarray(onp.asarray(F).astype(data.X_train.dtype)) for F in data.input_cov_factors)
    N = data.X_train.shape[0]
    X = data.X_train.reshape(N, -1)
    out = []
    for c in onp.unique(data.y_train):
        Xc = X[xp.asarray(onp.flatnonzero(data.y_train == c))]
        out.append((Xc - xp.mean(Xc, axis=0)) / float(onp.sqrt(Xc.shape[0] - 1.0)))
    return tuple(out)


def target_groups(config, n_target_classes):
    """The base class of each target label when the target classes are rotated (``<base>_rot``), else None.

    Target label j is the original class ``config.target_classes[j]`` (``class_split``), or j itself when all the
    target dataset's classes are used; rotated class c is base class ``c // N_ROTATIONS`` (``rotate_classes``).
    """
    if not n_target_classes or not (config.target_dataset or config.dataset).endswith(data_mod.ROTATED_SUFFIX):
        return None
    original = onp.asarray(config.target_classes or range(n_target_classes), dtype=onp.int64)
    return original // data_mod.N_ROTATIONS


def prepare_data(config):
    """``RunData`` for ``config``: loaded once per process, standardized with the source-train statistics."""
    Xtr, ytr, Xte, yte, idx, idx_test, rho, Xt, yt = host_data(
        config.dataset, tuple(config.classes), tuple(config.target_classes), config.eval_per_class, config.data_root,
        config.target_dataset)
    n_target = 0 if yt is None else int(yt.max()) + 1
    dev = lambda a: asarray(a, dtype=config.dtype, backend=config.backend)  # noqa: E731
    ints = lambda a: asarray(a, backend=config.backend)  # noqa: E731
    return RunData(
        X_train=dev(Xtr), y_train=ytr, X_test=dev(Xte), y_test=yte, X_eval=dev(Xtr[idx]), y_eval=ytr[idx], rho=rho,
        n_classes=int(ytr.max()) + 1, input_shape=tuple(Xtr.shape[1:]),
        X_eval_test=dev(Xte[idx_test]), y_eval_test=yte[idx_test],
        X_target=None if Xt is None else dev(Xt), y_target=yt, n_target_classes=n_target,
        y_train_dev=ints(ytr), y_test_dev=ints(yte), y_eval_test_dev=ints(yte[idx_test]),
        target_groups=target_groups(config, n_target),
        input_cov_factors=tuple(onp.sqrt(r) * onp.eye(Xtr[0].size) for r in rho) if config.dataset == "gaussians"
        else None,  # gaussians: rho_c = (sigma_c / std)^2 exactly, so F_c = sqrt(rho_c) I; else input_cov_factors
    )


def build_model(config, n_classes, input_shape):
    """The model named by ``config.model`` with its size fields and activation."""
    if config.model == "mlp":
        return build("mlp", input_shape, n_classes, hidden=tuple(config.hidden), activation=config.activation)
    if config.model == "convnet":
        kw = {"hidden": tuple(config.hidden), "activation": config.activation}
        if config.channels:
            kw["channels"] = tuple(config.channels)
        return build("convnet", input_shape, n_classes, **kw)
    return build(config.model, input_shape, n_classes, width=config.width)
