"""Evolutionary search over the genes of a multi-stage search space.

`evolve`, a generational search for several budgets (MACs or milliseconds) at once that
shares every measurement between the budgets:

* generation 1: for each budget, random architectures that meet its cost constraint;
* each later generation: an accuracy predictor is chosen and checked on everything measured
  so far (`enas4d_tf.search.selection`: an MLP or ridge regression, whichever ranks held-out
  candidates better by Kendall's tau; none when that tau is below a floor). Then, for each
  budget:
  - with `inner_generations > 0` and a predictor whose held-out tau reaches
    `inner_min_predictor_tau`: an evolution on predicted scores alone
    (`enas4d_tf.search.inner`, population and generations in the hundreds, no measurement)
    seeded with the best measured architectures; its `top_k` best are measured;
  - otherwise (`inner_generations = 0`, the search before the inner evolution existed, a
    predictor not trusted that far, or none): the best measured architectures at that
    budget are parents; children come
    from crossover (probability `crossover_prob`) and per-gene mutation (probability
    `mutation_prob`), are repaired to meet the constraint, and the predictor (when used)
    ranks `pool_factor` times more children than are measured; without one, children are
    taken in the order they were made.
  After measuring, the predictions made for the measured children are compared with their
  measurements (the "prospective" tau: candidates no predictor had seen).

The gene operators it uses (mutation, crossover, repair toward the smallest network,
sampling under a cost constraint, `arch_key`) are pure functions of `enas4d_tf.space.ops`,
imported here under their names; constraint handling always terminates (see there). A
budget that the smallest network does not meet is refused up front with a ValueError.

What "measure" and "score" mean is given by an `Objective` (dynamic or static networks, see
`enas4d_tf.search.objectives`), so this module needs no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from enas4d_tf.search.blas import one_blas_thread
from enas4d_tf.search.generation import GenerationLog
from enas4d_tf.search.inner import InnerConfig, inner_evolution

# Re-exported: callers name them as parts of the evolution.
from enas4d_tf.search.scoring import (  # noqa: F401
    Objective,
    best_per_owner,
    best_records,
    format_cost,
    format_macs,
)
from enas4d_tf.search.selection import PredictorSettings, choose_predictor
from enas4d_tf.space import Arch, SearchSpace
from enas4d_tf.space.ops import arch_key, crossover, mutate, repair, sample_within

# Rows the accuracy predictor trains on at most (a fixed random subset beyond that).
_MAX_PREDICTOR_ROWS = 768


@dataclasses.dataclass(frozen=True)
class EvolutionConfig:
    """Settings of `evolve`.

    Attributes:
      population: architectures measured per generation, shared among the budgets (each
        budget gets `ceil(population / len(budgets))`).
      generations: generations in all, the random first one included.
      mutation_prob: probability that a gene of a child changes.
      crossover_prob: probability that a child comes from two parents (then mutated) rather
        than from mutating one.
      parent_fraction: parents per budget as a fraction of `population` (at least 2).
      pool_factor: children generated per child measured; the predictor keeps the best.
      max_sample_tries: uniform samples before a constrained sample is repaired.
      min_predictor_rows: measured rows needed before the predictor ranks children (before
        that, children are taken in the order they were made).
      seed: seeds everything random; the same seed and measurements give the same search.
      inner_population: population of the inner evolution on predicted scores.
      inner_generations: its generations; 0 searches as before it existed (children of the
        best measured, ranked by the predictor).
      top_k: architectures the inner evolution hands to measurement per budget and
        generation; 0: `ceil(population / len(budgets))`, as many as without it.
      predictor: "auto" (MLP or ridge, over all budgets or one per budget, by held-out
        tau), "mlp" or "ridge" (over all budgets), or "auto_summary" ("auto" and the MLP on
        the architecture's summary).
      min_predictor_tau: a predictor whose held-out Kendall tau is below this floor does not
        rank that generation (-1: any predictor ranks, as before the floor existed).
      inner_min_predictor_tau: the inner evolution, which searches far from what was
        measured on the predictor alone, runs only when the predictor's held-out tau
        reaches this; below it (and above `min_predictor_tau`) the predictor ranks children
        of the best. -1: whenever a predictor is used.
      predictor_folds: K of the K-fold that measures the held-out tau.
    """

    population: int = 16
    generations: int = 8
    mutation_prob: float = 0.1
    crossover_prob: float = 0.5
    parent_fraction: float = 0.25
    pool_factor: int = 4
    max_sample_tries: int = 50
    min_predictor_rows: int = 8
    seed: int = 0
    inner_population: int = 100
    inner_generations: int = 50
    top_k: int = 0
    # Chosen by the predictor's held-out tau inside tools.search (0.622 / 0.636 after 102
    # measured, against "auto"'s 0.548 / 0.538). On the efficiency benchmark their fronts at
    # 50 differ noticeably on one seed of four, and both miss its goal on the four-seed mean
    # (BENCHMARKS.md, 2026-12-07).
    predictor: str = "auto_summary"
    # Chosen on the efficiency benchmark's three seeds (BENCHMARKS.md, 2026-12-07): any
    # predictor better than chance ranks children of the best; the inner evolution waits for
    # one that ranks held-out candidates at tau 0.5.
    min_predictor_tau: float = 0.0
    inner_min_predictor_tau: float = 0.5
    predictor_folds: int = 5

    def predictor_settings(self) -> PredictorSettings:
        """How each generation's predictor is chosen."""
        return PredictorSettings(
            kind=self.predictor,
            folds=self.predictor_folds,
            min_tau=self.min_predictor_tau,
            min_rows=self.min_predictor_rows,
            max_rows=_MAX_PREDICTOR_ROWS,
            seed=self.seed,
        )

    def inner_config(self) -> InnerConfig:
        """The inner evolution's settings (its operators' rates are the outer ones)."""
        return InnerConfig(
            population=self.inner_population,
            generations=self.inner_generations,
            mutation_prob=self.mutation_prob,
            crossover_prob=self.crossover_prob,
        )

    def validate(self) -> None:
        """Raises ValueError naming the first setting out of range."""
        checks = [
            ("population", self.population >= 1, "must be >= 1"),
            ("generations", self.generations >= 1, "must be >= 1"),
            ("mutation_prob", 0.0 <= self.mutation_prob <= 1.0, "must be in [0, 1]"),
            ("crossover_prob", 0.0 <= self.crossover_prob <= 1.0, "must be in [0, 1]"),
            ("parent_fraction", 0.0 < self.parent_fraction <= 1.0, "must be in (0, 1]"),
            ("pool_factor", self.pool_factor >= 1, "must be >= 1"),
            ("max_sample_tries", self.max_sample_tries >= 1, "must be >= 1"),
            ("seed", self.seed >= 0, "must be >= 0"),
            ("inner_population", self.inner_population >= 2, "must be >= 2"),
            ("inner_generations", self.inner_generations >= 0, "must be >= 0"),
            ("top_k", self.top_k >= 0, "must be >= 0"),
            (
                "inner_min_predictor_tau",
                -1.0 <= self.inner_min_predictor_tau <= 1.0,
                "must be in [-1, 1]",
            ),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name} = {getattr(self, name)} {rule}")
        self.predictor_settings().validate()


def _log_generation(log, search, entry: GenerationLog, chosen: int, seconds: float) -> None:
    name, config = search.objective.name, search.config
    if entry.choice is not None:
        log(f"[{name}] generation {entry.generation}: {entry.line()}")
    log(
        f"[{name}] generation {entry.generation}/{config.generations}: "
        f"{chosen} candidates ({entry.measured} measured, {chosen - entry.measured} known), "
        f"{len(search.order)} known in all; best {search.best_line()}; {seconds:.1f}s"
    )


@dataclasses.dataclass
class EvolutionResult:
    """What `evolve` found.

    Attributes:
      best: `{budget: (record, (accuracy, cost))}` for every budget some record meets.
      records: every record the search knew, in the order it learned of them.
      measured: records requested from `measure` by this search, repeats excluded.
      generations: one `GenerationLog.summary()` per generation.
    """

    best: dict
    records: list
    measured: int
    generations: list = dataclasses.field(default_factory=list)


def evolve(
    space: SearchSpace,
    objective: Objective,
    budgets: Sequence[float],
    config: EvolutionConfig,
    measure: Callable[[list[Arch]], list[Any]],
    records: Sequence[Any] = (),
    log: Callable[[str], None] | None = None,
    on_generation: Callable[[dict], None] | None = None,
) -> EvolutionResult:
    """Searches for the most accurate architecture within each budget.

    Args:
      space: the search space.
      objective: the kind of network and its score.
      budgets: budgets in the objective's cost unit (each must pass
        `objective.check_budget`).
      config: the evolution settings.
      measure: measures a list of architectures and returns one record per architecture,
        in order; a record has `.arch` and `.key` (`arch_key`) and is what `objective.score`
        reads. Measuring is where the time goes; this function never asks twice for a key.
      records: records known before the search starts (they can be parents).
      log: called with one progress line per generation (and one on its predictor).
      on_generation: called with each generation's summary (`GenerationLog.summary()`)
        once it is measured.

    Returns:
      The EvolutionResult.

    Raises:
      ValueError: a budget no architecture can meet, no budgets, or a bad config.
    """
    config.validate()
    budgets = sorted(float(b) for b in budgets)
    if not budgets:
        raise ValueError("no budgets to search for")
    for b in budgets:
        objective.check_budget(b)
    search = _Evolution(space, objective, budgets, config, measure, records)
    start = time.perf_counter()
    history = []
    for generation in range(1, config.generations + 1):
        with one_blas_thread():  # small predictor matrices: see `enas4d_tf.search.blas`
            chosen, entry = search.children(generation)
        new = search.measure_new(chosen)
        entry.finish(objective, search.known, len(chosen), new)
        history.append(entry.summary())
        if log is not None:
            _log_generation(log, search, entry, len(chosen), time.perf_counter() - start)
        if on_generation is not None:
            on_generation(history[-1])
    best_per_budget = {}
    for b in budgets:
        top = best_records(objective, search.order, b, 1)
        if top:
            best_per_budget[b] = (top[0], objective.score(top[0], b))
    return EvolutionResult(best_per_budget, search.order, search.measured, history)


class _Evolution:
    """The state of one `evolve` call: what is known, in order, and the random stream."""

    def __init__(self, space, objective, budgets, config, measure, records):
        self.space = space
        self.objective = objective
        self.budgets = budgets
        self.config = config
        self.measure = measure
        self.rng = np.random.default_rng([config.seed, _name_seed(objective.name)])
        self.known: dict[str, Any] = {}
        self.order: list[Any] = []
        for r in records:
            if r.key not in self.known:
                self.known[r.key] = r
                self.order.append(r)
        self.per_budget = max(1, math.ceil(config.population / len(budgets)))
        self.num_parents = max(2, round(config.parent_fraction * config.population))
        self.measured = 0

    def measure_new(self, archs: list[Arch]) -> int:
        """Measures the architectures not known yet; returns how many."""
        new = [a for a in archs if arch_key(self.space, a) not in self.known]
        if not new:
            return 0
        for r in self.measure(new):
            if r.key not in self.known:
                self.known[r.key] = r
                self.order.append(r)
        self.measured += len(new)
        return len(new)

    def children(self, generation: int) -> tuple[list[Arch], GenerationLog]:
        """The architectures of `generation` for every budget in turn, none known before,
        and how they were chosen."""
        entry = GenerationLog(self.objective.name, generation, "random (first generation)")
        choice = None
        if generation > 1:
            choice = choose_predictor(
                self.objective, self.order, self.budgets, self.config.predictor_settings()
            )
            entry.choice = choice
        inner = (
            choice is not None
            and choice.used
            and self.config.inner_generations > 0
            and _reaches(choice.tau, self.config.inner_min_predictor_tau)
        )
        if generation > 1:
            entry.ranked_by = (
                "inner evolution on the predictor"
                if inner
                else "predictor over children of the best"
                if choice.used
                else "children of the best, unranked"
            )
        chosen: list[Arch] = []
        taken = set(self.known)
        for b in self.budgets:
            if generation == 1:
                picked = self._random(b, taken)
            elif inner:
                picked = self._inner(b, choice, taken, entry)
            else:
                picked = self._from_parents(b, choice, taken)
            if choice is not None and choice.predictor is not None and picked:
                values = self.objective.predict(choice.predictor, picked, b)
                keys = [arch_key(self.space, a) for a in picked]
                entry.predicted[b] = list(zip(keys, (float(v) for v in values), strict=True))
            for a in picked:
                taken.add(arch_key(self.space, a))
            chosen.extend(picked)
        return chosen, entry

    def _fits(self, budget):
        return lambda a: self.objective.fits(a, budget)

    def _random(self, budget: float, taken: set) -> list[Arch]:
        space, config, rng, fits = self.space, self.config, self.rng, self._fits(budget)
        return _unique_children(
            space,
            lambda: sample_within(space, fits, rng, config.max_sample_tries),
            self.per_budget,
            taken,
        )

    def _from_parents(self, budget: float, choice, taken: set) -> list[Arch]:
        """Children of the best measured, ranked by the predictor when it is used (the pool
        is `pool_factor` times larger then); unpicked children stay free for later budgets."""
        space, config, rng, fits = self.space, self.config, self.rng, self._fits(budget)
        parents = [
            r.arch for r in best_records(self.objective, self.order, budget, self.num_parents)
        ]
        ranked = choice is not None and choice.used
        pool = _unique_children(
            space,
            lambda: _child(space, parents, fits, rng, config),
            self.per_budget * (config.pool_factor if ranked else 1),
            taken,
        )
        if ranked and pool:
            predicted = self.objective.predict(choice.predictor, pool, budget)
            pool = [pool[i] for i in sorted(range(len(pool)), key=lambda i: (-predicted[i], i))]
        return pool[: self.per_budget]

    def _inner(self, budget: float, choice, taken: set, entry: GenerationLog) -> list[Arch]:
        """The inner evolution's best `top_k` for `budget`, seeded with the best measured."""
        config = self.config
        seeds = [
            r.arch
            for r in best_records(
                self.objective, self.order, budget, max(1, config.inner_population // 4)
            )
        ]
        result = inner_evolution(
            self.space,
            self._fits(budget),
            lambda archs: self.objective.predict(choice.predictor, archs, budget),
            seeds,
            config.top_k or self.per_budget,
            taken,
            config.inner_config(),
            self.rng,
        )
        entry.inner_cpu_seconds += result.cpu_seconds
        entry.inner_evaluated += result.evaluated
        return result.archs

    def best_line(self) -> str:
        """`<budget>: <accuracy> @ <cost>` of the best record of each budget."""
        best = []
        unit = getattr(getattr(self.objective, "costs", None), "unit", "MACs")
        for b in self.budgets:
            top = best_records(self.objective, self.order, b, 1)
            if top:
                acc, cost = self.objective.score(top[0], b)
                best.append(f"{format_cost(b, unit)}: {acc:.4f} @ {format_cost(cost, unit)}")
        return "; ".join(best) or "none yet"


def _reaches(tau: float, floor: float) -> bool:
    """Whether a held-out tau reaches `floor` (-1: always, an undefined tau included)."""
    return floor <= -1.0 or (math.isfinite(tau) and tau >= floor)


def _name_seed(name: str) -> int:
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "big")


def _child(space, parents, fits, rng, config) -> Arch:
    if not parents:
        return sample_within(space, fits, rng, config.max_sample_tries)
    if len(parents) >= 2 and rng.random() < config.crossover_prob:
        i, j = rng.choice(len(parents), size=2, replace=False)
        child = crossover(space, parents[int(i)], parents[int(j)], rng)
    else:
        child = parents[int(rng.integers(len(parents)))]
    child = mutate(space, child, config.mutation_prob, rng)
    return child if fits(child) else repair(space, child, fits, rng)


def _unique_children(space, make, count: int, taken: set) -> list[Arch]:
    # Bounded: a small or crowded space can yield fewer than `count` new architectures.
    out, keys = [], set()
    for _ in range(count * 20):
        if len(out) == count:
            break
        a = make()
        k = arch_key(space, a)
        if k in taken or k in keys:
            continue
        keys.add(k)
        out.append(a)
    return out
