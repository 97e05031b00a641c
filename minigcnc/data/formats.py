"""Parsers of the dataset file formats: bytes in, validated arrays out; no parser can run code.

- IDX (MNIST, Fashion-MNIST): ``parse_idx``, ``parse_mnist_idx``.
- CIFAR-10/100 archives, binary records or python pickles: ``open_tar_gz``, ``read_cifar_split``,
  ``read_cifar100_names``. Members are read into memory by their expected names, regular files only; nothing
  is extracted to disk and no member path is trusted.
- The embedded mnist5k ``.npz``: ``parse_mnist5k``, through ``numpy.load(..., allow_pickle=False)`` (every
  ``numpy.load`` of this package passes ``allow_pickle=False``).
- ``RestrictedUnpickler`` / ``restricted_loads``: the only way a pickle is read; it admits the few globals
  numpy needs to rebuild an array and refuses every other one, so a malicious pickle cannot run code.

Every function takes bytes already checked against their published checksum (``minigcnc.data.files``) and
raises ValueError, naming what is wrong, on anything but the official layout.
"""
import contextlib
import io
import math
import pickle
import struct
import tarfile

import numpy as np

# ----------------------------------------------------------------------------------------------------------------
# IDX (MNIST and Fashion-MNIST)

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


def parse_mnist_idx(image_data, label_data, what):
    """Return (images uint8 ``(N, 1, 28, 28)``, labels uint8 ``(N,)``) of an MNIST-layout pair of IDX files.

    ``what`` (e.g. ``"mnist train"``) names the split in error messages: the images must be ``(N, 28, 28)``,
    one label per image, labels in 0..9.
    """
    images = parse_idx(image_data, ndim=3)
    labels = parse_idx(label_data, ndim=1)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"{what}: images {images.shape} and labels {labels.shape} do not match; "
                         "expected (N, 28, 28) and (N,)")
    if labels.max(initial=0) > 9:
        raise ValueError(f"{what}: labels must lie in 0..9, got maximum {labels.max()}")
    return images[:, None], labels  # (N, 28, 28) -> (N, 1, 28, 28)


# ----------------------------------------------------------------------------------------------------------------
# The embedded mnist5k .npz


def parse_mnist5k(data, split):
    """Return (images uint8 ``(N, 1, 28, 28)``, labels uint8 ``(N,)``) of ``split`` from the mnist5k .npz bytes.

    Keys ``x_<split>`` ``(N, 28, 28)`` and ``y_<split>`` ``(N,)`` (see ``scripts/make_mnist5k.py``); read with
    ``allow_pickle=False``.
    """
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
    return images[:, None], labels  # (N, 28, 28) -> (N, 1, 28, 28)


# ----------------------------------------------------------------------------------------------------------------
# CIFAR archives

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


@contextlib.contextmanager
def open_tar_gz(data):
    """Yield a ``tarfile.TarFile`` reading the .tar.gz ``data`` (bytes) in memory; nothing is extracted."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        yield tar


def read_cifar_split(name, kind, tar, split):
    """Return (images uint8 ``(N, 3, 32, 32)``, labels int64 ``(N,)``) of one split of CIFAR-10 or CIFAR-100.

    ``name`` is ``"cifar10"`` or ``"cifar100"`` (fine labels), ``kind`` the archive kind (``"binary"`` or
    ``"python"``), ``tar`` the open archive, ``split`` ``"train"`` or ``"test"``.
    """
    members = CIFAR10_MEMBERS[kind][split] if name == "cifar10" else [CIFAR100_MEMBERS[kind][split]]
    parts = [_read_cifar_member(name, kind, tar, member) for member in members]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_cifar100_names(kind, tar):
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


def _member_bytes(tar, member_name):
    """Return the bytes of the regular-file member ``member_name`` of ``tar`` (read in memory, never extracted)."""
    try:
        member = tar.getmember(member_name)
    except KeyError:
        raise ValueError(f"archive: member {member_name!r} is missing; not an official CIFAR archive") from None
    if not member.isfile():
        raise ValueError(f"archive: member {member_name!r} is not a regular file; not an official CIFAR archive")
    return tar.extractfile(member).read()


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


def _as_str(value):
    """Return ``value`` as str (CIFAR's Python 2 pickles hold byte strings)."""
    return value.decode("latin1") if isinstance(value, bytes) else value


def _str_keys(obj):
    """Return the dict ``obj`` with its keys as str; ValueError if it is not a dict."""
    if not isinstance(obj, dict):
        raise ValueError(f"python CIFAR batch: expected a dict, got {type(obj).__name__}")
    return {_as_str(k): v for k, v in obj.items()}


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
