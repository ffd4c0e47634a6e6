"""What a stage graph is made of: its parts as latency-table keys, and its input/output tensors.

A part is one LiteRT op as the converter leaves it (batch norm folded into the conv before
it; ReLU fused into it; other activations a separate op measured with it), keyed by
everything its time depends on:

  conv:act=A,cin=C,cout=O,k=K,side=H,stride=S  a KxK convolution (stem, 1x1 expand, project,
                                               head, SE reduce/expand at side 1) and its
                                               activation; side is the input side
  dwconv:act=A,c=C,k=K,side=H,stride=S         a depthwise convolution and its activation
  concat:c=C,n=N,side=H                        N channel groups joined into C channels
  mean:c=C,side=H                              global average pooling (SE squeeze, head)
  mul:c=C,side=H                               the SE gate applied to its hidden group
  add:c=C,side=H                               a residual
  fc:cin=C,cout=O                              an exit's classifier

Stage `s`'s graph computes group `s` of every block it runs, reading the earlier groups'
tensors it needs: the concatenation of the groups' inputs before the expand conv, and of
the present hidden groups before the project conv, are what the multi-stage split costs
beyond a plain MobileNet block, so they are parts of their own. Keys read the active sizes
(`SearchSpace.sizes`) exactly as `enas4d_tf.model.subnet` wires the stage graphs.

This module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses

from enas4d_tf.model.macs import conv_output_side
from enas4d_tf.space import SearchSpace
from enas4d_tf.space.arch import Arch, ArchSizes
from enas4d_tf.space.blocks import BlockSpec, blocks, is_block_active

OPS = ("conv", "dwconv", "concat", "mean", "mul", "add", "fc")
SE_REDUCE_ACT = "relu"
SE_GATE_ACT = "hard_sigmoid"


def part_key(op: str, **params) -> str:
    """`op:name=value,...` with the parameters sorted by name (the table's key)."""
    if op not in OPS:
        raise ValueError(f"unknown part {op!r}")
    return op + ":" + ",".join(f"{k}={params[k]}" for k in sorted(params))


def parse_key(key: str) -> tuple[str, dict]:
    """`(op, parameters)` of a key; integer values become ints.

    Raises:
      ValueError: not a key `part_key` writes.
    """
    op, sep, rest = key.partition(":")
    if not sep or op not in OPS:
        raise ValueError(f"not a latency part key: {key!r}")
    params = {}
    for item in rest.split(","):
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise ValueError(f"not a latency part key: {key!r}")
        params[name] = int(value) if value.isdigit() else value
    return op, params


@dataclasses.dataclass(frozen=True)
class BlockContext:
    """One group's view of a block: what its parts depend on.

    Attributes:
      spec: the block position.
      side, out_side: input and output sides.
      num_groups: groups `0..s` whose inputs the expand conv reads (`s + 1`).
      sum_in: their input channels together.
      hidden: group `s`'s hidden channels.
      kernel: group `s`'s depthwise kernel.
      width: group `s`'s output channels.
      prev_hidden: hidden channels of the earlier groups that run the block.
      prev_se: SE bottleneck channels of those groups (empty without SE).
      se: group `s`'s SE bottleneck (0 without SE).
    """

    spec: BlockSpec
    side: int
    out_side: int
    num_groups: int
    sum_in: int
    hidden: int
    kernel: int
    width: int
    prev_hidden: tuple
    prev_se: tuple
    se: int


def _concat(parts: list, channels: list, side: int) -> None:
    """A concat part when more than one group is joined (one group goes in as it is)."""
    if len(channels) > 1:
        parts.append(part_key("concat", c=sum(channels), n=len(channels), side=side))


def block_parts(ctx: BlockContext, with_means: bool = True) -> list[str]:
    """The parts of one group of a block, in the order the stage graph runs them."""
    spec, act = ctx.spec, ctx.spec.activation
    parts: list[str] = []
    if ctx.num_groups > 1:
        parts.append(part_key("concat", c=ctx.sum_in, n=ctx.num_groups, side=ctx.side))
    parts.append(
        part_key("conv", act=act, cin=ctx.sum_in, cout=ctx.hidden, k=1, side=ctx.side, stride=1)
    )
    parts.append(
        part_key("dwconv", act=act, c=ctx.hidden, k=ctx.kernel, side=ctx.side, stride=spec.stride)
    )
    present = [*ctx.prev_hidden, ctx.hidden]
    if spec.se:
        if with_means:
            parts += [part_key("mean", c=h, side=ctx.out_side) for h in present]
        _concat(parts, present, 1)
        parts.append(
            part_key(
                "conv", act=SE_REDUCE_ACT, cin=sum(present), cout=ctx.se, k=1, side=1, stride=1
            )
        )
        reduced = [*ctx.prev_se, ctx.se]
        _concat(parts, reduced, 1)
        parts.append(
            part_key(
                "conv", act=SE_GATE_ACT, cin=sum(reduced), cout=ctx.hidden, k=1, side=1, stride=1
            )
        )
        parts.append(part_key("mul", c=ctx.hidden, side=ctx.out_side))
    _concat(parts, present, ctx.out_side)
    parts.append(
        part_key(
            "conv", act="linear", cin=sum(present), cout=ctx.width, k=1, side=ctx.out_side, stride=1
        )
    )
    if spec.residual:
        parts.append(part_key("add", c=ctx.width, side=ctx.out_side))
    return parts


def stem_part(space: SearchSpace, resolution: int) -> str:
    """The stem conv of one group (not elastic: the same for every group)."""
    return part_key(
        "conv",
        act=space.stem_activation,
        cin=space.image_channels,
        cout=space.stem_width,
        k=space.stem_kernel,
        side=resolution,
        stride=space.stem_stride,
    )


def head_parts(
    space: SearchSpace, s: int, last_widths: list, side: int, num_classes: int, classify: bool
) -> list[str]:
    """Exit `s`'s head over the last groups `0..s` of widths `last_widths`; with `classify`,
    its classifier over the pooled head groups `0..s`."""
    parts: list[str] = []
    _concat(parts, last_widths, side)
    head = space.head_width
    parts.append(
        part_key(
            "conv",
            act=space.head_activation,
            cin=sum(last_widths),
            cout=head,
            k=1,
            side=side,
            stride=1,
        )
    )
    parts.append(part_key("mean", c=head, side=side))
    if classify:
        _concat(parts, [head] * (s + 1), 1)
        parts.append(part_key("fc", cin=head * (s + 1), cout=num_classes))
    return parts


def _context(
    space: SearchSpace, sizes: ArchSizes, s: int, spec: BlockSpec, side: int
) -> BlockContext:
    u, b = spec.unit, spec.block
    earlier = [t for t in range(s) if is_block_active(sizes.depth, t, spec)]
    return BlockContext(
        spec=spec,
        side=side,
        out_side=conv_output_side(side, spec.stride),
        num_groups=s + 1,
        sum_in=sum(sizes.block_input_width(t, u, b) for t in range(s + 1)),
        hidden=int(sizes.hidden[s, u, b]),
        kernel=int(sizes.kernel[s, u, b]),
        width=int(sizes.width[s, u]),
        prev_hidden=tuple(int(sizes.hidden[t, u, b]) for t in earlier),
        prev_se=tuple(int(sizes.se[t, u, b]) for t in earlier) if spec.se else (),
        se=int(sizes.se[s, u, b]),
    )


def stage_parts(
    space: SearchSpace, arch: Arch, s: int, num_classes: int, classify: bool = True
) -> list[str]:
    """The parts of stage `s`'s graph (0-based), with repeats, in the order it runs them.

    Args:
      space: the search space.
      arch: an architecture of it.
      s: the stage, `0..S-1`.
      num_classes: classifier outputs.
      classify: False leaves exit `s`'s classifier out (a truncated network's earlier exits).
    """
    sizes = space.sizes(arch)
    parts = [stem_part(space, sizes.resolution)]
    side = conv_output_side(sizes.resolution, space.stem_stride)
    for spec in blocks(space):
        if is_block_active(sizes.depth, s, spec):
            parts += block_parts(_context(space, sizes, s, spec, side))
        side = conv_output_side(side, spec.stride)
    last = [int(sizes.width[t, space.num_units - 1]) for t in range(s + 1)]
    return parts + head_parts(space, s, last, side, num_classes, classify)


def truncated_parts(space: SearchSpace, arch: Arch, exit: int, num_classes: int) -> list[str]:
    """The parts of the network cut at exit `exit` (from 1) as one graph: stages `1..exit`,
    the classifier of exit `exit` only (as `enas4d_tf.model.subnet.extract_truncated`)."""
    parts: list[str] = []
    for s in range(exit):
        parts += stage_parts(space, arch, s, num_classes, classify=s == exit - 1)
    return parts
