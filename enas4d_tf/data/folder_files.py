"""The files of an image folder ``folder:<root>`` and their checks, without TensorFlow.

``<root>/train/<class>/*.png|jpg|jpeg|bmp`` (and optionally ``<root>/test/<class>/...``).
Classes are the sorted sub-folder names of ``train``, at least two. "validation" is a fixed
10% of each class held out of ``train`` (rounded, at least one image of a class with two or
more): within a class, the files ordered by the SHA-256 of their path, the first ones held
out. So the split is stratified, disjoint from "train", and the same on every run. Each
split is then ordered by the same hash, so that contiguous shards mix the classes.

Every image file is checked by its first and last bytes (a PNG, JPEG, BMP, GIF or WebP
signature, and the format's end marker or declared size): tf.data decodes images only as
batches are drawn, where a bad file would stop a run midway with an error that names no file.
Tools call `scan_image_folder` before importing TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import struct

from enas4d_tf.errors import DataError

FOLDER_PREFIX = "folder:"
FOLDER_VALIDATION_FRACTION = 0.1
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")

# (file path, label) pairs of one split.
_Items = list[tuple[str, int]]

# What an image file's last bytes must hold: PNG's IEND chunk; JPEG's end-of-image marker
# (searched in the tail: some writers pad after it); GIF's trailer byte.
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"
_TAIL = 1024


@dataclasses.dataclass(frozen=True)
class ImageFolder:
    """The checked files of an image folder.

    Attributes:
      root: the folder (the dataset name less ``folder:``).
      classes: the class names, sorted; label i is classes[i].
      splits: ``{split: (file paths, labels)}`` for "train", "validation" and "test", each
        in its fixed hashed order ("test" empty when there is no ``<root>/test``).
    """

    root: str
    classes: tuple[str, ...]
    splits: dict[str, tuple[list[str], list[int]]]

    def files(self) -> list[str]:
        """Every file of the three splits."""
        return [f for files, _ in self.splits.values() for f in files]


def image_problem(path: str) -> str | None:
    """Why the file `path` is not a whole PNG, JPEG, BMP, GIF or WebP image (None if it is).

    Reads only the file's first 16 and last 1,024 bytes; a file whose middle is damaged
    passes (see `folder_source.find_undecodable`).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL))
            tail = f.read()
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if size == 0:
        return "is empty"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None if tail.endswith(_PNG_END) else "is a truncated PNG (no IEND chunk at its end)"
    if head.startswith(b"\xff\xd8\xff"):
        return None if _JPEG_END in tail else "is a truncated JPEG (no end-of-image marker)"
    if head.startswith(b"BM") and len(head) >= 6:
        declared = struct.unpack("<I", head[2:6])[0]
        return None if declared <= size else f"is a truncated BMP ({size} of {declared} bytes)"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return None if tail.rstrip(b"\x00").endswith(b"\x3b") else "is a truncated GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        declared = struct.unpack("<I", head[4:8])[0] + 8
        return None if declared <= size else f"is a truncated WebP ({size} of {declared} bytes)"
    return f"is not an image (it starts with {head[:8]!r}, no PNG, JPEG, BMP, GIF or WebP)"


def check_images(files: list[str]) -> None:
    """Raises DataError naming the first of `files` that is not a whole image (and how many
    others are not)."""
    bad = [(f, problem) for f in files if (problem := image_problem(f))]
    if bad:
        path, problem = bad[0]
        more = f" ({len(bad) - 1} more files are not readable images)" if len(bad) > 1 else ""
        raise DataError(f"image file {path} {problem}{more}; remove or replace it")


def _image_files(folder: str) -> list[str]:
    return sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, f))
    )


def hash_order(paths: list[str]) -> list[str]:
    """`paths` in a fixed pseudo-random order: by the SHA-256 of each path."""
    return sorted(paths, key=lambda s: hashlib.sha256(s.encode()).digest())


def _class_folders(train_dir: str) -> list[str]:
    if not os.path.isdir(train_dir):
        raise DataError(f"image folder {train_dir} does not exist")
    try:
        names = os.listdir(train_dir)
    except OSError as e:
        raise DataError(f"image folder {train_dir} cannot be read: {e.strerror}") from None
    classes = sorted(d for d in names if os.path.isdir(os.path.join(train_dir, d)))
    if not classes:
        raise DataError(f"image folder {train_dir} has no class sub-folders")
    if len(classes) == 1:
        raise DataError(
            f"image folder {train_dir} has one class sub-folder ({classes[0]}); a classifier "
            "needs at least two"
        )
    return classes


def _train_items(train_dir: str, classes: list[str]) -> tuple[_Items, _Items]:
    # (fit items, validation items) of <root>/train: per class, the first of the hashed
    # order are held out.
    fit, validation = [], []
    for label, c in enumerate(classes):
        files = _image_files(os.path.join(train_dir, c))
        if not files:
            raise DataError(f"class folder {os.path.join(train_dir, c)} has no images")
        files = hash_order(files)
        # At least one image of every class with two or more is held out.
        held = max(1, round(len(files) * FOLDER_VALIDATION_FRACTION)) if len(files) > 1 else 0
        validation += [(f, label) for f in files[:held]]
        fit += [(f, label) for f in files[held:]]
    return fit, validation


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


def scan_image_folder(name: str) -> ImageFolder:
    """Lists and checks the image folder of dataset `name` (``folder:<root>``).

    Raises:
      DataError: the folder or its ``train`` is missing or unreadable, ``train`` has fewer
        than two class sub-folders or a class without images, ``test`` has a class that
        ``train`` lacks, or a file is not a whole image. The message names the path.
    """
    if not name.startswith(FOLDER_PREFIX):
        raise DataError(f"dataset {name!r} is not an image folder ({FOLDER_PREFIX}<root>)")
    root = name[len(FOLDER_PREFIX) :]
    train_dir = os.path.join(root, "train")
    classes = _class_folders(train_dir)
    fit, validation = _train_items(train_dir, classes)
    test = _test_items(root, train_dir, classes)
    splits = {}
    for split, items in (("train", fit), ("validation", validation), ("test", test)):
        order = hash_order([f for f, _ in items])
        labels = dict(items)
        splits[split] = (order, [labels[f] for f in order])
    folder = ImageFolder(root=root, classes=tuple(classes), splits=splits)
    check_images(folder.files())
    return folder
