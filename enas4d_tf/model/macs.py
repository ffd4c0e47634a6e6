"""Multiply-accumulate counts of a multi-stage architecture.

Convolutions count `k*k*Cin/groups*Cout*Hout*Wout`, SE and dense layers `Cin*Cout`; batch
norm, activations, pooling and adds are free (the once-for-all convention). The cost of
leaving at exit `s` is everything stages `1..s` compute, their heads included, and it equals
what the extracted subnet and the exported stage graphs compute (`keras_model_macs` counts
that independently).

A *truncated* network (a static network that always leaves at exit `s`) computes less than
`C_s`: exit `s`'s classifier reads the pooled head groups `<= s`, so the head convs of the
earlier exits still run, but their classifiers do not (`truncated_macs`).
"""

from __future__ import annotations

import numbers

from enas4d_tf.space import SearchSpace
from enas4d_tf.space.arch import Arch, ArchSizes
from enas4d_tf.space.blocks import blocks, is_block_active


def conv_output_side(side: int, stride: int) -> int:
    """Output side of a 'same'-padded convolution."""
    return -(-side // stride)


def group_macs(space: SearchSpace, sizes: ArchSizes, num_classes: int) -> list[int]:
    """MACs that stage `s` adds on top of stages `< s`: its group in every layer + exit `s`."""
    S, U = space.num_stages, space.num_units
    side = conv_output_side(sizes.resolution, space.stem_stride)
    cost = [0] * S
    for s in range(S):
        cost[s] += space.stem_kernel**2 * space.image_channels * int(sizes.stem[s]) * side * side
    for spec in blocks(space):
        u, b = spec.unit, spec.block
        out_side = conv_output_side(side, spec.stride)
        for s in range(S):
            if not is_block_active(sizes.depth, s, spec):
                continue
            hid = int(sizes.hidden[s, u, b])
            cin = sum(sizes.block_input_width(t, u, b) for t in range(s + 1))
            hid_all = sum(int(sizes.hidden[t, u, b]) for t in range(s + 1))
            k = int(sizes.kernel[s, u, b])
            cost[s] += cin * hid * side * side  # expand 1x1
            cost[s] += k * k * hid * out_side * out_side  # depthwise
            if spec.se:
                se_all = sum(int(sizes.se[t, u, b]) for t in range(s + 1))
                cost[s] += hid_all * int(sizes.se[s, u, b]) + se_all * hid
            cost[s] += hid_all * int(sizes.width[s, u]) * out_side * out_side  # project
        side = out_side
    classifiers = classifier_macs(space, sizes, num_classes)
    for s in range(S):
        cin = sum(int(sizes.width[t, U - 1]) for t in range(s + 1))
        cost[s] += cin * int(sizes.head[s]) * side * side + classifiers[s]
    return cost


def classifier_macs(space: SearchSpace, sizes: ArchSizes, num_classes: int) -> list[int]:
    """MACs of each exit's classifier alone: exit `s`'s dense layer reads the pooled head
    groups `<= s`."""
    return [
        sum(int(sizes.head[t]) for t in range(s + 1)) * num_classes for s in range(space.num_stages)
    ]


def stage_macs(space: SearchSpace, arch: Arch, num_classes: int | None = None) -> list[int]:
    """Cumulative MACs to each exit: `C_s` = everything stages `1..s` compute, heads included.

    Args:
      space: the search space.
      arch: an architecture of `space` (validated).
      num_classes: classifier outputs; defaults to the space's dataset (10 or 1000).

    Returns:
      `S` ints, strictly increasing.
    """
    num_classes = space.default_num_classes if num_classes is None else num_classes
    per_stage = group_macs(space, space.sizes(arch), num_classes)
    total, out = 0, []
    for c in per_stage:
        total += c
        out.append(int(total))
    return out


def truncated_macs(
    space: SearchSpace, arch: Arch, exit: int, num_classes: int | None = None
) -> int:
    """MACs of the static network that stops at exit `exit`: groups `<= exit` of every layer,
    the head convs of exits `<= exit` (exit `exit`'s classifier reads their pooled features)
    and exit `exit`'s classifier only.

    Args:
      space: the search space.
      arch: an architecture of `space` (validated).
      exit: the exit, numbered from 1 (`1..S`).
      num_classes: classifier outputs; defaults to the space's dataset (10 or 1000).

    Returns:
      `stage_macs(...)[exit - 1]` less the classifiers of exits `1..exit-1`.

    Raises:
      ValueError: `exit` is not an int in `1..S`.
    """
    num_stages = space.num_stages
    is_int = isinstance(exit, numbers.Integral) and not isinstance(exit, bool)
    if not is_int or not 1 <= exit <= num_stages:
        raise ValueError(f"exit must be an int in 1..{num_stages}, got {exit!r}")
    num_classes = space.default_num_classes if num_classes is None else num_classes
    sizes = space.sizes(arch)
    per_stage = group_macs(space, sizes, num_classes)
    unused = classifier_macs(space, sizes, num_classes)[: exit - 1]
    return int(sum(per_stage[: int(exit)]) - sum(unused))


def keras_model_macs(model, num_stages: int) -> list[int]:
    """Cumulative MACs to each exit, counted from a built Keras model's layers.

    An independent count of what an extracted subnet computes: every `Conv2D`,
    `DepthwiseConv2D` and `Dense` layer, attributed to the stage its `s{n}_` name prefix
    (or `exit{n}` for classifiers; `n` counts from 1) gives.
    """
    import keras

    per_stage = [0] * num_stages
    for layer in model.layers:
        stage = _stage_of_layer(layer.name)
        if stage is None:
            continue
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            _, h, w, c = layer.output.shape
            per_stage[stage] += kh * kw * c * h * w
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            _, h, w, cout = layer.output.shape
            per_stage[stage] += kh * kw * cin * cout * h * w
        elif isinstance(layer, keras.layers.Dense):
            per_stage[stage] += layer.input.shape[-1] * layer.units
    out, total = [], 0
    for c in per_stage:
        total += int(c)
        out.append(total)
    return out


def _stage_of_layer(name: str) -> int | None:
    """The 0-based stage of a layer named `exit{n}` or `s{n}_...`; None for other names."""
    if name.startswith("exit") and name[4:].isdigit():
        return int(name[4:]) - 1
    if name.startswith("s") and "_" in name and name[1 : name.index("_")].isdigit():
        return int(name[1 : name.index("_")]) - 1
    return None
