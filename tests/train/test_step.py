"""The losses of the training step, and the flags its NaN guard reads."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas4d_tf.train.config import TrainConfig
from enas4d_tf.train.guard import arch_names, nonfinite_message
from enas4d_tf.train.step import TrainStep, exit_losses


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


class TwoExitNet(keras.Model):
    """A stand-in for the supernet with two exits: exit 2's logits are scaled by the
    architecture's `gain`, so an architecture of infinite gain makes exit 2 alone non-finite."""

    def __init__(self):
        super().__init__()
        self.num_classes = 3
        self.space = types.SimpleNamespace(num_stages=2)
        self.head1 = keras.layers.Dense(3)
        self.head2 = keras.layers.Dense(3)

    def call(self, images, arch, training=False, num_stages=None):
        flat = keras.ops.reshape(images, (keras.ops.shape(images)[0], -1))
        return [self.head1(flat), self.head2(flat) * arch["gain"]]


def _step_outputs(gains, clip_norm=0.0, images=None):
    net = TwoExitNet()
    images = np.ones((4, 2, 2, 1), np.float32) if images is None else images
    net(images, arch={"gain": np.float32(1.0)})
    config = TrainConfig(workdir="/unused", preset="tiny", clip_norm=clip_norm)
    step = TrainStep(tf.distribute.get_strategy(), net, keras.optimizers.SGD(0.1), config)
    labels = np.array([0, 1, 2, 0], np.int32)
    # TrainStep reads the architecture count off the "resolution" entry.
    archs = {"gain": np.asarray(gains, np.float32), "resolution": np.zeros(len(gains), np.int32)}
    return step((images, labels), archs)


def test_step_flags_the_exit_and_network_that_went_non_finite():
    fine = _step_outputs([1.0, 1.0])
    assert not fine["nonfinite_loss"].any() and float(fine["nonfinite_grad"]) == 0.0
    assert nonfinite_message(fine, arch_names(2)) is None
    out = _step_outputs([1.0, np.inf])  # the smallest network's exit 2
    np.testing.assert_array_equal(out["nonfinite_loss"], [[0.0, 0.0], [0.0, 1.0]])
    assert float(out["nonfinite_grad"]) == 1.0
    assert nonfinite_message(out, arch_names(2)) == (
        "the loss of the smallest network at exit 2 is NaN or Inf"
    )
    # With clipping, the norm the clip computes is the one checked.
    nan_images = np.full((4, 2, 2, 1), np.nan, np.float32)
    out = _step_outputs([1.0, 1.0], clip_norm=1.0, images=nan_images)
    assert out["nonfinite_loss"].all() and float(out["nonfinite_grad"]) == 1.0
    assert nonfinite_message(out, arch_names(2)).startswith(
        "the loss of the largest network at exit 1"
    )


def test_nonfinite_message_reads_the_gradient_flag_last():
    out = {
        "objective": np.array([1.0, 2.0, 3.0]),
        "nonfinite_loss": np.zeros((3, 2)),
        "nonfinite_grad": np.float32(2.0),  # two replicas saw it
    }
    assert arch_names(3) == ["largest network", "smallest network", "random network 1"]
    assert nonfinite_message(out, arch_names(3)) == (
        "the gradient (of all networks together) is NaN or Inf"
    )
    out["objective"][2] = np.nan
    assert nonfinite_message(out, arch_names(3)) == "the loss of the random network 1 is NaN or Inf"


def _student_outputs(fraction, labels, student_exit_weights=None):
    keras.utils.set_random_seed(0)  # the same initial weights in every call
    net = TwoExitNet()
    images = np.random.default_rng(1).normal(size=(8, 2, 2, 1)).astype(np.float32)
    net(images, arch={"gain": np.float32(1.0)})
    config = TrainConfig(
        workdir="/unused",
        preset="tiny",
        kd_ratio=0.0,
        student_batch_fraction=fraction,
        exit_weights=(1.0, 3.0),
        student_exit_weights=student_exit_weights,
    )
    step = TrainStep(tf.distribute.get_strategy(), net, keras.optimizers.SGD(0.0), config)
    archs = {"gain": np.asarray([1.0, 0.5], np.float32), "resolution": np.zeros(2, np.int32)}
    return step((images, np.asarray(labels, np.int32)), archs)


def test_students_train_on_their_fraction_of_the_batch():
    labels = [0, 1, 2, 0, 1, 2, 0, 1]
    flipped = labels[:4] + [(y + 1) % 3 for y in labels[4:]]  # only the second half differs
    half, half_flipped = _student_outputs(0.5, labels), _student_outputs(0.5, flipped)
    # The student (row 1) saw the first 4 examples only: the second half's labels do not
    # change its loss; the largest (row 0) saw all 8 and its loss changes.
    np.testing.assert_allclose(half["loss"][1], half_flipped["loss"][1], rtol=1e-6)
    assert not np.allclose(half["loss"][0], half_flipped["loss"][0])
    assert float(half["student_count"]) == 4.0 and float(half["count"]) == 8.0
    # Its summed per-exit loss is the full-batch student's over the first 4 examples.
    full = _student_outputs(1.0, labels)
    assert float(full["student_count"]) == 8.0
    assert not np.allclose(full["loss"][1], half["loss"][1])
    # Its objective is a mean over the 4 examples it saw, not over 8.
    per_example = half["loss"][1] / 4.0
    w = np.array([0.25, 0.75])
    assert float(half["objective"][1]) == pytest.approx(float(w @ per_example), rel=1e-5)


def test_student_exit_weights_weigh_only_the_students():
    labels = [0, 1, 2, 0, 1, 2, 0, 1]
    same = _student_outputs(1.0, labels)
    equal = _student_outputs(1.0, labels, student_exit_weights=(1.0, 1.0))
    assert float(equal["objective"][0]) == pytest.approx(float(same["objective"][0]), rel=1e-6)
    per_example = equal["loss"][1] / 8.0
    assert float(equal["objective"][1]) == pytest.approx(float(per_example.mean()), rel=1e-5)
    assert float(same["objective"][1]) == pytest.approx(
        float(np.array([0.25, 0.75]) @ per_example), rel=1e-5
    )
