"""`MultiStageBlock`: an elastic multi-stage MBConv block."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from enas4d_tf.model.layers.common import activation, call_on_groups, static_activation
from enas4d_tf.model.layers.elastic_depthwise_conv import ElasticDepthwiseConv
from enas4d_tf.model.layers.multi_stage_conv import MultiStageConv
from enas4d_tf.model.layers.multi_stage_se import MultiStageSE, StaticSE
from enas4d_tf.model.layers.sliced_batch_norm import SlicedBatchNorm


@keras.saving.register_keras_serializable(package="enas4d_tf")
class MultiStageBlock(keras.layers.Layer):
    """MBConv over channel groups: 1x1 expand, depthwise, optional SE, 1x1 project.

    The 1x1 convolutions and SE are block-lower-triangular; depthwise and BN stay inside a
    group. Each group has its own kernel size, hidden width and output width (given per call).
    A group whose hidden width is 0 skips the block and passes through unchanged (this is how
    elastic depth reaches a block); skipping is a `tf.cond`, so no compute is spent on it.

    Args:
      in_widths: largest input channels per group.
      out_widths: largest output channels per group.
      hidden_widths: largest hidden channels per group.
      kernel_choices: depthwise kernel sizes.
      strides: depthwise stride.
      se_widths: largest SE bottleneck per group, or None for no SE.
      activation_name: activation after expand and depthwise.
      residual: add the input to the output (stride 1, same widths).
      always_active: the block cannot be skipped (a unit's first block).
    """

    def __init__(
        self,
        in_widths,
        out_widths,
        hidden_widths,
        kernel_choices,
        strides: int = 1,
        se_widths=None,
        activation_name: str = "relu",
        residual: bool = False,
        always_active: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.in_widths = [int(w) for w in in_widths]
        self.out_widths = [int(w) for w in out_widths]
        self.hidden_widths = [int(w) for w in hidden_widths]
        self.kernel_choices = [int(k) for k in kernel_choices]
        self.strides = int(strides)
        self.se_widths = None if se_widths is None else [int(w) for w in se_widths]
        self.activation_name = activation_name
        self.residual = bool(residual)
        self.always_active = bool(always_active)
        if self.residual and (self.strides != 1 or self.in_widths != self.out_widths):
            raise ValueError("a residual block needs stride 1 and equal in/out widths")
        # Sub-layers are made inside this layer's scope so that weight paths are unique.
        with keras.name_scope(self.name):
            groups = range(len(self.out_widths))
            self.expand = MultiStageConv(self.in_widths, self.hidden_widths, name="expand")
            self.expand_bns = [
                SlicedBatchNorm(w, name=f"expand_bn_g{s}") for s, w in enumerate(self.hidden_widths)
            ]
            self.depthwise = [
                ElasticDepthwiseConv(w, self.kernel_choices, self.strides, name=f"depthwise_g{s}")
                for s, w in enumerate(self.hidden_widths)
            ]
            self.depthwise_bns = [
                SlicedBatchNorm(w, name=f"depthwise_bn_g{s}")
                for s, w in enumerate(self.hidden_widths)
            ]
            self.se = (
                None
                if self.se_widths is None
                else MultiStageSE(self.hidden_widths, self.se_widths, name="se")
            )
            self.project = MultiStageConv(self.hidden_widths, self.out_widths, name="project")
            self.project_bns = [
                SlicedBatchNorm(self.out_widths[s], name=f"project_bn_g{s}") for s in groups
            ]
        self.built = True

    def _group(self, s, xs, hidden, reduced, sizes, training, calibrate):
        act = activation(self.activation_name)
        h = self.expand(xs, group=s, width=sizes["hidden"][s])
        h = act(self.expand_bns[s](h, training=training, calibrate=calibrate))
        h = self.depthwise[s](h, kernel_index=sizes["kernel_index"][s])
        h = act(self.depthwise_bns[s](h, training=training, calibrate=calibrate))
        r = None
        if self.se is not None:
            h, r = self.se([*hidden, h], reduced, group=s, se_width=sizes["se"][s])
        y = self.project([*hidden, h], group=s, width=sizes["width"][s])
        y = self.project_bns[s](y, training=training, calibrate=calibrate)
        if self.residual:
            y = y + xs[s]
        return y, h, r

    def call(self, xs, sizes, training=False, calibrate: bool = False):
        """Runs the block for every group of `xs`.

        Args:
          xs: input groups at their active widths; the first `n` groups of the block (all of
            them, or fewer for a network cut at an earlier exit: only those are computed).
          sizes: dict of per-group active sizes (ints or int tensors, indexed by group):
            `hidden` (0 = skip), `kernel_index`, `se`, `width`.

        Returns:
          The output groups, as many as `xs`.
        """
        if not 1 <= len(xs) <= len(self.out_widths):
            raise ValueError(f"{self.name} takes 1..{len(self.out_widths)} groups, got {len(xs)}")
        outs, hidden, reduced = [], [], []
        for s in range(len(xs)):
            if self.always_active:
                y, h, r = self._group(s, xs, hidden, reduced, sizes, training, calibrate)
            else:

                def skip(s=s):
                    shape = tf.shape(xs[s])
                    empty = tf.zeros(tf.concat([shape[:3], [0]], 0), xs[s].dtype)
                    empty_r = tf.zeros(tf.stack([shape[0], 1, 1, 0]), xs[s].dtype)
                    return (xs[s], empty, empty_r) if self.se is not None else (xs[s], empty)

                def run(s=s):
                    y, h, r = self._group(s, xs, hidden, reduced, sizes, training, calibrate)
                    return (y, h, r) if self.se is not None else (y, h)

                result = tf.cond(sizes["hidden"][s] > 0, run, skip)
                y, h = result[0], result[1]
                r = result[2] if self.se is not None else None
            outs.append(y)
            hidden.append(h)
            reduced.append(r)
        return outs

    def static_form(self, group: int, sizes: BlockGroupSizes, prefix: str) -> StaticBlock:
        """Group `group` of this block as standard Keras layers (once-for-all's
        `get_active_subnet`, one group at a time).

        Args:
          group: the group; it must be active here (`sizes.hidden[group] > 0`).
          sizes: the active sizes of group `group` and of the groups below it.
          prefix: start of every layer name (`{prefix}expand`, `{prefix}se_reduce`, ...).

        Returns:
          A `StaticBlock` computing what `call` computes for `group`.
        """
        s = group
        hidden = [int(n) for n in sizes.hidden]
        act = self.activation_name
        return StaticBlock(
            expand=self.expand.static_form(s, sizes.inputs, hidden[s], prefix + "expand"),
            expand_bn=self.expand_bns[s].static_form(hidden[s], prefix + "expand_bn"),
            expand_act=static_activation(act, prefix + "expand_act"),
            depthwise=self.depthwise[s].static_form(
                sizes.kernel_index, hidden[s], prefix + "depthwise"
            ),
            depthwise_bn=self.depthwise_bns[s].static_form(hidden[s], prefix + "depthwise_bn"),
            depthwise_act=static_activation(act, prefix + "depthwise_act"),
            se=None
            if self.se is None
            else self.se.static_form(s, hidden, sizes.se, prefix + "se_"),
            project=self.project.static_form(s, hidden, sizes.width, prefix + "project"),
            project_bn=self.project_bns[s].static_form(sizes.width, prefix + "project_bn"),
            residual=keras.layers.Add(name=prefix + "residual") if self.residual else None,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            in_widths=self.in_widths,
            out_widths=self.out_widths,
            hidden_widths=self.hidden_widths,
            kernel_choices=self.kernel_choices,
            strides=self.strides,
            se_widths=self.se_widths,
            activation_name=self.activation_name,
            residual=self.residual,
            always_active=self.always_active,
        )
        return config


@dataclasses.dataclass(frozen=True)
class BlockGroupSizes:
    """The active sizes one group of a block computes with (`MultiStageBlock.static_form`).

    Attributes:
      inputs: active input channels of groups `0..s`.
      hidden: active hidden channels of groups `0..s`; 0 for a group that skips the block.
      se: active SE bottleneck channels of groups `0..s`; 0 where skipped or without SE.
      kernel_index: index of group `s`'s depthwise kernel size in the kernel choices.
      width: active output channels of group `s`.
    """

    inputs: tuple
    hidden: tuple
    se: tuple
    kernel_index: int
    width: int


@dataclasses.dataclass(frozen=True)
class StaticBlock:
    """One group of an MBConv block in standard Keras layers (`MultiStageBlock.static_form`).

    Attributes hold, in order of use: the expand `Conv2D`, its `BatchNormalization` and
    activation, the `DepthwiseConv2D`, its batch norm and activation, the `StaticSE` (None
    without SE), the project `Conv2D` and its batch norm, and the residual `Add` (None
    without a residual).
    """

    expand: keras.layers.Conv2D
    expand_bn: keras.layers.BatchNormalization
    expand_act: keras.layers.Layer
    depthwise: keras.layers.DepthwiseConv2D
    depthwise_bn: keras.layers.BatchNormalization
    depthwise_act: keras.layers.Layer
    se: StaticSE | None
    project: keras.layers.Conv2D
    project_bn: keras.layers.BatchNormalization
    residual: keras.layers.Add | None

    def __call__(self, xs, hidden, reduced):
        """Computes the group, as `MultiStageBlock.call` does.

        Args:
          xs: the block's input tensors of groups `0..s`.
          hidden: hidden tensors (after SE) of groups `0..s-1`, None for a group that skips
            the block.
          reduced: SE bottleneck outputs of groups `0..s-1`, None where skipped (unused
            without SE).

        Returns:
          `(output of group s, its hidden tensor after SE, its SE bottleneck output or None)`.
        """
        h = self.expand_act(self.expand_bn(call_on_groups(self.expand, xs)))
        h = self.depthwise_act(self.depthwise_bn(self.depthwise(h)))
        r = None
        if self.se is not None:
            h, r = self.se([*hidden, h], reduced)
        y = self.project_bn(call_on_groups(self.project, [*hidden, h]))
        if self.residual is not None:
            y = self.residual([y, xs[-1]])
        return y, h, r
