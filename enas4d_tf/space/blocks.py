"""The one walk over the blocks of a search space.

A network of the space is `num_units` units of `max_depth` blocks each. `blocks(space)` lists
every block position once, in the order the supernet builds and runs them, with what is
fixed by the space alone: its stride, the largest input, hidden and SE widths of one group,
its activation, whether it has a residual. Which blocks an architecture uses differs per
group: block `b` of unit `u` is active for group `s` when `b < depth[s][u]` (block 0 always
is), and an inactive block passes group `s` through unchanged. `active_blocks` walks the
blocks active for one group; `input_width` says which channels of a group enter a block.

Example (what the supernet, the subnet builder and the MACs counter each do):
  >>> for spec in blocks(space):                     # build: one layer per position
  ...     layer = MultiStageBlock(..., strides=spec.stride, name=spec.name)
  >>> sizes = space.sizes(arch)
  >>> for spec in active_blocks(space, sizes.depth, s):  # group s's blocks only
  ...     cin = sizes.block_input_width(s, spec.unit, spec.block)
  ...     hidden = sizes.hidden[s, spec.unit, spec.block]
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from enas4d_tf.space.search_space import SearchSpace

# `input_unit` of the first block of the first unit: it reads the stem.
STEM = -1


def active_width(max_width: int, fraction: float) -> int:
    """Active channels for a width fraction: the first channels of the group."""
    return max(1, int(round(max_width * fraction)))


def se_width(hidden: int) -> int:
    """Squeeze-excitation bottleneck of a group with `hidden` channels."""
    return max(1, int(hidden) // 4)


def input_unit(u: int, b: int) -> int:
    """The unit whose output enters block `b` of unit `u`; `STEM` for the very first block.

    Block 0 of a unit reads the previous unit (it may change width and side); later blocks
    read their own unit's width.
    """
    return u if b > 0 else u - 1


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One block position of a space and what the space alone fixes about it.

    Widths are per group: the supernet's layer has `S` times as many channels.

    Attributes:
      index: position in `blocks(space)` (and in `Supernet.blocks`).
      unit: the unit `u`.
      block: the block `b` within the unit.
      input_unit: the unit whose output enters the block (`STEM` for the first block).
      in_width: largest input channels of one group.
      out_width: largest output channels of one group (the unit's width).
      max_hidden: largest hidden (expanded) channels of one group.
      max_se: largest SE bottleneck of one group; 0 when the unit has no SE.
      stride: depthwise stride (the unit's stride on block 0, else 1).
      se: whether the block has squeeze-excitation.
      activation: the unit's activation name.
    """

    index: int
    unit: int
    block: int
    input_unit: int
    in_width: int
    out_width: int
    max_hidden: int
    max_se: int
    stride: int
    se: bool
    activation: str

    @property
    def residual(self) -> bool:
        """Blocks after the first of a unit keep width and side, so they add their input."""
        return self.block > 0

    @property
    def always_active(self) -> bool:
        """Block 0 of a unit is active for every group (every depth choice is >= 1)."""
        return self.block == 0

    @property
    def name(self) -> str:
        """The supernet layer's name, `unit{u}_block{b}` (0-based; variable names use it)."""
        return f"unit{self.unit}_block{self.block}"

    @property
    def tag(self) -> str:
        """Short position tag `u{u}b{b}` for names of per-block tensors and layers."""
        return f"u{self.unit}b{self.block}"


@functools.cache
def blocks(space: SearchSpace) -> tuple[BlockSpec, ...]:
    """Every block position of `space`, unit by unit, block by block (the build order)."""
    out = []
    for u in range(space.num_units):
        for b in range(space.max_depth):
            source = input_unit(u, b)
            in_width = space.stem_width if source == STEM else space.unit_widths[source]
            max_hidden = max(space.expand_choices) * in_width
            out.append(
                BlockSpec(
                    index=len(out),
                    unit=u,
                    block=b,
                    input_unit=source,
                    in_width=in_width,
                    out_width=space.unit_widths[u],
                    max_hidden=max_hidden,
                    max_se=se_width(max_hidden) if space.unit_se[u] else 0,
                    stride=space.unit_strides[u] if b == 0 else 1,
                    se=bool(space.unit_se[u]),
                    activation=space.unit_activations[u],
                )
            )
    return tuple(out)


def block_at(space: SearchSpace, u: int, b: int) -> BlockSpec:
    """The `BlockSpec` of block `b` of unit `u`."""
    return blocks(space)[u * space.max_depth + b]


def is_block_active(depth: Sequence, s: int, spec: BlockSpec) -> bool:
    """Whether group `s` runs block `spec` given the depths `depth[s][u]`.

    `depth` is `Arch.depth` or `ArchSizes.depth`; equivalently `ArchSizes.hidden[s, u, b] > 0`.
    """
    return spec.block < depth[s][spec.unit]


def active_blocks(space: SearchSpace, depth: Sequence, s: int) -> list[BlockSpec]:
    """The blocks group `s` runs, in `blocks(space)` order (`depth` as in `is_block_active`)."""
    return [spec for spec in blocks(space) if is_block_active(depth, s, spec)]


def input_width(stem: Sequence, width: Sequence, s: int, u: int, b: int) -> int:
    """Active channels of group `s` entering block `b` of unit `u`.

    Args:
      stem: stem channels per group (`ArchSizes.stem`).
      width: active unit widths `width[s][u]` (`ArchSizes.width`).
      s, u, b: the group, unit and block.
    """
    source = input_unit(u, b)
    return int(stem[s]) if source == STEM else int(width[s][source])
