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

Modules: `info` (DatasetInfo, shared constants), the three sources (`folder_files` lists and
checks an image folder's files), `sources` (name -> source, stats, `dataset_info`),
`preprocessing` (augmentation, eval resizing, normalisation) and `pipeline` (`make_dataset`,
`load_arrays`).

The names below load on first use: `enas4d_tf.data.info` and `enas4d_tf.data.folder_files`
import without TensorFlow, so a tool can check an image folder before paying for it.

Example:
  >>> info = dataset_info("fashion_mnist")
  >>> ds = make_dataset("fashion_mnist", "train", batch_size=256, training=True)
  >>> images, labels = load_arrays("fashion_mnist", "validation", max_examples=2000)
"""

import importlib

# Public name -> the module that defines it.
_EXPORTS = {
    "DEFAULT_DATASET": "enas4d_tf.data.info",
    "DataError": "enas4d_tf.errors",
    "DatasetInfo": "enas4d_tf.data.info",
    "EVAL_CROP_FRACTION": "enas4d_tf.data.info",
    "FASHION_MNIST_CLASSES": "enas4d_tf.data.fashion_mnist",
    "FASHION_MNIST_DIR": "enas4d_tf.data.fashion_mnist",
    "FASHION_MNIST_MEAN": "enas4d_tf.data.fashion_mnist",
    "FASHION_MNIST_STD": "enas4d_tf.data.fashion_mnist",
    "FASHION_MNIST_VALIDATION_PER_CLASS": "enas4d_tf.data.fashion_mnist",
    "FOLDER_PREFIX": "enas4d_tf.data.folder_files",
    "FOLDER_VALIDATION_FRACTION": "enas4d_tf.data.folder_files",
    "IMAGENET_MEAN": "enas4d_tf.data.info",
    "IMAGENET_STD": "enas4d_tf.data.info",
    "ImageFolder": "enas4d_tf.data.folder_files",
    "LARGE_IMAGE_SIZE": "enas4d_tf.data.info",
    "PipelineOptions": "enas4d_tf.data.pipeline",
    "SMALL_IMAGE_MAX": "enas4d_tf.data.info",
    "SPLITS": "enas4d_tf.data.info",
    "TFDS_VALIDATION_FRACTION": "enas4d_tf.data.tfds_source",
    "build_dataset": "enas4d_tf.data.pipeline",
    "dataset_info": "enas4d_tf.data.sources",
    "describe_read_error": "enas4d_tf.data.sources",
    "fashion_mnist_validation_indices": "enas4d_tf.data.fashion_mnist",
    "load_arrays": "enas4d_tf.data.pipeline",
    "load_fashion_mnist": "enas4d_tf.data.fashion_mnist",
    "make_dataset": "enas4d_tf.data.pipeline",
    "read_idx": "enas4d_tf.data.fashion_mnist",
    "scan_image_folder": "enas4d_tf.data.folder_files",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'enas4d_tf.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
