"""The optimiser of a training run: SGD with Nesterov momentum, a warm-up + cosine learning
rate and decoupled weight decay.

Build the schedule once (`warmup_cosine`) and hand it to `make_optimizer`; the trainer logs
the learning rate from the same object.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import tensorflow as tf

from enas4d_tf.train.config import TrainConfig


@keras.saving.register_keras_serializable(package="enas4d_tf")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then cosine decay to `floor` at
    `total_steps`.

    Args:
      peak: the learning rate at the end of warm-up.
      total_steps: steps of the whole run.
      warmup_steps: steps of linear warm-up (0: start at the peak).
      floor: the learning rate the decay ends at.
    """

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0, floor: float = 0.0):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.floor = float(floor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = float(max(self.warmup_steps, 1))
        decay = float(max(self.total_steps - self.warmup_steps, 1))
        progress = tf.clip_by_value((step - self.warmup_steps) / decay, 0.0, 1.0)
        cosine = self.floor + 0.5 * (self.peak - self.floor) * (1.0 + tf.cos(math.pi * progress))
        # Step s of warm-up trains at (s + 1) / warmup_steps of the peak, never at 0.
        warmup = self.peak * (step + 1.0) / warm
        return tf.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "floor": self.floor,
        }


def warmup_cosine(config: TrainConfig, total_steps: int, steps_per_epoch: int) -> WarmupCosine:
    """The learning-rate schedule of a run: `config.learning_rate` at the end of
    `config.warmup_epochs` (rounded to whole steps), `config.min_learning_rate` at
    `total_steps`."""
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    floor = getattr(config, "min_learning_rate", 0.0)  # the baseline's config has none
    return WarmupCosine(config.learning_rate, total_steps, warmup_steps, floor)


def make_optimizer(
    config: TrainConfig,
    variables: Sequence[tf.Variable],
    schedule: keras.optimizers.schedules.LearningRateSchedule,
) -> keras.optimizers.Optimizer:
    """SGD with Nesterov momentum at the learning rate `schedule`, and decoupled weight decay.

    Weight decay skips every variable of rank <= 1 (BN gamma/beta, biases). Create it under
    the strategy's scope; it is built on `variables`.

    Example:
      >>> opt = make_optimizer(config, net.trainable_variables, warmup_cosine(config, 100, 10))

    Returns:
      The built optimizer.
    """
    opt = keras.optimizers.SGD(
        learning_rate=schedule,
        momentum=config.momentum,
        nesterov=True,
        weight_decay=config.weight_decay if config.weight_decay > 0 else None,
    )
    if config.weight_decay > 0:
        opt.exclude_from_weight_decay(var_list=[v for v in variables if len(v.shape) <= 1])
    opt.build(list(variables))
    return opt
