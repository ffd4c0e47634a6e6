"""Tests of the predictor's quality measure and choice (enas4d_tf/search/predictor.py,
selection.py): Kendall's tau-b, ridge regression, the held-out tau, the floor, and the
choice between ridge and the MLP. No TensorFlow; measured accuracies are synthetic."""

import dataclasses
import functools
import math

import numpy as np
import pytest

from enas4d_tf.search import evolution
from enas4d_tf.search.evolution import EvolutionConfig, Objective
from enas4d_tf.search.predictor import (
    ColumnPredictor,
    GroupedPredictor,
    RidgePredictor,
    kendall_tau,
)
from enas4d_tf.search.selection import PredictorSettings, choose_predictor
from enas4d_tf.space import SearchSpace
from enas4d_tf.space.ops import arch_key

SPACE = SearchSpace.preset("tiny")


def test_kendall_tau_against_hand_computed_values():
    # 10 pairs: 7 concordant, 3 discordant ((1,2), (1,3), (4,5)): (7 - 3) / 10.
    assert kendall_tau([1, 2, 3, 4, 5], [3, 1, 2, 5, 4]) == pytest.approx(0.4)
    # Ties (tau-b): 6 pairs, one tied in x only, one tied in y only, 4 concordant:
    # 4 / sqrt((6 - 1) * (6 - 1)).
    assert kendall_tau([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    # A pair tied in both counts in both tie totals: 3 pairs, 1 tied in both, 2 concordant.
    assert kendall_tau([1, 1, 2], [5, 5, 6]) == pytest.approx(2 / math.sqrt(2 * 2))
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([0.1, 0.5, 0.2], [1, 9, 4]) == 1.0  # ranks, not values
    assert math.isnan(kendall_tau([1, 2, 3], [7, 7, 7]))  # a constant sequence
    assert math.isnan(kendall_tau([1], [2]))
    with pytest.raises(ValueError, match="one length"):
        kendall_tau([1, 2], [1, 2, 3])


def test_kendall_tau_agrees_with_scipy_on_many_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 6, 600), rng.integers(0, 4, 600) + rng.integers(0, 6, 600) // 2
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


def test_ridge_is_the_closed_form_of_the_penalised_least_squares():
    rng = np.random.default_rng(1)
    for n, d in ((40, 12), (15, 30)):  # more rows than columns, and fewer
        x, y = rng.normal(size=(n, d)), rng.normal(size=n)
        alpha = 2.5
        model = RidgePredictor(alpha=alpha).fit(x, y)
        xs = (x - x.mean(axis=0)) / x.std(axis=0)
        w = np.linalg.solve(xs.T @ xs + alpha * np.eye(d), xs.T @ (y - y.mean()))
        np.testing.assert_allclose(model.predict(x), xs @ w + y.mean(), atol=1e-9)
    # A huge penalty predicts the mean; a tiny one fits a linear target exactly.
    x = rng.normal(size=(50, 5))
    y = x @ np.arange(1.0, 6.0) + 3.0
    np.testing.assert_allclose(RidgePredictor(alpha=1e12).fit(x, y).predict(x), y.mean(), atol=1e-6)
    np.testing.assert_allclose(RidgePredictor(alpha=1e-9).fit(x, y).predict(x), y, atol=1e-6)
    with pytest.raises(RuntimeError, match="before fit"):
        RidgePredictor().predict(x)
    with pytest.raises(ValueError, match="alpha"):
        RidgePredictor(alpha=0.0)


def test_ridge_survives_an_svd_that_does_not_converge(monkeypatch):
    rng = np.random.default_rng(2)
    for n, d in ((40, 12), (15, 30)):
        x, y = rng.normal(size=(n, d)), rng.normal(size=n)
        expected = RidgePredictor(alpha=2.5).fit(x, y).predict(x)

        def fails(*args, **kwargs):
            raise np.linalg.LinAlgError("SVD did not converge")

        with monkeypatch.context() as m:
            m.setattr(np.linalg, "svd", fails)
            got = RidgePredictor(alpha=2.5).fit(x, y).predict(x)
        np.testing.assert_allclose(got, expected, atol=1e-9)


@dataclasses.dataclass
class Record:
    key: str
    arch: object
    accuracy: float


class EncodingObjective(Objective):
    """Every architecture of the space is a candidate; its score is a given function of it."""

    name = "synthetic"

    def __init__(self, accuracy):
        self.accuracy = accuracy

    def check_budget(self, budget):
        pass

    def fits(self, arch, budget):
        return True

    def score(self, record, budget):
        return (record.accuracy, 1.0)

    def predictor_rows(self, record, budgets):
        return [(SPACE.encode(record.arch), record.accuracy)]

    def query_rows(self, archs, budget):
        return np.stack([SPACE.encode(a) for a in archs]), np.arange(len(archs))


def records_of(accuracy, count, seed=0):
    rng = np.random.default_rng(seed)
    out, seen = [], set()
    while len(out) < count:
        arch = SPACE.sample(rng=rng)
        key = arch_key(SPACE, arch)
        if key not in seen:
            seen.add(key)
            out.append(Record(key, arch, accuracy(arch)))
    return out


def linear(arch):
    x = SPACE.encode(arch)
    return float(x @ np.cos(np.arange(x.size) * 1.3))


def test_a_predictor_below_the_floor_is_not_used_and_the_log_says_so():
    # Accuracies unrelated to the architecture: no model ranks held-out candidates.
    noise = np.random.default_rng(5)
    records = records_of(lambda arch: float(noise.random()), 60)
    objective = EncodingObjective(None)
    choice = choose_predictor(objective, records, [1.0], PredictorSettings(min_tau=0.2))
    assert choice.predictor is not None and choice.tau < 0.2
    assert not choice.used and "below the floor 0.2" in choice.reason
    # A learnable target clears the same floor; a floor above its tau refuses it too.
    good = records_of(linear, 60)
    assert choose_predictor(objective, good, [1.0], PredictorSettings(min_tau=0.2)).used
    strict = choose_predictor(objective, good, [1.0], PredictorSettings(min_tau=0.999))
    assert not strict.used and strict.tau < 0.999
    # -1 uses any predictor (the search before the floor existed).
    assert choose_predictor(objective, records, [1.0], PredictorSettings(min_tau=-1)).used

    # In the search: generations after the first are not ranked by it, and the log says so.
    lines, summaries = [], []
    config = EvolutionConfig(
        population=12, generations=3, inner_generations=5, seed=0, min_predictor_tau=0.2
    )
    evolution.evolve(
        SPACE,
        objective,
        [1.0],
        config,
        lambda archs: [Record(arch_key(SPACE, a), a, float(noise.random())) for a in archs],
        records=records,
        log=lines.append,
        on_generation=summaries.append,
    )
    later = summaries[1:]
    assert [s["ranked_by"] for s in later] == ["children of the best, unranked"] * 2
    assert all(not s["predictor"]["used"] and s["inner_evaluated"] == 0 for s in later)
    assert sum("NOT used: held-out tau" in line for line in lines) == 2


@functools.lru_cache(maxsize=1)
def linear_median() -> float:
    return float(np.median([r.accuracy for r in records_of(linear, 200)]))


def v_shape(arch):
    # The distance of `linear` from its median over the sampled records: symmetric, so an
    # additive (ridge) model finds little to rank by; two ReLUs of the MLP express it.
    return abs(linear(arch) - linear_median())


@pytest.mark.parametrize("target, winner, count", [(linear, "ridge", 30), (v_shape, "mlp", 200)])
def test_the_model_with_the_better_held_out_tau_is_chosen(target, winner, count):
    records = records_of(target, count)
    objective = EncodingObjective(None)
    choice = choose_predictor(objective, records, [1.0], PredictorSettings(min_tau=-1))
    ridge = [name for name in choice.taus if name.startswith("ridge")]
    assert len(ridge) == 1 and set(choice.taus) == {"mlp", ridge[0]}
    # The construction makes `winner` clearly better on held-out candidates ...
    other = "mlp" if winner == "ridge" else ridge[0]
    best = ridge[0] if winner == "ridge" else "mlp"
    assert choice.taus[best] > choice.taus[other] + 0.05
    # ... and the choice follows the held-out tau, and reports it.
    assert choice.model == best and choice.tau == choice.taus[best]
    summary = choice.summary()
    assert summary["model"] == best and summary["held_out_tau"] == round(choice.tau, 4)
    # The held-out tau is not the in-sample one: the chosen model ranks its own training
    # rows better than unseen ones.
    x = np.stack([SPACE.encode(r.arch) for r in records])
    in_sample = kendall_tau(choice.predictor.predict(x), [r.accuracy for r in records])
    assert in_sample > choice.tau


def test_a_grouped_predictor_fits_each_group_and_falls_back_to_all_rows():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 3))
    x[:, -1] = np.repeat([0.0, 1.0, 2.0], 20)
    x[40:45, -1] = 7.0  # a group of 5 rows: fewer than min_rows
    # Opposite slopes in groups 0 and 1: no single linear model ranks both.
    y = np.where(x[:, -1] == 0.0, x[:, 0], -x[:, 0]) + 0.01 * x[:, 1]
    model = GroupedPredictor(lambda: RidgePredictor(alpha=1e-6), lambda r: r[:, -1], 8)
    model.fit(x, y)
    for g in (0.0, 1.0):
        rows = x[:, -1] == g
        np.testing.assert_allclose(model.predict(x[rows]), y[rows], atol=1e-4)
    pooled = RidgePredictor(alpha=1e-6).fit(x, y)
    small = x[:, -1] == 7.0
    # The small group and an unseen one are predicted by the model of all rows.
    np.testing.assert_allclose(model.predict(x[small]), pooled.predict(x[small]))
    unseen = x[:3].copy()
    unseen[:, -1] = 9.0
    np.testing.assert_allclose(model.predict(unseen), pooled.predict(unseen))
    assert model.predict(np.zeros((0, 3))).shape == (0,)
    with pytest.raises(RuntimeError, match="before fit"):
        GroupedPredictor(RidgePredictor, lambda r: r[:, -1]).predict(x)


class TwoBudgetObjective(EncodingObjective):
    """Two budgets whose scores rank the same candidates in opposite orders (a gene that
    helps at one budget hurts at the other); rows carry the budget as their last feature."""

    name = "two_budgets"
    predictor_group = "budget"

    def score(self, record, budget):
        return (linear(record.arch) * (1.0 if budget == 1.0 else -1.0), 1.0)

    def predictor_rows(self, record, budgets):
        return [(self._row(record.arch, b), self.score(record, b)[0]) for b in budgets]

    def query_rows(self, archs, budget):
        return np.stack([self._row(a, budget) for a in archs]), np.arange(len(archs))

    def predictor_groups(self, x):
        return np.asarray(x)[:, -1]

    @staticmethod
    def _row(arch, budget):
        return np.concatenate([SPACE.encode(arch), [budget]])


def test_the_search_chooses_a_model_per_budget_when_budgets_rank_differently():
    records = records_of(linear, 60)
    choice = choose_predictor(
        TwoBudgetObjective(None), records, [1.0, 2.0], PredictorSettings(min_tau=-1)
    )
    assert choice.model.endswith(" per budget")
    assert {"mlp", "mlp per budget"} <= set(choice.taus)
    pooled_ridge = [v for k, v in choice.taus.items() if k.startswith("ridge") and " per " not in k]
    grouped_ridge = [v for k, v in choice.taus.items() if k.startswith("ridge") and " per " in k]
    # One linear model over both budgets cannot rank either (the targets cancel); one per
    # budget ranks both; the choice beats every model over all rows.
    assert pooled_ridge[0] < 0.3 and grouped_ridge[0] > 0.8
    assert choice.tau > max(v for k, v in choice.taus.items() if " per " not in k)
    # "mlp" and "ridge" choose among the models over all rows only (the old search's MLP).
    only = choose_predictor(
        TwoBudgetObjective(None), records, [1.0, 2.0], PredictorSettings(kind="mlp", min_tau=-1)
    )
    assert only.model == "mlp" and set(only.taus) == {"mlp"}


def test_a_column_predictor_sees_its_columns_only():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 3))
    model = ColumnPredictor(RidgePredictor(alpha=1e-6), [1]).fit(x, 2.0 * x[:, 1] + 1.0)
    scrambled = x.copy()
    scrambled[:, [0, 2]] = rng.normal(size=(40, 2))
    np.testing.assert_allclose(model.predict(scrambled), 2.0 * x[:, 1] + 1.0, atol=1e-4)
    assert model.predict(np.zeros((0, 3))).shape == (0,)


class SummaryObjective(EncodingObjective):
    """Rows of one-hot genes followed by the architecture's summary."""

    def predictor_rows(self, record, budgets):
        return [(self._row(record.arch), record.accuracy)]

    def query_rows(self, archs, budget):
        return np.stack([self._row(a) for a in archs]), np.arange(len(archs))

    def summary_columns(self):
        start = SPACE.encoding_size
        return np.arange(start, start + SPACE.summarize(SPACE.largest()).size)

    def plain_columns(self):
        return np.arange(SPACE.encoding_size)

    @staticmethod
    def _row(arch):
        return np.concatenate([SPACE.encode(arch), SPACE.summarize(arch)])


def depth_times_width(arch):
    # A smooth function of products of genes (each unit's depth times its width): an MLP
    # on a few ordered inputs fits it from 60 networks better than one on ~70 one-hot slots.
    units = SPACE.summarize(arch)[:-1].reshape(-1, 5)
    return float(np.sqrt((units[:, 0] * units[:, 1]).sum()))


def test_auto_summary_also_tries_the_mlp_on_the_summary_and_takes_it_when_it_ranks_better():
    records = records_of(depth_times_width, 60)
    settings = PredictorSettings(kind="auto_summary", min_tau=-1)
    choice = choose_predictor(SummaryObjective(None), records, [1.0], settings)
    assert "mlp on summary" in choice.taus
    assert choice.taus["mlp on summary"] > choice.taus["mlp"] + 0.05
    assert choice.model == "mlp on summary" and choice.tau == choice.taus["mlp on summary"]
    # Objectives without summary columns, and the other kinds, never try it.
    plain = choose_predictor(EncodingObjective(None), records, [1.0], settings)
    assert not any("summary" in name for name in plain.taus)
    for kind in ("auto", "mlp"):
        other = PredictorSettings(kind=kind, min_tau=-1)
        taus = choose_predictor(SummaryObjective(None), records, [1.0], other).taus
        assert not any("summary" in name for name in taus), kind
