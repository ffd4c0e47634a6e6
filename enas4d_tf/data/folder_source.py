"""``folder:<root>``: an image folder ``<root>/train/<class>/*.png|jpg`` (and ``<root>/test``).

Classes are the sorted sub-folder names of ``train``; "validation" is a fixed 10% of each
class held out of ``train``; each split is ordered by a hash of the file path, so that
contiguous shards mix the classes.
"""

from __future__ import annotations

import hashlib
import os

import tensorflow as tf

from enas4d_tf.data.info import LARGE_IMAGE_SIZE, DatasetInfo, one_line
from enas4d_tf.errors import DataError

FOLDER_PREFIX = "folder:"
FOLDER_VALIDATION_FRACTION = 0.1
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")

# (file path, label) pairs of one split.
_Items = list[tuple[str, int]]


def _image_files(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if f.lower().endswith(_IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, f))
    )


def _hash_order(items: list[str]) -> list[str]:
    # A fixed pseudo-random order, so contiguous shards of a split mix the classes.
    return sorted(items, key=lambda s: hashlib.sha256(s.encode()).digest())


def _train_items(train_dir: str) -> tuple[list[str], _Items, _Items]:
    # (classes, fit items, validation items) of <root>/train.
    if not os.path.isdir(train_dir):
        raise DataError(f"image folder {train_dir} does not exist")
    classes = sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
    if not classes:
        raise DataError(f"image folder {train_dir} has no class sub-folders")
    fit, validation = [], []
    for label, c in enumerate(classes):
        files = _image_files(os.path.join(train_dir, c))
        if not files:
            raise DataError(f"class folder {os.path.join(train_dir, c)} has no images")
        files = _hash_order(files)
        # At least one image of every class with two or more is held out.
        held = max(1, round(len(files) * FOLDER_VALIDATION_FRACTION)) if len(files) > 1 else 0
        validation += [(f, label) for f in files[:held]]
        fit += [(f, label) for f in files[held:]]
    return classes, fit, validation


def _test_items(root: str, train_dir: str, classes: list[str]) -> _Items:
    # The items of <root>/test (none when it is absent); its classes must be train's.
    index = {c: i for i, c in enumerate(classes)}
    test = []
    test_dir = os.path.join(root, "test")
    if os.path.isdir(test_dir):
        for c in sorted(os.listdir(test_dir)):
            if not os.path.isdir(os.path.join(test_dir, c)):
                continue
            if c not in index:
                raise DataError(
                    f"test class folder {os.path.join(test_dir, c)} is not in {train_dir}"
                )
            test += [(f, index[c]) for f in _image_files(os.path.join(test_dir, c))]
    return test


class FolderSource:
    """An image folder: <root>/train/<class>/*, optionally <root>/test/<class>/*.

    A source for the pipelines (see `sources.Source`).

    Attributes:
      splits: ``{split: (file paths, labels)}`` in the split's fixed (hashed) order.
      info: the DatasetInfo (mean and std empty: estimated by the caller); the image side is
        the first image's when it is square, else LARGE_IMAGE_SIZE.
      flip: True.
    """

    def __init__(self, name: str):
        root = name[len(FOLDER_PREFIX) :]
        train_dir = os.path.join(root, "train")
        classes, fit, validation = _train_items(train_dir)
        test = _test_items(root, train_dir, classes)
        # Order each split by a hash of the path so contiguous shards mix the classes.
        self.splits = {}
        for split, items in (("train", fit), ("validation", validation), ("test", test)):
            order = _hash_order([f for f, _ in items])
            labels = dict(items)
            self.splits[split] = (order, [labels[f] for f in order])
        first = fit[0][0] if fit else validation[0][0]
        try:
            probe = tf.io.decode_image(tf.io.read_file(first), expand_animations=False)
        except (tf.errors.OpError, ValueError) as e:
            raise DataError(f"cannot decode image {first}: {one_line(e)}") from None
        height, width, channels = (int(d) for d in probe.shape)
        self.info = DatasetInfo(
            name=name,
            num_classes=len(classes),
            image_channels=1 if channels in (1, 2) else 3,
            image_size=height if height == width else LARGE_IMAGE_SIZE,
            mean=(),
            std=(),
            num_train=len(fit),
            num_validation=len(validation),
            num_test=len(test),
            class_names=tuple(classes),
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
