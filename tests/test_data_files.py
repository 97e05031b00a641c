"""Tests of minigcnc.data.files: the folders searched, checksums checked before parsing, downloads.

The published checksums are patched (``monkeypatch`` on ``files.MD5``) so that fakes pass, and left alone to
show that a wrong checksum refuses. Downloads read ``file://`` URLs; nothing touches the network.
"""
import pickle
import urllib.error
import urllib.request

import numpy as np
import pytest

from fake_datasets import IDX_NAMES, Evil, cifar10_members, write_fake_idx, write_tar_gz
from minigcnc import data
from minigcnc.data import files


def test_mnist5k_refuses_a_file_whose_sha256_differs(monkeypatch):
    monkeypatch.setattr(files, "MNIST5K_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="sha256 mismatch.*make_mnist5k.py"):
        data.load("mnist5k")


def test_idx_file_with_wrong_checksum_is_refused(tmp_path):
    write_fake_idx(tmp_path)  # the real MNIST checksums stay in place
    with pytest.raises(ValueError, match="md5 mismatch") as error:
        data.load("mnist", "train", root=tmp_path)
    message = str(error.value)
    assert "train-images-idx3-ubyte.gz" in message and files.MD5["mnist"]["train-images-idx3-ubyte"] in message


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
    monkeypatch.setitem(files.MD5, "fashion_mnist", checksums)
    monkeypatch.setitem(files.SYSTEM_DIRS, "fashion_mnist", (tmp_path / "system",))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MINIGCNC_DATA", raising=False)
    _, y = data.load("fashion_mnist", "test")
    np.testing.assert_array_equal(y, arrays["t10k-labels-idx1-ubyte"])


def test_fashion_mnist_looks_where_the_debian_package_installs_it():
    assert files.search_dirs("fashion_mnist")[-1].as_posix() == "/usr/share/datasets/fashion-mnist"


def test_download_fetches_verifies_and_places_the_files(monkeypatch, tmp_path):
    checksums, arrays = write_fake_idx(tmp_path / "server")
    monkeypatch.setitem(files.MD5, "mnist", checksums)
    monkeypatch.setitem(files.DOWNLOAD_URLS, "mnist", (tmp_path / "server").as_uri() + "/")  # file://, no network
    paths = data.download("mnist", root=tmp_path / "local")
    assert sorted(p.name for p in paths) == sorted(n + ".gz" for n in IDX_NAMES)
    _, y = data.load("mnist", "train", root=tmp_path / "local")
    np.testing.assert_array_equal(y, arrays["train-labels-idx1-ubyte"])


def test_download_with_wrong_checksum_keeps_nothing(monkeypatch, tmp_path):
    write_fake_idx(tmp_path / "server")
    monkeypatch.setitem(files.DOWNLOAD_URLS, "mnist", (tmp_path / "server").as_uri() + "/")
    with pytest.raises(ValueError, match="md5 mismatch"):
        data.download("mnist", root=tmp_path / "local")
    assert list((tmp_path / "local").iterdir()) == []


@pytest.mark.parametrize("name, url, wanted", [
    ("mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    ("cifarfs", "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", "cifar-100-binary.tar.gz")])
def test_download_offline_names_the_url_and_how_to_place_the_files_by_hand(monkeypatch, tmp_path, name, url, wanted):
    """No network: urlopen raises URLError (monkeypatched; nothing touches the network)."""

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(ConnectionError) as error:
        data.download(name, root=tmp_path / "local")
    message = str(error.value)
    assert message.startswith(f"{files.folder_name(name)}: cannot download {url}: no network ([Errno -3] Temporary "
                              "failure in name resolution). To work offline, get ")
    for expected in [wanted, "root='<folder>'", "--data-root <folder>", "MINIGCNC_DATA=<folder>"]:
        assert expected in message
    assert "\n" not in message and error.value.__cause__ is None and error.value.__suppress_context__
    assert list((tmp_path / "local").iterdir()) == []  # nothing half-written is left


def test_download_reports_a_servers_http_error_as_it_is(monkeypatch, tmp_path):
    def not_found(url, *args, **kwargs):
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", not_found)
    with pytest.raises(urllib.error.HTTPError, match="404"):
        data.download("mnist", root=tmp_path / "local")


def test_cifar_archive_with_wrong_checksum_is_refused_before_reading(tmp_path):
    marker = tmp_path / "pwned"
    members = cifar10_members("python", [[1]] * 6)
    members["cifar-10-batches-py/test_batch"] = pickle.dumps(Evil(marker))
    write_tar_gz(tmp_path / "cifar-10-python.tar.gz", members)  # the real md5 stays in place
    with pytest.raises(ValueError, match="md5 mismatch.*expected c58f30108f718f92721af3b95e74349a"):
        data.load("cifar10", "test", root=tmp_path)
    assert not marker.exists()


def test_missing_cifar_archive_names_both_archives_and_the_download_url(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        data.load("cifarfs", "test", root=tmp_path)
    message = str(error.value)
    for expected in ["cifar-100-binary.tar.gz", "cifar-100-python.tar.gz", str(tmp_path),
                     "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", "root=", "MINIGCNC_DATA"]:
        assert expected in message


def test_a_gzip_bomb_is_refused_with_bounded_memory(monkeypatch, tmp_path):
    """A small .gz that inflates past the official size is refused after reading one byte more than that size
    (the limit is lowered here to keep the test small: 16 MiB of zeros against a 32 kB limit)."""
    import gzip
    import tracemalloc

    write_fake_idx(tmp_path)
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip.compress(b"\0" * (16 << 20), compresslevel=9))  # 16 MiB of zeros in ~16 kB
    assert bomb.stat().st_size < 200_000
    monkeypatch.setitem(files.MAX_BYTES, "train-images-idx3-ubyte", 32768)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="inflates to more than 32768 bytes, the size of the official file"):
            data.load("mnist", "train", root=tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak  # never the 16 MiB


def test_a_file_larger_than_the_official_one_is_refused_before_it_is_read(monkeypatch, tmp_path):
    write_fake_idx(tmp_path)
    monkeypatch.setitem(files.MAX_BYTES, "train-labels-idx1-ubyte", 10)
    monkeypatch.setattr(type(tmp_path), "read_bytes", lambda self: pytest.fail(f"{self} was read"))
    with pytest.raises(ValueError, match="bytes on disk, more than 10 bytes, the size of the official file"):
        files._checksummed_bytes(tmp_path / "train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz")
