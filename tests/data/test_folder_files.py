"""folder_files: an image folder's splits (disjoint, stratified, fixed) and its up-front checks.

None of these tests imports TensorFlow (`folder_files` must not, so tools can check a folder
before paying for it); the images are written by tests/data/images.py.
"""

from __future__ import annotations

import collections
import hashlib
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from enas4d_tf.data.folder_files import FOLDER_PREFIX, image_problem, scan_image_folder
from enas4d_tf.errors import DataError
from tests.data.images import damage_middle, png_bytes, write_image_folder, write_png
from tests.helpers import REPO


def _sha_order(paths):
    # The documented order, recomputed: by the SHA-256 of the path.
    return sorted(paths, key=lambda p: hashlib.sha256(p.encode()).digest())


def test_train_and_validation_are_disjoint_stratified_and_fixed(tmp_path):
    counts = {"ant": 20, "bee": 31, "cow": 2, "doe": 1, "elk": 15}
    files = write_image_folder(tmp_path, counts)
    folder = scan_image_folder(f"{FOLDER_PREFIX}{tmp_path}")
    assert folder.classes == ("ant", "bee", "cow", "doe", "elk")
    train_files, train_labels = folder.splits["train"]
    val_files, val_labels = folder.splits["validation"]
    assert not set(train_files) & set(val_files)
    # Every file is in exactly one split, under its own class's label.
    label_of = {path: folder.classes.index(c) for c, paths in files.items() for path in paths}
    together = [
        *zip(train_files, train_labels, strict=True),
        *zip(val_files, val_labels, strict=True),
    ]
    assert sorted(together) == sorted(label_of.items())
    # Stratified: 10% of each class rounded (20 -> 2, 31 -> 3, 15 -> 2 (1.5 rounds to even)),
    # at least one of a class with two or more (2 -> 1), none of a class with one.
    held = collections.Counter(folder.classes[label] for label in val_labels)
    assert held == {"ant": 2, "bee": 3, "cow": 1, "elk": 2}
    # Which ones: the first of each class in SHA-256 order of the path.
    for name, paths in files.items():
        chosen = {p for p in val_files if label_of[p] == folder.classes.index(name)}
        assert chosen == set(_sha_order(paths)[: held[name]])
    # Each split is in the hashed order (classes mixed), the same on every scan.
    assert train_files == _sha_order(train_files) and val_files == _sha_order(val_files)
    again = scan_image_folder(f"{FOLDER_PREFIX}{tmp_path}")
    assert again.splits == folder.splits
    assert folder.splits["test"] == ([], [])


def test_test_split_keeps_train_labels(tmp_path):
    write_image_folder(tmp_path, {"a": 3, "b": 3})
    write_png(tmp_path / "test" / "b" / "x.png", np.zeros((8, 8), np.uint8))
    folder = scan_image_folder(f"{FOLDER_PREFIX}{tmp_path}")
    assert folder.splits["test"] == ([str(tmp_path / "test" / "b" / "x.png")], [1])
    write_png(tmp_path / "test" / "zebra" / "x.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="test class folder .*zebra is not in"):
        scan_image_folder(f"{FOLDER_PREFIX}{tmp_path}")


def test_a_single_class_is_refused(tmp_path):
    write_image_folder(tmp_path, {"only": 5})
    with pytest.raises(DataError, match=r"one class sub-folder \(only\); .* at least two"):
        scan_image_folder(f"{FOLDER_PREFIX}{tmp_path}")


def test_folder_structure_errors(tmp_path):
    with pytest.raises(DataError, match=f"image folder {tmp_path}/train does not exist"):
        scan_image_folder(f"{FOLDER_PREFIX}{tmp_path}")
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="has no class sub-folders"):
        scan_image_folder(f"{FOLDER_PREFIX}{tmp_path}")
    write_image_folder(tmp_path, {"a": 2})
    (tmp_path / "train" / "b").mkdir()
    (tmp_path / "train" / "b" / "notes.txt").write_text("not counted as an image")
    with pytest.raises(DataError, match=f"class folder {tmp_path}/train/b has no images"):
        scan_image_folder(f"{FOLDER_PREFIX}{tmp_path}")


def test_a_non_image_named_png_is_refused_naming_it(tmp_path):
    write_image_folder(tmp_path, {"a": 4, "b": 4})
    bad = tmp_path / "train" / "b" / "2.png"
    bad.write_text("this is a text file")
    with pytest.raises(DataError) as info:
        scan_image_folder(f"{FOLDER_PREFIX}{tmp_path}")
    message = str(info.value)
    assert message.startswith(f"image file {bad} is not an image")
    assert "more files" not in message and "\n" not in message
    empty = tmp_path / "train" / "a" / "9.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="1 more files are not readable images"):
        scan_image_folder(f"{FOLDER_PREFIX}{tmp_path}")
    bad.unlink()
    with pytest.raises(DataError, match=f"image file {empty} is empty"):
        scan_image_folder(f"{FOLDER_PREFIX}{tmp_path}")


def _bmp(width: int, height: int) -> bytes:
    # A 24-bit BMP: 54-byte header, rows padded to 4 bytes.
    row = (width * 3 + 3) // 4 * 4
    size = 54 + row * height
    header = b"BM" + struct.pack("<IHHI", size, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, row * height, 0, 0, 0, 0)
    return header + info + bytes(row * height)


def test_image_problem_checks_signature_and_end(tmp_path):
    good_png = png_bytes(np.zeros((4, 4), np.uint8))
    jpeg = b"\xff\xd8\xff\xe0" + bytes(100) + b"\xff\xd9"
    cases = {
        "ok.png": (good_png, None),
        "cut.png": (good_png[:-5], "truncated PNG"),
        "ok.jpg": (jpeg, None),
        "padded.jpg": (jpeg + bytes(20), None),  # some writers pad after the end marker
        "cut.jpg": (jpeg[:60], "truncated JPEG"),
        "ok.bmp": (_bmp(3, 2), None),
        "cut.bmp": (_bmp(3, 2)[:70], "truncated BMP (70 of 78 bytes)"),
        "empty.png": (b"", "is empty"),
        "text.png": (b"hello world", "is not an image"),
        "gif.png": (b"GIF89a" + bytes(10) + b"\x3b", None),  # decode_image reads any format
    }
    for name, (content, problem) in cases.items():
        (tmp_path / name).write_bytes(content)
        found = image_problem(str(tmp_path / name))
        if problem is None:
            assert found is None, (name, found)
        else:
            assert found is not None and problem in found, (name, found)
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(good_png)
    damage_middle(damaged)
    assert image_problem(str(damaged)) is None  # left to find_undecodable (see test_sources)


def test_scanning_a_folder_imports_no_tensorflow(tmp_path):
    write_image_folder(tmp_path, {"a": 2, "b": 2})
    code = (
        "import sys\n"
        "from enas4d_tf.data.folder_files import scan_image_folder\n"
        f"folder = scan_image_folder('folder:{tmp_path}')\n"
        "assert len(folder.files()) == 4\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_file_is_listed_once(tmp_path):
    files = write_image_folder(tmp_path, {"a": 5, "b": 6})
    os.makedirs(tmp_path / "test" / "a")
    write_png(tmp_path / "test" / "a" / "t.png", np.zeros((8, 8), np.uint8))
    folder = scan_image_folder(f"{FOLDER_PREFIX}{tmp_path}")
    expected = [p for paths in files.values() for p in paths] + [str(tmp_path / "test/a/t.png")]
    assert sorted(folder.files()) == sorted(expected)
