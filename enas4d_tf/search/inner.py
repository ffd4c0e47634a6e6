"""Evolution on predicted scores alone: which few architectures of a budget to measure next.

Once-for-all's recipe: measuring a candidate runs the supernet (seconds), predicting its
accuracy is a dot product (microseconds), so a large evolution on the predictor's scores
picks the few candidates worth measuring. `inner_evolution` runs one for one budget:

* population: the best measured architectures at the budget (seeds) and random ones that
  meet its constraint;
* each generation: up to as many children as the population, each from binary-tournament
  parents (crossover with probability `crossover_prob`, then per-gene mutation); a child
  that misses the constraint is dropped (at most 3 tries per child kept); the children are
  scored in one batch and the best `population` of parents and children survive (ties: by
  key, so a seed gives the same run);
* the result: the `count` best-scored architectures it met that are not excluded (already
  measured, or chosen for another budget).

Numpy and the gene operators only: no TensorFlow, no measurement. Its CPU time is reported
so the log shows what it costs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

from enas4d_tf.space import Arch, SearchSpace
from enas4d_tf.space.ops import arch_key, crossover, mutate, repair, sample_within

# Uniform samples before a random member of the first population is repaired (few: at a tight
# budget most miss, and each miss costs a cost evaluation).
_FILL_TRIES = 3
# Children made per child kept in a generation at most (the rest miss the constraint).
_TRIES_PER_CHILD = 3


@dataclasses.dataclass(frozen=True)
class InnerConfig:
    """Settings of `inner_evolution`.

    Attributes:
      population: architectures kept per generation.
      generations: generations of children (0: the initial population is all it scores).
      mutation_prob: probability that a gene of a child changes.
      crossover_prob: probability that a child comes from two parents.
    """

    population: int = 100
    generations: int = 50
    mutation_prob: float = 0.1
    crossover_prob: float = 0.5


@dataclasses.dataclass
class InnerResult:
    """What `inner_evolution` picked.

    Attributes:
      archs: the picked architectures, best predicted first.
      predicted: their predicted scores.
      evaluated: distinct architectures it scored.
      cpu_seconds: process CPU time it took.
    """

    archs: list
    predicted: list
    evaluated: int
    cpu_seconds: float


class _Archive:
    """Every architecture scored so far: `arch.to_json()` -> (arch, predicted score).

    Keyed by the JSON rather than `arch_key` (which encodes the architecture, a large part
    of the time per child); two architectures that differ only in unused genes are then two
    entries, and `inner_evolution` drops the second when it picks.
    """

    def __init__(self, space: SearchSpace, score: Callable[[list], np.ndarray]):
        self.space = space
        self.score = score
        self.entries: dict[str, tuple[Arch, float]] = {}

    def add(self, archs: Sequence[Arch]) -> list[str]:
        """Scores the new ones in one batch; returns the keys of `archs` (repeats once)."""
        keys, new, new_keys, seen = [], [], [], set()
        for a in archs:
            k = a.to_json()
            if k in seen:
                continue
            seen.add(k)
            keys.append(k)
            if k not in self.entries:
                new.append(a)
                new_keys.append(k)
        if new:
            for k, a, s in zip(new_keys, new, self.score(new), strict=True):
                self.entries[k] = (a, float(s))
        return keys

    def ranked(self, keys) -> list[str]:
        """`keys` by predicted score, best first (ties: by key)."""
        return sorted(keys, key=lambda k: (-self.entries[k][1], k))


def inner_evolution(
    space: SearchSpace,
    fits: Callable[[Arch], bool],
    score: Callable[[list], np.ndarray],
    seeds: Sequence[Arch],
    count: int,
    exclude: set,
    config: InnerConfig,
    rng: np.random.Generator,
) -> InnerResult:
    """Evolves architectures meeting `fits` on `score` alone; returns the best `count`.

    Args:
      space: the search space.
      fits: the budget's constraint (every architecture returned meets it).
      score: predicted scores `(n,)` of a list of architectures (higher is better; -inf: no
        use at this budget, never returned).
      seeds: architectures to start from (the best measured ones); those not meeting `fits`
        are repaired.
      count: architectures to return at most.
      exclude: keys (`arch_key`) never returned: measured, or taken by another budget.
      config: the settings.
      rng: the random stream.

    Returns:
      The InnerResult.
    """
    start = time.process_time()
    archive = _Archive(space, score)
    first = [s if fits(s) else repair(space, s, fits, rng) for s in seeds]
    while len(first) < config.population:
        first.append(sample_within(space, fits, rng, _FILL_TRIES))
    population = archive.ranked(archive.add(first))[: config.population]
    for _ in range(config.generations):
        children = []
        # An infeasible child is dropped, not repaired: repair costs a cost evaluation per
        # step and drags children toward the smallest network.
        for _ in range(_TRIES_PER_CHILD * config.population):
            if len(children) == config.population:
                break
            child = _child(space, archive, population, rng, config)
            if fits(child):
                children.append(child)
        merged = set(population) | set(archive.add(children))
        population = archive.ranked(merged)[: config.population]
    picked, keys = [], set()
    for k in archive.ranked(archive.entries):
        arch, predicted = archive.entries[k]
        key = arch_key(space, arch)
        if len(picked) == count or not np.isfinite(predicted):
            break
        if key not in exclude and key not in keys:
            keys.add(key)
            picked.append(k)
    return InnerResult(
        archs=[archive.entries[k][0] for k in picked],
        predicted=[archive.entries[k][1] for k in picked],
        evaluated=len(archive.entries),
        cpu_seconds=time.process_time() - start,
    )


def _tournament(archive: _Archive, population: list, rng) -> Arch:
    """The better of two members drawn at random (the population is ranked, best first)."""
    i, j = rng.integers(len(population), size=2)
    return archive.entries[population[min(int(i), int(j))]][0]


def _child(space, archive, population, rng, config: InnerConfig) -> Arch:
    child = _tournament(archive, population, rng)
    if rng.random() < config.crossover_prob:
        child = crossover(space, child, _tournament(archive, population, rng), rng)
    return mutate(space, child, config.mutation_prob, rng)
