"""Every part key some architecture of a space needs: what a table must measure.

The space holds too many architectures to walk (about 10^20 for `fashion_mnist`), but a
part depends only on a few sums over the groups below it, so the keys are enumerated block
position by block position from the sets of those sums. `tests/latency` checks the result
against the keys of many sampled architectures.

This module does not import TensorFlow.
"""

from __future__ import annotations

import itertools

from enas4d_tf.latency.parts import BlockContext, block_parts, head_parts, part_key, stem_part
from enas4d_tf.model.macs import conv_output_side
from enas4d_tf.space import SearchSpace
from enas4d_tf.space.blocks import STEM, BlockSpec, active_width, blocks, se_width


def _widths(space: SearchSpace, unit: int) -> list[int]:
    """The active widths a group can have at the output of `unit` (`STEM`: the stem's)."""
    if unit == STEM:
        return [space.stem_width]
    full = space.unit_widths[unit]
    return sorted({active_width(full, f) for f in space.width_choices})


def _earlier_states(space: SearchSpace, spec: BlockSpec, num_earlier: int) -> set:
    """`(sum of inputs, sum of present hidden, present count, sum of present SE)` over every
    choice of the groups below group `s` at this block."""
    can_skip = min(space.depth_choices) <= spec.block
    options = set()
    for w in _widths(space, spec.input_unit):
        for e in space.expand_choices:
            hid = e * w
            options.add((w, hid, 1, se_width(hid) if spec.se else 0))
        if can_skip:
            options.add((w, 0, 0, 0))
    states = {(0, 0, 0, 0)}
    for _ in range(num_earlier):
        states = {tuple(a + b for a, b in zip(x, o, strict=True)) for x in states for o in options}
    return states


def _block_keys(space: SearchSpace, spec: BlockSpec, s: int, side: int) -> set:
    out_side = conv_output_side(side, spec.stride)
    keys = set()
    own_out = _widths(space, spec.unit)
    own_in = _widths(space, spec.input_unit)
    for state, w_in, e, k, w_out in itertools.product(
        _earlier_states(space, spec, s), own_in, space.expand_choices, space.kernel_choices, own_out
    ):
        if spec.block > 0 and w_in != w_out:
            continue  # later blocks of a unit read the unit's own width
        sum_in, sum_hid, n_present, sum_se = state
        hid = e * w_in
        ctx = BlockContext(
            spec=spec,
            side=side,
            out_side=out_side,
            num_groups=s + 1,
            sum_in=sum_in + w_in,
            hidden=hid,
            kernel=k,
            width=w_out,
            # Only the sum and count of earlier groups reach a key without the SE means,
            # which are added below from the individual hidden widths.
            prev_hidden=(sum_hid,) + (0,) * (n_present - 1) if n_present else (),
            prev_se=((sum_se,) + (0,) * (n_present - 1) if n_present else ()) if spec.se else (),
            se=se_width(hid) if spec.se else 0,
        )
        keys.update(block_parts(ctx, with_means=False))
    if spec.se:
        for w in own_in:
            for e in space.expand_choices:
                keys.add(part_key("mean", c=e * w, side=out_side))
    return keys


def space_keys(space: SearchSpace, num_classes: int) -> set[str]:
    """Every part key of every stage graph and truncated graph of every architecture."""
    keys: set[str] = set()
    last = _widths(space, space.num_units - 1)
    for resolution in space.resolution_choices:
        keys.add(stem_part(space, resolution))
        side = conv_output_side(resolution, space.stem_stride)
        for spec in blocks(space):
            for s in range(space.num_stages):
                keys |= _block_keys(space, spec, s, side)
            side = conv_output_side(side, spec.stride)
        for s in range(space.num_stages):
            for widths in itertools.combinations_with_replacement(last, s + 1):
                keys.update(head_parts(space, s, list(widths), side, num_classes, classify=True))
    return keys
