"""What a training report computes from measured accuracies."""

import math

import numpy as np
import pytest

from enas4d_tf.train.report import spearman, spread_checks


def test_spearman_matches_hand_computed_ranks():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ranks (1, 2, 3, 4) vs (1, 3, 2, 4): 1 - 6 * 2 / (4 * 15) = 0.8.
    assert spearman([1, 2, 3, 4], [5, 7, 6, 8]) == pytest.approx(0.8)
    # A tie shares its mean rank: (1, 2.5, 2.5, 4) vs (1, 2, 3, 4) -> 0.9487.
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, rel=1e-6)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_spread_checks_use_each_exits_own_macs():
    def net(name, macs, acc):
        return {"name": name, "stage_macs": macs, "test_accuracy": acc}

    networks = [
        net("largest", [9, 19], [0.9, 0.95]),
        net("smallest", [1, 2], [0.80, 0.85]),
        # Exit 1's MACs rise a, b, c while exit 2's order is c, a, b.
        net("spread_1", [2, 10], [0.81, 0.87]),
        net("spread_2", [3, 12], [0.82, 0.88]),
        net("spread_3", [4, 5], [0.79, 0.86]),
    ]
    checks = spread_checks(networks)
    assert checks["num_spread"] == 3
    assert checks["below_smallest"] == [1, 0]
    # Exit 1: MACs ranks (1, 2, 3) vs accuracy ranks (2, 3, 1) -> -0.5.
    # Exit 2: MACs ranks (2, 3, 1) vs accuracy ranks (2, 3, 1) -> 1.0.
    assert checks["spearman"] == pytest.approx([-0.5, 1.0])


def test_measure_archs_measures_the_named_networks_on_the_split_it_is_given(tmp_path):
    from enas4d_tf import data as data_lib
    from enas4d_tf.model.macs import stage_macs
    from enas4d_tf.train.evaluate import Evaluator
    from enas4d_tf.train.report import measure_archs
    from tests.helpers import make_tiny_workdir

    space, net = make_tiny_workdir(str(tmp_path), bn_seed=3, transform_seed=4)
    seen = []
    measured = measure_archs(
        str(tmp_path),
        "validation",
        lambda s: [("big", s.largest()), ("small", s.smallest())],
        num_calibration_images=64,
        max_examples=300,
        on_network=lambda n: seen.append(n["name"]),
    )
    assert seen == ["big", "small"]
    assert measured["examples"] == 300 and measured["calibration_images"] == 64
    calibration, _ = data_lib.load_arrays("fashion_mnist", "train", max_examples=64)
    for split in ("validation", "test"):
        images, labels = data_lib.load_arrays("fashion_mnist", split, max_examples=300)
        evaluator = Evaluator(space, 10, calibration, images, labels)
        evaluator.copy_weights(net)
        expected = evaluator.evaluate(space.smallest())["accuracy"]
        if split == "validation":
            small = measured["networks"][1]
            np.testing.assert_allclose(small["accuracy"], expected, atol=1e-6)
            assert small["stage_macs"] == [int(m) for m in stage_macs(space, space.smallest(), 10)]
        else:  # the test split gives other numbers: the split was the one asked for
            assert not np.allclose(measured["networks"][1]["accuracy"], expected, atol=1e-6)
