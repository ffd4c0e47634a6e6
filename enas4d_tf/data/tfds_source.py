"""Any ``tensorflow-datasets`` dataset, read by name from data already prepared under data_dir.

Nothing is downloaded. "validation" is the last 10% of tfds's ``train`` split (at most 10,000
examples), "train" the rest; "test" is tfds's ``test`` split, or its ``validation`` split when
it has no ``test`` (as for imagenet2012). ``imagenet2012`` is prepared on first use from the
tar files in the usual tfds manual directory ``<data_dir>/downloads/manual``
(``ILSVRC2012_img_train.tar``, ``ILSVRC2012_img_val.tar``).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
import os

import tensorflow as tf

from enas4d_tf.data.info import (
    DEFAULT_DATASET,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LARGE_IMAGE_SIZE,
    DatasetInfo,
    one_line,
)
from enas4d_tf.errors import DataError

# The validation split is this fraction of tfds's train split, at most _MAX_TFDS_VALIDATION
# examples.
TFDS_VALIDATION_FRACTION = 0.1
_MAX_TFDS_VALIDATION = 10_000
# Datasets where a mirror image is not an image of the same class (digits, letters).
_NO_FLIP_DATASETS = frozenset({"mnist", "emnist", "kmnist", "svhn_cropped", "binarized_mnist"})


def _tfds():
    import tensorflow_datasets as tfds  # deferred: importing tfds costs about a second

    return tfds


@contextlib.contextmanager
def _tfds_warnings_hidden():
    # tfds logs warnings about the folders it probes (an unprepared dataset's "variant
    # folder ... has no dataset_info.json") before we refuse in one line of our own.
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _tfds_root(data_dir: str | None) -> str:
    if data_dir:
        return data_dir
    return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def _prepared_here(root: str) -> list[str]:
    # Dataset folders under the tfds data directory (prepared ones hold a version folder).
    try:
        return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    except OSError:
        return []


def _unknown_dataset_message(tfds, name: str, root: str, error: Exception | None) -> str:
    detail = ""
    if error is not None and not isinstance(error, tfds.core.registered.DatasetNotFoundError):
        detail = f" ({(str(error).splitlines() or [type(error).__name__])[0]})"
    # Without the community datasets: listing those fetches an index from the network.
    known = sorted({DEFAULT_DATASET, *tfds.list_builders(with_community_datasets=False)})
    close = difflib.get_close_matches(name, known, 3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    here = _prepared_here(root)
    there = f"there: {', '.join(here[:8])}" if here else "none is there"
    return one_line(
        f"unknown dataset {name!r}{hint}{detail}; use fashion_mnist, folder:<root>, or a "
        f"tensorflow-datasets dataset prepared in the data directory {root} ({there}; "
        "data_dir names another)"
    )


def _check_name(tfds, name: str, root: str) -> None:
    # Refuses, before tfds resolves it, a name tfds would resolve over the network: a
    # community namespace ("kaggle:x", "huggingface:x") makes it fetch an index or import a
    # hub client. A name tfds cannot parse is unknown.
    try:
        parsed, _ = tfds.core.naming.parse_builder_name_kwargs(name)
    except ValueError:
        raise DataError(_unknown_dataset_message(tfds, name, root, None)) from None
    if parsed.namespace:
        raise DataError(
            f"dataset {name!r} is a community dataset (namespace {parsed.namespace!r}), which "
            "tensorflow-datasets fetches from the network; this package reads only data "
            f"prepared under a data directory ({root})"
        )


def _prepare_manual(builder, name: str, root: str) -> None:
    # Datasets with manual downloads (imagenet2012) are prepared from <root>/downloads/manual;
    # any other unprepared dataset is refused rather than downloaded.
    tfds = _tfds()
    expected = os.path.join(root, name.split(":")[0].split("/")[0])
    if not getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
        raise DataError(
            f"dataset {name!r} is not prepared under {expected} and this package does not "
            f"download; prepare it elsewhere with `tfds build {name} --data_dir={root}`"
        )
    manual_dir = os.path.join(root, "downloads", "manual")
    if not os.path.isdir(manual_dir) or not os.listdir(manual_dir):
        raise DataError(
            f"dataset {name!r} is not prepared under {expected} and its manual directory "
            f"{manual_dir} holds no files (for imagenet2012: ILSVRC2012_img_train.tar and "
            "ILSVRC2012_img_val.tar)"
        )
    try:
        builder.download_and_prepare(
            # try_download_gcs=False: tfds would otherwise look for a prepared copy on GCS.
            download_config=tfds.download.DownloadConfig(
                manual_dir=manual_dir, try_download_gcs=False
            )
        )
    except Exception as e:  # any failure of tfds's preparation ends the same way
        raise DataError(
            f"preparing dataset {name!r} from {manual_dir} failed: {one_line(e)}"
        ) from None


def _prepared_builder(tfds, name: str, data_dir: str | None):
    root = _tfds_root(data_dir)
    if data_dir and not os.path.isdir(data_dir):
        raise DataError(f"data directory {data_dir} for dataset {name!r} does not exist")
    _check_name(tfds, name, root)
    try:
        with _tfds_warnings_hidden():
            builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises several types for names it cannot resolve
        raise DataError(_unknown_dataset_message(tfds, name, root, e)) from None
    with _tfds_warnings_hidden():
        prepared = builder.is_prepared()
    if not prepared:
        _prepare_manual(builder, name, root)
    return builder


def _image_geometry(name: str, key: str, feature, skip_decoding: bool) -> tuple[int, int]:
    # (channels, image side) of the image feature `key`, checked.
    shape = tuple(getattr(feature, "shape", ()) or ())
    if len(shape) != 3:
        raise DataError(f"dataset {name!r}: feature {key!r} is not an image")
    height, width, channels = shape
    channels = channels or 3
    if channels == 4 and skip_decoding:
        channels = 3  # RGBA: decoded without the alpha channel
    if channels not in (1, 3):
        raise DataError(f"dataset {name!r}: images with {channels} channels are not supported")
    if height and width and height == width:
        return int(channels), int(height)
    return int(channels), LARGE_IMAGE_SIZE


class TfdsSource:
    """A tfds dataset prepared under data_dir, read by name (see `sources.Source`).

    Attributes:
      builder: the tfds builder.
      image_key, label_key: the supervised features read.
      skip_decoding: images are read encoded and decoded by `decode` (tfds Image features).
      num_fit: examples of tfds's train split used for "train"; the rest are "validation".
      test_split: the tfds split served as "test" (None when there is none).
      info: the DatasetInfo (mean and std empty unless known, as for ImageNet).
      flip: whether a mirrored image keeps its class.
    """

    def __init__(self, name: str, data_dir: str | None):
        tfds = _tfds()
        builder = _prepared_builder(tfds, name, data_dir)
        self.builder = builder
        features = builder.info.features
        keys = builder.info.supervised_keys
        self.image_key = keys[0] if keys and isinstance(keys[0], str) else "image"
        self.label_key = keys[1] if keys and isinstance(keys[1], str) else "label"
        if self.image_key not in features or self.label_key not in features:
            raise DataError(
                f"dataset {name!r} has no {self.image_key!r} and {self.label_key!r} features "
                f"(it has {sorted(features.keys())})"
            )
        image_feature = features[self.image_key]
        label_feature = features[self.label_key]
        num_classes = getattr(label_feature, "num_classes", None)
        if not num_classes:
            raise DataError(f"dataset {name!r}: feature {self.label_key!r} is not a class label")
        self.skip_decoding = isinstance(image_feature, tfds.features.Image)
        channels, image_size = _image_geometry(
            name, self.image_key, image_feature, self.skip_decoding
        )
        num_validation, num_test = self._split_sizes(name, builder.info.splits)
        imagenet = name.startswith("imagenet") and channels == 3
        self.info = DatasetInfo(
            name=name,
            num_classes=int(num_classes),
            image_channels=channels,
            image_size=image_size,
            mean=IMAGENET_MEAN if imagenet else (),
            std=IMAGENET_STD if imagenet else (),
            num_train=self.num_fit,
            num_validation=num_validation,
            num_test=num_test,
            class_names=tuple(getattr(label_feature, "names", None) or ()),
        )
        self.flip = name.split("/")[0].split(":")[0] not in _NO_FLIP_DATASETS

    def _split_sizes(self, name: str, splits) -> tuple[int, int]:
        # Sets num_fit and test_split; returns (num_validation, num_test).
        if "train" not in splits:
            raise DataError(f"dataset {name!r} has no 'train' split (it has {sorted(splits)})")
        total = splits["train"].num_examples
        num_validation = min(_MAX_TFDS_VALIDATION, math.ceil(total * TFDS_VALIDATION_FRACTION))
        if total < 2:
            raise DataError(f"dataset {name!r}: its train split has {total} examples")
        self.num_fit = total - num_validation
        self.test_split = next((s for s in ("test", "validation") if s in splits), None)
        num_test = splits[self.test_split].num_examples if self.test_split else 0
        return num_validation, num_test

    def read(self, split, start, stop, shuffle_files, seed):
        """Examples [start, stop) of `split` as (raw image, int32 label), in tfds's order."""
        tfds = _tfds()
        if split == "test":
            offset, base = 0, self.test_split
        else:
            offset, base = (0 if split == "train" else self.num_fit), "train"
        decoders = {self.image_key: tfds.decode.SkipDecoding()} if self.skip_decoding else None
        # An ordered dataset (disable_shuffling) refuses shuffled files; the example shuffle
        # buffer still mixes it.
        shuffle_files = shuffle_files and not self.builder.info.disable_shuffling
        ds = self.builder.as_dataset(
            split=f"{base}[{offset + start}:{offset + stop}]",
            shuffle_files=shuffle_files,
            decoders=decoders,
            read_config=tfds.ReadConfig(shuffle_seed=seed),
        )
        image_key, label_key = self.image_key, self.label_key
        return ds.map(
            lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    def decode(self, raw):
        """A uint8 image (H, W, C) of a raw example (decoded here when tfds skipped it)."""
        if not self.skip_decoding:
            return raw
        image = tf.io.decode_image(raw, channels=self.info.image_channels, expand_animations=False)
        return tf.ensure_shape(image, [None, None, self.info.image_channels])
