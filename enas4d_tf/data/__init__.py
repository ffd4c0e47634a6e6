"""Datasets for training, search and export (DESIGN.md §3).

Three kinds of dataset name are understood:

* ``fashion_mnist`` (the default): read offline from the IDX files of the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``). The files are parsed here,
  not through tfds, because tfds's registered checksums do not match the Debian gzip bytes
  (FACTS.md item 6). "validation" is a fixed, class-stratified 5,000 of the 60,000 training
  images, "train" the other 55,000, "test" the 10,000 ``t10k`` images.
* any other ``tensorflow-datasets`` name, read with ``tfds.builder(name, data_dir=data_dir)``
  from data already prepared under ``data_dir``; nothing is downloaded. "validation" is the last
  10% of tfds's ``train`` split (at most 10,000 examples), "train" the rest; "test" is tfds's
  ``test`` split, or its ``validation`` split when it has no ``test`` (as for imagenet2012).
  ``imagenet2012`` is prepared on first use from the tar files in the usual tfds manual
  directory ``<data_dir>/downloads/manual`` (``ILSVRC2012_img_train.tar``,
  ``ILSVRC2012_img_val.tar``).
* ``folder:<root>``: an image folder ``<root>/train/<class>/*.png|jpg`` and optionally
  ``<root>/test/<class>/...``; classes are the sorted sub-folder names of ``train``;
  "validation" is a fixed 10% of each class held out of ``train``.

Images are normalised as ``(pixel / 255 - mean) / std`` per channel, with the
``DatasetInfo.mean``/``std`` of the dataset.

Example:
  >>> info = dataset_info("fashion_mnist")
  >>> ds = make_dataset("fashion_mnist", "train", batch_size=256, training=True)
  >>> images, labels = load_arrays("fashion_mnist", "validation", max_examples=2000)
"""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import hashlib
import math
import os
import struct
import zlib

import numpy as np
import tensorflow as tf

from enas4d_tf.errors import DataError

DEFAULT_DATASET = "fashion_mnist"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FOLDER_PREFIX = "folder:"
SPLITS = ("train", "validation", "test")

# The side a dataset with images of no fixed square size is yielded at (ImageNet-like data:
# the largest resolution of the imagenet_mbv3 space; the supernet resizes down itself).
LARGE_IMAGE_SIZE = 224
# Datasets with images up to this side get the small-image treatment (pad-and-crop
# translation); larger ones get ImageNet-style random-resized crops.
SMALL_IMAGE_MAX = 64
# Eval crops of large images: resize the shorter side to size / 0.875, take the centre.
EVAL_CROP_FRACTION = 0.875
# tfds datasets: the validation split is this fraction of tfds's train split, at most
# _MAX_TFDS_VALIDATION examples.
TFDS_VALIDATION_FRACTION = 0.1
_MAX_TFDS_VALIDATION = 10_000
FOLDER_VALIDATION_FRACTION = 0.1
# Mean/std of datasets without known constants are estimated on the first training images.
_STATS_EXAMPLES = 2000
_SHUFFLE_BUFFER = 10_000
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
# Datasets where a mirror image is not an image of the same class (digits, letters).
_NO_FLIP_DATASETS = frozenset({"mnist", "emnist", "kmnist", "svhn_cropped", "binarized_mnist"})

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
# (population std). tests/test_data.py recomputes them.
FASHION_MNIST_MEAN = (0.28603084,)
FASHION_MNIST_STD = (0.35303315,)
# The usual ImageNet constants (torchvision / once-for-all), in units of pixel / 255.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a pipeline yields for one dataset.

    Attributes:
      name: the dataset name as given (``fashion_mnist``, a tfds name, ``folder:<root>``).
      num_classes: number of classes; labels are ``0 .. num_classes - 1``.
      image_channels: 1 (grayscale) or 3 (colour).
      image_size: the side of the square images the pipelines yield.
      mean: per-channel mean of ``pixel / 255``, subtracted when normalising.
      std: per-channel standard deviation of ``pixel / 255``, divided by when normalising.
      num_train: examples in the "train" split.
      num_validation: examples in the "validation" split (held out of the training data).
      num_test: examples in the "test" split (0 when the dataset has none).
      class_names: the class names when known, in label order.
    """

    name: str
    num_classes: int
    image_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_train: int
    num_validation: int
    num_test: int
    class_names: tuple[str, ...] = ()

    def num_examples(self, split: str) -> int:
        """Returns the size of `split` ("train", "validation" or "test").

        Raises:
          DataError: `split` is not one of the three.
        """
        _check_split(split)
        return {
            "train": self.num_train,
            "validation": self.num_validation,
            "test": self.num_test,
        }[split]


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")


# ------------------------------------------------------------------------------------------
# Fashion-MNIST from IDX files.

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
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is corrupt: {_one_line(e)}") from None
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
    _FASHION_CACHE[key] = splits
    return splits


# ------------------------------------------------------------------------------------------
# Sources: where the examples of each split come from. `read` yields (raw, label int32)
# for examples [start, stop) of a split in a fixed order, `decode` turns raw into a uint8
# image (H, W, C).


class _ArraySource:
    """Fashion-MNIST held in memory."""

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
        del shuffle_files, seed
        images, labels = self.splits[split]
        return tf.data.Dataset.from_tensor_slices((images[start:stop], labels[start:stop]))

    def decode(self, raw):
        return raw


def _tfds():
    import tensorflow_datasets as tfds  # deferred: importing tfds costs about a second

    return tfds


def _tfds_root(data_dir: str | None) -> str:
    if data_dir:
        return data_dir
    return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def _unknown_dataset_message(tfds, name: str, root: str, error: Exception) -> str:
    detail = ""
    if not isinstance(error, tfds.core.registered.DatasetNotFoundError):
        detail = f" ({(str(error).splitlines() or [type(error).__name__])[0]})"
    known = sorted({DEFAULT_DATASET, *tfds.list_builders()})
    close = difflib.get_close_matches(name, known, 3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return _one_line(
        f"unknown dataset {name!r}{detail}: use 'fashion_mnist', 'folder:<root>', "
        f"or a tfds dataset (tfds.list_builders()) prepared under {root}{hint}"
    )


class _TfdsSource:
    """A tfds dataset prepared under data_dir, read by name."""

    def __init__(self, name: str, data_dir: str | None):
        tfds = _tfds()
        root = _tfds_root(data_dir)
        if data_dir and not os.path.isdir(data_dir):
            raise DataError(f"data directory {data_dir} for dataset {name!r} does not exist")
        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except Exception as e:  # tfds raises several types for names it cannot resolve
            raise DataError(_unknown_dataset_message(tfds, name, root, e)) from None
        if not builder.is_prepared():
            self._prepare_manual(builder, name, root)
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
        shape = tuple(getattr(image_feature, "shape", ()) or ())
        if len(shape) != 3:
            raise DataError(f"dataset {name!r}: feature {self.image_key!r} is not an image")
        height, width, channels = shape
        self.skip_decoding = isinstance(image_feature, tfds.features.Image)
        channels = channels or 3
        if channels == 4 and self.skip_decoding:
            channels = 3  # RGBA: decoded without the alpha channel
        if channels not in (1, 3):
            raise DataError(f"dataset {name!r}: images with {channels} channels are not supported")
        if height and width and height == width:
            image_size = height
        else:
            image_size = LARGE_IMAGE_SIZE
        splits = builder.info.splits
        if "train" not in splits:
            raise DataError(f"dataset {name!r} has no 'train' split (it has {sorted(splits)})")
        total = splits["train"].num_examples
        num_validation = min(_MAX_TFDS_VALIDATION, math.ceil(total * TFDS_VALIDATION_FRACTION))
        if total < 2:
            raise DataError(f"dataset {name!r}: its train split has {total} examples")
        self.num_fit = total - num_validation
        self.test_split = next((s for s in ("test", "validation") if s in splits), None)
        num_test = splits[self.test_split].num_examples if self.test_split else 0
        class_names = tuple(getattr(label_feature, "names", None) or ())
        self.info = DatasetInfo(
            name=name,
            num_classes=int(num_classes),
            image_channels=int(channels),
            image_size=int(image_size),
            mean=IMAGENET_MEAN if name.startswith("imagenet") and channels == 3 else (),
            std=IMAGENET_STD if name.startswith("imagenet") and channels == 3 else (),
            num_train=self.num_fit,
            num_validation=num_validation,
            num_test=num_test,
            class_names=class_names,
        )
        self.flip = name.split("/")[0].split(":")[0] not in _NO_FLIP_DATASETS

    @staticmethod
    def _prepare_manual(builder, name: str, root: str) -> None:
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
                download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
            )
        except Exception as e:  # any failure of tfds's preparation ends the same way
            raise DataError(
                f"preparing dataset {name!r} from {manual_dir} failed: {_one_line(e)}"
            ) from None

    def read(self, split, start, stop, shuffle_files, seed):
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
        if not self.skip_decoding:
            return raw
        image = tf.io.decode_image(raw, channels=self.info.image_channels, expand_animations=False)
        return tf.ensure_shape(image, [None, None, self.info.image_channels])


def _hash_order(items: list[str]) -> list[str]:
    # A fixed pseudo-random order, so contiguous shards of a split mix the classes.
    return sorted(items, key=lambda s: hashlib.sha256(s.encode()).digest())


class _FolderSource:
    """An image folder: <root>/train/<class>/*, optionally <root>/test/<class>/*."""

    def __init__(self, name: str):
        root = name[len(FOLDER_PREFIX) :]
        train_dir = os.path.join(root, "train")
        if not os.path.isdir(train_dir):
            raise DataError(f"image folder {train_dir} does not exist")
        classes = sorted(
            d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d))
        )
        if not classes:
            raise DataError(f"image folder {train_dir} has no class sub-folders")
        index = {c: i for i, c in enumerate(classes)}
        fit, validation = [], []
        for c in classes:
            files = _image_files(os.path.join(train_dir, c))
            if not files:
                raise DataError(f"class folder {os.path.join(train_dir, c)} has no images")
            files = _hash_order(files)
            # At least one image of every class with two or more is held out.
            held = max(1, round(len(files) * FOLDER_VALIDATION_FRACTION)) if len(files) > 1 else 0
            validation += [(f, index[c]) for f in files[:held]]
            fit += [(f, index[c]) for f in files[held:]]
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
            raise DataError(f"cannot decode image {first}: {_one_line(e)}") from None
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
        del shuffle_files, seed
        files, labels = self.splits[split]
        return tf.data.Dataset.from_tensor_slices(
            (tf.constant(files[start:stop], tf.string), tf.constant(labels[start:stop], tf.int32))
        )

    def decode(self, raw):
        channels = self.info.image_channels
        image = tf.io.decode_image(tf.io.read_file(raw), channels=channels, expand_animations=False)
        return tf.ensure_shape(image, [None, None, channels])


def _image_files(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if f.lower().endswith(_IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, f))
    )


# Mean/std estimated for datasets without known constants, keyed by (name, data_dir).
_STATS_CACHE: dict[tuple[str, str | None], tuple[tuple[float, ...], tuple[float, ...]]] = {}


def _source(name: str, data_dir: str | None):
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"dataset name {name!r} is empty")
    if name == "fashion_mnist":
        return _ArraySource(name, data_dir)
    if name.startswith(FOLDER_PREFIX):
        source = _FolderSource(name)
    else:
        source = _TfdsSource(name, data_dir)
    if not source.info.mean:
        key = (name, data_dir)
        if key not in _STATS_CACHE:
            _STATS_CACHE[key] = _estimate_stats(source)
        mean, std = _STATS_CACHE[key]
        source.info = dataclasses.replace(source.info, mean=mean, std=std)
    return source


def _estimate_stats(source) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # Per-channel mean/std of pixel / 255 over the first training images, eval-preprocessed.
    info = source.info
    count = min(_STATS_EXAMPLES, info.num_train)
    ds = source.read("train", 0, count, False, 0)
    ds = ds.map(
        lambda raw, label: _eval_image(source.decode(raw), info.image_size, info.image_channels),
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


# ------------------------------------------------------------------------------------------
# Public API.


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
    return _source(name, data_dir).info


def _shard_range(count: int, input_context) -> tuple[int, int]:
    if input_context is None:
        return 0, count
    n = input_context.num_input_pipelines
    i = input_context.input_pipeline_id
    return i * count // n, (i + 1) * count // n


def _eval_image(image, size: int, channels: int):
    """Resizes a decoded uint8 image to (size, size) as eval does; returns float32 0..255."""
    if size > SMALL_IMAGE_MAX:
        shape = tf.shape(image)
        height = tf.cast(shape[0], tf.float32)
        width = tf.cast(shape[1], tf.float32)
        scale = math.ceil(size / EVAL_CROP_FRACTION) / tf.minimum(height, width)
        new_h = tf.maximum(size, tf.cast(tf.round(height * scale), tf.int32))
        new_w = tf.maximum(size, tf.cast(tf.round(width * scale), tf.int32))
        image = tf.image.resize(image, [new_h, new_w], antialias=True)
        top = (new_h - size) // 2
        left = (new_w - size) // 2
        image = image[top : top + size, left : left + size]
    elif image.shape[0] != size or image.shape[1] != size:
        image = tf.image.resize(image, [size, size], antialias=True)
    image = tf.cast(image, tf.float32)
    return tf.ensure_shape(image, [size, size, channels])


def _train_image(image, seed, size: int, channels: int, flip: bool):
    """Augments a decoded uint8 image; returns float32 0..255 of shape (size, size, C)."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if size > SMALL_IMAGE_MAX:
        # Random-resized crop (Inception / once-for-all style): 8%-100% of the area,
        # aspect ratio 3/4..4/3.
        begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image),
            bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            seed=crop_seed,
            min_object_covered=0.0,
            aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        image = tf.slice(image, begin, crop_size)
        image = tf.image.resize(image, [size, size], antialias=True)
    else:
        # Random translation by up to `pad` pixels: pad with zeros, crop back.
        if image.shape[0] != size or image.shape[1] != size:
            image = tf.image.resize(image, [size, size], antialias=True)
        pad = max(1, size // 14)  # 2 for 28x28 and 32x32
        image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        image = tf.image.stateless_random_crop(image, [size, size, channels], seed=crop_seed)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    image = tf.cast(image, tf.float32)
    return tf.ensure_shape(image, [size, size, channels])


def _normalizer(info: DatasetInfo):
    mean = tf.constant(info.mean, tf.float32)
    std = tf.constant(info.std, tf.float32)

    def normalize(images, labels):
        return (images / 255.0 - mean) / std, labels

    return normalize


def make_dataset(
    name: str = DEFAULT_DATASET,
    split: str = "train",
    data_dir: str | None = None,
    batch_size: int = 128,
    training: bool = False,
    seed: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    max_examples: int | None = None,
    repeat: bool = False,
) -> tf.data.Dataset:
    """A tf.data pipeline of normalised ``(images, labels)`` batches.

    Training pipelines shuffle (seeded), augment (small images: random translation by
    padding and cropping back, horizontal flip; large images: random-resized crop to
    `image_size` and flip) and drop the last partial batch. Eval pipelines resize (large
    images: shorter side to image_size / 0.875, centre crop) and keep a fixed order and
    every example. Images are float32 ``(B, image_size, image_size, image_channels)``,
    labels int32 ``(B,)``.

    Args:
      name: the dataset (see `dataset_info`).
      split: "train", "validation" or "test".
      data_dir: where the data is (see `dataset_info`).
      batch_size: the global batch size; with `input_context`, each pipeline batches
        ``input_context.get_per_replica_batch_size(batch_size)``.
      training: shuffle, augment and drop the remainder.
      seed: seeds the shuffle and the augmentation; the same seed gives the same stream.
      input_context: under ``strategy.distribute_datasets_from_function``, the context of
        this input pipeline: pipeline ``i`` of ``n`` reads the i-th contiguous n-th of the
        split (of its first `max_examples`), so the pipelines' examples are disjoint.
      max_examples: use only the first `max_examples` examples of the split.
      repeat: repeat the data forever (reshuffled every epoch when training).

    Returns:
      The tf.data.Dataset.

    Raises:
      DataError: the dataset cannot be read, the split is unknown or empty, or a training
        pipeline without `repeat` would yield no full batch.
    """
    _check_split(split)
    if batch_size < 1:
        raise DataError(f"batch size must be positive, got {batch_size}")
    if max_examples is not None and max_examples < 1:
        raise DataError(f"max_examples must be positive, got {max_examples}")
    source = _source(name, data_dir)
    info = source.info
    count = info.num_examples(split)
    if max_examples is not None:
        count = min(count, max_examples)
    if count == 0:
        raise DataError(f"dataset {name!r} has no {split!r} examples")
    start, stop = _shard_range(count, input_context)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        seed = seed * 1_000_003 + input_context.input_pipeline_id
    shard = stop - start
    if shard == 0:
        raise DataError(f"{split!r} split of {name!r} has no examples for this input pipeline")
    if training and not repeat and shard < batch_size:
        raise DataError(
            f"{split!r} split of {name!r} has {shard} examples for this pipeline, fewer than "
            f"one training batch of {batch_size}"
        )
    size, channels = info.image_size, info.image_channels
    ds = source.read(split, start, stop, training, seed)
    if training:
        ds = ds.shuffle(min(shard, _SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if training:
        noise = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, noise)
        flip = source.flip
        ds = ds.map(
            lambda example, rnd: (
                _train_image(source.decode(example[0]), rnd, size, channels, flip),
                example[1],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        ds = ds.map(
            lambda raw, label: (_eval_image(source.decode(raw), size, channels), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    ds = ds.batch(batch_size, drop_remainder=training, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(_normalizer(info), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    if input_context is not None:
        # Sharded here already: stop tf.distribute from sharding again.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def load_arrays(
    name: str = DEFAULT_DATASET,
    split: str = "validation",
    data_dir: str | None = None,
    max_examples: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads a split as normalised numpy arrays, in the split's fixed order.

    Args:
      name: the dataset (see `dataset_info`).
      split: "train", "validation" or "test".
      data_dir: where the data is (see `dataset_info`).
      max_examples: load only the first `max_examples` examples.

    Returns:
      ``(images float32 (N, H, W, C), labels int32 (N,))``, eval-preprocessed (no
      augmentation) and normalised like `make_dataset`.

    Raises:
      DataError: the dataset cannot be read or the split is unknown or empty.
    """
    _check_split(split)
    if max_examples is not None and max_examples < 1:
        raise DataError(f"max_examples must be positive, got {max_examples}")
    if name == "fashion_mnist":
        source = _source(name, data_dir)
        images, labels = source.splits[split]
        images, labels = images[:max_examples], labels[:max_examples]
        mean = np.asarray(source.info.mean, np.float32)
        std = np.asarray(source.info.std, np.float32)
        normalized = (images.astype(np.float32) / np.float32(255.0) - mean) / std
        return normalized, labels.copy()
    ds = make_dataset(name, split, data_dir, batch_size=256, max_examples=max_examples)
    batches = [(x.numpy(), y.numpy()) for x, y in ds]
    images = np.concatenate([x for x, _ in batches])
    labels = np.concatenate([y for _, y in batches]).astype(np.int32)
    return images, labels
