"""Which source reads a dataset name, and the normalisation stats of datasets without known ones.

Three kinds of dataset name are understood: ``fashion_mnist`` (`fashion_mnist.py`), any
``tensorflow-datasets`` name (`tfds_source.py`) and ``folder:<root>`` (`folder_source.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
import tensorflow as tf

from enas4d_tf.data.fashion_mnist import FashionMnistSource
from enas4d_tf.data.folder_source import FOLDER_PREFIX, FolderSource, find_undecodable
from enas4d_tf.data.info import DEFAULT_DATASET, DatasetInfo, op_error_reason
from enas4d_tf.data.preprocessing import eval_image
from enas4d_tf.data.tfds_source import TfdsSource
from enas4d_tf.errors import DataError

# Mean/std of datasets without known constants are estimated on the first training images.
_STATS_EXAMPLES = 2000
# Mean/std estimated for datasets without known constants, keyed by (name, data_dir).
_STATS_CACHE: dict[tuple[str, str | None], tuple[tuple[float, ...], tuple[float, ...]]] = {}


class Source(Protocol):
    """Where the examples of each split of one dataset come from.

    Attributes:
      info: the DatasetInfo, with mean and std.
      flip: whether a mirrored image keeps its class (training may flip it).
    """

    info: DatasetInfo
    flip: bool

    def read(
        self, split: str, start: int, stop: int, shuffle_files: bool, seed: int
    ) -> tf.data.Dataset:
        """Examples [start, stop) of `split` as (raw, label int32), in a fixed order."""

    def decode(self, raw) -> tf.Tensor:
        """The uint8 image (H, W, C) of a raw example."""


def open_source(name: str, data_dir: str | None) -> Source:
    """The source of dataset `name`, its info completed with mean and std.

    Args:
      name: ``fashion_mnist``, a tfds dataset name, or ``folder:<root>``.
      data_dir: see `dataset_info`.

    Raises:
      DataError: the name is empty or unknown, or the data is missing, unprepared or corrupt.
    """
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"dataset name {name!r} is empty")
    if name == "fashion_mnist":
        return FashionMnistSource(name, data_dir)
    if name.startswith(FOLDER_PREFIX):
        source = FolderSource(name)
    else:
        source = TfdsSource(name, data_dir)
    if source.info.num_classes < 2:
        raise DataError(
            f"dataset {name!r} has {source.info.num_classes} class(es); a classifier needs at "
            "least two"
        )
    if not source.info.mean:
        key = (name, data_dir)
        if key not in _STATS_CACHE:
            try:
                _STATS_CACHE[key] = _estimate_stats(source)
            except tf.errors.OpError as e:  # decoding the first training images failed
                raise describe_read_error(name, data_dir, e) from None
        mean, std = _STATS_CACHE[key]
        source.info = dataclasses.replace(source.info, mean=mean, std=std)
    return source


def _estimate_stats(source: Source) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # Per-channel mean/std of pixel / 255 over the first training images, eval-preprocessed.
    info = source.info
    count = min(_STATS_EXAMPLES, info.num_train)
    ds = source.read("train", 0, count, False, 0)
    ds = ds.map(
        lambda raw, label: eval_image(source.decode(raw), info.image_size, info.image_channels),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).batch(256)
    total = np.zeros(info.image_channels)
    squares = np.zeros(info.image_channels)
    pixels = 0
    for batch in ds:
        x = batch.numpy().astype(np.float64) / 255.0
        total += x.sum(axis=(0, 1, 2))
        squares += (x * x).sum(axis=(0, 1, 2))
        pixels += x.shape[0] * x.shape[1] * x.shape[2]
    mean = total / pixels
    std = np.sqrt(np.maximum(squares / pixels - mean * mean, 0.0))
    std = np.where(std > 1e-6, std, 1.0)  # a constant channel: do not divide by zero
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def dataset_info(name: str = DEFAULT_DATASET, data_dir: str | None = None) -> DatasetInfo:
    """Describes a dataset: classes, channels, image side, normalisation, split sizes.

    Args:
      name: ``fashion_mnist``, a tfds dataset name, or ``folder:<root>``.
      data_dir: for ``fashion_mnist`` the folder of IDX files (default FASHION_MNIST_DIR);
        for a tfds name the tfds data directory (default tfds's own); unused for a folder.

    Returns:
      The DatasetInfo.

    Raises:
      DataError: the name is unknown, or the data is missing, unprepared or corrupt.
    """
    return open_source(name, data_dir).info


def describe_read_error(name: str, data_dir: str | None, error: BaseException) -> DataError:
    """A one-line DataError for a TensorFlow error met while a pipeline of `name` was read.

    tf.data decodes images only when batches are drawn, so a file that passed the checks
    made when the source was opened can still fail midway through a run, with an error that
    names no file. For an image folder this decodes every file to name the first one that
    fails (slow, but only on this path).

    Args:
      name, data_dir: the dataset, as given to `make_dataset`.
      error: the error (usually a `tf.errors.InvalidArgumentError`).

    Returns:
      The DataError to raise.
    """
    if isinstance(name, str) and name.startswith(FOLDER_PREFIX):
        try:
            source = FolderSource(name)
        except DataError as e:
            return e
        files = [f for split_files, _ in source.splits.values() for f in split_files]
        found = find_undecodable(files, source.info.image_channels)
        if found is not None:
            return DataError(f"image file {found[0]} cannot be decoded: {found[1]}")
    return DataError(f"reading dataset {name!r} failed: {op_error_reason(error)}")
