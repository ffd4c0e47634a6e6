"""The one traced training step: every architecture of a step, forward and backward.

Each step trains the architectures of the sandwich rule (`sampling.step_archs`): the largest
network learns from the labels, and its last exit's softened predictions teach every exit of
the smallest and the random ones (in-place distillation). The architectures are fed to ONE
traced step as stacked size tensors; inside it an unrolled loop runs a forward and backward
pass per architecture and sums the gradients, so the whole run traces once whatever the
architectures are.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from enas4d_tf.model.supernet import Supernet
from enas4d_tf.train.config import TrainConfig


def exit_losses(
    logits: Sequence[tf.Tensor],
    labels: tf.Tensor,
    teacher_probs: tf.Tensor,
    label_smoothing: float,
    num_classes: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-example losses of every exit.

    Args:
      logits: `S` tensors `(B, classes)`.
      labels: int labels `(B,)`.
      teacher_probs: `(B, classes)` soft targets (the largest network's last exit).
      label_smoothing: smoothing of the one-hot labels.
      num_classes: classes.

    Returns:
      `(ce, kd)`, each `(S, B)` float32: label-smoothed cross-entropy on the labels, and
      cross-entropy against `teacher_probs`.
    """
    one_hot = tf.one_hot(labels, num_classes, dtype=tf.float32)
    targets = one_hot * (1.0 - label_smoothing) + label_smoothing / num_classes
    ce, kd = [], []
    for z in logits:
        log_p = tf.nn.log_softmax(tf.cast(z, tf.float32), axis=-1)
        ce.append(-tf.reduce_sum(targets * log_p, axis=-1))
        kd.append(-tf.reduce_sum(teacher_probs * log_p, axis=-1))
    return tf.stack(ce), tf.stack(kd)


def _nonfinite(x: tf.Tensor) -> tf.Tensor:
    """1.0 where `x` is NaN or Inf, else 0.0 (a float, so replicas' flags sum)."""
    return tf.cast(tf.logical_not(tf.math.is_finite(x)), tf.float32)


def _num_correct(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    predictions = tf.argmax(logits, -1, output_type=tf.int32)
    return tf.reduce_sum(tf.cast(tf.equal(predictions, labels), tf.float32))


class TrainStep:
    """The one traced training step of a run.

    `step(batch, archs)`: `batch` is a distributed `(images, labels)` batch and `archs` the
    stacked size arrays of the step's architectures (`sampling.stack_arch_tensors`,
    largest first). Returns a dict of numpy arrays summed over replicas: `objective` (K,)
    global-batch mean training loss of each architecture, `loss` (K, S) summed per-exit
    label cross-entropy, `correct` (K, S) correct predictions, `count` () examples,
    `student_count` () of them the students (every architecture but the largest) saw, and the
    guard's flags (non-zero: NaN or Inf seen on some replica): `nonfinite_loss` (K, S) for
    each architecture's loss terms at each exit, `nonfinite_grad` () for the gradient's
    global norm (of all architectures together). The flags come back with the metrics the
    loop reads after every step anyway, so the guard adds no host round trip.
    `traces` counts how often the step was traced (1 for a whole run).

    `num_stages` and `exit_weights` serve a run of one architecture cut at exit `s`
    (train/alone.py): the forward pass computes stages `1..s` only (S above is then `s`) and
    the exits are weighted by `exit_weights` (`s` numbers) instead of the config's.
    """

    def __init__(
        self,
        strategy: tf.distribute.Strategy,
        net: Supernet,
        optimizer: keras.optimizers.Optimizer,
        config: TrainConfig,
        num_stages: int | None = None,
        exit_weights: np.ndarray | None = None,
    ):
        self.strategy = strategy
        self.net = net
        self.optimizer = optimizer
        self.num_classes = net.num_classes
        self.forward_stages = num_stages  # None: every stage, the supernet's forward pass
        self.num_stages = net.space.num_stages if num_stages is None else num_stages
        self.exit_weights = (
            config.normalized_exit_weights(self.num_stages)
            if exit_weights is None
            else np.asarray(exit_weights, np.float32)
        )
        self.student_exit_weights = (
            config.normalized_student_exit_weights(self.num_stages)
            if exit_weights is None
            else self.exit_weights
        )
        self.student_batch_fraction = float(config.student_batch_fraction)
        self.kd_ratio = float(config.kd_ratio)
        self.label_smoothing = float(config.label_smoothing)
        self.clip_norm = float(config.clip_norm)
        self.variables = list(net.trainable_variables)
        self.traces = 0
        self._fn = tf.function(self._distributed_step)

    def __call__(self, batch, archs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        archs = {k: tf.constant(v) for k, v in archs.items()}
        out = self._fn(batch, archs)
        return {k: v.numpy() for k, v in out.items()}

    def _distributed_step(self, batch, archs):
        self.traces += 1  # runs at trace time only
        images, labels = batch
        out = self.strategy.run(self._replica_step, args=(images, labels, archs))
        return {
            k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in out.items()
        }

    def _student_count(self, images) -> tf.Tensor:
        """How many of the replica's examples the students train on (at least 1)."""
        n = tf.cast(tf.shape(images)[0], tf.float32) * self.student_batch_fraction
        return tf.maximum(tf.cast(tf.math.ceil(n), tf.int32), 1)

    def _replica_step(self, images, labels, archs):
        K = int(archs["resolution"].shape[0])
        teacher_weights = tf.constant(self.exit_weights)[:, None]
        student_weights = tf.constant(self.student_exit_weights)[:, None]
        n_students = self._student_count(images)
        variables = self.variables
        grads = [tf.zeros_like(v) for v in variables]
        teacher = tf.zeros([tf.shape(images)[0], self.num_classes], tf.float32)
        objective, exit_loss, correct, nonfinite = [], [], [], []
        # A Python loop: the K forward and backward passes are unrolled into one graph, so the
        # executor can run the students' passes side by side once the teacher's is done.
        for i in range(K):
            arch = {k: v[i] for k, v in archs.items()}
            # The students (i > 0) may train on the first part of the batch only.
            x, y = (images, labels) if i == 0 else (images[:n_students], labels[:n_students])
            with tf.GradientTape() as tape:
                logits = self.net(x, arch=arch, training=True, num_stages=self.forward_stages)
                logits = [tf.cast(z, tf.float32) for z in logits]
                ce, kd = exit_losses(
                    logits, y, teacher[: tf.shape(x)[0]], self.label_smoothing, self.num_classes
                )
                # The largest network (i == 0) learns from the labels alone.
                exit_terms = ce if i == 0 else ce + self.kd_ratio * kd
                weights = teacher_weights if i == 0 else student_weights
                per_example = tf.reduce_sum(weights * exit_terms, 0)
                # Averaged over the global number of examples this network saw.
                loss = tf.nn.compute_average_loss(per_example)
            step_grads = tape.gradient(loss, variables)
            grads = [
                g if sg is None else g + tf.convert_to_tensor(sg)
                for g, sg in zip(grads, step_grads, strict=True)
            ]
            if i == 0:
                # The largest network runs first; its last exit teaches the others.
                teacher = tf.nn.softmax(tf.stop_gradient(logits[-1]))
            objective.append(loss)
            exit_loss.append(tf.reduce_sum(ce, axis=1))
            # The guard reads terms the loss computed anyway: one flag per exit, (S,).
            nonfinite.append(_nonfinite(tf.reduce_sum(exit_terms, axis=1)))
            correct.append(tf.stack([_num_correct(z, y) for z in logits]))
        if self.clip_norm > 0:
            # Clip the global gradient, not each replica's: sum over replicas first, then
            # hand the optimizer 1/N of it (it sums over replicas again).
            ctx = tf.distribute.get_replica_context()
            grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            grads, grad_norm = tf.clip_by_global_norm(grads, self.clip_norm)
            grads = [g / ctx.num_replicas_in_sync for g in grads]
        else:
            grad_norm = tf.linalg.global_norm(grads)  # of this replica's share
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return {
            "objective": tf.stack(objective),
            "loss": tf.stack(exit_loss),
            "correct": tf.stack(correct),
            "count": tf.cast(tf.shape(images)[0], tf.float32),
            "student_count": tf.cast(n_students, tf.float32),
            "nonfinite_loss": tf.stack(nonfinite),
            "nonfinite_grad": _nonfinite(grad_norm),
        }
