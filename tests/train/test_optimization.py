"""The learning-rate schedule and the optimiser."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import enas4d_tf as e4
from enas4d_tf.train.config import TrainConfig
from enas4d_tf.train.optimization import WarmupCosine, make_optimizer, warmup_cosine

TINY = e4.SearchSpace.preset("tiny")


def test_warmup_cosine_schedule():
    lr = WarmupCosine(0.4, total_steps=110, warmup_steps=10)
    values = [float(lr(s)) for s in (0, 4, 9, 10, 60, 110, 200)]
    # Warm-up: (s + 1) / 10 of the peak; then 0.2 * (1 + cos(pi * (s - 10) / 100)).
    assert values == pytest.approx([0.04, 0.2, 0.4, 0.4, 0.2, 0.0, 0.0], abs=1e-6)
    assert float(WarmupCosine(0.1, 10, 0)(0)) == pytest.approx(0.1)


def test_weight_decay_spares_batch_norm_and_biases():
    net = e4.Supernet(TINY, num_classes=10)
    config = TrainConfig(workdir="unused", preset="tiny", weight_decay=0.1)
    schedule = warmup_cosine(config, total_steps=100, steps_per_epoch=10)
    assert (schedule.peak, schedule.total_steps, schedule.warmup_steps) == (0.1, 100, 10)
    opt = make_optimizer(config, net.trainable_variables, schedule)
    variables = net.trainable_variables
    before = [v.numpy().copy() for v in variables]
    opt.apply_gradients([(tf.zeros_like(v), v) for v in variables])
    lr = 0.1 * 1 / 10  # warm-up step 0 of 1 epoch = 10 steps, peak 0.1
    decayed = spared = 0
    for v, b in zip(variables, before, strict=True):
        if len(v.shape) <= 1:  # BN gamma/beta, biases
            np.testing.assert_array_equal(v.numpy(), b)
            spared += 1
        else:  # decoupled: w -= lr * wd * w with a zero gradient
            np.testing.assert_allclose(v.numpy(), b * (1 - lr * 0.1), rtol=1e-6)
            decayed += 1
    assert decayed > 10 and spared > 10
    assert isinstance(opt, keras.optimizers.SGD) and opt.nesterov


def test_warmup_cosine_ends_at_its_floor():
    lr = WarmupCosine(0.4, total_steps=110, warmup_steps=10, floor=0.04)
    values = [float(lr(s)) for s in (9, 10, 60, 110, 200)]
    # After warm-up: 0.04 + 0.18 * (1 + cos(pi * (s - 10) / 100)).
    assert values == pytest.approx([0.4, 0.4, 0.22, 0.04, 0.04], abs=1e-6)
    config = TrainConfig(workdir="unused", preset="tiny", min_learning_rate=0.01)
    schedule = warmup_cosine(config, total_steps=50, steps_per_epoch=10)
    assert float(schedule(50)) == pytest.approx(0.01)
    assert WarmupCosine.from_config(schedule.get_config()).floor == 0.01
