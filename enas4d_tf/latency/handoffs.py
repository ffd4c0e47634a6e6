"""The input and output tensors of each stage graph, without building it.

A stage graph's time has a part that does not scale with its ops: feeding its inputs (the
image and the hand-offs of earlier stages it reads) and reading its outputs (the logits and
its own hand-offs that later stages read). `stage_io` names them with their shapes exactly
as `enas4d_tf.model.subnet.extract_stage_models` does (names `g{n}_...`, exits from 1), so
the latency model can charge each graph for them.

This module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math

from enas4d_tf.model.macs import conv_output_side
from enas4d_tf.space import SearchSpace
from enas4d_tf.space.arch import Arch
from enas4d_tf.space.blocks import blocks, is_block_active

IMAGE = "image"
LOGITS = "logits"


@dataclasses.dataclass(frozen=True)
class GraphIO:
    """The tensors one graph takes and returns (batch 1, float32 at the boundaries).

    Attributes:
      inputs: `{name: shape without the batch}`.
      outputs: the same for its outputs.
    """

    inputs: dict
    outputs: dict

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    @property
    def kib_in(self) -> float:
        """KiB of float32 data fed in per run."""
        return 4.0 * sum(math.prod(shape) for shape in self.inputs.values()) / 1024.0

    @property
    def kib_out(self) -> float:
        """KiB of float32 data read out per run."""
        return 4.0 * sum(math.prod(shape) for shape in self.outputs.values()) / 1024.0

    @property
    def counts(self) -> tuple:
        """`(inputs, outputs, input KiB, output KiB)`: what a table's fit charges a graph."""
        return (self.num_inputs, self.num_outputs, self.kib_in, self.kib_out)


def _name(t: int, what: str) -> str:
    return f"g{t + 1}_{what}"


def _tensors(space: SearchSpace, arch: Arch) -> tuple[dict, list[set]]:
    """Every named tensor's shape, and the earlier groups' tensors each stage reads."""
    sizes = space.sizes(arch)
    S = space.num_stages
    side = conv_output_side(sizes.resolution, space.stem_stride)
    shapes = {_name(t, "stem"): (side, side, int(sizes.stem[t])) for t in range(S)}
    reads: list[set] = [set() for _ in range(S)]
    current = ["stem"] * S  # each group's latest output
    for spec in blocks(space):
        u, b, tag = spec.unit, spec.block, spec.tag
        out_side = conv_output_side(side, spec.stride)
        active = [is_block_active(sizes.depth, t, spec) for t in range(S)]
        for t in range(S):
            if not active[t]:
                continue
            shapes[_name(t, f"{tag}_out")] = (out_side, out_side, int(sizes.width[t, u]))
            shapes[_name(t, f"{tag}_hidden")] = (out_side, out_side, int(sizes.hidden[t, u, b]))
            if spec.se:
                shapes[_name(t, f"{tag}_se")] = (1, 1, int(sizes.se[t, u, b]))
        for s in range(S):
            if not active[s]:
                continue
            reads[s].update(_name(t, current[t]) for t in range(s))
            reads[s].update(_name(t, f"{tag}_hidden") for t in range(s) if active[t])
            if spec.se:
                reads[s].update(_name(t, f"{tag}_se") for t in range(s) if active[t])
        current = [f"{tag}_out" if a else c for a, c in zip(active, current, strict=True)]
        side = out_side
    for t in range(S):
        shapes[_name(t, "head_pool")] = (space.head_width,)
    for s in range(S):
        reads[s].update(_name(t, current[t]) for t in range(s))
        reads[s].update(_name(t, "head_pool") for t in range(s))
    return shapes, reads


def stage_io(space: SearchSpace, arch: Arch, num_classes: int) -> list[GraphIO]:
    """The inputs and outputs of each stage graph, stage 1 first.

    Stage `s` takes the image and the earlier groups' tensors it reads; it returns its
    logits and the tensors of its own group that a later stage reads.
    """
    shapes, reads = _tensors(space, arch)
    r = int(arch.resolution)
    image = (r, r, space.image_channels)
    out = []
    for s in range(space.num_stages):
        later = set().union(*reads[s + 1 :])
        own = sorted(n for n in later if n.split("_", 1)[0] == f"g{s + 1}")
        inputs = {IMAGE: image, **{n: shapes[n] for n in sorted(reads[s])}}
        outputs = {LOGITS: (num_classes,), **{n: shapes[n] for n in own}}
        out.append(GraphIO(inputs=inputs, outputs=outputs))
    return out


def truncated_io(space: SearchSpace, arch: Arch, num_classes: int) -> GraphIO:
    """A truncated network's one graph: the image in, the logits out."""
    r = int(arch.resolution)
    return GraphIO(inputs={IMAGE: (r, r, space.image_channels)}, outputs={LOGITS: (num_classes,)})
