"""Evolutionary search over the genes of a multi-stage search space.

`evolve`, a generational search for several MACs budgets at once
that shares every measurement between the budgets:

* generation 1: for each budget, random architectures that meet its cost constraint;
* each later generation: for each budget, the best measured architectures at that budget are
  parents; children come from crossover (probability `crossover_prob`) and per-gene mutation
  (probability `mutation_prob`), are repaired to meet the constraint, and an accuracy
  predictor trained on everything measured so far ranks `pool_factor` times more children
  than are measured; only the top-ranked are measured.

The gene operators it uses (mutation, crossover, repair toward the smallest network,
sampling under a cost constraint, `arch_key`) are pure functions of `enas4d_tf.space.ops`,
imported here under their names; constraint handling always terminates (see there). A
budget that the smallest network does not meet is refused up front with a ValueError.

What "measure" and "score" mean is given by an `Objective` (dynamic or static networks, see
`enas4d_tf.search.objectives`), so this module needs no TensorFlow.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from enas4d_tf.search.predictor import AccuracyPredictor
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
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name} = {getattr(self, name)} {rule}")


class Objective(abc.ABC):
    """What the search optimises for one kind of network (dynamic or static)."""

    name: str = ""

    @abc.abstractmethod
    def check_budget(self, budget: float) -> None:
        """Raises ValueError when no architecture can meet `budget`."""

    @abc.abstractmethod
    def fits(self, arch: Arch, budget: float) -> bool:
        """Whether `arch` is a candidate for `budget` (cheap: from its MACs alone)."""

    @abc.abstractmethod
    def score(self, record: Any, budget: float) -> tuple[float, float] | None:
        """`(accuracy, cost)` of a measured record within `budget`, or None if it cannot."""

    @abc.abstractmethod
    def predictor_rows(self, record: Any, budgets: Sequence[float]) -> list:
        """`[(features, target accuracy)]` a measured record teaches the accuracy predictor
        (features: a 1-D float array of a fixed length)."""

    @abc.abstractmethod
    def predict(self, predictor: AccuracyPredictor, archs: list[Arch], budget: float):
        """Predicted scores `(len(archs),)` of unmeasured `archs` at `budget` (the highest
        is measured first)."""


@dataclasses.dataclass
class EvolutionResult:
    """What `evolve` found.

    Attributes:
      best: `{budget: (record, (accuracy, cost))}` for every budget some record meets.
      records: every record the search knew, in the order it learned of them.
      measured: records requested from `measure` by this search, repeats excluded.
    """

    best: dict
    records: list
    measured: int


def _rank_key(objective: Objective, record: Any, budget: float):
    score = objective.score(record, budget)
    if score is None:
        return None
    return (-score[0], score[1], record.key)


def best_records(
    objective: Objective, records: Sequence[Any], budget: float, count: int
) -> list[Any]:
    """The `count` records most accurate within `budget` (ties: cheaper, then by key)."""
    ranked = []
    for r in records:
        key = _rank_key(objective, r, budget)
        if key is not None:
            ranked.append((key, r))
    ranked.sort(key=lambda kr: kr[0])
    return [r for _, r in ranked[:count]]


def evolve(
    space: SearchSpace,
    objective: Objective,
    budgets: Sequence[float],
    config: EvolutionConfig,
    measure: Callable[[list[Arch]], list[Any]],
    records: Sequence[Any] = (),
    log: Callable[[str], None] | None = None,
) -> EvolutionResult:
    """Searches for the most accurate architecture within each budget.

    Args:
      space: the search space.
      objective: the kind of network and its score.
      budgets: MACs budgets (each must pass `objective.check_budget`).
      config: the evolution settings.
      measure: measures a list of architectures and returns one record per architecture,
        in order; a record has `.arch` and `.key` (`arch_key`) and is what `objective.score`
        reads. Measuring is where the time goes; this function never asks twice for a key.
      records: records known before the search starts (they can be parents).
      log: called with one progress line per generation.

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
    for generation in range(1, config.generations + 1):
        chosen = search.children(generation)
        new = search.measure_new(chosen)
        if log is not None:
            log(
                f"[{objective.name}] generation {generation}/{config.generations}: "
                f"{len(chosen)} candidates ({new} measured, {len(chosen) - new} known), "
                f"{len(search.order)} known in all; best {search.best_line()}; "
                f"{time.perf_counter() - start:.1f}s"
            )
    best_per_budget = {}
    for b in budgets:
        top = best_records(objective, search.order, b, 1)
        if top:
            best_per_budget[b] = (top[0], objective.score(top[0], b))
    return EvolutionResult(best=best_per_budget, records=search.order, measured=search.measured)


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

    def children(self, generation: int) -> list[Arch]:
        """The architectures of `generation` for every budget in turn, none known before."""
        space, config, rng = self.space, self.config, self.rng
        chosen: list[Arch] = []
        taken = set(self.known)
        if generation > 1:
            predictor = _train_predictor(self.objective, self.order, self.budgets, config)
        for b in self.budgets:

            def fits(a, b=b):
                return self.objective.fits(a, b)

            if generation == 1:
                pool = _unique_children(
                    space,
                    lambda fits=fits: sample_within(space, fits, rng, config.max_sample_tries),
                    self.per_budget,
                    taken,
                )
                picked = pool
            else:
                parents = [
                    r.arch for r in best_records(self.objective, self.order, b, self.num_parents)
                ]
                pool = _unique_children(
                    space,
                    lambda parents=parents, fits=fits: _child(space, parents, fits, rng, config),
                    self.per_budget * config.pool_factor,
                    taken,
                )
                picked = _rank(self.objective, predictor, pool, b)[: self.per_budget]
            for a in picked:
                taken.add(arch_key(space, a))
            # Unpicked children go back: a later budget may pick them.
            for a in pool:
                if a not in picked:
                    taken.discard(arch_key(space, a))
            chosen.extend(picked)
        return chosen

    def best_line(self) -> str:
        """`<budget>: <accuracy> @ <cost>` of the best record of each budget."""
        best = []
        for b in self.budgets:
            top = best_records(self.objective, self.order, b, 1)
            if top:
                acc, cost = self.objective.score(top[0], b)
                best.append(f"{format_macs(b)}: {acc:.4f} @ {format_macs(cost)}")
        return "; ".join(best) or "none yet"


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


def _train_predictor(objective, records, budgets, config) -> AccuracyPredictor | None:
    rows, targets, seen = [], [], set()
    for r in records:
        for x, target in objective.predictor_rows(r, budgets):
            signature = (r.key, x.tobytes())
            if signature in seen:
                continue
            seen.add(signature)
            rows.append(x)
            targets.append(target)
    if len(rows) < config.min_predictor_rows:
        return None
    x, y = np.stack(rows), np.asarray(targets)
    if len(rows) > _MAX_PREDICTOR_ROWS:
        # Training time grows with the rows; a fixed random subset keeps it to seconds.
        keep = np.sort(
            np.random.default_rng(config.seed).choice(len(rows), _MAX_PREDICTOR_ROWS, False)
        )
        x, y = x[keep], y[keep]
    return AccuracyPredictor(seed=config.seed).fit(x, y)


def _rank(objective, predictor, pool: list[Arch], budget: float) -> list[Arch]:
    if predictor is None or not pool:
        return list(pool)
    predicted = objective.predict(predictor, pool, budget)
    order = sorted(range(len(pool)), key=lambda i: (-predicted[i], i))
    return [pool[i] for i in order]


def format_macs(macs: float) -> str:
    """`2.5e6 -> '2.5M'`, `800000 -> '800K'`, `1.2e9 -> '1.2G'` (3 significant digits)."""
    macs = float(macs)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(macs) >= scale:
            return f"{macs / scale:.3g}{unit}"
    return f"{macs:.3g}"
