"""Per-image eval resizing and training augmentation, and the batch normaliser.

Images are normalised as ``(pixel / 255 - mean) / std`` per channel, with the
``DatasetInfo.mean``/``std`` of the dataset.
"""

from __future__ import annotations

import math

import tensorflow as tf

from enas4d_tf.data.info import EVAL_CROP_FRACTION, SMALL_IMAGE_MAX, DatasetInfo


def eval_image(image, size: int, channels: int):
    """Resizes a decoded uint8 image to (size, size) as eval does; returns float32 0..255.

    Large images (side over SMALL_IMAGE_MAX): the shorter side to ``size / 0.875``, then the
    centre square; small ones are resized to `size` when they differ.
    """
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


def train_image(image, seed, size: int, channels: int, flip: bool):
    """Augments a decoded uint8 image; returns float32 0..255 of shape (size, size, C).

    Args:
      image: the decoded uint8 image (H, W, C).
      seed: a stateless seed (2 integers); split into the crop's and the flip's.
      size: the output side; above SMALL_IMAGE_MAX a random-resized crop, else a random
        translation by padding and cropping back.
      channels: the image channels.
      flip: also flip left-right at random.
    """
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


def normalizer(info: DatasetInfo):
    """A `(images, labels) -> (normalised images, labels)` map for batches of `info`'s data."""
    mean = tf.constant(info.mean, tf.float32)
    std = tf.constant(info.std, tf.float32)

    def normalize(images, labels):
        return (images / 255.0 - mean) / std, labels

    return normalize
