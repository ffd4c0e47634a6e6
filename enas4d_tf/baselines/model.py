"""The early-exit baseline as Keras models of standard layers.

`EarlyExitNetwork(spec)` creates the layers once; `model()` wires them into one multi-exit
model (image in, one logits tensor per exit out, `exit1` first) and `stage_models()` into one
model per exit for early-exit deployment, sharing the same layers (so the same weights):

- stage 1 takes `{"image"}`; stage `n > 1` takes `{"unit{n-1}_out"}`, the feature map the
  stage before it handed on, and no image;
- stage `n` returns `{"logits", "unit{n}_out"}` (the last stage `{"logits"}` only).

That is the contract `enas4d_tf.export.cascade.Cascade` runs: each stage's inputs are looked
up by name among the image and the hand-offs of the stages before.

Names follow `enas4d_tf.model.subnet` so that `enas4d_tf.model.macs.keras_model_macs`
attributes MACs to exits: layers computed for exit `n` (unit `n`; the stem for exit 1; exit
`n`'s head) start with `s{n}_`, exit `n`'s classifier is `exit{n}`.
"""

from __future__ import annotations

import keras

from enas4d_tf.baselines.backbone import BackboneSpec, BlockPlan
from enas4d_tf.model.layers.common import static_activation

IMAGE_INPUT = "image"
LOGITS_OUTPUT = "logits"
# The supernet's batch norm (SlicedBatchNorm) defaults, so both networks normalise alike.
_BN = {"momentum": 0.9, "epsilon": 1e-5}


def handoff_name(n: int) -> str:
    """`unit{n + 1}_out`: the feature map stage `n` (0-based) hands on to the next."""
    return f"unit{n + 1}_out"


def _conv(filters: int, kernel: int, name: str, strides: int = 1, bias: bool = False):
    return keras.layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        use_bias=bias,
        kernel_initializer=keras.initializers.HeNormal(),
        name=name,
    )


class _Block:
    """The standard layers of one MBConv block (`BlockPlan`), named `{prefix}expand`, ..."""

    def __init__(self, plan: BlockPlan, prefix: str):
        act = plan.activation
        self.plan = plan
        self.expand = _conv(plan.hidden, 1, prefix + "expand")
        self.expand_bn = keras.layers.BatchNormalization(name=prefix + "expand_bn", **_BN)
        self.expand_act = static_activation(act, prefix + "expand_act")
        self.depthwise = keras.layers.DepthwiseConv2D(
            plan.kernel,
            strides=plan.stride,
            padding="same",
            use_bias=False,
            depthwise_initializer=keras.initializers.HeNormal(),
            name=prefix + "depthwise",
        )
        self.depthwise_bn = keras.layers.BatchNormalization(name=prefix + "depthwise_bn", **_BN)
        self.depthwise_act = static_activation(act, prefix + "depthwise_act")
        self.se = None
        if plan.se:
            self.se = (
                keras.layers.GlobalAveragePooling2D(keepdims=True, name=prefix + "se_pool"),
                _conv(plan.se, 1, prefix + "se_reduce", bias=True),
                keras.layers.ReLU(name=prefix + "se_relu"),
                _conv(plan.hidden, 1, prefix + "se_expand", bias=True),
                keras.layers.Activation("hard_sigmoid", name=prefix + "se_gate"),
                keras.layers.Multiply(name=prefix + "se_scale"),
            )
        self.project = _conv(plan.out_width, 1, prefix + "project")
        self.project_bn = keras.layers.BatchNormalization(name=prefix + "project_bn", **_BN)
        self.residual = keras.layers.Add(name=prefix + "residual") if plan.residual else None

    def __call__(self, x):
        h = self.expand_act(self.expand_bn(self.expand(x)))
        h = self.depthwise_act(self.depthwise_bn(self.depthwise(h)))
        if self.se is not None:
            pool, reduce, relu, expand, gate, scale = self.se
            h = scale([h, gate(expand(relu(reduce(pool(h)))))])
        y = self.project_bn(self.project(h))
        return y if self.residual is None else self.residual([x, y])


class EarlyExitNetwork:
    """The layers of one early-exit backbone and the models wired from them.

    Args:
      spec: the network (`backbone.backbone_spec`).

    Example:
      >>> net = EarlyExitNetwork(spec)
      >>> model = net.model()              # image -> [exit1 logits, exit2 logits, ...]
      >>> stages = net.stage_models()      # same weights, one model per exit
    """

    def __init__(self, spec: BackboneSpec):
        self.spec = spec
        self.stem = (
            _conv(spec.stem_width, spec.stem_kernel, "s1_stem_conv", strides=spec.stem_stride),
            keras.layers.BatchNormalization(name="s1_stem_bn", **_BN),
            static_activation(spec.stem_activation, "s1_stem_act"),
        )
        self.units: list[list[_Block]] = [[] for _ in spec.units]
        for plan in spec.blocks():
            self.units[plan.unit].append(_Block(plan, f"s{plan.unit + 1}_{plan.tag}_"))
        self.heads = []
        for n in range(spec.num_exits):
            p = f"s{n + 1}_head_"
            self.heads.append(
                (
                    _conv(spec.head_width, 1, p + "conv"),
                    keras.layers.BatchNormalization(name=p + "bn", **_BN),
                    static_activation(spec.head_activation, p + "act"),
                    keras.layers.GlobalAveragePooling2D(name=p + "pool"),
                    keras.layers.Dense(spec.num_classes, name=f"exit{n + 1}"),
                )
            )
        self._model = None

    def stage(self, n: int, x):
        """Stage `n` (0-based) on `x` (the image for stage 0, else unit `n - 1`'s output).

        Returns:
          `(exit n's logits, unit n's output)`.
        """
        if n == 0:
            conv, bn, act = self.stem
            x = act(bn(conv(x)))
        for block in self.units[n]:
            x = block(x)
        h = x
        for layer in self.heads[n]:
            h = layer(h)
        return h, x

    def _image(self):
        r = self.spec.resolution
        return keras.Input((r, r, self.spec.image_channels), name=IMAGE_INPUT)

    def zero_residual_gammas(self) -> int:
        """Sets the gamma of every residual block's last batch norm (its projection's) to 0,
        so the block computes the identity until it learns otherwise. Returns how many were
        set. Call it on a new network, before training."""
        count = 0
        for unit in self.units:
            for block in unit:
                if block.residual is not None:
                    bn = block.project_bn
                    if not bn.built:
                        raise ValueError("zero_residual_gammas: build the model first (model())")
                    bn.gamma.assign(keras.ops.zeros_like(bn.gamma))
                    count += 1
        return count

    def model(self) -> keras.Model:
        """The multi-exit model (built once, then the same object): images at the spec's
        resolution in, `num_exits` logits tensors out (`exit1`, `exit2`, ...)."""
        if self._model is None:
            image = self._image()
            x, outputs = image, []
            for n in range(self.spec.num_exits):
                logits, x = self.stage(n, x)
                outputs.append(logits)
            self._model = keras.Model(image, outputs, name="early_exit")
        return self._model

    def stage_models(self) -> list[keras.Model]:
        """One dict-in, dict-out model per exit (`stage1`, `stage2`, ...); see the module."""
        self.model()  # builds every layer, so the stage models share its weights
        shapes = {}
        models = []
        for n in range(self.spec.num_exits):
            if n == 0:
                inputs = {IMAGE_INPUT: self._image()}
                x = inputs[IMAGE_INPUT]
            else:
                name = handoff_name(n - 1)
                inputs = {name: keras.Input(shapes[name], name=name)}
                x = inputs[name]
            logits, out = self.stage(n, x)
            outputs = {LOGITS_OUTPUT: logits}
            if n + 1 < self.spec.num_exits:
                outputs[handoff_name(n)] = out
                shapes[handoff_name(n)] = tuple(out.shape[1:])
            models.append(keras.Model(inputs, outputs, name=f"stage{n + 1}"))
        return models
