"""Fashion-MNIST read offline from the IDX files of the Debian package ``dataset-fashion-mnist``.

The files are parsed here, not through tfds, because tfds's registered checksums do not match
the Debian gzip bytes (BUILD_NOTES.md, "Data offline"). "validation" is a fixed,
class-stratified 5,000 of the 60,000 training images, "train" the other 55,000, "test" the
10,000 ``t10k`` images.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib

import numpy as np
import tensorflow as tf

from enas4d_tf.data.info import DatasetInfo, one_line
from enas4d_tf.errors import DataError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
# Fashion-MNIST: 6,000 training images per class, 500 per class held out for validation.
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_VALIDATION_PER_CLASS = 500
_FASHION_SPLIT_SALT = b"enas4d_tf/fashion_mnist/validation:"
# Per-channel mean and std of pixel / 255 over every pixel of the 55,000 images of the
# "train" split (validation excluded), computed in float64 with numpy from the Debian IDX
# files: images = load train split as uint8; (images / 255).mean(), (images / 255).std()
# (population std). tests/data/test_data.py recomputes them.
FASHION_MNIST_MEAN = (0.28603084,)
FASHION_MNIST_STD = (0.35303315,)

_IDX_UBYTE = 0x08
_FASHION_FILES = {
    # key: (file name without .gz, IDX dimensions, expected shape)
    "train_images": ("train-images-idx3-ubyte", (60_000, 28, 28)),
    "train_labels": ("train-labels-idx1-ubyte", (60_000,)),
    "test_images": ("t10k-images-idx3-ubyte", (10_000, 28, 28)),
    "test_labels": ("t10k-labels-idx1-ubyte", (10_000,)),
}
# Decoded arrays per file, keyed by (real path, size, mtime) so a replaced file is re-read.
_IDX_CACHE: dict[tuple[str, int, int], np.ndarray] = {}
_FASHION_CACHE: dict[tuple, dict[str, np.ndarray]] = {}


def _find_idx_file(data_dir: str, base: str) -> str:
    for candidate in (base + ".gz", base):
        path = os.path.join(data_dir, candidate)
        if os.path.isfile(path):
            return path
    raise DataError(
        f"Fashion-MNIST file {os.path.join(data_dir, base + '.gz')} not found "
        "(install the Debian package dataset-fashion-mnist or point data_dir at the IDX files)"
    )


def _read_bytes(path: str) -> bytes:
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is corrupt: {one_line(e)}") from None


def read_idx(path: str, shape: tuple[int, ...]) -> np.ndarray:
    """Reads an IDX file of unsigned bytes (gzip-compressed when the name ends in .gz).

    Args:
      path: the file.
      shape: the array shape the file must hold.

    Returns:
      A read-only uint8 array of `shape`, cached in memory by path.

    Raises:
      DataError: the file is missing, not valid gzip, truncated, or its header (magic
        number, type, dimensions) or length do not match `shape`.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key in _IDX_CACHE:
        return _IDX_CACHE[key]
    data = _read_bytes(path)
    ndim = len(shape)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is corrupt: {len(data)} bytes, shorter than an IDX header")
    zero, dtype, file_ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != _IDX_UBYTE or file_ndim != ndim:
        magic = int.from_bytes(data[:4], "big")
        expected = (_IDX_UBYTE << 8) | ndim
        raise DataError(
            f"{path} is corrupt: magic number 0x{magic:08x}, expected 0x{expected:08x} "
            f"(IDX unsigned bytes, {ndim} dimensions)"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if tuple(dims) != tuple(shape):
        raise DataError(f"{path} is corrupt: IDX dimensions {dims}, expected {tuple(shape)}")
    payload = math.prod(shape)
    if len(data) != header + payload:
        raise DataError(
            f"{path} is corrupt: {len(data) - header} data bytes, expected {payload} "
            "(truncated or padded file)"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
    _IDX_CACHE[key] = array
    return array


def fashion_mnist_validation_indices(train_labels: np.ndarray) -> np.ndarray:
    """The indices (into the 60,000 training images) held out as the validation split.

    The rule, stable across numpy versions and machines: within each class, order the image
    indices `i` by the SHA-256 digest of ``b"enas4d_tf/fashion_mnist/validation:" + str(i)``
    and take the first 500.

    Args:
      train_labels: the 60,000 training labels.

    Returns:
      The sorted int64 indices of the 5,000 validation images (500 per class).
    """
    chosen = []
    for label in range(len(FASHION_MNIST_CLASSES)):
        members = np.flatnonzero(train_labels == label)
        digests = [
            hashlib.sha256(_FASHION_SPLIT_SALT + str(int(i)).encode()).digest() for i in members
        ]
        order = sorted(range(len(members)), key=digests.__getitem__)
        chosen.append(members[order[:FASHION_MNIST_VALIDATION_PER_CLASS]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _split(arrays: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    # The three splits of the four decoded files, read-only.
    train_images = arrays["train_images"][..., None]
    train_labels = arrays["train_labels"].astype(np.int32)
    held_out = fashion_mnist_validation_indices(train_labels)
    keep = np.ones(len(train_labels), dtype=bool)
    keep[held_out] = False
    splits = {
        "train": (train_images[keep], train_labels[keep]),
        "validation": (train_images[held_out], train_labels[held_out]),
        "test": (arrays["test_images"][..., None], arrays["test_labels"].astype(np.int32)),
    }
    for images, labels in splits.values():
        images.setflags(write=False)
        labels.setflags(write=False)
    return splits


def load_fashion_mnist(data_dir: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reads the Fashion-MNIST IDX files and splits them, once per directory.

    Args:
      data_dir: the folder holding the four IDX files (default FASHION_MNIST_DIR).

    Returns:
      ``{split: (images uint8 (N, 28, 28, 1), labels int32 (N,))}`` for the three splits;
      the arrays are cached in memory and read-only.

    Raises:
      DataError: the folder or a file is missing or corrupt.
    """
    data_dir = data_dir or FASHION_MNIST_DIR
    if not os.path.isdir(data_dir):
        raise DataError(
            f"Fashion-MNIST directory {data_dir} does not exist "
            "(install the Debian package dataset-fashion-mnist or set data_dir)"
        )
    paths = {key: _find_idx_file(data_dir, base) for key, (base, _) in _FASHION_FILES.items()}
    stats = []
    for path in paths.values():
        st = os.stat(path)
        stats.append((os.path.realpath(path), st.st_size, st.st_mtime_ns))
    key = tuple(stats)
    if key in _FASHION_CACHE:
        return _FASHION_CACHE[key]
    arrays = {key: read_idx(paths[key], shape) for key, (_, shape) in _FASHION_FILES.items()}
    for which in ("train_labels", "test_labels"):
        if arrays[which].max() >= len(FASHION_MNIST_CLASSES):
            raise DataError(
                f"{paths[which]} is corrupt: label {int(arrays[which].max())} out of range 0..9"
            )
    splits = _split(arrays)
    _FASHION_CACHE[key] = splits
    return splits


class FashionMnistSource:
    """Fashion-MNIST held in memory, as a source for the pipelines (see `sources.Source`).

    Attributes:
      data_dir: the folder of the IDX files.
      splits: `load_fashion_mnist`'s arrays, ``{split: (images, labels)}``.
      info: the DatasetInfo (known mean and std).
      flip: True: a mirrored garment is the same garment.
    """

    def __init__(self, name: str, data_dir: str | None):
        self.data_dir = data_dir or FASHION_MNIST_DIR
        self.splits = load_fashion_mnist(self.data_dir)
        self.info = DatasetInfo(
            name=name,
            num_classes=len(FASHION_MNIST_CLASSES),
            image_channels=1,
            image_size=28,
            mean=FASHION_MNIST_MEAN,
            std=FASHION_MNIST_STD,
            num_train=len(self.splits["train"][1]),
            num_validation=len(self.splits["validation"][1]),
            num_test=len(self.splits["test"][1]),
            class_names=FASHION_MNIST_CLASSES,
        )
        self.flip = True

    def read(self, split, start, stop, shuffle_files, seed):
        """Examples [start, stop) of `split` as (uint8 image, int32 label), in order."""
        del shuffle_files, seed
        images, labels = self.splits[split]
        return tf.data.Dataset.from_tensor_slices((images[start:stop], labels[start:stop]))

    def decode(self, raw):
        """The image itself: the arrays hold decoded images already."""
        return raw
