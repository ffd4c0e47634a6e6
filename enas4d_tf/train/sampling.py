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

import math
from collections.abc import Sequence

import numpy as np

from enas4d_tf.model.macs import stage_macs
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
ARCH_SAMPLINGS = ("uniform", "macs")
# Draws per MACs target, at scales stratified over [0, 1]: enough that the closest one is
# near any target of the space, cheap on the host (a MACs count takes ~0.25 ms).
MACS_SAMPLING_DRAWS = 16


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


def last_exit_macs(space: SearchSpace, arch: Arch) -> int:
    """MACs of `arch` up to its last exit (classifiers excluded: they do not depend on the
    architecture's genes more than its widths, and the sampler needs no class count)."""
    return int(stage_macs(space, arch)[-1])


def _scaled_draw(space: SearchSpace, rng: np.random.Generator, phase: int, scale: float) -> Arch:
    """An architecture whose elastic genes sit around the fraction `scale` (0: smallest
    choice, 1: largest) of their sorted choices, with a spread of about one choice."""
    elastic = elastic_genes(phase)

    def pick(gene):
        choices = sorted(gene.choices)
        if gene.name not in elastic:
            return choices[-1]
        position = scale * (len(choices) - 1) + rng.normal(0.0, 0.6)
        return choices[int(np.clip(np.rint(position), 0, len(choices) - 1))]

    return build(space, pick)


def sample_arch_by_macs(
    space: SearchSpace, rng: np.random.Generator, phase: int = FULL_PHASE
) -> Arch:
    """A random architecture whose MACs are spread evenly over the phase's range (in log).

    Draws a MACs target log-uniform between the phase's smallest and largest network, then
    `MACS_SAMPLING_DRAWS` architectures at scales stratified over [0, 1] (each gene near that
    fraction of its choices), and returns the one closest to the target. Gene-uniform
    sampling (`sample_arch`) trains only the middle of the space: its draws' MACs bunch
    between about an eighth and a third of the largest network's, and the costliest part of
    the space is never trained (`bench/sampling_coverage.py`).

    Raises:
      ValueError: `phase` is out of range.
    """
    low = math.log(last_exit_macs(space, smallest_arch(space, phase)))
    high = math.log(last_exit_macs(space, space.largest()))
    target = rng.uniform(low, high)
    scales = (np.arange(MACS_SAMPLING_DRAWS) + rng.uniform(size=MACS_SAMPLING_DRAWS)) / (
        MACS_SAMPLING_DRAWS
    )
    draws = [_scaled_draw(space, rng, phase, float(u)) for u in scales]
    return min(draws, key=lambda a: abs(math.log(last_exit_macs(space, a)) - target))


def spread_archs(space: SearchSpace, count: int, seed: int = 0) -> list[Arch]:
    """`count` fixed architectures spread over the space's MACs, cheapest first.

    Targets log-spaced strictly between the smallest and the largest network (which
    training-time evaluation measures anyway); for each, the closest of 64 stratified draws
    (as `sample_arch_by_macs` makes them), seeded by `seed`. The same arguments give the
    same list on every run.
    """
    if count <= 0:
        return []
    rng = np.random.default_rng([int(seed), 17])
    low = math.log(last_exit_macs(space, space.smallest()))
    high = math.log(last_exit_macs(space, space.largest()))
    archs = []
    for i in range(count):
        target = low + (i + 1) / (count + 1) * (high - low)
        draws = [_scaled_draw(space, rng, FULL_PHASE, (j + rng.uniform()) / 64) for j in range(64)]
        archs.append(min(draws, key=lambda a: abs(math.log(last_exit_macs(space, a)) - target)))
    return archs


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
    space: SearchSpace,
    seed: int,
    step: int,
    num_random: int,
    phase: int = FULL_PHASE,
    arch_sampling: str = "uniform",
) -> list[Arch]:
    """The architectures trained in one step: the sandwich rule.

    Args:
      space: the search space.
      seed: the run's seed.
      step: the global step number (0-based).
      num_random: how many random architectures besides the largest and the smallest.
      phase: progressive-shrinking phase (3: every gene elastic).
      arch_sampling: "uniform" (`sample_arch`) or "macs" (`sample_arch_by_macs`).

    Returns:
      `[largest, smallest of the phase, num_random random ones]`; the same arguments give the
      same list on every replica, worker and restart.

    Raises:
      ValueError: unknown `arch_sampling`.
    """
    if arch_sampling not in ARCH_SAMPLINGS:
        raise ValueError(f"unknown arch_sampling {arch_sampling!r}; use one of {ARCH_SAMPLINGS}")
    sampler = sample_arch_by_macs if arch_sampling == "macs" else sample_arch
    rng = np.random.default_rng([int(seed), int(step)])
    archs = [space.largest(), smallest_arch(space, phase)]
    archs += [sampler(space, rng, phase) for _ in range(num_random)]
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
