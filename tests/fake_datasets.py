"""Fake dataset files in the official layouts, for the tests of minigcnc.data and its modules.

IDX files, CIFAR archives (binary records or Python 2 style pickles), and ``install_archive``, which writes an
archive and patches its published md5 (``monkeypatch`` on ``files.MD5``) so that the fake passes. Nothing
touches the network.
"""
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile

import numpy as np

from minigcnc.data import CIFAR100_FINE_NAMES, files

IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
REFERENCE_NAMES = sorted(CIFAR100_FINE_NAMES)


def idx_bytes(array):
    """IDX encoding of a uint8 array: 0, 0, type 0x08, ndim, big-endian dims, values."""
    array = np.asarray(array, dtype=np.uint8)
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_fake_idx(folder, n_train=6, n_test=4, gz=True):
    """Write the four IDX files into folder; return {file name without .gz: md5 of the raw bytes}, arrays."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) + 3) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for name, array in arrays.items():
        raw = idx_bytes(array)
        checksums[name] = hashlib.md5(raw).hexdigest()
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return checksums, arrays


def write_tar_gz(path, members):
    """Write a .tar.gz whose members are {name: bytes}; return the archive's md5."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    path.write_bytes(buffer.getvalue())
    return hashlib.md5(buffer.getvalue()).hexdigest()


def fake_cifar_images(values):
    """uint8 (N, 3072) rows: image i is filled with values[i] in the red plane, +1 in green, +2 in blue."""
    rows = np.empty((len(values), 3, 1024), dtype=np.uint8)
    for c in range(3):
        rows[:, c] = np.asarray(values)[:, None] + c
    return rows.reshape(len(values), 3072)


class Py2StylePickler(pickle._Pickler):
    """Pickles like Python 2 did for the CIFAR batches: protocol 2, every str and bytes as a Python 2 str."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj if isinstance(obj, bytes) else obj.encode("latin1")
        self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def pickled(obj):
    """A pickle in the format of the official CIFAR python batches (Python 2, numpy < 2 module names)."""
    buffer = io.BytesIO()
    Py2StylePickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def cifar10_members(kind, labels_per_batch):
    """Members of a fake CIFAR-10 archive: 5 train batches and a test batch; image value = 10 * batch + label."""
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    members = {}
    for b, batch in enumerate(batches):
        labels = np.asarray(labels_per_batch[b])
        images = fake_cifar_images(10 * b + labels)
        if kind == "python":
            members[f"cifar-10-batches-py/{batch}"] = pickled({b"data": images, b"labels": labels.tolist(),
                                                              b"batch_label": batch.encode()})
        else:
            records = np.concatenate([labels.astype(np.uint8)[:, None], images], axis=1)
            members[f"cifar-10-batches-bin/{batch}.bin"] = records.tobytes()
    return members


def cifar100_members(kind, names):
    """Members of a fake CIFAR-100 archive with fine label names ``names`` (archive order).

    Each class has one train and one test image, filled with the class's index in the sorted reference list
    (so the class of an image can be recovered whatever the archive's label order).
    """
    fine = np.arange(len(names))
    images = fake_cifar_images([REFERENCE_NAMES.index(n) for n in names])
    if kind == "python":
        split = {"data": images, "fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist()}
        return {"cifar-100-python/train": pickled(split), "cifar-100-python/test": pickled(split),
                "cifar-100-python/meta": pickled({"fine_label_names": list(names),
                                                  "coarse_label_names": [f"c{i}" for i in range(20)]})}
    records = np.concatenate([(fine // 5).astype(np.uint8)[:, None], fine.astype(np.uint8)[:, None], images], axis=1)
    return {"cifar-100-binary/train.bin": records.tobytes(), "cifar-100-binary/test.bin": records.tobytes(),
            "cifar-100-binary/fine_label_names.txt": ("\n".join(names) + "\n").encode()}


def install_archive(monkeypatch, tmp_path, dataset, kind, members):
    """Write a fake archive of dataset/kind into tmp_path and patch its published md5 to match."""
    filename = files.CIFAR_ARCHIVES[dataset][kind]
    md5 = write_tar_gz(tmp_path / filename, members)
    monkeypatch.setitem(files.MD5, dataset, {**files.MD5[dataset], filename: md5})


class Evil:
    """Unpickling an Evil runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)
