"""Tests of the pure gene operators of enas4d_tf.space.ops (mutate, crossover, repair, ...)."""

import dataclasses

import numpy as np
import pytest

from enas4d_tf.model.macs import stage_macs
from enas4d_tf.space import Arch, SearchSpace, genes, ops

PRESETS = ["tiny", "fashion_mnist", "imagenet_mbv3"]


@pytest.mark.parametrize("name", PRESETS)
def test_mutation_and_crossover_give_valid_architectures(name):
    space = SearchSpace.preset(name)
    rng = np.random.default_rng(0)
    for _ in range(30):
        a, b = space.sample(rng=rng), space.sample(rng=rng)
        for child in (
            ops.mutate(space, a, 0.3, rng),
            ops.crossover(space, a, b, rng),
            ops.mutate(space, ops.crossover(space, a, b, rng), 1.0, rng),
        ):
            space.validate(child)


def _gene_values(space, arch):
    return [genes.get(arch, g) for g in genes.genes(space)]


def test_mutation_probability_one_changes_every_gene_and_zero_none():
    space = SearchSpace.preset("fashion_mnist")
    rng = np.random.default_rng(1)
    arch = space.sample(rng=rng)
    before = _gene_values(space, arch)
    after = _gene_values(space, ops.mutate(space, arch, 1.0, rng))
    assert all(x != y for x, y in zip(before, after, strict=True))
    assert ops.mutate(space, arch, 0.0, rng) == arch
    # 3*3*(2 + 3*2) + 1 genes in the fashion_mnist space.
    assert len(before) == 73


def test_crossover_takes_each_gene_from_one_parent():
    space = SearchSpace.preset("fashion_mnist")
    rng = np.random.default_rng(2)
    a, b = space.largest(), space.smallest()
    child = ops.crossover(space, a, b, rng)
    va, vb, vc = (_gene_values(space, x) for x in (a, b, child))
    assert all(c in (x, y) for x, y, c in zip(va, vb, vc, strict=True))
    from_a = sum(c == x for x, c in zip(va, vc, strict=True))
    assert 0 < from_a < len(vc)  # a mix, not a copy


def test_arch_key_ignores_genes_of_inactive_blocks():
    space = SearchSpace.preset("tiny")
    d = space.smallest().to_dict()  # depth 1 everywhere: block 1 is inactive
    other = dict(d)
    other["kernel"] = [[[k[0], 5] for k in unit] for unit in d["kernel"]]
    assert ops.arch_key(space, Arch.from_dict(d)) == ops.arch_key(space, Arch.from_dict(other))
    assert ops.arch_key(space, space.smallest()) != ops.arch_key(space, space.largest())


def test_repair_reaches_the_budget_and_fails_cleanly_below_the_smallest():
    space = SearchSpace.preset("fashion_mnist")
    rng = np.random.default_rng(3)
    smallest_cost = stage_macs(space, space.smallest())[-1]
    largest_cost = stage_macs(space, space.largest())[-1]
    for budget in [smallest_cost, 1.5 * smallest_cost, 0.3 * largest_cost]:

        def fits(a, budget=budget):
            return stage_macs(space, a)[-1] <= budget

        repaired = ops.repair(space, space.largest(), fits, rng)
        space.validate(repaired)
        assert fits(repaired)
        sampled = ops.sample_within(space, fits, rng, max_tries=5)
        assert fits(sampled)
    with pytest.raises(ValueError, match="smallest network"):
        ops.repair(space, space.largest(), lambda a: stage_macs(space, a)[-1] < smallest_cost, rng)


def test_summary_describes_the_network_and_ignores_inactive_blocks():
    space = SearchSpace.preset("fashion_mnist")
    largest, smallest = space.largest(), space.smallest()
    big, small = space.summarize(largest), space.summarize(smallest)
    assert big.shape == small.shape == (ops.summary_size(space),) and big.dtype == np.float32
    k, e = max(space.kernel_choices), max(space.expand_choices)
    # Per unit: depth, width, mean kernel, mean expand, mean kernel^2 * expand.
    assert big[:5].tolist() == [space.max_depth, max(space.width_choices), k, e, k * k * e]
    assert big[-1] == max(space.resolution_choices) and small[-1] == min(space.resolution_choices)
    assert (small[:-1].reshape(-1, 5)[:, 0] == min(space.depth_choices)).all()
    # Genes of blocks past a unit's depth change nothing the network computes, nor its summary.
    kernel = [[list(unit) for unit in stage] for stage in smallest.kernel]
    kernel[0][0][-1] = max(space.kernel_choices)  # block 3 of a depth-1 unit
    same = dataclasses.replace(smallest, kernel=kernel)
    assert same != smallest
    np.testing.assert_array_equal(space.summarize(same), small)
