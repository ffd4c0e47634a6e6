"""``folder:<root>``: an image folder ``<root>/train/<class>/*.png|jpg`` (and ``<root>/test``),
as a source for the pipelines.

Its files, classes, splits and checks are `folder_files.py`'s (which needs no TensorFlow).
"""

from __future__ import annotations

import tensorflow as tf

from enas4d_tf.data.folder_files import FOLDER_PREFIX, scan_image_folder
from enas4d_tf.data.info import LARGE_IMAGE_SIZE, DatasetInfo, op_error_reason
from enas4d_tf.errors import DataError

__all__ = ["FOLDER_PREFIX", "FolderSource", "find_undecodable"]


def find_undecodable(files: list[str], channels: int) -> tuple[str, str] | None:
    """The first of `files` that TensorFlow cannot decode, with its one-line reason.

    Decodes every file (slow: meant for explaining a decode error after the fact).

    Returns:
      ``(path, reason)``, or None when all decode.
    """
    for path in files:
        try:
            tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        except (tf.errors.OpError, ValueError) as e:
            return path, op_error_reason(e)
    return None


class FolderSource:
    """An image folder: <root>/train/<class>/*, optionally <root>/test/<class>/*.

    A source for the pipelines (see `sources.Source`).

    Attributes:
      splits: ``{split: (file paths, labels)}`` in the split's fixed (hashed) order.
      info: the DatasetInfo (mean and std empty: estimated by the caller); the image side is
        the first image's when it is square, else LARGE_IMAGE_SIZE.
      flip: True.

    Raises:
      DataError: see `folder_files.scan_image_folder`; or the first image does not decode.
    """

    def __init__(self, name: str):
        folder = scan_image_folder(name)
        self.splits = folder.splits
        train, validation = folder.splits["train"][0], folder.splits["validation"][0]
        first = (train or validation)[0]
        try:
            probe = tf.io.decode_image(tf.io.read_file(first), expand_animations=False)
        except (tf.errors.OpError, ValueError) as e:
            raise DataError(f"image file {first} cannot be decoded: {op_error_reason(e)}") from None
        height, width, channels = (int(d) for d in probe.shape)
        self.info = DatasetInfo(
            name=name,
            num_classes=len(folder.classes),
            image_channels=1 if channels in (1, 2) else 3,
            image_size=height if height == width else LARGE_IMAGE_SIZE,
            mean=(),
            std=(),
            num_train=len(train),
            num_validation=len(validation),
            num_test=len(folder.splits["test"][0]),
            class_names=folder.classes,
        )
        self.flip = True

    def read(self, split, start, stop, shuffle_files, seed):
        """Examples [start, stop) of `split` as (file path, int32 label), in order."""
        del shuffle_files, seed
        files, labels = self.splits[split]
        return tf.data.Dataset.from_tensor_slices(
            (tf.constant(files[start:stop], tf.string), tf.constant(labels[start:stop], tf.int32))
        )

    def decode(self, raw):
        """The uint8 image (H, W, C) in file `raw`."""
        channels = self.info.image_channels
        image = tf.io.decode_image(tf.io.read_file(raw), channels=channels, expand_animations=False)
        return tf.ensure_shape(image, [None, None, channels])
