"""`ExitHead`: the exit heads of a multi-stage network."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from enas4d_tf.model.layers.common import (
    activation,
    call_on_groups,
    static_activation,
    with_weights,
)
from enas4d_tf.model.layers.multi_stage_conv import MultiStageConv
from enas4d_tf.model.layers.sliced_batch_norm import SlicedBatchNorm


@keras.saving.register_keras_serializable(package="enas4d_tf")
class ExitHead(keras.layers.Layer):
    """Exit `s`: 1x1 conv of the last groups `<= s` to head group `s`, BN, activation, global
    pooling, and a classifier of its own reading the pooled head groups `<= s`.

    Args:
      in_widths: largest channels of each group of the last body layer.
      head_width: channels of each head group (not elastic).
      num_classes: classifier outputs.
      activation_name: activation after the head BN.
    """

    def __init__(
        self, in_widths, head_width: int, num_classes: int, activation_name: str = "relu", **kwargs
    ):
        super().__init__(**kwargs)
        self.in_widths = [int(w) for w in in_widths]
        self.head_width = int(head_width)
        self.num_classes = int(num_classes)
        self.activation_name = activation_name
        num_exits = len(self.in_widths)
        with keras.name_scope(self.name):
            self.conv = MultiStageConv(self.in_widths, [self.head_width] * num_exits, name="conv")
            self.bns = [SlicedBatchNorm(self.head_width, name=f"bn_g{s}") for s in range(num_exits)]
            self.classifier_kernels = []
            self.classifier_biases = []
            for s in range(num_exits):
                self.classifier_kernels.append(
                    self.add_weight(
                        shape=(self.head_width * (s + 1), self.num_classes),
                        initializer=keras.initializers.GlorotUniform(),
                        name=f"classifier_kernel_g{s}",
                    )
                )
                self.classifier_biases.append(
                    self.add_weight(
                        shape=(self.num_classes,), initializer="zeros", name=f"classifier_bias_g{s}"
                    )
                )
        self.built = True

    def call(self, xs, pooled, exit: int, training=False, calibrate: bool = False):
        """Computes exit `exit`.

        Args:
          xs: last body groups `0..exit` at their active widths.
          pooled: pooled head features of exits `0..exit-1` (earlier calls' second output).
          exit: the exit (a Python int).

        Returns:
          `(logits (batch, classes), pooled head feature of this exit (batch, head_width))`.
        """
        h = self.conv(xs, group=exit, width=self.head_width)
        h = self.bns[exit](h, training=training, calibrate=calibrate)
        h = activation(self.activation_name)(h)
        p = tf.reduce_mean(h, axis=[1, 2])
        features = tf.concat([*pooled[:exit], p], axis=-1)
        logits = tf.matmul(features, self.classifier_kernels[exit]) + self.classifier_biases[exit]
        return logits, p

    def static_form(self, exit: int, in_sizes, prefix: str, classifier_name: str) -> StaticExit:
        """Exit `exit` as standard Keras layers.

        Args:
          exit: the exit (0-based).
          in_sizes: active channels of the last body groups `0..exit`.
          prefix: start of the head's layer names (`{prefix}conv`, `{prefix}bn`, ...).
          classifier_name: the name of the classifier `Dense` (the exit's output name).

        Returns:
          A `StaticExit` computing what `call` computes for `exit`.
        """
        s = exit
        classifier = keras.layers.Dense(self.num_classes, name=classifier_name)
        classifier_weights = [self.classifier_kernels[s], self.classifier_biases[s]]
        return StaticExit(
            conv=self.conv.static_form(s, in_sizes, self.head_width, prefix + "conv"),
            bn=self.bns[s].static_form(self.head_width, prefix + "bn"),
            act=static_activation(self.activation_name, prefix + "act"),
            pool=keras.layers.GlobalAveragePooling2D(name=prefix + "pool"),
            concat_name=prefix + "concat",
            classifier=with_weights(classifier, self.head_width * (s + 1), classifier_weights),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            in_widths=self.in_widths,
            head_width=self.head_width,
            num_classes=self.num_classes,
            activation_name=self.activation_name,
        )
        return config


@dataclasses.dataclass(frozen=True)
class StaticExit:
    """One exit head in standard Keras layers (`ExitHead.static_form`).

    Attributes:
      conv: the head `Conv2D` 1x1 over the last body groups `<= s`.
      bn: its `BatchNormalization`.
      act: its activation layer.
      pool: `GlobalAveragePooling2D` of the head group.
      concat_name: name of the `Concatenate` joining the pooled head groups `<= s`.
      classifier: the `Dense` classifier over them.
    """

    conv: keras.layers.Conv2D
    bn: keras.layers.BatchNormalization
    act: keras.layers.Layer
    pool: keras.layers.GlobalAveragePooling2D
    concat_name: str
    classifier: keras.layers.Dense

    def __call__(self, xs, pooled):
        """Computes the exit, as `ExitHead.call` does.

        Args:
          xs: last body tensors of groups `0..s`.
          pooled: pooled head features of exits `0..s-1`.

        Returns:
          `(logits, this exit's pooled head feature)`.
        """
        p = self.pool(self.act(self.bn(call_on_groups(self.conv, xs))))
        return call_on_groups(self.classifier, [*pooled, p], self.concat_name), p
