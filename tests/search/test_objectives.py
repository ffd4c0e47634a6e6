"""What the search ranks by (enas4d_tf/search/objectives.py, measurement.py, outputs.py).

Static networks are architectures cut at any exit; dynamic candidates are ranked by a
cross-fitted score (thresholds fitted on one half of the validation images, scored on the
other). No network runs here: candidates are measurements made of hand-built per-exit
confidences and correctness.
"""

import numpy as np
import pytest

from enas4d_tf import exit_policy, thresholds
from enas4d_tf.exit_policy import ValidationSplit
from enas4d_tf.model.macs import stage_macs, truncated_macs
from enas4d_tf.search import objectives, outputs
from enas4d_tf.search.measurement import Measurement, cross_fit, cross_fit_folds
from enas4d_tf.search.store import Candidate
from enas4d_tf.space import SearchSpace, arch_key

SPACE = SearchSpace.preset("tiny")


def candidate(arch, split) -> Candidate:
    return Candidate(arch_key(SPACE, arch), Measurement(arch, stage_macs(SPACE, arch, 10), split))


def noisy_split(seed: int, n: int, exit_accuracy) -> ValidationSplit:
    """Random confidences; exit s is right on about `exit_accuracy[s]` of the images."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.2, 1.0, (len(exit_accuracy), n)).astype(np.float32)
    correct = rng.random((len(exit_accuracy), n)) < np.asarray(exit_accuracy)[:, None]
    return ValidationSplit.from_confidences(confidence, correct)


def make_objectives(seed=0):
    costs = objectives.CostModel(SPACE, 10)
    return costs, objectives.make_objectives(costs, max_cost_ratio=3.0, seed=seed)


def test_static_front_has_a_point_for_every_exit_of_a_measured_candidate():
    costs, objs = make_objectives()
    arch = SPACE.sample(seed=1)
    # Exits right on 60%, 75% and 90% of the images: each exit buys accuracy for its cost.
    record = candidate(arch, noisy_split(0, 400, [0.6, 0.75, 0.9]))
    front = outputs.fronts(objs, {"static": [1e9]}, [record])["static"]
    assert [p["exit"] for p in front] == [1, 2, 3]
    for p in front:
        s = p["exit"]
        assert p["avg_macs"] == truncated_macs(SPACE, arch, s, 10)
        assert p["val_accuracy"] == pytest.approx(record.measurement.split.correct[s - 1].mean())
        assert p["thresholds"] == [None] * (s - 1) + [0.0]
        # Nothing is fitted, so the score it ranks by is its validation accuracy.
        assert p["ranking_accuracy"] == p["val_accuracy"]
    # Exit 1's classifier is all a network cut there runs; a later cut skips the earlier
    # exits' classifiers, so it costs less than C_s.
    c = stage_macs(SPACE, arch, 10)
    assert front[0]["avg_macs"] == c[0]
    assert front[1]["avg_macs"] < c[1] and front[2]["avg_macs"] < c[2]


def test_a_dynamic_network_sending_every_image_to_exit_1_costs_no_less_than_static_exit_1():
    arch = SPACE.sample(seed=2)
    m = candidate(arch, noisy_split(1, 300, [0.6, 0.7, 0.8])).measurement
    c1 = m.stage_macs[0]
    everything_at_exit_1 = exit_policy.evaluate_confidences(
        m.split.confidence, m.split.correct, m.stage_macs, [0.0, None, 0.0]
    )
    assert everything_at_exit_1.exit_rates == [1.0, 0.0, 0.0]
    assert everything_at_exit_1.avg_macs >= truncated_macs(SPACE, arch, 1, 10)
    # The budget of exit 1 alone: the fitter can only send every image there.
    fit = m.fit(c1)
    assert fit.exit_rates[0] == 1.0 and fit.avg_macs >= truncated_macs(SPACE, arch, 1, 10)
    # Sending every image to exit s costs C_s, never less than the network cut at s.
    for s in (1, 2, 3):
        assert m.stage_macs[s - 1] >= truncated_macs(SPACE, arch, s, 10)


def test_cross_fit_scores_each_half_with_thresholds_fitted_on_the_other():
    split = noisy_split(2, 301, [0.55, 0.7, 0.85])
    c = [100, 200, 300]
    halves = cross_fit_folds(301, seed=5)
    assert len(halves[0]) + len(halves[1]) == 301 and not set(halves[0]) & set(halves[1])
    result = cross_fit(split, c, 210, seed=5)
    expected = []
    for fit_on, score_on in (halves, halves[::-1]):
        part = ValidationSplit.from_confidences(
            split.confidence[:, fit_on], split.correct[:, fit_on]
        )
        fit = thresholds.fit_thresholds(part, c, 210)
        held_out = exit_policy.evaluate_confidences(
            split.confidence[:, score_on], split.correct[:, score_on], c, fit.thresholds
        )
        expected.append(held_out)
    assert result.accuracy == pytest.approx(np.mean([r.accuracy for r in expected]))
    assert result.avg_macs == pytest.approx(np.mean([r.avg_macs for r in expected]))
    # The thresholds fitted on the first half do not see the second: change every answer of
    # the second half and they stay the same, while their held-out score changes.
    flipped = split.correct.copy()
    flipped[:, halves[1]] = ~flipped[:, halves[1]]
    other = cross_fit(ValidationSplit.from_confidences(split.confidence, flipped), c, 210, 5)
    assert other.fits[0].thresholds == result.fits[0].thresholds
    assert other.held_out[0].accuracy != result.held_out[0].accuracy


def test_dynamic_ranking_uses_the_held_out_score_not_the_in_sample_fit():
    costs, objs = make_objectives(seed=0)
    dynamic = objs["dynamic"]
    archs = [SPACE.sample(seed=s) for s in (3, 4)]
    c = stage_macs(SPACE, archs[0], 10)
    budget = float(c[1])
    # A: exit 1 right by chance, whatever its confidence (its fitted thresholds only learn
    # noise); B: exit 1 is more often right when confident. The seeds are chosen so that on
    # 40 images A's in-sample fit looks better and its held-out score is worse.
    splits = []
    for seed, signal in ((120, 0.0), (1120, 1.2)):
        rng = np.random.default_rng(seed)
        confidence = rng.uniform(0.2, 1.0, (3, 40)).astype(np.float32)
        confidence[2] = 1.0
        right_1 = rng.random(40) < 0.5 + signal * (confidence[0] - 0.6)
        correct = np.stack([right_1, rng.random(40) < 0.5, rng.random(40) < 0.8])
        splits.append(ValidationSplit.from_confidences(confidence, correct))
    a, b = (Candidate(f"k{i}", Measurement(archs[i], c, split)) for i, split in enumerate(splits))
    assert a.measurement.fit(budget).accuracy > b.measurement.fit(budget).accuracy
    assert dynamic.score(a, budget)[0] < dynamic.score(b, budget)[0]
    assert dynamic.score(a, budget)[0] == a.measurement.cross_fit(budget, 0).accuracy
    (chosen,) = outputs.choose(objs, {"dynamic": [budget]}, [a, b])
    assert chosen["key"] == "k1"
    # The chosen network's thresholds are then refitted on every validation image.
    assert chosen["thresholds"] == b.measurement.fit(budget).thresholds
    assert chosen["val_accuracy"] == b.measurement.fit(budget).accuracy
    assert chosen["ranking_accuracy"] == b.measurement.cross_fit(budget, 0).accuracy


def test_choice_under_a_budget_is_the_most_accurate_feasible_candidate():
    costs, objs = make_objectives(seed=1)
    rng = np.random.default_rng(7)
    records = []
    for i in range(12):
        accuracy = np.sort(rng.uniform(0.3, 0.9, 3))
        records.append(candidate(SPACE.sample(seed=100 + i), noisy_split(i, 200, accuracy)))
    small, large = costs.smallest, costs.largest
    for budget in np.geomspace(small[0] * 1.2, large[-1], 5):
        budget = float(budget)
        chosen = {
            e["mode"]: e
            for e in outputs.choose(objs, {"dynamic": [budget], "static": [budget]}, records)
        }
        # Static: brute force over every (candidate, exit) whose cut costs at most the budget.
        static = [
            (r.measurement.exit_accuracy[s], -costs.truncated(r.arch)[s], r.key, s + 1)
            for r in records
            for s in range(3)
            if costs.truncated(r.arch)[s] <= budget
        ]
        if static:
            best = max(static, key=lambda t: (t[0], t[1]))
            e = chosen["static"]
            assert (e["val_accuracy"], e["exit"]) == (best[0], best[3])
            assert e["avg_macs"] <= budget
            assert e["name"].endswith(f"_exit{best[3]}")
        # Dynamic: brute force over the cross-fitted scores whose held-out cost meets it.
        dynamic = []
        for r in records:
            result = r.measurement.cross_fit(budget, 1) if r.stage_macs[0] <= budget else None
            if result is not None and result.avg_macs <= budget:
                dynamic.append((result.accuracy, -result.avg_macs, r.key))
        if dynamic:
            assert chosen["dynamic"]["ranking_accuracy"] == max(dynamic)[0]
            assert chosen["dynamic"]["avg_macs"] <= budget
        else:
            assert "dynamic" not in chosen


def test_static_predictor_rows_and_predictions_are_per_exit():
    costs, objs = make_objectives()
    static = objs["static"]
    arch = SPACE.sample(seed=9)
    record = candidate(arch, noisy_split(3, 100, [0.5, 0.6, 0.7]))
    rows = static.predictor_rows(record, [1e9])
    assert len(rows) == 3
    # The exit is among the features: the same architecture gives three different rows.
    assert len({x.tobytes() for x, _ in rows}) == 3
    assert [y for _, y in rows] == record.measurement.exit_accuracy

    class ByExit:
        """A predictor that predicts the exit number (read off the one-hot features)."""

        def predict(self, x):
            return np.argmax(x[:, -4:-1], axis=1) + 1.0

    t = costs.truncated(arch)
    # Within a budget that only exit 1 meets, the best predicted exit is 1; with all, 3.
    assert static.predict(ByExit(), [arch], t[0])[0] == 1.0
    assert static.predict(ByExit(), [arch], t[2])[0] == 3.0
    assert static.predict(ByExit(), [arch], t[0] - 1)[0] == -np.inf


def test_predictor_groups_read_the_budget_and_the_exit_from_the_objectives_rows():
    _, objs = make_objectives()
    archs = [SPACE.sample(seed=s) for s in range(4)]
    dynamic, static = objs["dynamic"], objs["static"]
    budgets = [2e5, 1e6, 5e6]
    x = np.stack([dynamic.features(a, b) for b in budgets for a in archs])
    groups = dynamic.predictor_groups(x)
    # One group per budget, the same for every architecture at that budget.
    assert len(set(groups.tolist())) == len(budgets)
    assert all(len(set(groups[i * 4 : (i + 1) * 4].tolist())) == 1 for i in range(len(budgets)))
    # The query rows at a budget fall in that budget's training group.
    query, _ = dynamic.query_rows(archs, budgets[1])
    assert set(dynamic.predictor_groups(query).tolist()) == {groups[4]}
    exits = range(1, SPACE.num_stages + 1)
    rows = np.stack([static.exit_features(a, s) for a in archs for s in exits])
    assert static.predictor_groups(rows).tolist() == [s for _ in archs for s in exits]


def test_rows_split_into_the_plain_columns_and_the_summary_columns():
    _, objs = make_objectives()
    dynamic, static = objs["dynamic"], objs["static"]
    arch, budget = SPACE.sample(seed=3), 1e6
    row = dynamic.features(arch, budget)
    encoding, summary = SPACE.encode(arch), SPACE.summarize(arch)
    tail = row[-(SPACE.num_stages + 1) :]  # the exits' log costs and the budget
    # What models other than "mlp on summary" see is the row as it was before the summary.
    np.testing.assert_array_equal(row[dynamic.plain_columns()], np.concatenate([encoding, tail]))
    np.testing.assert_array_equal(row[dynamic.summary_columns()], np.concatenate([summary, tail]))
    cut = static.exit_features(arch, 2)
    tail = cut[-(SPACE.num_stages + 1) :]  # the exit's one-hot and the cut network's cost
    assert tail[:-1].tolist() == [0.0, 1.0, 0.0]
    np.testing.assert_array_equal(cut[static.plain_columns()], np.concatenate([encoding, tail]))
    np.testing.assert_array_equal(cut[static.summary_columns()], np.concatenate([summary, tail]))
