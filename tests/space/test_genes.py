"""Tests of the one gene walk (enas4d_tf.space.genes) and the draw order of every sampler.

The golden values below were computed with the code before the gene walk existed (commit
698a8a9: `SearchSpace._build`, `train_sampling._build` and the `evolution` operators), so they
pin the order of random draws: a fixed-seed training run and search stay bit-identical.
"""

import hashlib

import numpy as np
import pytest

from enas4d_tf.errors import SpaceError
from enas4d_tf.model.macs import stage_macs
from enas4d_tf.space import PRESETS, SearchSpace, genes, ops
from enas4d_tf.space.arch import GENE_NAMES, Arch
from enas4d_tf.train import sampling


def _draws(space):
    """A long fixed-seed sequence through every sampler and operator, as text lines."""
    out = [space.sample(seed=s).to_json() for s in range(5)]
    out += [a.to_json() for p in range(4) for a in sampling.step_archs(space, 3, 7, 2, p)]
    rng = np.random.default_rng(5)
    for _ in range(5):
        a, b = space.sample(rng=rng), space.sample(rng=rng)
        out.append(ops.mutate(space, a, 0.3, rng).to_json())
        out.append(ops.crossover(space, a, b, rng).to_json())
    floor = stage_macs(space, space.smallest())[-1]

    def fits(a):
        return stage_macs(space, a)[-1] <= 2 * floor

    out.append(ops.repair(space, space.largest(), fits, rng).to_json())
    out.append(ops.sample_within(space, fits, rng, max_tries=3).to_json())
    out.append(ops.arch_key(space, space.sample(seed=9)))
    out.append(space.encode(space.sample(seed=9)).tobytes().hex())
    return out


@pytest.mark.parametrize(
    "name, digest",
    [
        ("tiny", "c25bbb5fde93a90d55c981c0306ea987b419fb38"),
        ("fashion_mnist", "38933e59ca4945ac56d8c5f67eb8ff6484d13065"),
        ("imagenet_mbv3", "ad8dffa6e843802eed9fa8aa37abce4ce7e1e715"),
    ],
)
def test_every_sampler_and_operator_draws_as_before(name, digest):
    lines = _draws(SearchSpace.preset(name))
    assert hashlib.sha1("\n".join(lines).encode()).hexdigest() == digest


def test_tiny_golden_architectures():
    space = SearchSpace.preset("tiny")
    assert space.sample(seed=0) == Arch(
        depth=((2, 2), (2, 1), (1, 1)),
        kernel=(((3, 3), (3, 5)), ((5, 5), (5, 5)), ((5, 5), (5, 5))),
        expand=(((3, 3), (2, 3)), ((3, 2), (2, 3)), ((3, 2), (3, 3))),
        width=((1.0, 0.5), (0.5, 1.0), (0.5, 1.0)),
        resolution=20,
    )
    # Phase 1: resolution, kernel and depth elastic; expand and width at their largest.
    assert sampling.step_archs(space, 1, 2, 1, 1)[2] == Arch(
        depth=((2, 1), (2, 1), (1, 1)),
        kernel=(((3, 3), (5, 5)), ((3, 3), (3, 3)), ((3, 5), (3, 5))),
        expand=(((3, 3), (3, 3)),) * 3,
        width=((1.0, 1.0),) * 3,
        resolution=24,
    )
    rng = np.random.default_rng(4)
    a = space.sample(seed=1)
    assert ops.mutate(space, a, 0.5, rng) == Arch(
        depth=((1, 2), (1, 1), (2, 1)),
        kernel=(((5, 5), (3, 3)), ((5, 3), (3, 5)), ((3, 5), (5, 3))),
        expand=(((3, 3), (3, 2)), ((2, 3), (3, 3)), ((2, 2), (2, 2))),
        width=((0.5, 1.0), (1.0, 0.5), (1.0, 0.5)),
        resolution=20,
    )
    assert ops.crossover(space, a, space.smallest(), rng) == Arch(
        depth=((1, 2), (2, 2), (1, 1)),
        kernel=(((5, 3), (3, 3)), ((5, 3), (3, 5)), ((3, 3), (3, 5))),
        expand=(((2, 2), (3, 2)), ((2, 2), (2, 2)), ((2, 3), (2, 2))),
        width=((0.5, 0.5),) * 3,
        resolution=20,
    )
    hot = [1, 3, 4, 7, 8, 11, 13, 14, 16, 18, 21, 23, 25, 26, 29, 31, 33, 34, 36, 39, 41, 42]
    hot += [48, 50, 53, 55, 60, 63, 65, 67, 72]
    assert np.flatnonzero(space.encode(space.sample(seed=0))).tolist() == hot
    assert ops.arch_key(space, space.sample(seed=0)) == "931eaa78d33d195f"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_gene_table_covers_every_gene_once(name):
    space = SearchSpace.preset(name)
    table = genes.genes(space)
    S, U, D = space.num_stages, space.num_units, space.max_depth
    assert len(table) == len(set(table)) == S * U * (2 + 2 * D) + 1
    assert sorted(table) == sorted(genes.build_order(space))
    # build_order: all depth genes, then kernel, expand, width, resolution, each by position.
    names = [g.name for g in genes.build_order(space)]
    assert names == sorted(names, key=GENE_NAMES.index)
    for name_ in GENE_NAMES:
        indices = [g.index for g in genes.build_order(space) if g.name == name_]
        assert indices == sorted(indices)
    assert space.encoding_size == sum(len(g.choices) for g in table)
    arch = space.sample(seed=2)
    assert genes.build(space, lambda g: genes.get(arch, g)) == arch
    assert genes.build(space, lambda g: max(g.choices)) == space.largest()


def test_get_replace_and_active_genes():
    space = SearchSpace.preset("tiny")
    small = space.smallest()  # depth 1 everywhere: block 1's kernel and expand are inactive
    kernel = genes.Gene("kernel", (2, 1, 1), space.kernel_choices)
    assert genes.get(small, kernel) == 3 and not genes.is_active(small, kernel)
    changed = genes.replace(small, {kernel: 5, genes.genes(space)[-1]: 24})
    assert changed.kernel[2][1][1] == 5 and changed.resolution == 24
    assert small.kernel[2][1][1] == 3  # the input is unchanged
    assert ops.arch_key(space, changed) != ops.arch_key(space, small)
    assert kernel not in genes.active_genes(space, small)
    assert len(genes.active_genes(space, small)) == len(genes.genes(space)) - 3 * 2 * 2


def test_validate_raises_space_error():
    space = SearchSpace.preset("tiny")
    bad = genes.replace(space.smallest(), {genes.Gene("expand", (1, 0, 1), ()): 7})
    with pytest.raises(SpaceError, match=r"gene expand\[1\]\[0\]\[1\] = 7 .*\[2, 3\]"):
        space.validate(bad)
    with pytest.raises(SpaceError, match="expected an Arch"):
        space.validate(space.smallest().to_dict())
    with pytest.raises(SpaceError, match=r"gene resolution = True"):
        space.validate(genes.replace(space.smallest(), {genes.genes(space)[-1]: True}))
