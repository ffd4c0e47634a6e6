"""The early-exit baseline's one traced training step, and the checks that stop a diverging run.

Every exit's label-smoothed cross-entropy (`enas4d_tf.train.step.exit_losses`, the supernet's
loss without its distillation term) weighted by the exit weights; SGD through the run's
optimiser. The step returns what the host needs to stop a run that diverges: each exit's loss
and the gradient's global norm.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from enas4d_tf.baselines.backbone import BackboneSpec
from enas4d_tf.baselines.config import BaselineConfig
from enas4d_tf.train.step import exit_losses


def all_finite(variables) -> bool:
    """Whether every value of `variables` is finite."""
    return all(bool(np.all(np.isfinite(v.numpy()))) for v in variables)


class TrainStep:
    """The one traced training step: forward, every exit's loss, backward, update."""

    def __init__(self, model: keras.Model, optimizer, config: BaselineConfig, spec: BackboneSpec):
        self.model, self.optimizer = model, optimizer
        self.weights = tf.constant(config.normalized_exit_weights(spec.num_exits))[:, None]
        self.label_smoothing = float(config.label_smoothing)
        self.clip_norm = float(config.clip_norm)
        self.num_classes = spec.num_classes
        self.resolution = spec.resolution
        self.variables = list(model.trainable_variables)
        self.fn = tf.function(self._step)

    def _step(self, images, labels):
        if images.shape[1] != self.resolution or images.shape[2] != self.resolution:
            size = [self.resolution, self.resolution]
            images = tf.image.resize(images, size, method="bilinear")
        no_teacher = tf.zeros([tf.shape(images)[0], self.num_classes], tf.float32)
        with tf.GradientTape() as tape:
            logits = [tf.cast(z, tf.float32) for z in self.model(images, training=True)]
            ce, _ = exit_losses(logits, labels, no_teacher, self.label_smoothing, self.num_classes)
            loss = tf.reduce_mean(tf.reduce_sum(self.weights * ce, axis=0))
        grads = tape.gradient(loss, self.variables)
        grad_norm = tf.linalg.global_norm(grads)
        if self.clip_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=grad_norm)
        self.optimizer.apply_gradients(zip(grads, self.variables, strict=True))
        correct = [
            tf.reduce_sum(
                tf.cast(tf.equal(tf.argmax(z, -1, output_type=tf.int32), labels), "float32")
            )
            for z in logits
        ]
        return {
            "loss": tf.reduce_sum(ce, axis=1),
            "correct": tf.stack(correct),
            "grad_norm": grad_norm,
            "count": tf.cast(tf.shape(images)[0], tf.float32),
        }

    def __call__(self, images, labels) -> dict:
        return {k: v.numpy() for k, v in self.fn(images, labels).items()}


def divergence_message(step: int, out: dict, kept: str) -> str | None:
    """The one line that stops a run whose step `step` (1-based) was not finite; None if it
    was finite."""
    bad = [n + 1 for n, v in enumerate(out["loss"]) if not np.isfinite(v)]
    if bad:
        what = f"the loss of exit {bad[0]} is {out['loss'][bad[0] - 1]}"
    elif not np.isfinite(out["grad_norm"]):
        what = f"the gradient norm is {out['grad_norm']}"
    else:
        return None
    return (
        f"training diverged at step {step}: {what}; nothing of this step was saved ({kept}); "
        "lower --learning_rate or set --clip_norm"
    )
