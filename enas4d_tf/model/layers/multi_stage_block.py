"""`MultiStageBlock`: an elastic multi-stage MBConv block."""

from __future__ import annotations

import keras
import tensorflow as tf

from enas4d_tf.model.layers.common import activation
from enas4d_tf.model.layers.elastic_depthwise_conv import ElasticDepthwiseConv
from enas4d_tf.model.layers.multi_stage_conv import MultiStageConv
from enas4d_tf.model.layers.multi_stage_se import MultiStageSE
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
        """Runs the block for every group.

        Args:
          xs: input groups at their active widths.
          sizes: dict of per-group active sizes (ints or int tensors, indexed by group):
            `hidden` (0 = skip), `kernel_index`, `se`, `width`.

        Returns:
          The output groups.
        """
        outs, hidden, reduced = [], [], []
        for s in range(len(self.out_widths)):
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
