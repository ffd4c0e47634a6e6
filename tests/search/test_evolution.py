"""Tests of the evolutionary search and the accuracy predictor (no TensorFlow model runs).

The gene operators it uses (mutate, crossover, repair, ...) are tested in tests/space/test_ops.py.
"""

import dataclasses

import numpy as np
import pytest

from enas4d_tf.model.macs import stage_macs
from enas4d_tf.search import evolution
from enas4d_tf.search.evolution import EvolutionConfig, Objective
from enas4d_tf.search.inner import InnerConfig, inner_evolution
from enas4d_tf.search.objectives import CostModel, make_objectives
from enas4d_tf.search.predictor import AccuracyPredictor
from enas4d_tf.space import SearchSpace


@dataclasses.dataclass
class FakeRecord:
    key: str
    arch: object
    accuracy: float
    macs: list


class FakeObjective(Objective):
    """Static-like objective with a synthetic accuracy that grows with width and kernel."""

    name = "fake"

    def __init__(self, space):
        self.space = space
        self.costs = CostModel(space, space.default_num_classes)  # memoised stage MACs
        self.floor = self.costs.smallest[-1]

    def check_budget(self, budget):
        if budget < self.floor:
            raise ValueError(f"budget {budget} below the smallest network ({self.floor})")

    def fits(self, arch, budget):
        return self.costs(arch)[-1] <= budget

    def score(self, record, budget):
        return None if record.macs[-1] > budget else (record.accuracy, float(record.macs[-1]))

    def predictor_rows(self, record, budgets):
        # One row per record that some budget admits: its accuracy does not depend on them.
        if all(self.score(record, b) is None for b in budgets):
            return []
        return [(self.space.encode(record.arch), record.accuracy)]

    def query_rows(self, archs, budget):
        return np.stack([self.space.encode(a) for a in archs]), np.arange(len(archs))


def fake_accuracy(space, arch):
    # A smooth function of the genes, so the predictor has something to learn.
    x = space.encode(arch)
    w = np.sin(np.arange(x.size) * 0.7)
    return float(0.5 + 0.02 * x @ w + 0.001 * np.log(stage_macs(space, arch)[-1]))


def run_fake_search(seed, budgets, generations=4, population=8):
    space = SearchSpace.preset("fashion_mnist")
    asked = []

    def measure(archs):
        out = []
        for a in archs:
            key = evolution.arch_key(space, a)
            asked.append(key)
            out.append(FakeRecord(key, a, fake_accuracy(space, a), stage_macs(space, a)))
        return out

    config = EvolutionConfig(
        population=population,
        generations=generations,
        seed=seed,
        inner_population=20,
        inner_generations=5,
    )
    result = evolution.evolve(space, FakeObjective(space), budgets, config, measure)
    return result, asked, space


def test_evolution_is_reproducible_with_a_seed_and_never_measures_twice():
    budgets = [2e6, 5e6]
    a, asked_a, space = run_fake_search(0, budgets)
    b, asked_b, _ = run_fake_search(0, budgets)
    c, asked_c, _ = run_fake_search(1, budgets)
    assert asked_a == asked_b
    assert [r.key for r in a.records] == [r.key for r in b.records]
    assert {k: v[0].key for k, v in a.best.items()} == {k: v[0].key for k, v in b.best.items()}
    assert asked_a != asked_c
    assert len(asked_a) == len(set(asked_a)) == a.measured
    # 4 generations of ceil(8 / 2) children for each of the 2 budgets.
    assert a.measured == 4 * 8
    for record in a.records:
        space.validate(record.arch)
        # Every candidate was made for one of the budgets, so it fits the largest.
        assert record.macs[-1] <= max(budgets)


def test_evolution_improves_on_the_random_first_generation():
    budgets = [3e6]
    one, _, _ = run_fake_search(0, budgets, generations=1, population=12)
    many, _, _ = run_fake_search(0, budgets, generations=6, population=12)
    assert many.best[3e6][1][0] > one.best[3e6][1][0]
    assert many.best[3e6][1][1] <= 3e6


def test_evolution_refuses_an_impossible_budget():
    space = SearchSpace.preset("fashion_mnist")
    floor = stage_macs(space, space.smallest())[-1]
    with pytest.raises(ValueError, match="below the smallest"):
        evolution.evolve(
            space, FakeObjective(space), [floor - 1], EvolutionConfig(), lambda archs: []
        )


def test_evolution_config_validation_names_the_setting():
    with pytest.raises(ValueError, match="mutation_prob"):
        EvolutionConfig(mutation_prob=1.5).validate()
    with pytest.raises(ValueError, match="population"):
        EvolutionConfig(population=0).validate()


def test_predictor_ranks_unseen_architectures():
    space = SearchSpace.preset("fashion_mnist")
    rng = np.random.default_rng(0)
    archs = [space.sample(rng=rng) for _ in range(260)]
    x = np.stack([space.encode(a) for a in archs])
    y = np.array([fake_accuracy(space, a) for a in archs])
    predictor = AccuracyPredictor(seed=0).fit(x[:200], y[:200])
    predicted = predictor.predict(x[200:])
    # Spearman rank correlation on the 60 held-out architectures.
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    rho = np.corrcoef(rank(predicted), rank(y[200:]))[0, 1]
    assert rho > 0.8
    again = AccuracyPredictor(seed=0).fit(x[:200], y[:200]).predict(x[200:])
    np.testing.assert_array_equal(predicted, again)


def test_predictor_must_be_fitted_first():
    with pytest.raises(RuntimeError, match="before fit"):
        AccuracyPredictor().predict(np.zeros((1, 3)))


def test_format_macs():
    assert evolution.format_macs(2.5e6) == "2.5M"
    assert evolution.format_macs(800_000) == "800K"
    assert evolution.format_macs(1.2e9) == "1.2G"


def test_inner_evolution_returns_feasible_new_candidates_better_than_random():
    space = SearchSpace.preset("tiny")
    costs = CostModel(space, 10)
    objective = make_objectives(costs, 3.0)["dynamic"]
    budget = (costs.smallest[-1] + costs.largest[-1]) / 3
    w = np.cos(np.arange(space.encode(space.smallest()).size) * 1.3)

    def score(archs):
        # Rewards large choices too, so the constraint binds.
        return np.array([space.encode(a) @ w + 1e-6 * costs(a)[-1] for a in archs])

    def run(exclude):
        rng = np.random.default_rng(4)
        seeds = [space.smallest()]
        return inner_evolution(
            space,
            lambda a: objective.fits(a, budget),
            score,
            seeds,
            5,
            exclude,
            InnerConfig(population=30, generations=12),
            rng,
        )

    first = run(set())
    keys = [evolution.arch_key(space, a) for a in first.archs]
    assert len(first.archs) == 5 == len(set(keys))
    assert all(objective.fits(a, budget) for a in first.archs)
    np.testing.assert_allclose(first.predicted, score(first.archs))
    assert first.predicted == sorted(first.predicted, reverse=True)
    assert first.evaluated > 30 and first.cpu_seconds > 0
    # It finds better than as many random feasible architectures as it scored.
    rng = np.random.default_rng(0)
    fits = lambda a: objective.fits(a, budget)  # noqa: E731
    randoms = [evolution.sample_within(space, fits, rng) for _ in range(first.evaluated)]
    assert first.predicted[0] > max(score(randoms))
    # Excluded (measured) architectures are never returned; the rest of the run is the same.
    second = run({keys[0]})
    assert [evolution.arch_key(space, a) for a in second.archs[:4]] == keys[1:]


def test_the_inner_evolutions_top_k_are_what_is_measured(monkeypatch):
    space = SearchSpace.preset("fashion_mnist")
    picked = []

    def recording(*args, **kwargs):
        result = inner_evolution(*args, **kwargs)
        picked.append([evolution.arch_key(space, a) for a in result.archs])
        return result

    monkeypatch.setattr(evolution, "inner_evolution", recording)
    asked = []

    def measure(archs):
        asked.append([evolution.arch_key(space, a) for a in archs])
        return [
            FakeRecord(k, a, fake_accuracy(space, a), stage_macs(space, a))
            for k, a in zip(asked[-1], archs, strict=True)
        ]

    config = EvolutionConfig(
        population=8,
        generations=3,
        seed=1,
        inner_population=20,
        inner_generations=4,
        top_k=3,
        min_predictor_tau=-1.0,
    )
    summaries = []
    result = evolution.evolve(
        space, FakeObjective(space), [2e6, 5e6], config, measure, on_generation=summaries.append
    )
    # Generation 1 is random (4 per budget); then, per budget, the inner evolution's 3 best.
    assert [len(a) for a in asked] == [8, 6, 6]
    assert len(picked) == 4 and all(len(p) == 3 for p in picked)
    assert asked[1] == picked[0] + picked[1] and asked[2] == picked[2] + picked[3]
    assert [s["ranked_by"] for s in summaries] == [
        "random (first generation)",
        "inner evolution on the predictor",
        "inner evolution on the predictor",
    ]
    assert all(s["inner_evaluated"] > 20 and s["predictor"]["used"] for s in summaries[1:])
    assert result.measured == 20


def test_the_inner_evolution_waits_for_a_predictor_trusted_enough(monkeypatch):
    space = SearchSpace.preset("fashion_mnist")
    calls = []
    monkeypatch.setattr(
        evolution, "inner_evolution", lambda *a, **k: calls.append(1) or inner_evolution(*a, **k)
    )

    def measure(archs):
        keys = [evolution.arch_key(space, a) for a in archs]
        return [
            FakeRecord(k, a, fake_accuracy(space, a), stage_macs(space, a))
            for k, a in zip(keys, archs, strict=True)
        ]

    def ranked_by(inner_floor):
        config = EvolutionConfig(
            population=8,
            generations=3,
            seed=1,
            inner_population=20,
            inner_generations=4,
            min_predictor_tau=-1.0,
            inner_min_predictor_tau=inner_floor,
        )
        summaries = []
        evolution.evolve(
            space, FakeObjective(space), [2e6, 5e6], config, measure, on_generation=summaries.append
        )
        return summaries[1:]

    # A floor no held-out tau reaches: the predictor ranks children of the best instead.
    later = ranked_by(1.0)
    assert [s["ranked_by"] for s in later] == ["predictor over children of the best"] * 2
    assert all(s["predictor"]["used"] and s["predictor"]["held_out_tau"] < 1.0 for s in later)
    assert not calls
    # With the floor just under generation 2's tau (the same data up to there), generation 2
    # runs the inner evolution.
    floor = later[0]["predictor"]["held_out_tau"] - 1e-3
    assert ranked_by(floor)[0]["ranked_by"] == "inner evolution on the predictor" and calls
    with pytest.raises(ValueError, match="inner_min_predictor_tau"):
        EvolutionConfig(inner_min_predictor_tau=1.5).validate()


# What the search measured before issue 18 (commit 0b05714, `EvolutionConfig(population=8,
# generations=4, seed=0)`, this file's fake objective and accuracy), in order.
BEFORE_ISSUE_18 = [
    "534c94ac6938f2b0",
    "bb3fdce2d370011e",
    "6117fd6a8c457a1f",
    "fc2cad416c33a4b2",
    "f7bfd8f8ed176aa5",
    "cab059959c1c1981",
    "c0d228209fc4a446",
    "20c2b1aa5d8041ca",
    "80618cc037f52c8e",
    "6624fdf7d7bd3901",
    "ca3fd3ae8a9f7469",
    "f971e311eb0e384b",
    "578497688e278a8f",
    "512282dda7138cfa",
    "fc3d3bc3787d841b",
    "3ada18b4b9d60ef1",
    "1dbc30520438e434",
    "b23af652113baf33",
    "cbf4ae542e368319",
    "1e7652a6b783ba67",
    "786f96c963c94eae",
    "9f3e290eecabd0da",
    "aa3930d53c510538",
    "7ffed056e2ee8c51",
    "5117411c793922c4",
    "d5dcec053040ed2e",
    "4ed8f6e48796cf6a",
    "b3a3980b31fe22bc",
    "a5df7e8bee7db3df",
    "f7146e9bd127b1fe",
    "d0ee45d06f117051",
    "ad46589bf43dd4cb",
]


def test_the_old_search_is_reachable_unchanged():
    # inner_generations=0, the MLP alone, no floor: the search before the inner evolution,
    # ridge and the floor existed (what bench/search_efficiency.py compares with).
    space = SearchSpace.preset("fashion_mnist")
    asked = []

    def measure(archs):
        asked.extend(evolution.arch_key(space, a) for a in archs)
        return [
            FakeRecord(k, a, fake_accuracy(space, a), stage_macs(space, a))
            for k, a in zip(asked[-len(archs) :], archs, strict=True)
        ]

    config = EvolutionConfig(
        population=8,
        generations=4,
        seed=0,
        inner_generations=0,
        predictor="mlp",
        min_predictor_tau=-1.0,
    )
    evolution.evolve(space, FakeObjective(space), [2e6, 5e6], config, measure)
    assert asked == BEFORE_ISSUE_18
