"""Tests of the one block walk (enas4d_tf.space.blocks)."""

import dataclasses

import numpy as np
import pytest

from enas4d_tf.space import PRESETS, SearchSpace
from enas4d_tf.space import blocks as B


def test_tiny_block_table():
    # tiny: stem 4, unit widths (8, 12), largest expand 3, SE in unit 1 only, strides (2, 2).
    # max_hidden = 3 x input width; max_se = max_hidden // 4 where the unit has SE.
    space = SearchSpace.preset("tiny")
    got = [
        (s.index, s.unit, s.block, s.input_unit, s.in_width, s.out_width, s.max_hidden)
        + (s.max_se, s.stride, s.se, s.activation, s.residual, s.always_active, s.name, s.tag)
        for s in B.blocks(space)
    ]
    assert got == [
        (0, 0, 0, B.STEM, 4, 8, 12, 0, 2, False, "relu", False, True, "unit0_block0", "u0b0"),
        (1, 0, 1, 0, 8, 8, 24, 0, 1, False, "relu", True, False, "unit0_block1", "u0b1"),
        (2, 1, 0, 0, 8, 12, 24, 6, 2, True, "hard_swish", False, True, "unit1_block0", "u1b0"),
        (3, 1, 1, 1, 12, 12, 36, 9, 1, True, "hard_swish", True, False, "unit1_block1", "u1b1"),
    ]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_block_table_matches_the_space(name):
    space = SearchSpace.preset(name)
    table = B.blocks(space)
    assert len(table) == space.num_units * space.max_depth
    for spec in table:
        u, b = spec.unit, spec.block
        assert B.block_at(space, u, b) is spec
        cin = (
            space.unit_widths[u] if b > 0 else (space.unit_widths[u - 1] if u else space.stem_width)
        )
        assert spec.in_width == cin
        assert spec.max_hidden == space.max_hidden(u, b) == max(space.expand_choices) * cin
        assert (
            spec.max_se
            == space.max_se(u, b)
            == (max(1, cin * max(space.expand_choices) // 4) if space.unit_se[u] else 0)
        )
        assert spec.stride == space.block_stride(u, b) == (space.unit_strides[u] if b == 0 else 1)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_active_blocks_follow_depth_and_sizes(name):
    space = SearchSpace.preset(name)
    for seed in range(5):
        arch = space.sample(seed=seed)
        sizes = space.sizes(arch)
        for s in range(space.num_stages):
            active = B.active_blocks(space, arch.depth, s)
            assert active == B.active_blocks(space, sizes.depth, s)
            assert [(x.unit, x.block) for x in active] == [
                (u, b) for u in range(space.num_units) for b in range(arch.depth[s][u])
            ]
            for spec in B.blocks(space):
                u, b = spec.unit, spec.block
                assert B.is_block_active(arch.depth, s, spec) == (sizes.hidden[s, u, b] > 0)
                cin = sizes.block_input_width(s, u, b)
                assert cin == B.input_width(sizes.stem, sizes.width, s, u, b)
                assert cin <= spec.in_width and sizes.hidden[s, u, b] <= spec.max_hidden
                assert sizes.se[s, u, b] <= spec.max_se


def test_sizes_of_tiny_smallest_and_largest():
    # Golden values from SearchSpace.sizes before the block walk (commit 698a8a9).
    space = SearchSpace.preset("tiny")
    small = space.sizes(space.smallest())
    np.testing.assert_array_equal(small.width, [[4, 6]] * 3)
    np.testing.assert_array_equal(small.hidden, [[[8, 0], [8, 0]]] * 3)
    np.testing.assert_array_equal(small.se, [[[0, 0], [2, 0]]] * 3)
    big = space.sizes(space.largest())
    np.testing.assert_array_equal(big.hidden, [[[12, 24], [24, 36]]] * 3)
    np.testing.assert_array_equal(big.se, [[[0, 0], [6, 9]]] * 3)
    arch = dataclasses.replace(space.largest(), depth=((1, 2), (2, 1), (1, 1)))
    sizes = space.sizes(arch)
    np.testing.assert_array_equal(sizes.hidden[:, :, 1], [[0, 36], [24, 0], [0, 0]])
