"""The losses of the training step."""

import numpy as np
import pytest
import tensorflow as tf

from enas4d_tf.train.step import exit_losses


def test_exit_losses_match_hand_computation():
    logits = [tf.constant([[2.0, 0.0, -1.0]]), tf.constant([[0.0, 1.0, 0.0]])]
    labels = tf.constant([0])
    teacher = tf.constant([[0.5, 0.25, 0.25]])
    ce, kd = exit_losses(logits, labels, teacher, 0.3, 3)
    for s, z in enumerate(logits):
        log_p = z.numpy()[0] - np.log(np.sum(np.exp(z.numpy()[0])))
        target = np.array([0.8, 0.1, 0.1])  # 0.7 * one-hot + 0.3 / 3
        assert ce.numpy()[s, 0] == pytest.approx(-np.sum(target * log_p), rel=1e-5)
        assert kd.numpy()[s, 0] == pytest.approx(-np.sum([0.5, 0.25, 0.25] * log_p), rel=1e-5)
