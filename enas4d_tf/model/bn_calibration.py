"""Batch-norm recalibration of one architecture of the supernet (DESIGN.md §2)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from enas4d_tf.model.supernet import Supernet
from enas4d_tf.space.search_space import Arch

DEFAULT_CALIBRATION_IMAGES = 2000


def _calibration_step(net: Supernet):
    # One traced function per network: the architecture is a tensor argument.
    fn = getattr(net, "_enas4d_calibration_step", None)
    if fn is None:

        @tf.function(reduce_retracing=True)
        def fn(images, sizes):
            net(images, arch=sizes, training=False, calibrate=True)

        net._enas4d_calibration_step = fn
    return fn


def recalibrate_bn(
    net: Supernet,
    arch: Arch,
    images,
    num_images: int = DEFAULT_CALIBRATION_IMAGES,
    batch_size: int = 500,
) -> int:
    """Sets the BN statistics of `arch`'s active channels to their population values.

    Runs `arch` over `num_images` training images with batch statistics, accumulates the
    exact per-channel mean and variance of every BN input, and writes them into the moving
    statistics of the active channels (other channels are left as they are).

    Args:
      net: the supernet.
      arch: the architecture to calibrate.
      images: a `(N, H, W, C)` float array or tensor, or a `tf.data.Dataset` yielding image
        batches or `(images, labels)` batches.
      num_images: how many images to use (fewer if fewer are given).
      batch_size: images per forward pass when `images` is an array.

    Returns:
      The number of images used.
    """
    sizes = net.arch_tensors(arch)
    step = _calibration_step(net)
    bns = net.batch_norms()
    for bn in bns:
        bn.start_calibration()
    used = 0
    for batch in _batches(images, batch_size):
        if used >= num_images:
            break
        batch = batch[: num_images - used]
        step(tf.convert_to_tensor(batch, tf.float32), sizes)
        used += int(batch.shape[0])
    if used == 0:
        raise ValueError("BN recalibration got no images")
    for bn in bns:
        bn.finish_calibration()
    return used


def _batches(images, batch_size):
    if isinstance(images, tf.data.Dataset):
        for item in images:
            yield item[0] if isinstance(item, (tuple, list)) else item
        return
    images = np.asarray(images) if not tf.is_tensor(images) else images
    for start in range(0, int(images.shape[0]), batch_size):
        yield images[start : start + batch_size]
