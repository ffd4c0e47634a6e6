"""`MultiStageSE`: squeeze-and-excitation whose two layers are block-lower-triangular."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from enas4d_tf.model.layers.common import call_on_groups, hard_sigmoid
from enas4d_tf.model.layers.multi_stage_conv import MultiStageConv


@keras.saving.register_keras_serializable(package="enas4d_tf")
class MultiStageSE(keras.layers.Layer):
    """Squeeze-excitation over channel groups (MobileNetV3 style: ReLU, then hard sigmoid).

    Group `s` pools the hidden groups `<= s`, reduces them to its own bottleneck group, and
    gates its hidden group from the bottleneck groups `<= s`. Both are `MultiStageConv` 1x1
    layers with bias, so a group never reads a later one.

    Args:
      hidden_widths: largest hidden channels of each group.
      se_widths: largest bottleneck channels of each group.
    """

    def __init__(self, hidden_widths, se_widths, **kwargs):
        super().__init__(**kwargs)
        self.hidden_widths = [int(w) for w in hidden_widths]
        self.se_widths = [int(w) for w in se_widths]
        with keras.name_scope(self.name):
            self.reduce = MultiStageConv(
                self.hidden_widths, self.se_widths, use_bias=True, name="reduce"
            )
            self.expand = MultiStageConv(
                self.se_widths, self.hidden_widths, use_bias=True, name="expand"
            )
        self.built = True

    def call(self, hidden, reduced, group: int, se_width):
        """Gates hidden group `group`.

        Args:
          hidden: hidden groups `0..group` at their active widths.
          reduced: bottleneck outputs of groups `0..group-1` (earlier calls' second output).
          group: the group to gate.
          se_width: active bottleneck channels of this group.

        Returns:
          `(gated hidden group, this group's bottleneck output)`.
        """
        pooled = [tf.reduce_mean(h, axis=[1, 2], keepdims=True) for h in hidden[: group + 1]]
        r = tf.nn.relu(self.reduce(pooled, group=group, width=se_width))
        gate = self.expand([*reduced[:group], r], group=group, width=tf.shape(hidden[group])[-1])
        return hidden[group] * hard_sigmoid(gate), r

    def static_form(self, group: int, hidden_sizes, se_sizes, prefix: str) -> StaticSE:
        """Group `group`'s squeeze-excitation as standard Keras layers.

        Args:
          group: the group to gate.
          hidden_sizes: active hidden channels of groups `0..group`; 0 for a group that is
            absent (it skipped the block).
          se_sizes: active bottleneck channels of groups `0..group`; 0 where absent.
          prefix: start of every layer name (`{prefix}reduce`, `{prefix}pool{t + 1}`, ...).

        Returns:
          A `StaticSE` computing what `call` computes for `group`.
        """
        hidden_sizes = [int(n) for n in hidden_sizes]
        se_sizes = [int(n) for n in se_sizes]
        pools = [
            keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}pool{t + 1}")
            if n > 0
            else None
            for t, n in enumerate(hidden_sizes)
        ]
        return StaticSE(
            pools=pools,
            reduce=self.reduce.static_form(group, hidden_sizes, se_sizes[group], prefix + "reduce"),
            relu=keras.layers.ReLU(name=prefix + "relu"),
            expand=self.expand.static_form(group, se_sizes, hidden_sizes[group], prefix + "expand"),
            gate=keras.layers.Activation("hard_sigmoid", name=prefix + "gate"),
            scale=keras.layers.Multiply(name=prefix + "scale"),
        )

    def get_config(self):
        config = super().get_config()
        config.update(hidden_widths=self.hidden_widths, se_widths=self.se_widths)
        return config


@dataclasses.dataclass(frozen=True)
class StaticSE:
    """One group's squeeze-excitation in standard Keras layers (`MultiStageSE.static_form`).

    Attributes:
      pools: a `GlobalAveragePooling2D` per hidden group it reads, None for an absent group.
      reduce: `Conv2D` 1x1 with bias from the pooled groups to this group's bottleneck.
      relu: `ReLU` after `reduce`.
      expand: `Conv2D` 1x1 with bias from the bottleneck groups to this group's gate.
      gate: `Activation("hard_sigmoid")`.
      scale: `Multiply` of the hidden group by its gate.
    """

    pools: list
    reduce: keras.layers.Conv2D
    relu: keras.layers.ReLU
    expand: keras.layers.Conv2D
    gate: keras.layers.Activation
    scale: keras.layers.Multiply

    def __call__(self, hidden, reduced):
        """Gates the last of `hidden`, as `MultiStageSE.call` does.

        Args:
          hidden: hidden tensors of groups `0..group`, None for an absent group.
          reduced: bottleneck outputs of groups `0..group-1`, None for an absent group.

        Returns:
          `(gated hidden group, this group's bottleneck output)`.
        """
        pools = zip(self.pools, hidden, strict=True)
        pooled = [None if x is None else pool(x) for pool, x in pools]
        r = self.relu(call_on_groups(self.reduce, pooled))
        gate = self.gate(call_on_groups(self.expand, [*reduced, r]))
        return self.scale([hidden[-1], gate]), r
