"""Tests of minigcnc.data: every dataset loader on small fake files, the security rules, and the helpers.

Fake MNIST/CIFAR files are built in ``tmp_path`` in the official layouts; the published checksums are patched
(``monkeypatch`` on ``data.MD5``) so that the fakes pass, and left alone to show that a wrong checksum refuses.
Nothing touches the network.
"""
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest

from minigcnc import data

IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
REFERENCE_NAMES = sorted(data.CIFAR100_FINE_NAMES)


# ----------------------------------------------------------------------------------------------------------------
# Builders of fake files


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
    filename = data.CIFAR_ARCHIVES[dataset][kind]
    md5 = write_tar_gz(tmp_path / filename, members)
    monkeypatch.setitem(data.MD5, dataset, {**data.MD5[dataset], filename: md5})


class Evil:
    """Unpickling an Evil runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ----------------------------------------------------------------------------------------------------------------
# Embedded and bundled datasets


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


def test_mnist5k_refuses_a_file_whose_sha256_differs(monkeypatch):
    monkeypatch.setattr(data, "MNIST5K_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="sha256 mismatch.*make_mnist5k.py"):
        data.load("mnist5k")


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
# IDX files


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_parse_to_images_and_labels(monkeypatch, tmp_path, gz):
    checksums, arrays = write_fake_idx(tmp_path, gz=gz)
    monkeypatch.setitem(data.MD5, "mnist", checksums)
    X, y = data.load("mnist", "train", root=tmp_path)
    assert X.shape == (6, 1, 28, 28) and X.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(X[:, 0], arrays["train-images-idx3-ubyte"] / np.float32(255))
    np.testing.assert_array_equal(y, arrays["train-labels-idx1-ubyte"])
    X, y = data.load("mnist", "test", root=tmp_path)
    np.testing.assert_array_equal(y, arrays["t10k-labels-idx1-ubyte"])


def test_idx_file_with_wrong_checksum_is_refused(tmp_path):
    write_fake_idx(tmp_path)  # the real MNIST checksums stay in place
    with pytest.raises(ValueError, match="md5 mismatch") as error:
        data.load("mnist", "train", root=tmp_path)
    message = str(error.value)
    assert "train-images-idx3-ubyte.gz" in message and data.MD5["mnist"]["train-images-idx3-ubyte"] in message


def test_missing_idx_file_names_the_file_every_folder_and_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MINIGCNC_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as error:
        data.load("mnist", "test")
    message = str(error.value)
    for expected in ["t10k-images-idx3-ubyte.gz", str(tmp_path / "env"), str(tmp_path / "env" / "mnist"),
                     str(tmp_path / "home" / ".cache" / "minigcnc" / "data" / "mnist"),
                     "https://", "root=", "MINIGCNC_DATA"]:
        assert expected in message


def test_fashion_mnist_is_found_in_the_system_folder(monkeypatch, tmp_path):
    checksums, arrays = write_fake_idx(tmp_path / "system")
    monkeypatch.setitem(data.MD5, "fashion_mnist", checksums)
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion_mnist", (tmp_path / "system",))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MINIGCNC_DATA", raising=False)
    _, y = data.load("fashion_mnist", "test")
    np.testing.assert_array_equal(y, arrays["t10k-labels-idx1-ubyte"])


def test_fashion_mnist_looks_where_the_debian_package_installs_it():
    assert data.search_dirs("fashion_mnist")[-1].as_posix() == "/usr/share/datasets/fashion-mnist"


def test_corrupt_idx_headers_raise_clear_errors():
    good = idx_bytes(np.zeros((2, 3, 4)))
    np.testing.assert_array_equal(data.parse_idx(good, ndim=3), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="bad magic number"):
        data.parse_idx(b"\x00\x00\x0d\x03" + good[4:], ndim=3)  # 0x0d: float, not ubyte
    with pytest.raises(ValueError, match="3 dimensions; expected 1"):
        data.parse_idx(good, ndim=1)
    with pytest.raises(ValueError, match="need 40 bytes, got 39"):
        data.parse_idx(good[:-1], ndim=3)
    with pytest.raises(ValueError, match="too short"):
        data.parse_idx(b"\x00\x00", ndim=3)


def test_download_fetches_verifies_and_places_the_files(monkeypatch, tmp_path):
    checksums, arrays = write_fake_idx(tmp_path / "server")
    monkeypatch.setitem(data.MD5, "mnist", checksums)
    monkeypatch.setitem(data.DOWNLOAD_URLS, "mnist", (tmp_path / "server").as_uri() + "/")  # file://, no network
    paths = data.download("mnist", root=tmp_path / "local")
    assert sorted(p.name for p in paths) == sorted(n + ".gz" for n in IDX_NAMES)
    _, y = data.load("mnist", "train", root=tmp_path / "local")
    np.testing.assert_array_equal(y, arrays["train-labels-idx1-ubyte"])


def test_download_with_wrong_checksum_keeps_nothing(monkeypatch, tmp_path):
    write_fake_idx(tmp_path / "server")
    monkeypatch.setitem(data.DOWNLOAD_URLS, "mnist", (tmp_path / "server").as_uri() + "/")
    with pytest.raises(ValueError, match="md5 mismatch"):
        data.download("mnist", root=tmp_path / "local")
    assert list((tmp_path / "local").iterdir()) == []


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


def test_binary_archive_is_preferred_when_both_are_present(monkeypatch, tmp_path):
    install_archive(monkeypatch, tmp_path, "cifar10", "python", cifar10_members("python", [[1]] * 6))
    install_archive(monkeypatch, tmp_path, "cifar10", "binary", cifar10_members("binary", [[2]] * 6))
    _, y = data.load("cifar10", "test", root=tmp_path)
    assert y.tolist() == [2]


@pytest.mark.parametrize("kind", ["python", "binary"])
def test_cifar100_uses_fine_labels_and_exposes_the_archive_names(monkeypatch, tmp_path, kind):
    names = [str(n) for n in np.random.default_rng(1).permutation(REFERENCE_NAMES)]
    install_archive(monkeypatch, tmp_path, "cifar100", kind, cifar100_members(kind, names))
    X, y = data.load("cifar100", "train", root=tmp_path)
    assert X.shape == (100, 3, 32, 32) and y.tolist() == list(range(100))  # fine, not coarse (0..19)
    assert data.cifar100_fine_label_names(root=tmp_path) == names


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


def test_cifar_archive_with_wrong_checksum_is_refused_before_reading(tmp_path):
    marker = tmp_path / "pwned"
    members = cifar10_members("python", [[1]] * 6)
    members["cifar-10-batches-py/test_batch"] = pickle.dumps(Evil(marker))
    write_tar_gz(tmp_path / "cifar-10-python.tar.gz", members)  # the real md5 stays in place
    with pytest.raises(ValueError, match="md5 mismatch.*expected c58f30108f718f92721af3b95e74349a"):
        data.load("cifar10", "test", root=tmp_path)
    assert not marker.exists()


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
        data.restricted_loads(pickle.dumps(eval))
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    python3 = pickle.dumps({"data": array}, protocol=3)  # numpy >= 2 writes numpy._core.multiarray
    python2 = pickled({"data": array})  # numpy.core.multiarray, byte strings as Python 2 str
    assert b"numpy._core" in python3 and b"numpy.core" in python2 and pickle.BINSTRING in python2
    for blob in (python3, python2):
        np.testing.assert_array_equal(data.restricted_loads(blob)["data"], array)


def test_archive_member_that_is_a_link_is_refused(monkeypatch, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(buffer.getvalue())
    monkeypatch.setitem(data.MD5, "cifar10", {"cifar-10-binary.tar.gz": hashlib.md5(buffer.getvalue()).hexdigest()})
    with pytest.raises(ValueError, match="not a regular file"):
        data.load("cifar10", "test", root=tmp_path)


def test_missing_cifar_archive_names_both_archives_and_the_download_url(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        data.load("cifarfs", "test", root=tmp_path)
    message = str(error.value)
    for expected in ["cifar-100-binary.tar.gz", "cifar-100-python.tar.gz", str(tmp_path),
                     "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", "root=", "MINIGCNC_DATA"]:
        assert expected in message


# ----------------------------------------------------------------------------------------------------------------
# Helpers


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
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        data.stratified_subset(y, 3, 0)


def test_class_split_keeps_the_listed_classes_relabelled_in_the_given_order():
    y = np.array([0, 5, 7, 5, 9, 1, 7])
    X = np.arange(7)[:, None] * np.ones((1, 2))
    X_sub, y_sub = data.class_split(X, y, [7, 5])
    np.testing.assert_array_equal(X_sub[:, 0], [1, 2, 3, 6])
    np.testing.assert_array_equal(y_sub, [1, 0, 1, 0])
    with pytest.raises(ValueError, match=r"\[3\] do not occur"):
        data.class_split(X, y, [5, 3])


def test_batch_indices_shuffle_each_epoch_without_repeats_and_resume_exactly():
    n, bs, seed = 10, 3, 4
    epoch0 = np.concatenate([data.batch_indices(n, bs, s, seed) for s in range(3)])
    assert len(set(epoch0.tolist())) == 9  # 3 full batches, no repeats; one example sits the epoch out
    epoch1 = np.concatenate([data.batch_indices(n, bs, s, seed) for s in range(3, 6)])
    assert not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(data.batch_indices(n, bs, 4, seed), data.batch_indices(n, bs, 4, seed))
    assert not np.array_equal(data.batch_indices(n, bs, 4, seed), data.batch_indices(n, bs, 4, seed + 1))
    full = list(data.batches(n, bs, seed, num_steps=20))
    resumed = list(data.batches(n, bs, seed, start_step=7, num_steps=13))
    for a, b in zip(full[7:], resumed):
        np.testing.assert_array_equal(a, b)
    for step, batch in enumerate(full):
        np.testing.assert_array_equal(batch, data.batch_indices(n, bs, step, seed))


def test_batch_size_larger_than_n_is_an_error():
    with pytest.raises(ValueError, match="batch_size: received 11 for n = 10"):
        data.batch_indices(10, 11, 0, 0)
    with pytest.raises(TypeError, match="step"):
        data.batch_indices(10, 2, 1.5, 0)
