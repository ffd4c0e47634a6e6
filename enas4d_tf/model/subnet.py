"""Static networks out of the supernet: the multi-exit Keras model and its stage graphs.

`extract_subnet` gives one functional model of standard Keras layers with `S` outputs.
`extract_stage_models` gives the same computation cut at the exits: stage `s` reads the
image and the tensors of groups `< s` that it needs (handed on by earlier stages) and hands
on the tensors of its own group that later stages read, so nothing is recomputed.

Every layer is named `s{stage}_...` after the stage whose group it computes, which is what
`keras_model_macs` relies on to attribute MACs to stages.
"""

from __future__ import annotations

import keras
import numpy as np

from enas4d_tf.model.supernet import Supernet
from enas4d_tf.space.search_space import Arch

IMAGE_INPUT = "image"


def _activation_layer(name: str, layer_name: str):
    if name == "relu":
        return keras.layers.ReLU(name=layer_name)
    if name == "relu6":
        return keras.layers.ReLU(6.0, name=layer_name)
    return keras.layers.Activation(name, name=layer_name)


def _concat(tensors, name):
    return tensors[0] if len(tensors) == 1 else keras.layers.Concatenate(name=name)(tensors)


class _Builder:
    """Builds the static layers of one architecture, stage by stage.

    Tensor names (`g{t}_...`) depend on the architecture only, so every stage agrees on the
    names of the tensors it reads from earlier stages.
    """

    def __init__(self, net: Supernet, arch: Arch):
        self.net = net
        self.space = net.space
        self.sizes = self.space.sizes(arch)
        self.arch = arch

    def _with_weights(self, layer, x, weights):
        y = layer(x)
        layer.set_weights([np.asarray(w) for w in weights])
        return y

    def _bn(self, bn, x, name):
        c = int(x.shape[-1])
        layer = keras.layers.BatchNormalization(epsilon=bn.epsilon, momentum=bn.momentum, name=name)
        weights = [bn.gamma[:c], bn.beta[:c], bn.moving_mean[:c], bn.moving_variance[:c]]
        return self._with_weights(layer, x, [np.asarray(w) for w in weights])

    def _conv(self, ms_conv, group, xs, width, name, strides=1):
        """`ms_conv`'s output group `group`; `xs` has one entry per input group, None for a
        group that is absent here (it skipped the block), which reads as 0 channels."""
        in_sizes = [0 if x is None else int(x.shape[-1]) for x in xs]
        xs = [x for x in xs if x is not None]
        kernel = ms_conv.group_kernel(group, in_sizes, width).numpy()
        layer = keras.layers.Conv2D(
            width,
            ms_conv.kernel_size,
            strides=strides,
            padding="same",
            use_bias=ms_conv.use_bias,
            name=name,
        )
        weights = [kernel]
        if ms_conv.use_bias:
            weights.append(ms_conv.group_bias(group, width).numpy())
        return self._with_weights(layer, _concat(xs, name + "_concat"), weights)

    def stage(self, s: int, image, tensors: dict, reads: set | None = None):
        """Adds stage `s` to the graph.

        Args:
          s: the stage (0-based).
          image: the input image tensor, at the architecture's resolution.
          tensors: named tensors of earlier stages; this stage's own are added to it.
          reads: if given, the names of earlier stages' tensors this stage reads are added.

        Returns:
          The logits tensor of exit `s`.
        """
        space, sizes, net = self.space, self.sizes, self.net

        def get(name):
            if reads is not None and not name.startswith(f"g{s}_"):
                reads.add(name)
            return tensors[name]

        p = f"s{s}_"
        x = self._conv(net.stem, s, [image], space.stem_width, p + "stem_conv", space.stem_stride)
        x = self._bn(net.stem_bns[s], x, p + "stem_bn")
        tensors[f"g{s}_stem"] = _activation_layer(space.stem_activation, p + "stem_act")(x)
        current = [f"g{t}_stem" for t in range(s + 1)]  # output name of each group so far
        i = 0
        for u in range(space.num_units):
            for b in range(space.max_depth):
                block = net.blocks[i]
                i += 1
                tag = f"u{u}b{b}"
                if sizes.hidden[s, u, b] > 0:
                    self._block(s, u, b, block, [get(n) for n in current], get, tensors)
                for t in range(s + 1):
                    if sizes.hidden[t, u, b] > 0:
                        current[t] = f"g{t}_{tag}_out"
        head = net.head
        xs = [get(n) for n in current]
        h = self._conv(head.conv, s, xs, head.head_width, p + "head_conv")
        h = self._bn(head.bns[s], h, p + "head_bn")
        h = _activation_layer(head.activation_name, p + "head_act")(h)
        tensors[f"g{s}_head_pool"] = keras.layers.GlobalAveragePooling2D(name=p + "head_pool")(h)
        features = _concat([get(f"g{t}_head_pool") for t in range(s + 1)], p + "head_concat")
        dense = keras.layers.Dense(head.num_classes, name=f"exit{s}")
        kernel = head.classifier_kernels[s].numpy()
        return self._with_weights(dense, features, [kernel, head.classifier_biases[s].numpy()])

    def _block(self, s, u, b, block, xs, get, tensors):
        space, sizes = self.space, self.sizes
        p = f"s{s}_u{u}b{b}_"
        tag = f"u{u}b{b}"
        act = space.unit_activations[u]
        hid = int(sizes.hidden[s, u, b])
        h = self._conv(block.expand, s, xs, hid, p + "expand")
        h = _activation_layer(act, p + "expand_act")(
            self._bn(block.expand_bns[s], h, p + "expand_bn")
        )
        dw = block.depthwise[s]
        k_index = int(sizes.kernel_index[s, u, b])
        layer = keras.layers.DepthwiseConv2D(
            dw.kernel_choices[k_index],
            strides=dw.strides,
            padding="same",
            use_bias=False,
            name=p + "depthwise",
        )
        h = self._with_weights(layer, h, [dw.effective_kernel(k_index, hid).numpy()])
        h = _activation_layer(act, p + "depthwise_act")(
            self._bn(block.depthwise_bns[s], h, p + "depthwise_bn")
        )
        # Earlier groups that skipped this block have no hidden or SE tensor: None.
        hidden = [
            get(f"g{t}_{tag}_hidden") if sizes.hidden[t, u, b] > 0 else None for t in range(s)
        ]
        if block.se is not None:
            pooled = [
                None
                if x is None
                else keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{p}se_pool{t}")(x)
                for t, x in enumerate([*hidden, h])
            ]
            r = self._conv(block.se.reduce, s, pooled, int(sizes.se[s, u, b]), p + "se_reduce")
            r = keras.layers.ReLU(name=p + "se_relu")(r)
            tensors[f"g{s}_{tag}_se"] = r
            reduced = [
                get(f"g{t}_{tag}_se") if sizes.hidden[t, u, b] > 0 else None for t in range(s)
            ] + [r]
            gate = self._conv(block.se.expand, s, reduced, hid, p + "se_expand")
            gate = keras.layers.Activation("hard_sigmoid", name=p + "se_gate")(gate)
            h = keras.layers.Multiply(name=p + "se_scale")([h, gate])
        tensors[f"g{s}_{tag}_hidden"] = h
        y = self._conv(block.project, s, [*hidden, h], int(sizes.width[s, u]), p + "project")
        y = self._bn(block.project_bns[s], y, p + "project_bn")
        if block.residual:
            y = keras.layers.Add(name=p + "residual")([y, xs[s]])
        tensors[f"g{s}_{tag}_out"] = y


def _image_input(net: Supernet, arch: Arch):
    r = arch.resolution
    return keras.Input((r, r, net.space.image_channels), name=IMAGE_INPUT)


def extract_subnet(net: Supernet, arch: Arch, name: str = "enas4d_subnet") -> keras.Model:
    """The architecture `arch` of `net` as a static multi-exit model of standard layers.

    The model takes images at `arch.resolution` (no resizing inside) and returns `S` logits
    tensors, exit 1 first, computed with the supernet's current weights and BN statistics
    (recalibrate them first: `enas4d_tf.train.trainer.recalibrate_bn`).

    Raises:
      ValueError: `arch` is not in the supernet's search space.
    """
    builder = _Builder(net, arch)
    image = _image_input(net, arch)
    tensors: dict = {}
    outputs = [builder.stage(s, image, tensors) for s in range(net.space.num_stages)]
    return keras.Model(image, outputs, name=name)


def extract_stage_models(net: Supernet, arch: Arch) -> list[keras.Model]:
    """One functional model per stage, for early-exit deployment.

    Stage `s` takes a dict with the image (`"image"`) and the hand-off tensors it reads from
    earlier stages, and returns a dict with `"logits"` and the hand-off tensors of its own
    group that later stages read. Hand-off names (`g{t}_...`) are stable for an
    architecture; a runner keeps every stage's hand-offs and feeds each stage what it asks.
    """
    space = net.space
    builder = _Builder(net, arch)
    # First pass: which earlier tensors each stage reads, and their shapes.
    image = _image_input(net, arch)
    tensors: dict = {}
    reads = []
    for s in range(space.num_stages):
        r: set = set()
        builder.stage(s, image, tensors, reads=r)
        reads.append(r)
    shapes = {n: tuple(t.shape[1:]) for n, t in tensors.items()}
    handed_on = [
        sorted(n for n in set().union(*reads[s + 1 :]) if n.startswith(f"g{s}_"))
        for s in range(space.num_stages)
    ]
    models = []
    for s in range(space.num_stages):
        image = _image_input(net, arch)
        inputs = {IMAGE_INPUT: image}
        stage_tensors = {}
        for n in sorted(reads[s]):
            inputs[n] = keras.Input(shapes[n], name=n)
            stage_tensors[n] = inputs[n]
        logits = builder.stage(s, image, stage_tensors)
        outputs = {"logits": logits}
        outputs.update({n: stage_tensors[n] for n in handed_on[s]})
        models.append(keras.Model(inputs, outputs, name=f"stage{s}"))
    return models
