"""Tests of the exit runner shared by the search and training (enas4d_tf/evaluation.py)."""

import numpy as np
import pytest

import enas4d_tf as e4
from enas4d_tf.evaluation import CandidateEvaluator, ExitRunner, exit_probabilities
from tests.helpers import randomize_batch_norms


@pytest.fixture(scope="module")
def net():
    space = e4.SearchSpace.preset("tiny")
    net = e4.Supernet(space, num_classes=10)
    randomize_batch_norms(net, seed=2)
    return net


def noise(n, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, n)


# Slow (about 40 s of traces on a fashion_mnist supernet); tests/model/test_bn_calibration.py
# checks fast that calibration attaches nothing to the network.
@pytest.mark.slow
def test_runner_probabilities_and_metrics_agree_and_leave_the_network_alone(net):
    images, labels = noise(130, 0)
    arch = net.space.sample(seed=4)
    before = set(vars(net))
    runner = ExitRunner(net)
    calibration, _ = noise(90, 3)
    assert runner.recalibrate(arch, calibration, num_images=80, batch_size=50) == 80
    probs = runner.probabilities(arch, images, batch_size=50)
    metrics = runner.accuracy_and_loss(arch, images, labels, batch_size=50)
    # The traced functions belong to the runner, not to the network.
    assert set(vars(net)) == before
    assert probs.shape == (3, 130, 10)
    np.testing.assert_allclose(probs.sum(axis=2), 1.0, rtol=1e-5)
    # Both forwards run the same network: the same predictions, and the cross-entropy is
    # the mean negative log of the probability of the label.
    accuracy = (probs.argmax(axis=2) == labels).mean(axis=1)
    np.testing.assert_allclose(metrics["accuracy"], accuracy, atol=1 / 130 + 1e-12)
    loss = -np.log(probs[:, np.arange(130), labels]).mean(axis=1)
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-4)
    # One trace per image shape serves every architecture and batch size.
    again = runner.probabilities(arch, images[:70], batch_size=33)
    np.testing.assert_allclose(again, probs[:, :70], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(exit_probabilities(net, arch, images, 50), probs, rtol=1e-6)


def test_candidate_evaluator_recalibrates_each_candidate_the_same_way(net):
    images, labels = noise(100, 1)
    calibration, _ = noise(80, 2)
    evaluator = CandidateEvaluator(net, images, labels, calibration, 60, batch_size=40)
    assert evaluator.num_calibration_images == 60 and evaluator.num_val_images == 100
    arch = net.space.sample(seed=6)
    first = evaluator.measure(arch)
    evaluator.measure(net.space.largest())  # other BN statistics in between
    again = evaluator.measure(arch)
    np.testing.assert_allclose(first.split.confidence, again.split.confidence, rtol=1e-6)
    np.testing.assert_array_equal(first.split.correct, again.split.correct)
    with pytest.raises(ValueError, match="differ in number"):
        CandidateEvaluator(net, images, labels[:5], calibration)
