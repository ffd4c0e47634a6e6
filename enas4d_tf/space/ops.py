"""Pure functions on the architectures of a space: sample, encode, mutate, crossover, repair.

All of them walk the genes through `enas4d_tf.space.genes` and take and return `Arch`
values. Those that draw random numbers take a `np.random.Generator` and draw in the order
of `genes(space)`, so a seed gives the same architectures on every run.

Constraint handling always terminates: `sample_within` tries a bounded number of random
architectures and then repairs the last one, and `repair` steps one active gene at a time
toward its smallest choice, so it reaches the smallest network in a bounded number of steps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from enas4d_tf.errors import SpaceError
from enas4d_tf.space.arch import Arch
from enas4d_tf.space.genes import Gene, active_genes, build, genes, get, is_active, replace

if TYPE_CHECKING:
    from enas4d_tf.space.search_space import SearchSpace


def random_choice(gene: Gene, rng: np.random.Generator) -> Any:
    """One of `gene`'s choices, uniformly (one `rng.integers` draw)."""
    return gene.choices[int(rng.integers(len(gene.choices)))]


def sample(space: SearchSpace, rng: np.random.Generator) -> Arch:
    """A uniformly random architecture, its genes drawn in `build_order(space)`."""
    return build(space, lambda gene: random_choice(gene, rng))


def encoding_size(space: SearchSpace) -> int:
    """Length of `encode`'s vectors: one slot per choice of every gene."""
    return sum(len(gene.choices) for gene in genes(space))


def encode(space: SearchSpace, arch: Arch) -> np.ndarray:
    """A fixed-length float32 one-hot encoding in `genes(space)` order.

    The genes of blocks past a unit's depth encode as all zeros, so two architectures that
    compute the same network encode the same.
    """
    parts = []
    for gene in genes(space):
        one_hot = np.zeros(len(gene.choices), np.float32)
        position = gene.choices.index(get(arch, gene))
        if is_active(arch, gene):
            one_hot[position] = 1.0
        parts.append(one_hot)
    return np.concatenate(parts)


def summary_size(space: SearchSpace) -> int:
    """Length of `summarize`'s vectors: five numbers per stage and unit, and the resolution."""
    return 5 * space.num_stages * space.num_units + 1


def summarize(space: SearchSpace, arch: Arch) -> np.ndarray:
    """A short numeric description of the network `arch` computes (float32).

    Per stage `s` and unit `u`, in that order: the depth, the width, and over the unit's
    active blocks the mean kernel size, the mean expand ratio and the mean of kernel^2 *
    expand (what a block's depthwise MACs grow with); then the resolution. Inactive blocks
    do not count, so two architectures that compute the same network summarise the same.
    Beside `encode`'s ~200 one-hot slots it gives a model fitted on a hundred measured
    networks a few dozen ordered inputs (`Objective.summary_columns`).
    """
    out = []
    for s in range(space.num_stages):
        for u in range(space.num_units):
            depth = arch.depth[s][u]
            kernel = np.asarray(arch.kernel[s][u][:depth], np.float64)
            expand = np.asarray(arch.expand[s][u][:depth], np.float64)
            out += [depth, arch.width[s][u], kernel.mean(), expand.mean()]
            out.append((kernel**2 * expand).mean())
    out.append(arch.resolution)
    return np.asarray(out, np.float32)


def arch_key(space: SearchSpace, arch: Arch) -> str:
    """A short stable key of the network `arch` computes.

    Built from `space.encode(arch)`, which ignores the genes of inactive blocks, so two
    architectures that differ only there (the same network) share a key.
    """
    return hashlib.sha1(space.encode(arch).tobytes()).hexdigest()[:16]


def mutate(space: SearchSpace, arch: Arch, prob: float, rng: np.random.Generator) -> Arch:
    """Each gene, with probability `prob`, changes to another of its choices (uniformly)."""
    changes = {}
    for gene in genes(space):
        if len(gene.choices) > 1 and rng.random() < prob:
            current = get(arch, gene)
            others = [c for c in gene.choices if c != current]
            changes[gene] = others[int(rng.integers(len(others)))]
    return replace(arch, changes)


def crossover(space: SearchSpace, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
    """Uniform crossover: each gene comes from `a` or `b` with equal probability."""
    return replace(a, {g: get(a if rng.random() < 0.5 else b, g) for g in genes(space)})


def repair(
    space: SearchSpace, arch: Arch, fits: Callable[[Arch], bool], rng: np.random.Generator
) -> Arch:
    """Moves `arch` toward the smallest network until `fits(arch)` holds.

    Each step takes one active gene that is above its smallest choice (chosen at random) one
    choice down. Every step lowers the sum of choice indices, so at most that many steps run.

    Raises:
      SpaceError: (a ValueError) even the smallest network does not fit.
    """
    current = arch
    while not fits(current):
        movable = []
        for gene in active_genes(space, current):
            ordered = sorted(gene.choices)
            position = ordered.index(get(current, gene))
            if position > 0:
                movable.append((gene, ordered[position - 1]))
        if not movable:
            raise SpaceError("the smallest network of the space does not meet the cost constraint")
        gene, value = movable[int(rng.integers(len(movable)))]
        current = replace(current, {gene: value})
    return current


def sample_within(
    space: SearchSpace,
    fits: Callable[[Arch], bool],
    rng: np.random.Generator,
    max_tries: int = 50,
) -> Arch:
    """A random architecture meeting `fits`: up to `max_tries` uniform samples, then repair.

    Raises:
      SpaceError: (a ValueError) even the smallest network does not fit.
    """
    arch = space.sample(rng=rng)
    for _ in range(max(1, max_tries) - 1):
        if fits(arch):
            return arch
        arch = space.sample(rng=rng)
    return repair(space, arch, fits, rng)
