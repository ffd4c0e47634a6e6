"""Tests of bench/predictor_ceiling.py: the normal model's ceiling, the two halves' tau on
stored measurements (high when the halves agree, near zero when only noise differs), and
bad input in one line."""

import math

import numpy as np
import pytest

from bench import predictor_ceiling as pc
from bench.search_efficiency import SPLIT_SEED
from enas4d_tf.exit_policy import ValidationSplit
from enas4d_tf.search.measurement import Measurement, cross_fit_folds
from enas4d_tf.search.objectives import CostModel
from enas4d_tf.search.store import Candidate, SearchStore
from enas4d_tf.space import SearchSpace, arch_key
from enas4d_tf.space.ops import sample
from enas4d_tf.workdir import Workdir
from tests.faults.harness import check_fault

N_IMAGES = 400


def test_perfect_predictor_tau_under_the_normal_model():
    assert pc.perfect_predictor_tau(1.0) == pytest.approx(1.0)
    assert pc.perfect_predictor_tau(0.0) == 0.0 and pc.perfect_predictor_tau(-0.2) == 0.0
    assert pc.perfect_predictor_tau(float("nan")) == 0.0
    # tau 0.5: rho(A, B) = sin(pi / 4), rho(T, A) = its square root.
    expected = 2 / math.pi * math.asin(math.sqrt(math.sin(math.pi / 4)))
    assert pc.perfect_predictor_tau(0.5) == pytest.approx(expected)
    taus = [pc.perfect_predictor_tau(t) for t in np.linspace(0.05, 0.95, 10)]
    # One noisy half ranks the truth better than it ranks the other noisy half.
    assert taus == sorted(taus) and all(
        p > t for p, t in zip(taus, np.linspace(0.05, 0.95, 10), strict=True)
    )
    rows = [
        {"candidates": 10, "perfect_predictor_tau": 0.5},
        {"candidates": 30, "perfect_predictor_tau": 0.9},
    ]
    assert pc.ceiling(rows) == pytest.approx(0.8)


def _store(folder, accuracies, halves_agree, seed=0):
    """A search store of tiny-space candidates whose first exits are right with probability
    `accuracies[i]` and whose last exit is always wrong (so a budget's score, not the
    no-early-exit network's, carries the ranking); with `halves_agree`, half B's images copy
    half A's."""
    space = SearchSpace.preset("tiny")
    settings = {"space": space.to_dict(), "num_val_images": N_IMAGES, "num_classes": 10}
    store = SearchStore(Workdir(str(folder)), settings, space, log=lambda m: None)
    half_a, half_b = cross_fit_folds(N_IMAGES, SPLIT_SEED)
    rng = np.random.default_rng(seed)
    costs = CostModel(space, 10)
    seen = set()
    for p in accuracies:
        arch = sample(space, rng)
        while arch_key(space, arch) in seen:
            arch = sample(space, rng)
        seen.add(arch_key(space, arch))
        confidence = rng.uniform(size=(space.num_stages, N_IMAGES)).astype(np.float32)
        correct = rng.uniform(size=(space.num_stages, N_IMAGES)) < p
        correct[-1] = False
        if halves_agree:
            confidence[:, half_b] = confidence[:, half_a]
            correct[:, half_b] = correct[:, half_a]
        split = ValidationSplit.from_confidences(confidence, correct)
        m = Measurement(arch, [int(c) for c in costs.macs(arch)], split, 0.1)
        store.add(Candidate(arch_key(space, arch), m))
    return str(folder)


def _taus(folder, count):
    records, full, objective, half_b, budgets = pc.load(folder, 0, count, 2)
    return pc.half_taus(records, full, objective, half_b, budgets)


def test_halves_that_agree_rank_alike_and_noise_alone_ranks_at_chance(tmp_path):
    spread = np.linspace(0.4, 0.95, 24)
    rows = _taus(_store(tmp_path / "agree", spread, halves_agree=True), 24)
    assert rows and all(r["candidates"] >= pc.MIN_PER_BUDGET for r in rows)
    assert min(r["tau_a_b"] for r in rows) > 0.8
    # Every network equally accurate: the halves' ranks are noise, independent of each other.
    # (Budgets where a handful of candidates score rank them by chance: only the large ones.)
    rows = _taus(_store(tmp_path / "noise", [0.7] * 40, halves_agree=False, seed=1), 40)
    large = [r for r in rows if r["candidates"] >= 20]
    assert large and max(abs(r["tau_a_b"]) for r in large) < 0.4
    assert 0.0 <= pc.ceiling(large) < 0.7


def test_a_damaged_store_ends_with_one_line_and_is_left_where_it_is(tmp_path):
    import json
    import os

    folder = _store(tmp_path / "store", [0.6, 0.7, 0.8], halves_agree=False)
    state = os.path.join(folder, "search", "state.json")
    good = open(state).read()

    def refused(needle):
        args = [f"--store={folder}", "--candidates=3"]
        check_fault("bench.predictor_ceiling", args, needle, code=1, guarded=[folder], timeout=120)

    # A predictions file gone: named, nothing moved.
    predictions = os.path.join(folder, "search", "predictions")
    victim = sorted(os.listdir(predictions))[0]
    os.rename(os.path.join(predictions, victim), os.path.join(tmp_path, victim))
    refused("predictions file is missing or unreadable")
    os.rename(os.path.join(tmp_path, victim), os.path.join(predictions, victim))
    # Settings without the image count.
    damaged = json.loads(good)
    del damaged["settings"]["num_val_images"]
    with open(state, "w") as f:
        json.dump(damaged, f)
    refused("num_val_images")
    # Not JSON at all.
    with open(state, "w") as f:
        f.write("{not json")
    refused("state.json")


def test_bad_input_ends_with_one_line(tmp_path):
    check_fault(
        "bench.predictor_ceiling",
        [f"--store={tmp_path / 'none'}"],
        "holds no measurements",
        code=1,
        timeout=120,
    )
    folder = _store(tmp_path / "few", [0.6, 0.7, 0.8], halves_agree=False)
    check_fault(
        "bench.predictor_ceiling",
        [f"--store={folder}", "--candidates=10"],
        "holds 3 candidates",
        code=1,
        timeout=120,
    )
