"""Running the exits of a trained supernet's architectures, for the search and for training.

One `ExitRunner` per network owns its traced forward functions: the architecture goes in as
`net.arch_tensors(arch)`, never as a Python object, so one trace serves every architecture
(and, for the probabilities, every resolution: the supernet resizes inside the trace). Both
users do the same work through it, BN recalibration on training images and then every exit
over held-out images:

* the search measures candidates with `CandidateEvaluator` (each exit's softmax confidence and
  correctness on the validation split, a `Measurement` of `enas4d_tf.search.measurement`,
  from which thresholds for any MACs budget are fitted without running the network again);
* training's epoch-end evaluation (`enas4d_tf.train.evaluate`) takes each exit's accuracy and
  mean cross-entropy (`ExitRunner.accuracy_and_loss`).
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from enas4d_tf.exit_policy import ValidationSplit
from enas4d_tf.model.bn_calibration import DEFAULT_CALIBRATION_IMAGES, BNCalibrator
from enas4d_tf.model.macs import stage_macs
from enas4d_tf.model.supernet import Supernet
from enas4d_tf.search.measurement import Measurement
from enas4d_tf.space import Arch

__all__ = ["CandidateEvaluator", "ExitRunner", "Measurement", "exit_probabilities"]

DEFAULT_BATCH_SIZE = 500


class ExitRunner:
    """Recalibrates and runs architectures of one supernet, owning its traced functions (the
    BN calibration step and the forward passes).

    Tracing costs seconds and a call milliseconds, so hold one runner for as long as the
    network is used.

    Args:
      net: the supernet (built; its weights may change between calls).

    Example:
      >>> runner = ExitRunner(net)
      >>> runner.recalibrate(arch, train_images, num_images=2000)
      >>> probs = runner.probabilities(arch, val_images)      # (S, N, num_classes)
    """

    def __init__(self, net: Supernet):
        self.net = net
        self._calibrator = BNCalibrator(net)
        self._probability_fns: dict = {}  # one per image shape
        # Traced per batch shape (no signature): training's evaluation has always run so.
        self._logits_fn = tf.function(lambda x, sizes: net(x, arch=sizes, training=False))

    def recalibrate(
        self,
        arch: Arch,
        images,
        num_images: int = DEFAULT_CALIBRATION_IMAGES,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> int:
        """Sets the BN statistics of `arch` from `num_images` of `images` (see
        `enas4d_tf.model.bn_calibration.recalibrate_bn`); returns the images used."""
        return self._calibrator(arch, images, num_images=num_images, batch_size=batch_size)

    def _probability_fn(self, image_shape: tuple):
        if image_shape not in self._probability_fns:
            net = self.net
            example = net.arch_tensors(net.space.smallest())
            signature = [
                tf.TensorSpec([None, *image_shape], tf.float32),
                {k: tf.TensorSpec(v.shape, tf.int32) for k, v in example.items()},
            ]

            @tf.function(input_signature=signature)
            def forward(images, sizes):
                logits = net(images, arch=sizes, training=False)
                return tf.stack([tf.nn.softmax(tf.cast(z, tf.float32)) for z in logits])

            self._probability_fns[image_shape] = forward
        return self._probability_fns[image_shape]

    def probabilities(self, arch: Arch, images, batch_size: int = DEFAULT_BATCH_SIZE):
        """Softmax probabilities of every exit of `arch` (BN statistics as they are in the net).

        Args:
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
        forward = self._probability_fn(tuple(int(d) for d in images_t.shape[1:]))
        sizes = self.net.arch_tensors(arch)
        n = int(images_t.shape[0])
        out = [
            forward(images_t[i : i + batch_size], sizes).numpy() for i in range(0, n, batch_size)
        ]
        if not out:
            return np.zeros((self.net.space.num_stages, 0, self.net.num_classes), np.float32)
        return np.concatenate(out, axis=1)

    def accuracy_and_loss(
        self, arch: Arch, images: np.ndarray, labels: np.ndarray, batch_size: int
    ) -> dict[str, list[float]]:
        """Accuracy and mean cross-entropy of every exit of `arch` on `images`.

        Returns:
          `{"accuracy": [S floats], "loss": [S floats]}` (index `s` is exit `s + 1`).
        """
        sizes = self.net.arch_tensors(arch)
        S = self.net.space.num_stages
        correct = np.zeros(S)
        loss = np.zeros(S)
        for start in range(0, len(labels), batch_size):
            x = tf.constant(images[start : start + batch_size])
            y = labels[start : start + batch_size]
            for s, z in enumerate(self._logits_fn(x, sizes)):
                z = z.numpy()
                correct[s] += np.sum(np.argmax(z, -1) == y)
                loss[s] += float(
                    tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.constant(y), z))
                )
        n = len(labels)
        return {"accuracy": (correct / n).tolist(), "loss": (loss / n).tolist()}


def exit_probabilities(
    net: Supernet, arch: Arch, images, batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """`ExitRunner(net).probabilities(arch, images, batch_size)`, for a single call.

    Traces the forward function on every call: to run several architectures or image sets,
    hold an `ExitRunner`.
    """
    return ExitRunner(net).probabilities(arch, images, batch_size)


class CandidateEvaluator:
    """Measures architectures of one supernet on fixed validation and calibration images.

    The validation and calibration images are converted to tensors once and kept in memory;
    the supernet resizes them to each candidate's resolution inside the traced forward
    function, so one trace serves every resolution.

    Args:
      net: the supernet (trained weights loaded).
      val_images: `(N, H, W, C)` validation images (never the test split).
      val_labels: `(N,)` int labels.
      calibration_images: training images for BN recalibration.
      num_calibration_images: how many of `calibration_images` to use per candidate.
      batch_size: images per forward pass.
    """

    def __init__(
        self,
        net: Supernet,
        val_images,
        val_labels,
        calibration_images,
        num_calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ):
        self.net = net
        self.space = net.space
        self.runner = ExitRunner(net)
        self.val_images = tf.convert_to_tensor(np.asarray(val_images, np.float32))
        self.val_labels = np.asarray(val_labels, np.int64)
        if self.val_labels.shape != (int(self.val_images.shape[0]),):
            raise ValueError("validation images and labels differ in number")
        calibration = np.asarray(calibration_images, np.float32)[:num_calibration_images]
        if calibration.shape[0] == 0:
            raise ValueError("BN recalibration needs at least one training image")
        self.calibration_images = tf.convert_to_tensor(calibration)
        self.batch_size = int(batch_size)

    @property
    def num_val_images(self) -> int:
        return int(self.val_images.shape[0])

    @property
    def num_calibration_images(self) -> int:
        return int(self.calibration_images.shape[0])

    def measure(self, arch: Arch) -> Measurement:
        """Recalibrates BN for `arch`, runs its exits on the validation images.

        The BN statistics stay those of `arch` afterwards, so `self.runner` can run it on
        other images as measured.

        Raises:
          ValueError: `arch` is not in the network's space.
        """
        self.space.validate(arch)
        start = time.perf_counter()
        self.runner.recalibrate(
            arch, self.calibration_images, self.num_calibration_images, self.batch_size
        )
        probs = self.runner.probabilities(arch, self.val_images, self.batch_size)
        split = ValidationSplit(probs, self.val_labels)
        macs = stage_macs(self.space, arch, num_classes=self.net.num_classes)
        return Measurement(arch, macs, split, time.perf_counter() - start)
