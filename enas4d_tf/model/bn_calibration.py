"""Batch-norm recalibration of one architecture of the supernet.

After training, the BN statistics of a chosen architecture are recomputed on about 2,000
training images before it is evaluated or exported (BUILD_NOTES.md, "The model, and what it
costs to trace"). `BNCalibrator` owns the traced calibration step of one network; hold one for
as long as the network is calibrated. `recalibrate_bn(net, ...)` uses one calibrator per
network from a module-level cache that holds networks weakly, so nothing is attached to the
network and a network that is dropped is not kept alive.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

from enas4d_tf.model.supernet import Supernet
from enas4d_tf.space.arch import Arch

DEFAULT_CALIBRATION_IMAGES = 2000
DEFAULT_BATCH_SIZE = 500


class BNCalibrator:
    """Recalibrates architectures of one supernet through one traced step.

    The architecture goes into the step as `net.arch_tensors(arch)`, so one trace serves
    every architecture (a new image shape may trace again). The calibrator holds the network
    weakly: it works while someone else holds the network.

    Args:
      net: the supernet.

    Example:
      >>> calibrator = BNCalibrator(net)
      >>> for arch in archs:
      ...     calibrator(arch, train_images, num_images=2000)
    """

    def __init__(self, net: Supernet):
        self._net = weakref.ref(net)
        net_ref = self._net  # the traced step must not hold the network either

        @tf.function(reduce_retracing=True)
        def step(images, sizes):
            net_ref()(images, arch=sizes, training=False, calibrate=True)

        self._step = step

    @property
    def net(self) -> Supernet:
        """The network (raises `ReferenceError` once nothing else holds it)."""
        net = self._net()
        if net is None:
            raise ReferenceError("the network of this BNCalibrator no longer exists")
        return net

    def __call__(
        self,
        arch: Arch,
        images,
        num_images: int = DEFAULT_CALIBRATION_IMAGES,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> int:
        """Recalibrates `arch`; see `recalibrate_bn` for the arguments and result."""
        net = self.net
        sizes = net.arch_tensors(arch)
        bns = net.batch_norms()
        for bn in bns:
            bn.start_calibration()
        used = 0
        for batch in _batches(images, batch_size):
            if used >= num_images:
                break
            batch = batch[: num_images - used]
            self._step(tf.convert_to_tensor(batch, tf.float32), sizes)
            used += int(batch.shape[0])
        if used == 0:
            raise ValueError("BN recalibration got no images")
        for bn in bns:
            bn.finish_calibration()
        return used


# One calibrator (one trace) per network, for `recalibrate_bn`; entries go with their network.
_CALIBRATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def calibrator_for(net: Supernet) -> BNCalibrator:
    """The calibrator `recalibrate_bn` uses for `net` (made on first use, then reused)."""
    calibrator = _CALIBRATORS.get(net)
    if calibrator is None:
        calibrator = _CALIBRATORS[net] = BNCalibrator(net)
    return calibrator


def recalibrate_bn(
    net: Supernet,
    arch: Arch,
    images,
    num_images: int = DEFAULT_CALIBRATION_IMAGES,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> int:
    """Sets the BN statistics of `arch`'s active channels to their population values.

    Runs `arch` over `num_images` training images with batch statistics, accumulates the
    exact per-channel mean and variance of every BN input, and writes them into the moving
    statistics of the active channels (other channels are left as they are). The traced
    step is kept per network (`calibrator_for`), so repeated calls do not trace again.

    Args:
      net: the supernet.
      arch: the architecture to calibrate.
      images: a `(N, H, W, C)` float array or tensor, or a `tf.data.Dataset` yielding image
        batches or `(images, labels)` batches.
      num_images: how many images to use (fewer if fewer are given).
      batch_size: images per forward pass when `images` is an array.

    Returns:
      The number of images used.

    Raises:
      ValueError: no images were given.
    """
    return calibrator_for(net)(arch, images, num_images=num_images, batch_size=batch_size)


def _batches(images, batch_size):
    if isinstance(images, tf.data.Dataset):
        for item in images:
            yield item[0] if isinstance(item, (tuple, list)) else item
        return
    images = np.asarray(images) if not tf.is_tensor(images) else images
    for start in range(0, int(images.shape[0]), batch_size):
        yield images[start : start + batch_size]
