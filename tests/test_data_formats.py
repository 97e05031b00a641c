"""Tests of minigcnc.data.formats: the IDX and CIFAR layouts, and the restricted unpickler.

Fake files in the official layouts (fake_datasets.py) are read through ``data.load``, which hands the parsers
bytes whose (patched) checksum matched.
"""
import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest

from fake_datasets import (REFERENCE_NAMES, Evil, cifar10_members, cifar100_members, idx_bytes, install_archive,
                           pickled, write_fake_idx)
from minigcnc import data
from minigcnc.data import files, formats


# ----------------------------------------------------------------------------------------------------------------
# IDX files


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_parse_to_images_and_labels(monkeypatch, tmp_path, gz):
    checksums, arrays = write_fake_idx(tmp_path, gz=gz)
    monkeypatch.setitem(files.MD5, "mnist", checksums)
    X, y = data.load("mnist", "train", root=tmp_path)
    assert X.shape == (6, 1, 28, 28) and X.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(X[:, 0], arrays["train-images-idx3-ubyte"] / np.float32(255))
    np.testing.assert_array_equal(y, arrays["train-labels-idx1-ubyte"])
    X, y = data.load("mnist", "test", root=tmp_path)
    np.testing.assert_array_equal(y, arrays["t10k-labels-idx1-ubyte"])


def test_corrupt_idx_headers_raise_clear_errors():
    good = idx_bytes(np.zeros((2, 3, 4)))
    np.testing.assert_array_equal(formats.parse_idx(good, ndim=3), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="bad magic number"):
        formats.parse_idx(b"\x00\x00\x0d\x03" + good[4:], ndim=3)  # 0x0d: float, not ubyte
    with pytest.raises(ValueError, match="3 dimensions; expected 1"):
        formats.parse_idx(good, ndim=1)
    with pytest.raises(ValueError, match="need 40 bytes, got 39"):
        formats.parse_idx(good[:-1], ndim=3)
    with pytest.raises(ValueError, match="too short"):
        formats.parse_idx(b"\x00\x00", ndim=3)


# ----------------------------------------------------------------------------------------------------------------
# CIFAR archives


@pytest.mark.parametrize("kind", ["python", "binary"])
def test_cifar10_archive_gives_images_channel_first_and_labels(monkeypatch, tmp_path, kind):
    labels = [[b % 10, (b + 3) % 10] for b in range(5)] + [[7, 8, 9]]
    install_archive(monkeypatch, tmp_path, "cifar10", kind, cifar10_members(kind, labels))
    X, y = data.load("cifar10", "train", root=tmp_path)
    assert X.shape == (10, 3, 32, 32) and X.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(y, np.ravel(labels[:5]))
    expected_red = [10 * b + label for b in range(5) for label in labels[b]]
    np.testing.assert_allclose(X[:, 0, 5, 7] * 255, expected_red)
    np.testing.assert_allclose(X[:, 2, 31, 0] * 255, np.add(expected_red, 2))  # blue plane last
    X, y = data.load("cifar10", "test", root=tmp_path)
    assert X.shape == (3, 3, 32, 32) and y.tolist() == [7, 8, 9]


@pytest.mark.parametrize("kind", ["python", "binary"])
def test_cifar100_uses_fine_labels_and_exposes_the_archive_names(monkeypatch, tmp_path, kind):
    names = [str(n) for n in np.random.default_rng(1).permutation(REFERENCE_NAMES)]
    install_archive(monkeypatch, tmp_path, "cifar100", kind, cifar100_members(kind, names))
    X, y = data.load("cifar100", "train", root=tmp_path)
    assert X.shape == (100, 3, 32, 32) and y.tolist() == list(range(100))  # fine, not coarse (0..19)
    assert data.cifar100_fine_label_names(root=tmp_path) == names


def test_archive_member_that_is_a_link_is_refused(monkeypatch, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(buffer.getvalue())
    monkeypatch.setitem(files.MD5, "cifar10", {"cifar-10-binary.tar.gz": hashlib.md5(buffer.getvalue()).hexdigest()})
    with pytest.raises(ValueError, match="not a regular file"):
        data.load("cifar10", "test", root=tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# Restricted unpickling


def test_malicious_pickle_in_an_archive_is_refused_without_running(monkeypatch, tmp_path):
    marker = tmp_path / "pwned"
    members = cifar10_members("python", [[1]] * 6)
    members["cifar-10-batches-py/test_batch"] = pickle.dumps(Evil(marker))
    install_archive(monkeypatch, tmp_path, "cifar10", "python", members)
    with pytest.raises(ValueError, match="refusing to unpickle global (posix|os|nt).system"):
        data.load("cifar10", "test", root=tmp_path)
    assert not marker.exists()


def test_restricted_unpickler_refuses_builtins_and_accepts_numpy_arrays_of_both_numpy_module_names():
    with pytest.raises(ValueError, match="refusing to unpickle global builtins.eval"):
        formats.restricted_loads(pickle.dumps(eval))
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    python3 = pickle.dumps({"data": array}, protocol=3)  # numpy >= 2 writes numpy._core.multiarray
    python2 = pickled({"data": array})  # numpy.core.multiarray, byte strings as Python 2 str
    assert b"numpy._core" in python3 and b"numpy.core" in python2 and pickle.BINSTRING in python2
    for blob in (python3, python2):
        np.testing.assert_array_equal(formats.restricted_loads(blob)["data"], array)
