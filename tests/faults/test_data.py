"""The fault matrix of datasets, met through tools.finetune: each case ends with one stderr
line naming the problem, the expected exit code, and the files it guards unchanged
(tests/faults/harness.py): the model, the image folder and an earlier --out.

Image folders are checked before TensorFlow is imported (`folder_files.scan_image_folder`),
so those cases take about a second. A class count other than the model's, an unknown or
community tfds name and an image that only fails to decode need TensorFlow (and the model);
they are marked slow (tests/test_finetune.py and tests/data/ cover them in the fast suite).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from tests.data.images import damage_middle, png_bytes, write_image_folder, write_png
from tests.faults.harness import check_fault
from tests.test_finetune import tiny_multi_exit_model


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny two-exit, ten-class .keras model and a ten-class 8x8 image folder."""
    root = tmp_path_factory.mktemp("data_faults")
    model = str(root / "subnet.keras")
    tiny_multi_exit_model(num_classes=10).save(model)
    write_image_folder(root / "images", {f"c{i}": 3 for i in range(10)})
    return {"model": model, "images": str(root / "images")}


@pytest.fixture
def work(base, tmp_path):
    """Per case: copies of the model and the image folder, and an earlier --out to guard."""
    model = str(tmp_path / "subnet.keras")
    shutil.copy(base["model"], model)
    images = tmp_path / "images"
    shutil.copytree(base["images"], images)
    done = str(tmp_path / "done.keras")
    shutil.copy(base["model"], done)
    return {"model": model, "images": images, "done": done, "tmp": tmp_path}


def _check(work, dataset, *needles, extra=()):
    args = [
        f"--model={work['model']}",
        f"--out={work['done']}",
        "--overwrite",  # the earlier --out must survive a refusal even so
        f"--dataset={dataset}",
        "--batch_size=4",
        *extra,
    ]
    guarded = [work["model"], work["done"], str(work["images"])]
    return check_fault("tools.finetune", args, *needles, guarded=guarded, code=1)


def _folder(work):
    return f"folder:{work['images']}"


def test_a_text_file_named_png(work):
    bad = work["images"] / "train" / "c4" / "1.png"
    bad.write_text("a text file with the wrong name")
    _check(work, _folder(work), f"image file {bad} is not an image")


def test_an_empty_png(work):
    bad = work["images"] / "train" / "c0" / "0.png"
    bad.write_bytes(b"")
    _check(work, _folder(work), f"{bad} is empty")


def test_a_truncated_png(work):
    bad = work["images"] / "train" / "c2" / "2.png"
    bad.write_bytes(png_bytes(np.zeros((8, 8), np.uint8))[:-20])
    _check(work, _folder(work), f"{bad} is a truncated PNG")


def test_a_single_class(work):
    for name in os.listdir(work["images"] / "train"):
        if name != "c0":
            shutil.rmtree(work["images"] / "train" / name)
    _check(work, _folder(work), "one class sub-folder (c0)", "at least two")


def test_a_class_without_images(work):
    (work["images"] / "train" / "c9" / "notes.txt").write_text("no images here")
    for name in os.listdir(work["images"] / "train" / "c9"):
        if name.endswith(".png"):
            os.remove(work["images"] / "train" / "c9" / name)
    _check(work, _folder(work), "c9 has no images")


def test_a_test_class_missing_from_train(work):
    write_png(work["images"] / "test" / "zebra" / "0.png", np.zeros((8, 8), np.uint8))
    _check(work, _folder(work), "test class folder", "zebra", "is not in")


def test_a_missing_folder(work):
    missing = os.path.join(str(work["tmp"]), "nowhere")
    _check(work, f"folder:{missing}", f"image folder {missing}/train does not exist")


@pytest.mark.slow
def test_twelve_classes_for_a_ten_class_model(work):
    write_image_folder(work["images"], {"c10": 3, "c11": 3}, seed=1)
    _check(work, _folder(work), "classifies 10 classes", "has 12")


@pytest.mark.slow
@pytest.mark.parametrize(
    "dataset, needle",
    [("no_such_dataset_xyz", "unknown dataset"), ("kaggle:cats", "community dataset")],
)
def test_unknown_and_community_datasets(work, dataset, needle):
    tfds_dir = os.path.join(str(work["tmp"]), "tfds")
    os.mkdir(tfds_dir)
    _check(work, dataset, needle, extra=[f"--data_dir={tfds_dir}"])
    assert os.listdir(tfds_dir) == []  # nothing downloaded or prepared


@pytest.mark.slow
def test_an_image_that_only_fails_to_decode(work):
    bad = work["images"] / "train" / "c3" / "1.png"
    damage_middle(bad)
    _check(work, _folder(work), f"image file {bad} cannot be decoded")
