"""Tests of enas4d_tf.data: Fashion-MNIST from IDX files, tfds by name, image folders."""

from __future__ import annotations

import collections
import gzip
import hashlib
import os
import struct

import numpy as np
import pytest
import tensorflow as tf

from enas4d_tf import data

FASHION_DIR = data.FASHION_MNIST_DIR
needs_fashion = pytest.mark.skipif(
    not os.path.exists(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz")),
    reason="Debian package dataset-fashion-mnist is not installed",
)


def _hashes(images: np.ndarray) -> list[bytes]:
    return [hashlib.sha256(image.tobytes()).digest() for image in images]


def _denormalize(images: np.ndarray, info: data.DatasetInfo) -> np.ndarray:
    return np.rint((images * np.asarray(info.std) + np.asarray(info.mean)) * 255.0)


# ------------------------------------------------------------------------------------------
# Fashion-MNIST


@needs_fashion
def test_fashion_mnist_info_and_split_sizes():
    info = data.dataset_info("fashion_mnist")
    assert (info.num_classes, info.image_channels, info.image_size) == (10, 1, 28)
    # 60,000 training images less 500 per class held out; the 10,000 t10k images.
    assert (info.num_train, info.num_validation, info.num_test) == (55_000, 5_000, 10_000)
    for split, count in (("train", 55_000), ("validation", 5_000), ("test", 10_000)):
        images, labels = data.load_arrays("fashion_mnist", split)
        assert images.shape == (count, 28, 28, 1) and images.dtype == np.float32
        assert labels.shape == (count,) and labels.dtype == np.int32
        # Fashion-MNIST is balanced and the holdout is stratified: equal counts per class.
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [count // 10] * 10)


@needs_fashion
def test_fashion_mnist_validation_is_a_fixed_disjoint_holdout():
    splits = data.load_fashion_mnist()
    train_images, _ = splits["train"]
    val_images, val_labels = splits["validation"]
    raw_images = data.read_idx(
        os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz"), (60_000, 28, 28)
    )
    raw_labels = data.read_idx(os.path.join(FASHION_DIR, "train-labels-idx1-ubyte.gz"), (60_000,))
    # Train and validation partition the 60,000 images (as multisets: the data set has a few
    # exact duplicates, so hashes alone cannot show disjointness).
    together = collections.Counter(_hashes(train_images[..., 0]) + _hashes(val_images[..., 0]))
    assert together == collections.Counter(_hashes(raw_images))
    # The documented rule, recomputed here: per class, the 500 indices with the smallest
    # SHA-256 of the salted index.
    expected = []
    for label in range(10):
        members = np.flatnonzero(raw_labels == label)
        key = lambda i: hashlib.sha256(b"enas4d_tf/fashion_mnist/validation:%d" % i).digest()
        expected += sorted(members.tolist(), key=key)[:500]
    expected = np.sort(expected)
    np.testing.assert_array_equal(val_images[..., 0], raw_images[expected])
    np.testing.assert_array_equal(val_labels, raw_labels[expected])
    keep = np.ones(60_000, bool)
    keep[expected] = False
    np.testing.assert_array_equal(train_images[..., 0], raw_images[keep])
    # Stable across calls (and served from the cache).
    again_images, again_labels = data.load_arrays("fashion_mnist", "validation")
    first_images, first_labels = data.load_arrays("fashion_mnist", "validation")
    np.testing.assert_array_equal(again_images, first_images)
    np.testing.assert_array_equal(again_labels, first_labels)
    assert data.load_fashion_mnist() is splits


@needs_fashion
def test_fashion_mnist_normalisation_constants_match_a_recomputation():
    images, _ = data.load_fashion_mnist()["train"]
    pixels = images.astype(np.float64) / 255.0
    np.testing.assert_allclose(data.FASHION_MNIST_MEAN, [pixels.mean()], atol=1e-7)
    np.testing.assert_allclose(data.FASHION_MNIST_STD, [pixels.std()], atol=1e-7)
    normalized, _ = data.load_arrays("fashion_mnist", "train")
    assert abs(float(normalized.mean())) < 1e-4
    assert abs(float(normalized.std()) - 1.0) < 1e-4


@needs_fashion
def test_eval_pipeline_matches_load_arrays_in_order():
    images, labels = data.load_arrays("fashion_mnist", "test", max_examples=700)
    ds = data.make_dataset("fashion_mnist", "test", batch_size=256, max_examples=700)
    batches = list(ds)
    assert [int(x.shape[0]) for x, _ in batches] == [256, 256, 188]  # eval keeps the remainder
    np.testing.assert_allclose(np.concatenate([x for x, _ in batches]), images, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), labels)


def _shifted_and_flipped(images: np.ndarray, pad: int) -> np.ndarray:
    """All translations by up to `pad` pixels (zero fill) of `images`, with and without a
    horizontal flip: (N, (2 pad + 1)^2 * 2, H, W)."""
    n, h, w = images.shape
    padded = np.pad(images, [(0, 0), (pad, pad), (pad, pad)])
    out = []
    for flip in (False, True):
        source = padded[:, :, ::-1] if flip else padded
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                out.append(source[:, dy : dy + h, dx : dx + w])
    return np.stack(out, axis=1)


@needs_fashion
def test_training_pipeline_shuffles_and_augments():
    info = data.dataset_info("fashion_mnist")
    raw, raw_labels = data.load_fashion_mnist()["train"]
    raw, raw_labels = raw[:64, ..., 0].astype(np.float64), raw_labels[:64]
    ds = data.make_dataset("fashion_mnist", "train", batch_size=64, training=True, max_examples=64)
    assert ds.element_spec[0].shape == (64, 28, 28, 1)  # fixed: drop_remainder
    images, labels = next(iter(ds))
    pixels = _denormalize(images.numpy()[..., 0], info)
    candidates = _shifted_and_flipped(raw, pad=2)  # (64, 50, 28, 28)
    # matches[i, j, t]: training image i is transform t of raw image j.
    matches = np.all(pixels[:, None, None] == candidates[None], axis=(3, 4))
    source_index = np.argmax(matches.any(axis=2), axis=1)
    assert matches.any(axis=(1, 2)).all(), "a training image is not a shifted/flipped original"
    np.testing.assert_array_equal(labels.numpy(), raw_labels[source_index])
    assert sorted(source_index.tolist()) == list(range(64))  # each original exactly once
    assert source_index.tolist() != list(range(64))  # shuffled
    # Transform 12 of 50 is the identity (no flip, centre crop): rare under augmentation
    # (chance 1/50 for an image whose content touches every border).
    identity = matches[np.arange(64), source_index, 12]
    assert identity.mean() < 0.3
    # The same seed gives the same stream, another seed another one.
    again, _ = next(
        iter(
            data.make_dataset(
                "fashion_mnist",
                "train",
                None,
                batch_size=64,
                training=True,
                seed=0,
                max_examples=64,
            )
        )
    )
    other, _ = next(
        iter(
            data.make_dataset(
                "fashion_mnist",
                "train",
                None,
                batch_size=64,
                training=True,
                seed=1,
                max_examples=64,
            )
        )
    )
    np.testing.assert_array_equal(again.numpy(), images.numpy())
    assert not np.array_equal(other.numpy(), images.numpy())
    # The options as one PipelineOptions value give the same stream.
    options = data.PipelineOptions(batch_size=64, training=True, seed=0, max_examples=64)
    grouped, _ = next(iter(data.build_dataset("fashion_mnist", "train", None, options)))
    np.testing.assert_array_equal(grouped.numpy(), images.numpy())


def test_make_dataset_options_are_keywords():
    # batch_size and the other PipelineOptions fields are keyword-only; unknown ones refused.
    with pytest.raises(TypeError):
        data.make_dataset("fashion_mnist", "train", None, 64)
    with pytest.raises(TypeError, match="batch_sise"):
        data.make_dataset("fashion_mnist", "train", batch_sise=64)
    with pytest.raises(data.DataError, match="batch size must be positive, got 0"):
        data.make_dataset("fashion_mnist", "train", batch_size=0)


@needs_fashion
def test_training_pipeline_batches_and_repeat():
    ds = data.make_dataset("fashion_mnist", "train", batch_size=32, training=True, max_examples=100)
    assert [int(x.shape[0]) for x, _ in ds] == [32, 32, 32]  # 100 // 32, remainder dropped
    forever = data.make_dataset(
        "fashion_mnist", "train", batch_size=32, training=True, max_examples=40, repeat=True
    )
    assert len(list(forever.take(5))) == 5  # 160 images out of 40: it repeats
    with pytest.raises(data.DataError, match="fewer than one training batch"):
        data.make_dataset("fashion_mnist", "train", batch_size=64, training=True, max_examples=40)


@needs_fashion
def test_sharding_with_an_input_context_gives_disjoint_halves():
    full, full_labels = data.load_arrays("fashion_mnist", "validation", max_examples=301)
    halves = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2
        )
        ds = data.make_dataset(
            "fashion_mnist", "validation", batch_size=64, input_context=context, max_examples=301
        )
        batches = list(ds)
        assert int(batches[0][0].shape[0]) == 32  # the per-replica batch of 64 over 2
        halves.append(np.concatenate([x for x, _ in batches]))
        train = data.make_dataset(
            "fashion_mnist",
            "train",
            None,
            batch_size=64,
            training=True,
            seed=0,
            input_context=context,
            max_examples=301,
        )
        assert train.element_spec[0].shape == (32, 28, 28, 1)
    assert [len(h) for h in halves] == [150, 151]
    np.testing.assert_allclose(np.concatenate(halves), full, atol=1e-6)
    assert not set(_hashes(halves[0])) & set(_hashes(halves[1]))
    assert len(full_labels) == 301


# ------------------------------------------------------------------------------------------
# Fashion-MNIST files that are missing or corrupt.


def _idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(f">I{len(dims)}I", magic, *dims) + payload


@pytest.fixture
def fashion_copy(tmp_path):
    """A folder with links to the real IDX files, which a test may then replace."""
    if not os.path.isdir(FASHION_DIR):
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    for name in os.listdir(FASHION_DIR):
        os.symlink(os.path.join(FASHION_DIR, name), tmp_path / name)
    return tmp_path


def test_truncated_idx_file_raises_data_error_naming_it(fashion_copy):
    path = fashion_copy / "train-labels-idx1-ubyte.gz"
    good = open(os.path.join(FASHION_DIR, path.name), "rb").read()
    path.unlink()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(data.DataError, match="train-labels-idx1-ubyte.gz is corrupt") as error:
        data.dataset_info("fashion_mnist", str(fashion_copy))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "content, problem",
    [
        (_idx_bytes(0x00000803, (60_000,), bytes(60_000)), "magic number 0x00000803"),
        (_idx_bytes(0x00000801, (50_000,), bytes(50_000)), "dimensions"),
        (_idx_bytes(0x00000801, (60_000,), bytes(59_999)), "truncated"),
        (_idx_bytes(0x00000801, (60_000,), bytes(59_999) + b"\x0a"), "label 10 out of range"),
    ],
)
def test_corrupt_idx_contents_raise_data_error(fashion_copy, content, problem):
    path = fashion_copy / "train-labels-idx1-ubyte.gz"
    path.unlink()
    path.write_bytes(gzip.compress(content))
    with pytest.raises(data.DataError, match=problem) as error:
        data.load_arrays("fashion_mnist", "train", str(fashion_copy))
    assert str(path) in str(error.value)


def test_missing_fashion_mnist_file_or_directory(fashion_copy, tmp_path):
    (fashion_copy / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz not found"):
        data.dataset_info("fashion_mnist", str(fashion_copy))
    missing = str(tmp_path / "nowhere")
    with pytest.raises(data.DataError, match=f"{missing} does not exist"):
        data.make_dataset("fashion_mnist", "train", missing)


def test_unknown_names_and_splits_raise_data_error(tmp_path):
    with pytest.raises(data.DataError, match="unknown dataset 'no_such_dataset_xyz'") as error:
        data.dataset_info("no_such_dataset_xyz", str(tmp_path))
    assert "\n" not in str(error.value)
    with pytest.raises(data.DataError, match="did you mean fashion_mnist"):
        data.dataset_info("fashion_mnst", str(tmp_path))
    with pytest.raises(data.DataError, match="unknown split 'dev'"):
        data.make_dataset("fashion_mnist", "dev")
    with pytest.raises(data.DataError, match="does not exist"):
        data.dataset_info("mnist", str(tmp_path / "absent"))


def test_unprepared_tfds_datasets_are_not_downloaded(tmp_path):
    # A dataset that tfds would download: refused, naming where it was looked for.
    with pytest.raises(data.DataError, match="not prepared under .*mnist.*does not download"):
        data.dataset_info("mnist", str(tmp_path))
    # ImageNet: the manual directory is named.
    manual = os.path.join(str(tmp_path), "downloads", "manual")
    with pytest.raises(data.DataError, match=f"manual directory {manual} holds no files"):
        data.dataset_info("imagenet2012", str(tmp_path))
    assert not os.listdir(tmp_path)  # nothing written, nothing downloaded


# ------------------------------------------------------------------------------------------
# Image folders.

FOLDER_COLOURS = {"cat": (200, 10, 10), "dog": (10, 200, 10), "emu": (10, 10, 200)}


def _write_png(path, image: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(image))


@pytest.fixture
def image_folder(tmp_path):
    """12x12 RGB PNGs of one colour per class (plus an index in pixel (0, 0))."""
    root = tmp_path / "images"
    counts = {"cat": 10, "dog": 7, "emu": 5}
    for split, scale in (("train", 1), ("test", None)):
        for name, colour in FOLDER_COLOURS.items():
            if split == "test" and name == "emu":
                continue  # a test split may lack a class
            for i in range(counts[name] if scale else 2):
                image = np.tile(np.array(colour, np.uint8), (12, 12, 1))
                image[0, 0] = i
                _write_png(root / split / name / f"{i}.png", image)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_loads_with_sorted_classes(image_folder):
    name = f"folder:{image_folder}"
    info = data.dataset_info(name)
    assert info.class_names == ("cat", "dog", "emu")
    assert (info.num_classes, info.image_channels, info.image_size) == (3, 3, 12)
    # Validation: 10% of each class, at least one (10 -> 1, 7 -> 1, 5 -> 1 after rounding).
    assert (info.num_train, info.num_validation, info.num_test) == (19, 3, 4)
    for split in ("train", "validation", "test"):
        images, labels = data.load_arrays(name, split)
        assert images.shape == (info.num_examples(split), 12, 12, 3)
        pixels = _denormalize(images, info)
        for image, label in zip(pixels, labels, strict=True):
            np.testing.assert_array_equal(image[5, 5], FOLDER_COLOURS[info.class_names[label]])
    _, validation_labels = data.load_arrays(name, "validation")
    assert sorted(validation_labels.tolist()) == [0, 1, 2]
    # Mean/std estimated on the training images: 9 cats, 6 dogs, 4 emus; pixel (0, 0) holds
    # the image index rather than the colour (1 pixel of 144).
    train, _ = data.load_arrays(name, "train")
    pixels = _denormalize(train, info) / 255.0
    np.testing.assert_allclose(info.mean, pixels.mean(axis=(0, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(info.std, pixels.std(axis=(0, 1, 2)), atol=1e-5)
    ds = data.make_dataset(name, "train", batch_size=8, training=True)
    assert ds.element_spec[0].shape == (8, 12, 12, 3)
    assert len(list(ds)) == 2  # 19 images, batches of 8, remainder dropped


def test_grayscale_image_folder_and_missing_folder(tmp_path):
    for label in ("a", "b"):
        for i in range(3):
            _write_png(
                tmp_path / "g" / "train" / label / f"{i}.png", np.full((6, 6, 1), i, np.uint8)
            )
    info = data.dataset_info(f"folder:{tmp_path / 'g'}")
    assert (info.image_channels, info.image_size, info.num_test) == (1, 6, 0)
    with pytest.raises(data.DataError, match="no 'test' examples"):
        data.make_dataset(f"folder:{tmp_path / 'g'}", "test")
    with pytest.raises(data.DataError, match=f"image folder {tmp_path}/none/train does not exist"):
        data.dataset_info(f"folder:{tmp_path}/none")


def test_large_images_get_imagenet_style_crops(tmp_path):
    # 40x60 photos, red in the outer 10 columns on each side, green in between: not square,
    # so they are yielded at LARGE_IMAGE_SIZE like ImageNet.
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :10, 0] = image[:, 50:, 0] = 255
    image[:, 10:50, 1] = 255
    for label in ("a", "b"):
        for i in range(3):
            _write_png(tmp_path / "train" / label / f"{i}.png", image)
    name = f"folder:{tmp_path}"
    info = data.dataset_info(name)
    assert (info.image_size, info.image_channels) == (data.LARGE_IMAGE_SIZE, 3)
    # Eval: shorter side to 224 / 0.875 = 256 (so 256x384), centre 224 columns = original
    # columns 12.5..47.5 of 60: all green.
    images, _ = data.load_arrays(name, "train")
    pixels = _denormalize(images, info)
    assert images.shape == (4, 224, 224, 3)
    np.testing.assert_allclose(pixels[..., 1], 255, atol=1)
    np.testing.assert_allclose(pixels[..., 0], 0, atol=1)
    # Training: random-resized crops of 8-100% of the area, resized to 224; some reach red.
    ds = data.make_dataset(name, "train", batch_size=4, training=True, repeat=True)
    crops = np.concatenate([_denormalize(x.numpy(), info) for x, _ in ds.take(4)])
    assert crops.shape == (16, 224, 224, 3)
    assert (crops[..., 0] > 128).any(axis=(1, 2)).sum() >= 2
    # Crops that fall inside the green band are all the same uniform image; the others vary.
    assert len({c.tobytes() for c in crops}) >= 8


# ------------------------------------------------------------------------------------------
# A tfds dataset by name.


def test_tfds_dataset_by_name(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")

    def examples(count):
        # Pixel (0, 0) holds the example's index, the rest its label; 8x8 grayscale.
        images = np.zeros((count, 8, 8, 1), np.uint8)
        labels = np.arange(count) % 3
        images[:] = (labels * 60 + 20)[:, None, None, None]
        images[:, 0, 0, 0] = np.arange(count)
        return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})

    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(8, 8, 1)),
            "label": tfds.features.ClassLabel(names=["x", "y", "z"]),
        }
    )
    tfds.dataset_builders.store_as_tfds_dataset(
        name="enas4d_tiny",
        version="1.0.0",
        features=features,
        split_datasets={"train": examples(40), "test": examples(12)},
        data_dir=str(tmp_path),
        disable_shuffling=True,
    )
    info = data.dataset_info("enas4d_tiny", str(tmp_path))
    assert info.class_names == ("x", "y", "z")
    assert (info.num_classes, info.image_channels, info.image_size) == (3, 1, 8)
    # Validation is the last 10% of tfds's train split: 4 of 40.
    assert (info.num_train, info.num_validation, info.num_test) == (36, 4, 12)
    expected = {"train": range(36), "validation": range(36, 40), "test": range(12)}
    for split, indices in expected.items():
        images, labels = data.load_arrays("enas4d_tiny", split, str(tmp_path))
        pixels = _denormalize(images, info)
        assert pixels[:, 0, 0, 0].tolist() == list(indices)
        np.testing.assert_array_equal(labels, np.asarray(indices) % 3)
        np.testing.assert_array_equal(pixels[:, 4, 4, 0], labels * 60 + 20)
    ds = data.make_dataset("enas4d_tiny", "train", str(tmp_path), batch_size=8, training=True)
    batches = list(ds)
    assert len(batches) == 4 and batches[0][0].shape == (8, 8, 8, 1)
    assert batches[0][1].dtype == tf.int32
