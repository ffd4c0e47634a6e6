"""Tests of the exit policy and its average cost (enas4d_tf/exit_policy.py)."""

import numpy as np
import pytest

from enas4d_tf import exit_policy

STAGE_MACS = [1_000_000, 2_500_000, 4_000_000]


def synthetic_probs(seed: int, num_images: int = 3000, num_stages: int = 3, classes: int = 10):
    """Per-exit softmax outputs where later exits are more often right and more confident."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, num_images)
    logits = rng.normal(size=(num_stages, num_images, classes))
    difficulty = rng.uniform(0.0, 2.0, num_images)
    for s in range(num_stages):
        logits[s, np.arange(num_images), labels] += (s + 1) * difficulty
    probs = np.exp(logits)
    probs /= probs.sum(axis=2, keepdims=True)
    return probs.astype(np.float32), labels


def simulate_cascade(probs, labels, stage_macs, thresholds):
    """Walks every image through the exits one by one, paying each stage it runs."""
    S, N, _ = probs.shape
    stage_cost = np.diff([0, *stage_macs])
    total_cost, correct, exits = 0.0, 0, np.zeros(S)
    for n in range(N):
        for s in range(S):
            total_cost += stage_cost[s]
            confident = thresholds[s] is not None and probs[s, n].max() >= thresholds[s]
            if s == S - 1 or confident:
                correct += int(probs[s, n].argmax() == labels[n])
                exits[s] += 1
                break
    return correct / N, exits / N, total_cost / N


def test_exit_policy_on_a_hand_made_example():
    # Confidences of 4 images at 3 exits; thresholds [0.8, None, 0.0].
    confidence = np.array(
        [
            [0.9, 0.5, 0.8, 0.1],
            [0.1, 0.99, 0.2, 0.3],
            [0.5, 0.5, 0.5, 0.5],
        ]
    )
    # Image 0 and 2 leave at exit 0 (0.9 >= 0.8, 0.8 >= 0.8); exit 1 never takes anyone
    # (null), so images 1 and 3 run to the last exit.
    np.testing.assert_array_equal(
        exit_policy.exit_indices(confidence, [0.8, None, 0.0]), [0, 2, 0, 2]
    )
    # With 0.95 at exit 1, image 1 (0.99) leaves there.
    np.testing.assert_array_equal(
        exit_policy.exit_indices(confidence, [0.8, 0.95, 0.0]), [0, 1, 0, 2]
    )
    # The static policy sends everyone to the last exit.
    assert exit_policy.static_thresholds(3) == [None, None, 0.0]
    np.testing.assert_array_equal(exit_policy.exit_indices(confidence, [None, None, 0.0]), [2] * 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_macs_equals_a_per_image_simulation_of_the_cascade(seed):
    probs, labels = synthetic_probs(seed, num_images=400)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        thresholds = [
            None if rng.random() < 0.25 else float(rng.uniform(0.1, 0.9)) for _ in range(2)
        ] + [0.0]
        result = exit_policy.evaluate_policy(probs, labels, STAGE_MACS, thresholds)
        accuracy, rates, avg = simulate_cascade(probs, labels, STAGE_MACS, thresholds)
        assert result.accuracy == pytest.approx(accuracy)
        np.testing.assert_allclose(result.exit_rates, rates)
        assert result.avg_macs == pytest.approx(avg, rel=1e-12)
        assert exit_policy.average_macs(result.exit_rates, STAGE_MACS) == pytest.approx(avg)


def test_check_thresholds_rejects_malformed_thresholds():
    with pytest.raises(ValueError, match="need 3 thresholds"):
        exit_policy.check_thresholds([0.5, 0.0], 3)
    with pytest.raises(ValueError, match="last threshold must be 0.0"):
        exit_policy.check_thresholds([0.5, 0.5, 0.5], 3)
    # Messages number exits from 1, as users do.
    with pytest.raises(ValueError, match=r"threshold of exit 1 = 1.5 is outside"):
        exit_policy.check_thresholds([1.5, None, 0.0], 3)
    with pytest.raises(ValueError, match="threshold of exit 2 is '0.5', not a number"):
        exit_policy.check_thresholds([None, "0.5", 0.0], 3)


def test_pareto_front_keeps_only_non_dominated_points():
    points = [(1.0, 0.5), (2.0, 0.4), (2.0, 0.7), (3.0, 0.7), (4.0, 0.9), (0.5, 0.1)]
    # (2, 0.4) is dominated by (1, 0.5); (3, 0.7) by (2, 0.7).
    assert exit_policy.pareto_front(points) == [5, 0, 2, 4]
