"""sources: tfds names resolved offline, and decode errors met mid-run explained in one line."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from enas4d_tf import data
from enas4d_tf.data.folder_files import scan_image_folder
from enas4d_tf.data.info import op_error_reason
from tests.data.images import damage_middle, write_image_folder

# A decode error as Keras `fit` raised it for a damaged PNG (recorded, TF 2.21).
GRAPH_ERROR = """Graph execution error:

Detected at node decode_image/DecodeImage defined at (most recent call last):
<stack traces unavailable>
Error in user-defined function passed to ParallelMapDatasetV2:16 transformation with \
iterator: Iterator::Root::Prefetch::ParallelMapV2::ParallelBatch::ParallelMapV2: Invalid PNG. \
Failed to initialize decoder.
\t [[{{node decode_image/DecodeImage}}]]
\t [[IteratorGetNext]] [Op:__inference_multi_step_on_iterator_2192]"""
# The same error raised eagerly.
EAGER_ERROR = (
    "{{function_node __wrapped__DecodeImage_device_/job:localhost/replica:0/task:0/device:CPU:0}}"
    " Invalid PNG. Failed to initialize decoder. [Op:DecodeImage] name: "
)


@pytest.mark.parametrize("message", [GRAPH_ERROR, EAGER_ERROR])
def test_op_error_reason_keeps_only_the_reason(message):
    error = tf.errors.InvalidArgumentError(None, None, message)
    assert op_error_reason(error) == "Invalid PNG. Failed to initialize decoder."


@pytest.fixture
def offline_tfds(monkeypatch):
    """Makes every way tfds reaches for the network fail the test: the community register
    (it fetches gs://tfds-data/community-datasets-list.jsonl) and any gs:// or http file."""
    from tensorflow.python.lib.io import file_io
    from tensorflow_datasets.core import community

    reached = []

    def no_register(*args, **kwargs):
        reached.append("community register")
        raise AssertionError("tfds consulted the community register (network)")

    monkeypatch.setattr(community, "community_register", no_register)
    real_init = file_io.FileIO.__init__

    def local_only(self, name, mode, *args, **kwargs):
        if "://" in str(name):
            reached.append(str(name))
            raise AssertionError(f"tfds opened {name}")
        real_init(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(file_io.FileIO, "__init__", local_only)
    return reached


@pytest.mark.parametrize(
    "name, needles",
    [
        ("no_such_dataset_xyz", ["unknown dataset 'no_such_dataset_xyz'", "fashion_mnist"]),
        ("fashion_mnst", ["did you mean fashion_mnist"]),
        ("kaggle:cats/v2", ["community dataset", "namespace 'kaggle'", "network"]),
        ("huggingface:mnist", ["community dataset", "namespace 'huggingface'"]),
    ],
)
def test_unknown_and_community_names_are_refused_offline(offline_tfds, tmp_path, name, needles):
    (tmp_path / "my_set").mkdir()  # a dataset folder there: named as prepared
    with pytest.raises(data.DataError) as info:
        data.dataset_info(name, str(tmp_path))
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    assert "\n" not in message
    assert offline_tfds == []  # (an error swallowed on the way would hide the attempt)
    if name == "no_such_dataset_xyz":
        assert f"data directory {tmp_path} (there: my_set" in message


def test_a_file_that_does_not_decode_is_named(tmp_path):
    write_image_folder(tmp_path, {"a": 6, "b": 6})
    # A training image of class b (which images are held out for validation depends on the
    # hash of their path, so on tmp_path): opening the folder decodes the training images.
    train_files = scan_image_folder(f"folder:{tmp_path}").splits["train"][0]
    damaged = next(f for f in train_files if f"{os.sep}b{os.sep}" in f)
    damage_middle(damaged)  # the cheap checks pass: signature and end are intact
    name = f"folder:{tmp_path}"
    expected = f"image file {damaged} cannot be decoded: Invalid PNG. Failed to initialize decoder."
    # Opening the folder decodes its first training images (for the mean and std).
    with pytest.raises(data.DataError) as info:
        data.dataset_info(name)
    assert str(info.value) == expected
    # The same error met while a pipeline runs, explained after the fact.
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        tf.io.decode_image(tf.io.read_file(damaged))
    assert str(data.describe_read_error(name, None, raised.value)) == expected
    # Not a folder: the reason alone, on one line.
    other = data.describe_read_error("fashion_mnist", None, raised.value)
    assert str(other) == "reading dataset 'fashion_mnist' failed: " + expected.split(": ")[1]


def test_folder_images_decode_as_written(tmp_path):
    files = write_image_folder(tmp_path, {"a": 3, "b": 3}, side=6, channels=3, seed=4)
    rng = np.random.default_rng(4)
    expected = {path: rng.integers(0, 256, (6, 6, 3), dtype=np.uint8) for path in files["a"]}
    source = data.sources.open_source(f"folder:{tmp_path}", None)
    for path, image in expected.items():
        np.testing.assert_array_equal(source.decode(tf.constant(path)).numpy(), image)
