"""Tests of the threshold fitters (enas4d_tf/thresholds.py)."""

import json

import numpy as np
import pytest

from enas4d_tf import exit_policy, thresholds
from enas4d_tf.exit_policy import ValidationSplit
from tests.test_exit_policy import STAGE_MACS, synthetic_probs


@pytest.mark.parametrize("fitter", ["geometric", "greedy"])
@pytest.mark.parametrize("seed", [0, 1])
def test_fitted_thresholds_keep_validation_average_macs_within_budget(fitter, seed):
    probs, labels = synthetic_probs(seed)
    split = ValidationSplit(probs, labels)
    for budget in [1_000_000, 1_100_000, 1_700_000, 2_500_000, 3_300_000, 3_999_999, 9e6]:
        fit = thresholds.FITTERS[fitter](split, STAGE_MACS, budget)
        assert fit.avg_macs <= budget
        assert len(fit.thresholds) == 3 and fit.thresholds[-1] == 0.0
        # The thresholds mean the same after a JSON round trip, on the same data.
        again = exit_policy.evaluate_policy(
            probs, labels, STAGE_MACS, json.loads(json.dumps(fit.thresholds))
        )
        assert again.avg_macs == fit.avg_macs
        assert again.accuracy == fit.accuracy


def test_geometric_fit_spends_the_budget_it_is_given():
    # Between C_1 and C_S the bisection should land close to the budget, not far below it.
    probs, labels = synthetic_probs(3)
    split = ValidationSplit(probs, labels)
    for budget in [1_500_000, 2_000_000, 3_000_000]:
        fit = thresholds.geometric_thresholds(split, STAGE_MACS, budget)
        assert budget - fit.avg_macs < 0.01 * budget


def test_thresholds_for_proportions_produce_those_proportions():
    # Continuous confidences (no ties): the exit rates are the requested proportions.
    probs, _ = synthetic_probs(4, num_images=2000)
    confidence = probs.max(axis=2)
    for q in [0.3, 1.0, 2.5]:
        p = thresholds.geometric_proportions(q, 3)
        np.testing.assert_allclose(p, np.array([1, q, q * q]) / (1 + q + q * q))
        t = thresholds.thresholds_for_proportions(confidence, p)
        rates = np.bincount(exit_policy.exit_indices(confidence, t), minlength=3) / 2000
        np.testing.assert_allclose(rates, p, atol=1 / 2000 + 1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_greedy_fitter_is_at_least_as_accurate_as_the_geometric_baseline(seed):
    probs, labels = synthetic_probs(seed)
    split = ValidationSplit(probs, labels)
    gains = []
    for budget in np.linspace(1.05e6, 3.9e6, 8):
        geometric = thresholds.geometric_thresholds(split, STAGE_MACS, budget)
        greedy = thresholds.fit_thresholds(split, STAGE_MACS, budget)
        assert greedy.accuracy >= geometric.accuracy
        assert greedy.avg_macs <= budget
        gains.append(greedy.accuracy - geometric.accuracy)
    # And it is not the baseline in disguise: it finds better policies somewhere.
    assert max(gains) > 0.002


def test_greedy_fitter_with_a_loose_budget_beats_every_single_exit():
    # With budget >= C_S every "all images leave at exit s" policy is on the grid.
    probs, labels = synthetic_probs(5)
    split = ValidationSplit(probs, labels)
    fit = thresholds.fit_thresholds(split, STAGE_MACS, STAGE_MACS[-1])
    best_single = (probs.argmax(axis=2) == labels).mean(axis=1).max()
    assert fit.accuracy >= best_single


def test_greedy_fitter_matches_exhaustive_search_on_a_small_grid():
    # Exhaustive search over 41 x 41 quantile pairs cannot beat the fitter by more than noise.
    probs, labels = synthetic_probs(6, num_images=1500)
    split = ValidationSplit(probs, labels)
    conf = split.confidence
    grids = [list(np.quantile(conf[s], np.linspace(0, 1, 41))) + [None] for s in range(2)]
    for budget in [1.6e6, 2.4e6]:
        best = 0.0
        for a in grids[0]:
            for b in grids[1]:
                r = exit_policy.evaluate_confidences(conf, split.correct, STAGE_MACS, [a, b, 0.0])
                if r.avg_macs <= budget:
                    best = max(best, r.accuracy)
        assert thresholds.fit_thresholds(split, STAGE_MACS, budget).accuracy >= best


@pytest.mark.parametrize("fitter", ["geometric", "greedy"])
def test_impossible_budget_raises_a_clear_value_error(fitter):
    probs, labels = synthetic_probs(0, num_images=100)
    split = ValidationSplit(probs, labels)
    with pytest.raises(ValueError, match="below .* the cost of the first exit"):
        thresholds.FITTERS[fitter](split, STAGE_MACS, 999_999)
    with pytest.raises(ValueError, match="positive"):
        thresholds.FITTERS[fitter](split, STAGE_MACS, -5)


def test_fitters_take_only_a_validation_split():
    probs, labels = synthetic_probs(0, num_images=100)
    with pytest.raises(TypeError, match="ValidationSplit"):
        thresholds.fit_thresholds((probs, labels), STAGE_MACS, 2e6)


def test_fitters_are_deterministic():
    probs, labels = synthetic_probs(7)
    a = thresholds.fit_thresholds(ValidationSplit(probs, labels), STAGE_MACS, 2.2e6)
    b = thresholds.fit_thresholds(ValidationSplit(probs.copy(), labels.copy()), STAGE_MACS, 2.2e6)
    assert a == b


def test_fitter_handles_two_and_four_exits():
    for stages, macs in ((2, [1e6, 3e6]), (4, [1e6, 2e6, 3e6, 4e6])):
        probs, labels = synthetic_probs(8, num_stages=stages)
        split = ValidationSplit(probs, labels)
        for budget in (1.5e6, 2.5e6):
            geometric = thresholds.geometric_thresholds(split, macs, budget)
            greedy = thresholds.fit_thresholds(split, macs, budget)
            assert len(greedy.thresholds) == stages
            assert greedy.avg_macs <= budget
            assert greedy.accuracy >= geometric.accuracy


def test_fitted_thresholds_on_real_supernet_probabilities():
    """Real per-exit outputs: a tiny supernet with non-trivial BN on Fashion-MNIST images."""
    import enas4d_tf as e4
    from enas4d_tf.evaluation import exit_probabilities
    from tests.helpers import randomize_batch_norms

    space = e4.SearchSpace.preset("tiny")
    net = e4.Supernet(space, num_classes=10)
    randomize_batch_norms(net, seed=1)
    rng = np.random.default_rng(0)
    try:
        from enas4d_tf.data import load_arrays

        images, labels = load_arrays("fashion_mnist", "validation", max_examples=600)
    except ValueError:  # no Fashion-MNIST on this machine: structured noise instead
        images = rng.normal(size=(600, 28, 28, 1)).astype(np.float32)
        labels = rng.integers(0, 10, 600)
    arch = space.sample(seed=3)
    probs = exit_probabilities(net, arch, images, batch_size=256)
    assert probs.shape == (3, 600, 10)
    np.testing.assert_allclose(probs.sum(axis=2), 1.0, rtol=1e-5)
    direct = net(images[:7], arch=arch, training=False)
    for s in range(3):
        np.testing.assert_allclose(
            probs[s, :7], tf_softmax(np.asarray(direct[s])), rtol=1e-4, atol=1e-6
        )
    macs = e4.stage_macs(space, arch)
    split = ValidationSplit(probs, labels)
    for budget in np.linspace(macs[0], macs[-1], 6):
        geometric = thresholds.geometric_thresholds(split, macs, budget)
        greedy = thresholds.fit_thresholds(split, macs, budget)
        assert geometric.avg_macs <= budget and greedy.avg_macs <= budget
        assert greedy.accuracy >= geometric.accuracy


def tf_softmax(logits):
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
