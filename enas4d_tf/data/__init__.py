"""Datasets for training, search and export.

Three kinds of dataset name are understood:

* ``fashion_mnist`` (the default): read offline from the IDX files of the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``); see `fashion_mnist.py`.
* any other ``tensorflow-datasets`` name, read from data already prepared under ``data_dir``;
  nothing is downloaded (``imagenet2012`` is prepared from its manual directory); see
  `tfds_source.py`.
* ``folder:<root>``: an image folder ``<root>/train/<class>/*.png|jpg`` and optionally
  ``<root>/test/<class>/...``; see `folder_source.py`.

Every dataset has the splits "train", "validation" (held out of the training data) and
"test". Images are normalised as ``(pixel / 255 - mean) / std`` per channel, with the
``DatasetInfo.mean``/``std`` of the dataset.

Modules: `info` (DatasetInfo, shared constants), the three sources, `sources` (name -> source,
stats, `dataset_info`), `preprocessing` (augmentation, eval resizing, normalisation) and
`pipeline` (`make_dataset`, `load_arrays`).

Example:
  >>> info = dataset_info("fashion_mnist")
  >>> ds = make_dataset("fashion_mnist", "train", batch_size=256, training=True)
  >>> images, labels = load_arrays("fashion_mnist", "validation", max_examples=2000)
"""

from enas4d_tf.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    FASHION_MNIST_VALIDATION_PER_CLASS,
    fashion_mnist_validation_indices,
    load_fashion_mnist,
    read_idx,
)
from enas4d_tf.data.folder_source import FOLDER_PREFIX, FOLDER_VALIDATION_FRACTION
from enas4d_tf.data.info import (
    DEFAULT_DATASET,
    EVAL_CROP_FRACTION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LARGE_IMAGE_SIZE,
    SMALL_IMAGE_MAX,
    SPLITS,
    DatasetInfo,
)
from enas4d_tf.data.pipeline import PipelineOptions, build_dataset, load_arrays, make_dataset
from enas4d_tf.data.sources import dataset_info
from enas4d_tf.data.tfds_source import TFDS_VALIDATION_FRACTION
from enas4d_tf.errors import DataError

__all__ = [
    "DEFAULT_DATASET",
    "EVAL_CROP_FRACTION",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "FASHION_MNIST_VALIDATION_PER_CLASS",
    "FOLDER_PREFIX",
    "FOLDER_VALIDATION_FRACTION",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LARGE_IMAGE_SIZE",
    "SMALL_IMAGE_MAX",
    "SPLITS",
    "TFDS_VALIDATION_FRACTION",
    "DataError",
    "DatasetInfo",
    "PipelineOptions",
    "build_dataset",
    "dataset_info",
    "fashion_mnist_validation_indices",
    "load_arrays",
    "load_fashion_mnist",
    "make_dataset",
    "read_idx",
]
