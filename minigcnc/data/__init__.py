"""Datasets as ``(X, y)`` arrays, and what is done to them before training: standardization and splits.

``load(name, split="train", root=None)`` returns ``X`` float32 ``(N, C, H, W)`` in [0, 1] (the synthetic
``"gaussians"``: unbounded vectors) and ``y`` int64 ``(N,)``.

Dataset names
    ``"mnist5k"``        the embedded default: 400 train / 100 test MNIST images per class, 1x28x28, read from
                         ``minigcnc/data/_data/mnist5k.npz`` (made by ``scripts/make_mnist5k.py``); no download.
    ``"digits"``         scikit-learn's bundled 8x8 digits (1,797 images, 1x8x8, pixel / 16), split 80/20 per
                         class with a fixed seed; no download.
    ``"mnist"``, ``"fashion_mnist"``
                         the official IDX files (``train-images-idx3-ubyte.gz`` ...; uncompressed also accepted),
                         60,000 train / 10,000 test, 1x28x28. Fashion-MNIST is also found where the Debian package
                         ``dataset-fashion-mnist`` installs it, ``/usr/share/datasets/fashion-mnist/``.
    ``"cifar10"``, ``"cifar100"``
                         the official archives (binary ``cifar-10-binary.tar.gz`` preferred, or python
                         ``cifar-10-python.tar.gz``), 50,000 train / 10,000 test, 3x32x32; CIFAR-100 uses the
                         100 fine labels.
    ``"cifarfs"``        CIFAR-FS (Bertinetto et al. 2019): CIFAR-100 split by class name into 64 train / 16 val /
                         20 test classes; ``split`` is the class split and takes all 600 images of each class.
    ``"gaussians"``      synthetic Gaussian classes (``load_gaussians``): 10 classes in 32 dimensions, 400 train / 100
                         test per class, shape (N, 1, 1, 32), not in [0, 1]; generated from a fixed seed, no files.
                         Their exact covariances: ``gaussians_covariances()``.
    ``"mnist5k_rot"``, ``"digits_rot"``, ``"mnist_rot"``, ``"fashion_mnist_rot"``
                         rotation-augmented classes (``rotate_classes``): every image of the base dataset at 0, 90,
                         180 and 270 degrees, each (class, rotation) its own class, label ``4 * label + k`` for a
                         rotation by ``k * 90`` degrees; 40 classes, four times the images.

Preparation: ``standardize`` (per-channel, fitted on the training set), ``class_split``, ``stratified_subset``,
``split_per_class``, ``rotate_classes`` / ``rotated_classes``.

The package's other modules each do one part of reading the files:
    ``minigcnc.data.files``    where files are looked for (``root``, ``$MINIGCNC_DATA``, ``~/.cache/minigcnc/data``,
                               system folders), their published checksums, checked before anything is parsed, and
                               ``download(name)``'s fetching - the only network access.
    ``minigcnc.data.formats``  the IDX, CIFAR and .npz parsers; pickles only through ``RestrictedUnpickler``,
                               ``numpy.load(..., allow_pickle=False)`` only, archive members read in memory.
Use their names from there (``minigcnc.data.files.MD5``, ``minigcnc.data.formats.RestrictedUnpickler``).
"""
import contextlib

import numpy as np

from .. import checks
from . import files, formats

DATASETS = ("mnist5k", "digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "cifarfs",
            "mnist5k_rot", "digits_rot", "mnist_rot", "fashion_mnist_rot", "gaussians")
SYNTHETIC = ("gaussians",)  # generated from a fixed seed, no files; inputs are vectors (N, 1, 1, D), not images
ROTATED_SUFFIX = "_rot"  # "<base>_rot": the base dataset with rotation-augmented classes (rotate_classes)
N_ROTATIONS = 4
SPLITS = ("train", "test")
CIFARFS_SPLITS = ("train", "val", "test")

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2

# The 100 CIFAR-100 fine label names (as a set; indices always come from the archive's own list).
CIFAR100_FINE_NAMES = frozenset("""
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle
caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant flatfish
forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle
mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider
squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
wardrobe whale willow_tree wolf woman worm
""".split())
# CIFAR-FS class split of Bertinetto et al. 2019 (docs/theory.md#transfer); the train classes are the other 64.
CIFARFS_TEST = frozenset("""
baby bed bicycle chimpanzee fox leopard man pickup_truck plain poppy rocket rose snail sweet_pepper table telephone
wardrobe whale woman worm
""".split())
CIFARFS_VAL = frozenset("""
beaver beetle butterfly camel cattle crab crocodile flatfish lamp maple_tree motorcycle otter sea shark television
tractor
""".split())


# ----------------------------------------------------------------------------------------------------------------
# Loading


def load(name, split="train", root=None):
    """Return ``(X, y)``: images float32 ``(N, C, H, W)`` in [0, 1] and labels int64 ``(N,)`` of one dataset split.

    (``"gaussians"``: vectors as (N, 1, 1, 32), not bounded; see ``load_gaussians``.) ``name`` is one of ``DATASETS``; ``split`` is ``"train"`` or ``"test"`` (for ``"cifarfs"``: ``"train"``,
    ``"val"`` or ``"test"``, the class split, labels re-indexed 0..k-1 in sorted class-name order, see
    ``cifarfs_class_names``). ``root`` is the folder holding the files of the file-based datasets; see
    ``minigcnc.data.files`` for where they are looked for otherwise.
    """
    _check_name(name)
    _check_split(name, split)
    if name.endswith(ROTATED_SUFFIX):
        return rotate_classes(*load(name[: -len(ROTATED_SUFFIX)], split, root))
    if name == "gaussians":
        return load_gaussians(split)
    if name == "mnist5k":
        images, labels = formats.parse_mnist5k(files.mnist5k_bytes(), split)
    elif name == "digits":
        return _load_digits(split)
    elif name in ("mnist", "fashion_mnist"):
        images, labels = _load_idx_dataset(name, split, root)
    elif name in ("cifar10", "cifar100"):
        with _open_cifar_archive(name, root) as (kind, tar):
            images, labels = formats.read_cifar_split(name, kind, tar, split)
    else:
        images, labels = _load_cifarfs(split, root)
    return _as_unit_float(images), labels.astype(np.int64)


def download(name, root=None):
    """Return the paths (list of Path) of dataset ``name``'s files, downloading the missing ones into ``root``.

    The only function here that uses the network. ``root`` defaults to ``~/.cache/minigcnc/data/<name>``, where
    ``load`` finds the files. Each file is checked against its published md5 after download and is only then
    moved into place. CIFAR downloads the binary archive (no pickle involved). ``"mnist5k"`` and ``"digits"``
    ship with the code and need no download. Offline it raises ConnectionError naming the URL and the way around
    it: place the files in a folder and pass ``root=`` (``--data-root`` on the command line, or ``$MINIGCNC_DATA``).
    """
    _check_name(name)
    if name.endswith(ROTATED_SUFFIX):
        return download(name[: -len(ROTATED_SUFFIX)], root)
    if name in ("mnist5k", "digits") + SYNTHETIC:
        return []
    return files.download_files(name, root)


def cifar100_fine_label_names(root=None):
    """Return the 100 CIFAR-100 fine label names (list of str) in the archive's label order.

    Read from the ``meta`` member of the python archive or ``fine_label_names.txt`` of the binary archive.
    """
    with _open_cifar_archive("cifar100", root) as (kind, tar):
        return formats.read_cifar100_names(kind, tar)


def cifarfs_class_names(split):
    """Return the sorted CIFAR-100 class names (list of str) of a CIFAR-FS split: 64 train, 16 val or 20 test.

    Label ``j`` of ``load("cifarfs", split)`` is the class ``cifarfs_class_names(split)[j]``.
    """
    if split not in CIFARFS_SPLITS:
        raise ValueError(f"split: received {split!r}; CIFAR-FS accepts one of {CIFARFS_SPLITS}")
    if split == "test":
        return sorted(CIFARFS_TEST)
    if split == "val":
        return sorted(CIFARFS_VAL)
    return sorted(CIFAR100_FINE_NAMES - CIFARFS_TEST - CIFARFS_VAL)


def _check_name(name):
    if not isinstance(name, str):
        raise TypeError(f"name: received {type(name).__name__}; expected a dataset name (str), one of {DATASETS}")
    if name not in DATASETS:
        raise ValueError(f"name: unknown dataset {name!r}; accepted names: {', '.join(DATASETS)}")


def _check_split(name, split):
    accepted = CIFARFS_SPLITS if name == "cifarfs" else SPLITS
    if split not in accepted:
        raise ValueError(f"split: received {split!r} for dataset {name!r}; accepted: {', '.join(accepted)}")


GAUSSIANS_SEED = 20240527  # the one draw of the means and of the samples
GAUSSIANS_K, GAUSSIANS_D = 10, 32
GAUSSIANS_TRAIN, GAUSSIANS_TEST = 400, 100  # per class
GAUSSIANS_MEAN_DISTANCE = 6.0  # the mean pairwise distance of the class means, in units of the mean sigma (1)
GAUSSIANS_SIGMAS = np.linspace(0.8, 1.2, GAUSSIANS_K)  # sigma_c: class c has covariance sigma_c^2 I


def gaussians_means():
    """Return the true class means of ``"gaussians"``, float64 (10, 32).

    Drawn once, ``mu_c ~ N(0, I_32)`` from ``default_rng(GAUSSIANS_SEED)``, then all scaled by one factor so that
    the mean of the 45 pairwise distances ``||mu_i - mu_j||`` is ``GAUSSIANS_MEAN_DISTANCE`` = 6 times the mean
    sigma (1): a rule fixed before any bound was computed on them. It makes the NCC error of the true means a
    few percent: at most ``(1/k) sum_i sum_{j != i} Phi(-||mu_i - mu_j|| / (2 sigma_i))`` (union over the pairs).
    """
    M = np.random.default_rng(GAUSSIANS_SEED).standard_normal((GAUSSIANS_K, GAUSSIANS_D))
    iu = np.triu_indices(GAUSSIANS_K, 1)
    dist = np.sqrt(((M[:, None, :] - M[None, :, :]) ** 2).sum(-1))[iu]
    return M * (GAUSSIANS_MEAN_DISTANCE * GAUSSIANS_SIGMAS.mean() / dist.mean())


def gaussians_covariances():
    """Return the true class covariances of ``"gaussians"``, ``Sigma_c = sigma_c^2 I_32``: float64 (10, 32, 32)."""
    return GAUSSIANS_SIGMAS[:, None, None] ** 2 * np.eye(GAUSSIANS_D)[None]


def load_gaussians(split):
    """Return ``(X float32 (N, 1, 1, 32), y int64 (N,))`` of one split of the synthetic Gaussian classes.

    Class c (0..9): ``x ~ N(mu_c, sigma_c^2 I_32)`` with ``mu_c = gaussians_means()[c]`` and ``sigma_c =
    GAUSSIANS_SIGMAS[c]`` (evenly spaced in [0.8, 1.2]). 400 train / 100 test samples per class, all drawn from
    ``default_rng([GAUSSIANS_SEED, 1])`` (train first, then test), so both splits are the same on every call;
    rows shuffled by the same generator. The shape (N, C=1, H=1, W=32) fits ``standardize`` and the MLP.
    """
    _check_split("gaussians", split)
    rng = np.random.default_rng([GAUSSIANS_SEED, 1])
    mu = gaussians_means()
    out = {}
    for name, n in (("train", GAUSSIANS_TRAIN), ("test", GAUSSIANS_TEST)):
        X = np.concatenate([mu[c] + GAUSSIANS_SIGMAS[c] * rng.standard_normal((n, GAUSSIANS_D))
                            for c in range(GAUSSIANS_K)])
        y = np.repeat(np.arange(GAUSSIANS_K, dtype=np.int64), n)
        order = rng.permutation(len(y))
        out[name] = (X[order].astype(np.float32)[:, None, None, :], y[order])
    return out[split]


def _load_digits(split):
    """Return (X float32 (N, 1, 8, 8) in [0, 1], y int64 (N,)) of scikit-learn's digits, 80/20 split per class."""
    images, target = files.read_sklearn_digits()
    X = (images / 16.0).astype(np.float32)[:, None]  # (1797, 8, 8) -> (1797, 1, 8, 8)
    y = target.astype(np.int64)
    train, test = _stratified_split(y, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    idx = train if split == "train" else test
    return X[idx], y[idx]


def _load_idx_dataset(name, split, root):
    """Return (images uint8 (N, 1, 28, 28), labels uint8 (N,)) of MNIST or Fashion-MNIST, checksums verified."""
    image_file, label_file = files.IDX_FILES[split]
    image_data, label_data = (files.verified_bytes(name, files.find_file(name, (f + ".gz", f), root))
                              for f in (image_file, label_file))
    return formats.parse_mnist_idx(image_data, label_data, f"{name} {split}")


@contextlib.contextmanager
def _open_cifar_archive(name, root):
    """Yield ``(kind, tarfile)`` for the archive of ``"cifar10"``/``"cifar100"``: binary preferred, md5 checked first.

    The archive is read into memory once; its md5 is checked on those bytes, which are then the only bytes read.
    """
    archives = files.CIFAR_ARCHIVES[name]
    path = files.find_file(name, (archives["binary"], archives["python"]), root)
    kind = "binary" if path.name == archives["binary"] else "python"
    with formats.open_tar_gz(files.verified_bytes(name, path)) as tar:
        yield kind, tar


def _load_cifarfs(split, root):
    """Return (images uint8 (N, 3, 32, 32), labels (N,)) of a CIFAR-FS class split from the CIFAR-100 archive.

    All images of the split's classes, from CIFAR-100's train and test sets; label ``j`` is
    ``cifarfs_class_names(split)[j]``, whose CIFAR-100 index is looked up in the archive's own name list.
    """
    with _open_cifar_archive("cifar100", root) as (kind, tar):
        names = formats.read_cifar100_names(kind, tar)
        if set(names) != CIFAR100_FINE_NAMES:
            unexpected = sorted(set(names) - CIFAR100_FINE_NAMES)
            raise ValueError(f"cifarfs: the archive's fine label names are not CIFAR-100's (unexpected: "
                             f"{unexpected[:5]}); CIFAR-FS needs the official CIFAR-100 archive")
        train = formats.read_cifar_split("cifar100", kind, tar, "train")
        test = formats.read_cifar_split("cifar100", kind, tar, "test")
    images, labels = np.concatenate([train[0], test[0]]), np.concatenate([train[1], test[1]])
    classes = [names.index(n) for n in cifarfs_class_names(split)]
    return class_split(images, labels, classes)


def _as_unit_float(images):
    """Return uint8 images as float32 in [0, 1] (divided by 255)."""
    return images.astype(np.float32) / np.float32(255)


# ----------------------------------------------------------------------------------------------------------------
# Standardization


def standardize(X_train, *others):
    """Return ``(mean, std, X_train_std, *others_std)``: per-channel standardization fitted on ``X_train`` only.

    For images ``(N, C, H, W)``, ``mean[c]`` and ``std[c]`` (shape ``(C,)``) are the mean and population standard
    deviation (ddof 0) of channel ``c`` over all training images and pixels, and every array becomes
    ``(X - mean[c]) / std[c]`` channel by channel. A constant channel (std < 1e-12) is divided by 1 instead of 0.
    ``others`` (validation / test sets) are transformed with the training statistics.
    """
    X_train = _check_images("X_train", X_train)
    mean = X_train.mean(axis=(0, 2, 3))  # (C,)
    std = X_train.std(axis=(0, 2, 3))  # (C,)
    std = np.where(std < 1e-12, np.ones_like(std), std)
    outputs = [apply_standardization(X, mean, std) for X in (X_train,) + others]
    return (mean, std, *outputs)


def apply_standardization(X, mean, std):
    """Return ``(X - mean[c]) / std[c]`` per channel for images ``X`` ``(N, C, H, W)``, ``mean``/``std`` ``(C,)``."""
    X = _check_images("X", X)
    mean, std = np.asarray(mean, dtype=X.dtype), np.asarray(std, dtype=X.dtype)
    if mean.shape != (X.shape[1],) or std.shape != (X.shape[1],):
        raise ValueError(f"mean, std: received shapes {mean.shape}, {std.shape}; expected ({X.shape[1]},), one "
                         "value per channel of X")
    return (X - mean[:, None, None]) / std[:, None, None]  # (C,) -> (C, 1, 1) broadcasts over (N, C, H, W)


def _check_images(param, X):
    """Return ``X`` as a float array of images (N, C, H, W); integer images become float64."""
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"{param}: received an array of shape {X.shape}; expected images (N, C, H, W)")
    return X if np.issubdtype(X.dtype, np.floating) else X.astype(np.float64)


# ----------------------------------------------------------------------------------------------------------------
# Subsets, class splits, rotated classes


def stratified_subset(y, n_per_class, rng):
    """Return sorted indices (int64, ``(k * n_per_class,)``) of ``n_per_class`` random examples of each class in ``y``.

    Drawn without replacement by ``rng`` (a ``numpy.random.Generator``, or an int seed), classes in increasing
    order; ValueError naming the class if one has fewer than ``n_per_class`` examples.
    """
    y = _check_labels("y", y)
    n_per_class = checks.integer("n_per_class", n_per_class, minimum=1)
    rng = checks.as_rng(rng, why_needed="stratified_subset draws examples at random")
    chosen = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < n_per_class:
            raise ValueError(f"n_per_class: received {n_per_class}, but class {c} has only {len(idx)} examples; "
                             f"use n_per_class <= {len(idx)}")
        chosen.append(rng.choice(idx, size=n_per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def class_split(X, y, classes):
    """Return ``(X_sub, y_sub)``: the examples of the listed classes, labels re-indexed 0..len(classes)-1.

    ``y_sub[i] = j`` where ``classes[j] == y[i]``, so the order of ``classes`` sets the new labels (e.g.
    ``class_split(X, y, [5, 6, 7, 8, 9])`` maps digit 5 to 0). Examples keep their order. ``X`` ``(N, ...)``,
    ``y`` ``(N,)`` -> ``X_sub`` ``(M, ...)``, ``y_sub`` int64 ``(M,)``.
    """
    y = _check_labels("y", y)
    if len(X) != len(y):
        raise ValueError(f"X, y: received {len(X)} examples and {len(y)} labels; expected the same number")
    classes = [int(c) for c in np.asarray(classes).ravel()]
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes: received {classes}; expected a non-empty list of distinct labels")
    missing = [c for c in classes if not np.any(y == c)]
    if missing:
        raise ValueError(f"classes: {missing} do not occur in y; labels present: {np.unique(y).tolist()}")
    new_label = np.full(int(max(y.max(), max(classes))) + 1, -1, dtype=np.int64)
    new_label[classes] = np.arange(len(classes))
    keep = np.flatnonzero(np.isin(y, classes))
    return X[keep], new_label[y[keep]]


def split_per_class(y, test_fraction, seed):
    """Return sorted ``(train_idx, test_idx)``: per class, ``round(test_fraction * n_c)`` random indices go to test.

    Used where a dataset has no train/test split of its own classes (a CIFAR-FS class split holds all 600 images
    of each class); deterministic in ``seed``.
    """
    y = _check_labels("y", y)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: received {test_fraction!r}; expected a number strictly between 0 and 1")
    return _stratified_split(y, test_fraction, seed)


def _stratified_split(y, test_fraction, seed):
    """Return sorted (train_idx, test_idx): per class, round(test_fraction * n_c) random indices go to test."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(test_fraction * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def rotate_classes(X, y, n_rotations=N_ROTATIONS):
    """Return ``(X_rot, y_rot)``: every image at ``n_rotations`` quarter turns, each (class, turn) its own class.

    Rotation-augmented classes, as few-shot benchmarks build them from Omniglot (Santoro et al. 2016; Vinyals et
    al. 2016): image ``X[i]`` turned counter-clockwise by ``k * 90`` degrees gets the label
    ``n_rotations * y[i] + k``, so ten digits become forty classes. ``X`` ``(N, C, H, W)`` with ``H == W``,
    ``y`` ``(N,)`` -> ``X_rot`` ``(n_rotations * N, C, H, W)`` ordered rotation-major (all images at 0 degrees, then
    all at 90, ...), ``y_rot`` int64 ``(n_rotations * N,)``. Symmetric images (a 0, an 8) look alike in several
    classes; that is part of the benchmark, as it is for Omniglot.
    """
    y = _check_labels("y", y)
    X = np.asarray(X)
    if X.ndim != 4 or X.shape[2] != X.shape[3]:
        raise ValueError(f"X: received an array of shape {X.shape}; expected square images (N, C, H, W), H == W")
    if len(X) != len(y):
        raise ValueError(f"X, y: received {len(X)} examples and {len(y)} labels; expected the same number")
    n_rotations = checks.integer("n_rotations", n_rotations, minimum=1, meaning="1..4 quarter turns")
    if n_rotations > 4:
        raise ValueError(f"n_rotations: received {n_rotations}; expected 1..4 quarter turns")
    X_rot = np.concatenate([np.rot90(X, k, axes=(2, 3)) for k in range(n_rotations)])  # (n_rot * N, C, H, W)
    y_rot = np.concatenate([n_rotations * y.astype(np.int64) + k for k in range(n_rotations)])
    return np.ascontiguousarray(X_rot), y_rot


def rotated_classes(classes, n_rotations=N_ROTATIONS):
    """Return the labels (list of int) of ``classes`` under ``rotate_classes``: ``n_rotations * c + k`` per class.

    E.g. digits ``[5, 6]`` -> ``[20, 21, 22, 23, 24, 25, 26, 27]``; pass them to ``class_split``.
    """
    return [n_rotations * int(c) + k for c in classes for k in range(n_rotations)]


def _check_labels(param, y):
    y = checks.no_string_labels(y, param)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise ValueError(f"{param}: received an array of shape {y.shape} and dtype {y.dtype}; expected a 1-D "
                         "array of non-negative integer labels")
    return y
