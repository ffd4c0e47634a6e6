"""Measuring candidate architectures of a trained supernet (DESIGN.md §5).

A candidate is measured by recalibrating its batch-norm statistics on training images, running
every exit over the validation split once, and keeping each exit's confidence and correctness.
Thresholds for any MACs budget are then fitted from those arrays (`enas4d_tf.exit_policy`) without
running the network again.

One traced forward function per network (and image shape) serves every architecture: the
architecture goes in as `net.arch_tensors(arch)`, never as a Python object.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import tensorflow as tf

from enas4d_tf import exit_policy as dynamic
from enas4d_tf import thresholds
from enas4d_tf.model.bn_calibration import recalibrate_bn
from enas4d_tf.model.macs import stage_macs
from enas4d_tf.model.supernet import Supernet
from enas4d_tf.space.search_space import Arch

DEFAULT_BATCH_SIZE = 500


def _forward_fn(net: Supernet, image_shape: tuple):
    # Cached on the network, one per image shape: tracing costs seconds, a call milliseconds.
    cache = getattr(net, "_enas4d_exit_probabilities", None)
    if cache is None:
        cache = {}
        net._enas4d_exit_probabilities = cache
    if image_shape not in cache:
        example = net.arch_tensors(net.space.smallest())
        signature = [
            tf.TensorSpec([None, *image_shape], tf.float32),
            {k: tf.TensorSpec(v.shape, tf.int32) for k, v in example.items()},
        ]

        @tf.function(input_signature=signature)
        def forward(images, sizes):
            logits = net(images, arch=sizes, training=False)
            return tf.stack([tf.nn.softmax(tf.cast(z, tf.float32)) for z in logits])

        cache[image_shape] = forward
    return cache[image_shape]


def exit_probabilities(
    net: Supernet, arch: Arch, images, batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """Softmax probabilities of every exit of `arch` (BN statistics as they are in `net`).

    Args:
      net: the supernet.
      arch: the architecture.
      images: `(N, H, W, C)` float images, normalised as the data pipeline does, at the
        dataset's native size (the supernet resizes them to `arch.resolution`).
      batch_size: images per forward pass.

    Returns:
      `(S, N, num_classes)` float32 probabilities.

    Raises:
      ValueError: `arch` is not in the network's space, or `images` is not 4-D.
    """
    if tf.is_tensor(images):
        images_t = tf.cast(images, tf.float32)
    else:
        images_t = tf.convert_to_tensor(np.asarray(images, np.float32))
    if images_t.shape.rank != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {tuple(images_t.shape)}")
    forward = _forward_fn(net, tuple(int(d) for d in images_t.shape[1:]))
    sizes = net.arch_tensors(arch)
    n = int(images_t.shape[0])
    out = [forward(images_t[i : i + batch_size], sizes).numpy() for i in range(0, n, batch_size)]
    if not out:
        return np.zeros((net.space.num_stages, 0, net.num_classes), np.float32)
    return np.concatenate(out, axis=1)


@dataclasses.dataclass(eq=False)
class Measurement:
    """One measured candidate: what its exits do on the validation split.

    Attributes:
      arch: the architecture.
      stage_macs: `S` cumulative MACs.
      split: the validation confidences and correctness (`dynamic.ValidationSplit`).
      seconds: wall time of the measurement (0 for one loaded from a saved state).
    """

    arch: Arch
    stage_macs: list
    split: dynamic.ValidationSplit
    seconds: float = 0.0
    _fits: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def exit_accuracy(self) -> list:
        """Validation accuracy of each exit on its own."""
        return [float(v) for v in self.split.correct.mean(axis=1)]

    def static_result(self) -> dynamic.PolicyResult:
        """The single-exit network: every image runs to the last exit (cost `C_S`)."""
        return dynamic.evaluate_confidences(
            self.split.confidence,
            self.split.correct,
            self.stage_macs,
            dynamic.static_thresholds(len(self.stage_macs)),
        )

    def fit(self, budget: float, method: str = "greedy") -> dynamic.FitResult | None:
        """Thresholds for `budget` on the validation split; None when `C_1 > budget`."""
        key = (float(budget), method)
        if key not in self._fits:
            if self.stage_macs[0] > budget:
                self._fits[key] = None
            else:
                fitter = thresholds.FITTERS[method]
                self._fits[key] = fitter(self.split, self.stage_macs, float(budget))
        return self._fits[key]


class CandidateEvaluator:
    """Measures architectures of one supernet on fixed validation and calibration images.

    The validation and calibration images are converted to tensors once and kept in memory;
    the supernet resizes them to each candidate's resolution inside the traced forward
    function, so one trace serves every resolution.

    Args:
      net: the supernet (trained weights loaded).
      val_images: `(N, H, W, C)` validation images (never the test split).
      val_labels: `(N,)` int labels.
      calib_images: training images for BN recalibration.
      num_calib_images: how many of `calib_images` to use per candidate.
      batch_size: images per forward pass.
    """

    def __init__(
        self,
        net: Supernet,
        val_images,
        val_labels,
        calib_images,
        num_calib_images: int = 2000,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ):
        self.net = net
        self.space = net.space
        self.val_images = tf.convert_to_tensor(np.asarray(val_images, np.float32))
        self.val_labels = np.asarray(val_labels, np.int64)
        if self.val_labels.shape != (int(self.val_images.shape[0]),):
            raise ValueError("validation images and labels differ in number")
        calib = np.asarray(calib_images, np.float32)[:num_calib_images]
        if calib.shape[0] == 0:
            raise ValueError("BN recalibration needs at least one training image")
        self.calib_images = tf.convert_to_tensor(calib)
        self.batch_size = int(batch_size)

    @property
    def num_val_images(self) -> int:
        return int(self.val_images.shape[0])

    @property
    def num_calib_images(self) -> int:
        return int(self.calib_images.shape[0])

    def measure(self, arch: Arch) -> Measurement:
        """Recalibrates BN for `arch`, runs its exits on the validation images.

        Raises:
          ValueError: `arch` is not in the network's space.
        """
        self.space.validate(arch)
        start = time.perf_counter()
        recalibrate_bn(
            self.net,
            arch,
            self.calib_images,
            num_images=self.num_calib_images,
            batch_size=self.batch_size,
        )
        probs = exit_probabilities(self.net, arch, self.val_images, self.batch_size)
        split = dynamic.ValidationSplit(probs, self.val_labels)
        macs = stage_macs(self.space, arch, num_classes=self.net.num_classes)
        return Measurement(arch, macs, split, time.perf_counter() - start)
