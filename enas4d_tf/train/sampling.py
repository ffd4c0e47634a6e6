"""Which architectures a training step trains: the sandwich rule and progressive shrinking.

Every function here is pure: the architectures of a step depend only on the search space,
the run's seed, the step number and the phase, so every replica and every worker samples the
same ones without talking to each other, and a resumed run continues the same schedule.

Progressive shrinking (once-for-all) makes the genes elastic one group at a time:

  phase 0  resolution and kernel
  phase 1  + depth
  phase 2  + expand
  phase 3  + width   (every gene elastic: the plain sandwich rule)

Genes that are not elastic yet stay at their largest value. Elastic genes draw their random
numbers in `enas4d_tf.space.genes.build_order` (every depth gene, then kernel, expand, width,
resolution), the order every sampler of the space uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from enas4d_tf.space import Arch, SearchSpace
from enas4d_tf.space.genes import build
from enas4d_tf.space.ops import random_choice

# Genes that become elastic in each phase of progressive shrinking.
PHASE_GENES = (("resolution", "kernel"), ("depth",), ("expand",), ("width",))
NUM_PHASES = len(PHASE_GENES)
FULL_PHASE = NUM_PHASES - 1
# Epoch fractions at which phases 0..3 start in the progressive schedule by default.
DEFAULT_PHASE_STARTS = (0.0, 0.25, 0.5, 0.75)
SCHEDULES = ("sandwich", "progressive")


def elastic_genes(phase: int) -> frozenset[str]:
    """The genes sampled freely in `phase` (0..3); the others stay at their largest value.

    Raises:
      ValueError: `phase` is not in 0..3.
    """
    if not 0 <= phase < NUM_PHASES:
        raise ValueError(f"phase must be in 0..{NUM_PHASES - 1}, got {phase}")
    return frozenset(g for genes in PHASE_GENES[: phase + 1] for g in genes)


def sample_arch(space: SearchSpace, rng: np.random.Generator, phase: int = FULL_PHASE) -> Arch:
    """A random architecture in which only the genes elastic in `phase` vary.

    Args:
      space: the search space.
      rng: the random generator (consumed).
      phase: progressive-shrinking phase, 0..3; 3 (the default) samples every gene.

    Returns:
      The architecture: elastic genes uniform over their choices, the others at their largest.

    Raises:
      ValueError: `phase` is out of range.
    """
    elastic = elastic_genes(phase)

    def pick(gene):
        return random_choice(gene, rng) if gene.name in elastic else max(gene.choices)

    return build(space, pick)


def smallest_arch(space: SearchSpace, phase: int = FULL_PHASE) -> Arch:
    """The smallest architecture of `phase`: elastic genes smallest, the others largest.

    Raises:
      ValueError: `phase` is out of range.
    """
    elastic = elastic_genes(phase)
    return build(
        space, lambda gene: min(gene.choices) if gene.name in elastic else max(gene.choices)
    )


def step_archs(
    space: SearchSpace, seed: int, step: int, num_random: int, phase: int = FULL_PHASE
) -> list[Arch]:
    """The architectures trained in one step: the sandwich rule.

    Args:
      space: the search space.
      seed: the run's seed.
      step: the global step number (0-based).
      num_random: how many random architectures besides the largest and the smallest.
      phase: progressive-shrinking phase (3: every gene elastic).

    Returns:
      `[largest, smallest of the phase, num_random random ones]`; the same arguments give the
      same list on every replica, worker and restart.
    """
    rng = np.random.default_rng([int(seed), int(step)])
    archs = [space.largest(), smallest_arch(space, phase)]
    archs += [sample_arch(space, rng, phase) for _ in range(num_random)]
    return archs


def phase_for_epoch(
    epoch: int, epochs: int, schedule: str, starts: Sequence[float] = DEFAULT_PHASE_STARTS
) -> int:
    """The progressive-shrinking phase of an epoch.

    Args:
      epoch: the 0-based epoch.
      epochs: epochs in the run.
      schedule: "sandwich" (always the full phase) or "progressive".
      starts: for "progressive", the fraction of the epochs at which each phase starts
        (`NUM_PHASES` increasing numbers, the first 0).

    Returns:
      The phase, 0..3.

    Raises:
      ValueError: unknown schedule or malformed `starts`.
    """
    if schedule == "sandwich":
        return FULL_PHASE
    if schedule != "progressive":
        raise ValueError(f"unknown schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")
    check_phase_starts(starts)
    phase = 0
    for p, start in enumerate(starts):
        if epoch >= start * epochs - 1e-9:
            phase = p
    return phase


def check_phase_starts(starts: Sequence[float]) -> None:
    """Checks progressive phase start fractions.

    Raises:
      ValueError: not `NUM_PHASES` numbers, not starting at 0, not increasing or not below 1.
    """
    starts = list(starts)
    if len(starts) != NUM_PHASES:
        raise ValueError(f"progressive phase starts need {NUM_PHASES} fractions, got {starts}")
    increasing = all(b > a for a, b in zip(starts[:-1], starts[1:], strict=True))
    if starts[0] != 0.0 or not increasing or starts[-1] >= 1.0:
        raise ValueError(
            f"progressive phase starts must begin at 0 and increase below 1, got {starts}"
        )


def stack_arch_tensors(space: SearchSpace, archs: Sequence[Arch]) -> dict[str, np.ndarray]:
    """The size arrays of `archs` stacked along a new first axis (one row per architecture).

    Returns:
      A dict like `ArchSizes.as_tensors()`, each int32 array with a leading `len(archs)` axis.
    """
    rows = [space.sizes(a).as_tensors() for a in archs]
    return {k: np.stack([r[k] for r in rows]).astype(np.int32) for k in rows[0]}
