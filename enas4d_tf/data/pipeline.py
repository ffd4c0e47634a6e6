"""tf.data pipelines of normalised batches (`make_dataset`) and whole splits as arrays."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from enas4d_tf.data.info import DEFAULT_DATASET, check_split
from enas4d_tf.data.preprocessing import eval_image, normalizer, train_image
from enas4d_tf.data.sources import Source, open_source
from enas4d_tf.errors import DataError

_SHUFFLE_BUFFER = 10_000


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """How `make_dataset` batches one split; its keyword arguments after `data_dir`.

    Attributes:
      batch_size: the global batch size; with an input context, each pipeline batches
        ``input_context.get_per_replica_batch_size(batch_size)``.
      training: shuffle, augment and drop the remainder.
      seed: seeds the shuffle and the augmentation; the same seed gives the same stream.
      max_examples: use only the first `max_examples` examples of the split.
      repeat: repeat the data forever (reshuffled every epoch when training).
    """

    batch_size: int = 128
    training: bool = False
    seed: int = 0
    max_examples: int | None = None
    repeat: bool = False


def shard_range(count: int, input_context: tf.distribute.InputContext | None) -> tuple[int, int]:
    """The examples [start, stop) of `count` that the pipeline of `input_context` reads.

    Pipeline ``i`` of ``n`` reads the i-th contiguous n-th; all of them without a context.
    """
    if input_context is None:
        return 0, count
    n = input_context.num_input_pipelines
    i = input_context.input_pipeline_id
    return i * count // n, (i + 1) * count // n


def make_dataset(
    name: str = DEFAULT_DATASET,
    split: str = "train",
    data_dir: str | None = None,
    *,
    input_context: tf.distribute.InputContext | None = None,
    **options,
) -> tf.data.Dataset:
    """A tf.data pipeline of normalised ``(images, labels)`` batches.

    Training pipelines shuffle (seeded), augment (small images: random translation by
    padding and cropping back, horizontal flip; large images: random-resized crop to
    `image_size` and flip) and drop the last partial batch. Eval pipelines resize (large
    images: shorter side to image_size / 0.875, centre crop) and keep a fixed order and
    every example. Images are float32 ``(B, image_size, image_size, image_channels)``,
    labels int32 ``(B,)``.

    Example:
      >>> ds = make_dataset("fashion_mnist", "train", batch_size=256, training=True)

    Args:
      name: the dataset (see `dataset_info`).
      split: "train", "validation" or "test".
      data_dir: where the data is (see `dataset_info`).
      input_context: under ``strategy.distribute_datasets_from_function``, the context of
        this input pipeline: pipeline ``i`` of ``n`` reads the i-th contiguous n-th of the
        split (of its first `max_examples`), so the pipelines' examples are disjoint.
      **options: the fields of `PipelineOptions`, by keyword: batch_size (default 128),
        training (False), seed (0), max_examples (None: all), repeat (False).

    Returns:
      The tf.data.Dataset.

    Raises:
      DataError: the dataset cannot be read, the split is unknown or empty, or a training
        pipeline without `repeat` would yield no full batch.
      TypeError: a keyword that is not a field of `PipelineOptions`.
    """
    return build_dataset(name, split, data_dir, PipelineOptions(**options), input_context)


def build_dataset(
    name: str,
    split: str,
    data_dir: str | None,
    options: PipelineOptions,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """`make_dataset` with its options as one `PipelineOptions` value."""
    check_split(split)
    if options.batch_size < 1:
        raise DataError(f"batch size must be positive, got {options.batch_size}")
    if options.max_examples is not None and options.max_examples < 1:
        raise DataError(f"max_examples must be positive, got {options.max_examples}")
    source = open_source(name, data_dir)
    count = source.info.num_examples(split)
    if options.max_examples is not None:
        count = min(count, options.max_examples)
    if count == 0:
        raise DataError(f"dataset {name!r} has no {split!r} examples")
    start, stop = shard_range(count, input_context)
    batch_size, seed = options.batch_size, options.seed
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        seed = seed * 1_000_003 + input_context.input_pipeline_id
    shard = stop - start
    if shard == 0:
        raise DataError(f"{split!r} split of {name!r} has no examples for this input pipeline")
    if options.training and not options.repeat and shard < batch_size:
        raise DataError(
            f"{split!r} split of {name!r} has {shard} examples for this pipeline, fewer than "
            f"one training batch of {batch_size}"
        )
    ds = _images(source, split, (start, stop), options, seed)
    ds = ds.batch(batch_size, drop_remainder=options.training, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(normalizer(source.info), num_parallel_calls=tf.data.AUTOTUNE)
    return _finish(ds, input_context)


def _images(
    source: Source, split: str, span: tuple[int, int], options: PipelineOptions, seed: int
) -> tf.data.Dataset:
    # Unbatched (float32 image 0..255, label) of examples [span) of `split`: shuffled,
    # repeated and augmented as `options` say, with this pipeline's `seed`.
    start, stop = span
    size, channels = source.info.image_size, source.info.image_channels
    ds = source.read(split, start, stop, options.training, seed)
    if options.training:
        ds = ds.shuffle(
            min(stop - start, _SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True
        )
    if options.repeat:
        ds = ds.repeat()
    if not options.training:
        return ds.map(
            lambda raw, label: (eval_image(source.decode(raw), size, channels), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    noise = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(ds, noise)
    flip = source.flip
    return ds.map(
        lambda example, rnd: (
            train_image(source.decode(example[0]), rnd, size, channels, flip),
            example[1],
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _finish(ds: tf.data.Dataset, input_context) -> tf.data.Dataset:
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

    Example:
      >>> images, labels = load_arrays("fashion_mnist", "validation", max_examples=2000)

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
    check_split(split)
    if max_examples is not None and max_examples < 1:
        raise DataError(f"max_examples must be positive, got {max_examples}")
    if name == "fashion_mnist":
        # In memory already: normalise with numpy, without a pipeline.
        source = open_source(name, data_dir)
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
