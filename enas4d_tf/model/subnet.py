"""Static networks out of the supernet: the multi-exit Keras model and its stage graphs.

`extract_subnet` gives one functional model of standard Keras layers with `S` outputs.
`extract_stage_models` gives the same computation cut at the exits: stage `s` reads the
image and the tensors of earlier groups that it needs (handed on by earlier stages) and
hands on the tensors of its own group that later stages read, so nothing is recomputed.

Each elastic layer emits its own static form (`static_form`: standard `Conv2D`,
`DepthwiseConv2D`, `BatchNormalization`, `Dense`, ... holding the active weights); this
module only wires them, group by group along the block walk, and names the tensors that
pass between stages.

Names, with stages, groups and exits numbered from 1 as everywhere a user sees them:

- layers of stage `n` start with `s{n}_` (`s1_stem_conv`, `s2_u0b1_expand`, ...), units and
  blocks keep the supernet's 0-based `u{u}b{b}`; exit `n`'s classifier and output is
  `exit{n}`. `keras_model_macs` relies on these names to attribute MACs to stages.
- hand-off tensors of group `n` are `g{n}_stem`, `g{n}_u{u}b{b}_out`, `g{n}_u{u}b{b}_hidden`,
  `g{n}_u{u}b{b}_se` and `g{n}_head_pool`; the stage models are named `stage{n}`.
"""

from __future__ import annotations

import keras

from enas4d_tf.model.layers.common import call_on_groups, static_activation
from enas4d_tf.model.layers.multi_stage_block import BlockGroupSizes
from enas4d_tf.model.supernet import Supernet
from enas4d_tf.space.arch import Arch
from enas4d_tf.space.blocks import BlockSpec, blocks, is_block_active

IMAGE_INPUT = "image"
LOGITS_OUTPUT = "logits"


def stage_prefix(s: int) -> str:
    """`s{s + 1}_`: the start of the names of the layers that stage `s` (0-based) computes."""
    return f"s{s + 1}_"


def exit_name(s: int) -> str:
    """`exit{s + 1}`: the classifier layer and output name of exit `s` (0-based)."""
    return f"exit{s + 1}"


def stage_model_name(s: int) -> str:
    """`stage{s + 1}`: the name of the stage model of stage `s` (0-based)."""
    return f"stage{s + 1}"


def handoff_name(t: int, what: str) -> str:
    """`g{t + 1}_{what}`: the name of a tensor of group `t` (0-based) other stages may read."""
    return f"g{t + 1}_{what}"


class _Builder:
    """Wires the static layers of one architecture, stage by stage.

    Tensor names depend on the architecture only, so every stage agrees on the names of the
    tensors it reads from earlier stages. `owner` maps each named tensor to its group.
    """

    def __init__(self, net: Supernet, arch: Arch):
        self.net = net
        self.space = net.space
        self.sizes = self.space.sizes(arch)
        self.owner: dict[str, int] = {}

    def stage(self, s: int, image, tensors: dict, reads: set | None = None, classify: bool = True):
        """Adds stage `s` to the graph.

        Args:
          s: the stage (0-based).
          image: the input image tensor, at the architecture's resolution.
          tensors: named tensors of earlier stages; this stage's own are added to it.
          reads: if given, the names of earlier stages' tensors this stage reads are added.
          classify: False leaves exit `s`'s classifier out (its pooled head feature, which
            later classifiers read, is still computed).

        Returns:
          The logits tensor of exit `s`, or None when not `classify`.
        """
        net, space, sizes = self.net, self.space, self.sizes

        def get(t, what):
            name = handoff_name(t, what)
            if reads is not None and t != s:
                reads.add(name)
            return tensors[name]

        def put(what, tensor):
            tensors[handoff_name(s, what)] = tensor
            self.owner[handoff_name(s, what)] = s

        p = stage_prefix(s)
        width = int(sizes.stem[s])
        conv = net.stem.static_form(s, [space.image_channels], width, p + "stem_conv")
        bn = net.stem_bns[s].static_form(width, p + "stem_bn")
        put("stem", static_activation(space.stem_activation, p + "stem_act")(bn(conv(image))))
        current = ["stem"] * (s + 1)  # the latest output of each group so far
        for spec in blocks(space):
            active = [is_block_active(sizes.depth, t, spec) for t in range(s + 1)]
            if active[s]:
                xs = [get(t, current[t]) for t in range(s + 1)]
                self._block(s, spec, active, xs, get, put)
            current = [f"{spec.tag}_out" if a else c for a, c in zip(active, current, strict=True)]
        head = net.head.static_form(
            s, [int(sizes.width[t, -1]) for t in range(s + 1)], p + "head_", exit_name(s)
        )
        xs = [get(t, current[t]) for t in range(s + 1)]
        if not classify:
            put("head_pool", head.pool(head.act(head.bn(call_on_groups(head.conv, xs)))))
            return None
        logits, pooled = head(xs, [get(t, "head_pool") for t in range(s)])
        put("head_pool", pooled)
        return logits

    def _block(self, s: int, spec: BlockSpec, active, xs, get, put):
        """Group `s` of the block at `spec`; `active[t]`: whether group `t` runs it."""
        tag = spec.tag
        # Earlier groups that skipped this block have no hidden or SE tensor: None.
        hidden = [get(t, f"{tag}_hidden") if active[t] else None for t in range(s)]
        reduced = [get(t, f"{tag}_se") if active[t] else None for t in range(s)] if spec.se else []
        block = self.net.blocks[spec.index]
        static = block.static_form(s, self._group_sizes(s, spec), f"{stage_prefix(s)}{tag}_")
        y, h, r = static(xs, hidden, reduced)
        if r is not None:
            put(f"{tag}_se", r)
        put(f"{tag}_hidden", h)
        put(f"{tag}_out", y)

    def _group_sizes(self, s: int, spec: BlockSpec) -> BlockGroupSizes:
        sizes, u, b = self.sizes, spec.unit, spec.block
        groups = range(s + 1)
        return BlockGroupSizes(
            inputs=tuple(sizes.block_input_width(t, u, b) for t in groups),
            hidden=tuple(int(sizes.hidden[t, u, b]) for t in groups),
            se=tuple(int(sizes.se[t, u, b]) for t in groups),
            kernel_index=int(sizes.kernel_index[s, u, b]),
            width=int(sizes.width[s, u]),
        )


def _image_input(net: Supernet, arch: Arch):
    r = arch.resolution
    return keras.Input((r, r, net.space.image_channels), name=IMAGE_INPUT)


def extract_subnet(net: Supernet, arch: Arch, name: str = "enas4d_subnet") -> keras.Model:
    """The architecture `arch` of `net` as a static multi-exit model of standard layers.

    The model takes images at `arch.resolution` (no resizing inside) and returns `S` logits
    tensors, exit 1 first (outputs `exit1`, `exit2`, ...), computed with the supernet's
    current weights and BN statistics (recalibrate them first: `recalibrate_bn`).

    Raises:
      SpaceError: `arch` is not in the supernet's search space.
    """
    builder = _Builder(net, arch)
    image = _image_input(net, arch)
    tensors: dict = {}
    outputs = [builder.stage(s, image, tensors) for s in range(net.space.num_stages)]
    return keras.Model(image, outputs, name=name)


def extract_truncated(
    net: Supernet, arch: Arch, exit: int, name: str = "enas4d_subnet", dict_io: bool = False
) -> keras.Model:
    """The static network that stops at exit `exit` (numbered from 1): groups `<= exit`, the
    head convs of exits `<= exit` (exit `exit`'s classifier reads their pooled features) and
    exit `exit`'s classifier only. Its MACs are `macs.truncated_macs(space, arch, exit)`.

    Args:
      net: the supernet (recalibrate BN first: `recalibrate_bn`).
      arch: the architecture.
      exit: the one exit kept, `1..S`.
      name: the model's name.
      dict_io: False: one input, one output `exit{exit}` in a list (the `subnet.keras` form,
        like `extract_subnet`'s). True: the stage-graph form, `{"image": ...}` in and
        `{"logits": ...}` out, as `extract_stage_models` gives for a stage with no hand-offs.

    Raises:
      ValueError: `exit` outside `1..S`.
      SpaceError: `arch` is not in the supernet's search space.
    """
    num_stages = net.space.num_stages
    if isinstance(exit, bool) or not isinstance(exit, int) or not 1 <= exit <= num_stages:
        raise ValueError(f"exit must be an int in 1..{num_stages}, got {exit!r}")
    builder = _Builder(net, arch)
    image = _image_input(net, arch)
    tensors: dict = {}
    for s in range(exit):
        logits = builder.stage(s, image, tensors, classify=s == exit - 1)
    if dict_io:
        return keras.Model({IMAGE_INPUT: image}, {LOGITS_OUTPUT: logits}, name=name)
    return keras.Model(image, [logits], name=name)


def extract_stage_models(net: Supernet, arch: Arch) -> list[keras.Model]:
    """One functional model per stage (`stage1`, `stage2`, ...), for early-exit deployment.

    Stage `s` takes a dict with the image (`"image"`) and the hand-off tensors it reads from
    earlier stages, and returns a dict with `"logits"` and the hand-off tensors of its own
    group that later stages read. Hand-off names (`g{n}_...`, see the module docstring) are
    stable for an architecture; a runner keeps every stage's hand-offs and feeds each stage
    what it asks.

    Raises:
      SpaceError: `arch` is not in the supernet's search space.
    """
    num_stages = net.space.num_stages
    builder = _Builder(net, arch)
    # First pass: which earlier tensors each stage reads, and their shapes.
    image = _image_input(net, arch)
    tensors: dict = {}
    reads = []
    for s in range(num_stages):
        r: set = set()
        builder.stage(s, image, tensors, reads=r)
        reads.append(r)
    shapes = {n: tuple(t.shape[1:]) for n, t in tensors.items()}
    handed_on = [
        sorted(n for n in set().union(*reads[s + 1 :]) if builder.owner[n] == s)
        for s in range(num_stages)
    ]
    models = []
    for s in range(num_stages):
        image = _image_input(net, arch)
        inputs = {IMAGE_INPUT: image}
        stage_tensors = {}
        for n in sorted(reads[s]):
            inputs[n] = keras.Input(shapes[n], name=n)
            stage_tensors[n] = inputs[n]
        logits = builder.stage(s, image, stage_tensors)
        outputs = {LOGITS_OUTPUT: logits}
        outputs.update({n: stage_tensors[n] for n in handed_on[s]})
        models.append(keras.Model(inputs, outputs, name=stage_model_name(s)))
    return models
