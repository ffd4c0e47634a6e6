"""`MultiStageSE`: squeeze-and-excitation whose two layers are block-lower-triangular."""

from __future__ import annotations

import keras
import tensorflow as tf

from enas4d_tf.model.layers.common import hard_sigmoid
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

    def get_config(self):
        config = super().get_config()
        config.update(hidden_widths=self.hidden_widths, se_widths=self.se_widths)
        return config
