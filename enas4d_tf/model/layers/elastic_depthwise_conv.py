"""`ElasticDepthwiseConv`: one group's depthwise convolution with an elastic kernel size."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from enas4d_tf.model.layers.common import channels, with_weights


@keras.saving.register_keras_serializable(package="enas4d_tf")
class ElasticDepthwiseConv(keras.layers.Layer):
    """Depthwise `k x k` convolution of one channel group, `k` chosen per call.

    One kernel of the largest size is stored. A smaller kernel is the centre crop of the next
    larger effective kernel passed through a learned `(k*k, k*k)` transform shared by all
    channels, initialised to the identity (once-for-all's kernel transformation: 7 -> 5 -> 3).
    Active channels are the first ones, taken from the input's width.

    Args:
      max_channels: largest channel count of the group.
      kernel_choices: allowed odd kernel sizes.
      strides: stride ('same' padding).
    """

    def __init__(self, max_channels: int, kernel_choices, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.max_channels = int(max_channels)
        self.kernel_choices = sorted(int(k) for k in kernel_choices)
        self.strides = int(strides)
        kmax = self.kernel_choices[-1]
        self.depthwise_kernel = self.add_weight(
            shape=(kmax, kmax, self.max_channels, 1),
            initializer=keras.initializers.HeNormal(),
            name="depthwise_kernel",
        )
        # transforms[k] maps the centre crop of the next larger kernel to size k.
        self.transforms = {}
        for k in self.kernel_choices[:-1]:
            self.transforms[k] = self.add_weight(
                shape=(k * k, k * k),
                initializer=keras.initializers.Identity(),
                name=f"transform_{k}x{k}",
            )
        self.built = True

    def _selection_matrices(self):
        """`(n, K*K, K*K)`: row-padded matrices mapping the flat largest kernel to each size.

        For size `k` the first `k*k` rows give the flat effective kernel: the centre crop of
        the next larger effective kernel, times that size's transform. Building all of them
        costs a few tiny matmuls and lets a traced step pick one by index without branches.
        """
        kmax = self.kernel_choices[-1]
        current = tf.eye(kmax * kmax)  # the largest kernel maps to itself
        by_size = {kmax: current}
        prev = kmax
        for k in reversed(self.kernel_choices[:-1]):
            crop = _crop_matrix(prev, k)  # (k*k, prev*prev)
            current = tf.matmul(self.transforms[k], tf.matmul(crop, current), transpose_a=True)
            by_size[k] = current
            prev = k
        padded = [
            tf.pad(by_size[k], [[0, kmax * kmax - k * k], [0, 0]]) for k in self.kernel_choices
        ]
        return tf.stack(padded)

    def effective_kernel(self, kernel_index, num_channels):
        """The `(k, k, C, 1)` kernel for `kernel_choices[kernel_index]` and `C` channels.

        `kernel_index` may be a Python int or a scalar int tensor: one traced function then
        serves every kernel size, and the convolution runs at the chosen size.
        """
        kmax = self.kernel_choices[-1]
        k = tf.gather(tf.constant(self.kernel_choices, tf.int32), kernel_index)
        matrix = tf.gather(self._selection_matrices(), kernel_index)[: k * k]
        flat = tf.reshape(self.depthwise_kernel[:, :, :num_channels, 0], (kmax * kmax, -1))
        return tf.reshape(tf.matmul(matrix, flat), tf.stack([k, k, -1, 1]))

    def call(self, x, kernel_index):
        kernel = self.effective_kernel(kernel_index, channels(x))
        return tf.nn.depthwise_conv2d(
            x, kernel, strides=[1, self.strides, self.strides, 1], padding="SAME"
        )

    def static_form(
        self, kernel_index: int, num_channels: int, name: str
    ) -> keras.layers.DepthwiseConv2D:
        """This layer at one kernel size and width as a standard `DepthwiseConv2D`.

        Args:
          kernel_index: index of the kernel size in `kernel_choices`.
          num_channels: active channels.
          name: the layer's name.

        Returns:
          A built `DepthwiseConv2D` (same padding, no bias) holding the effective kernel.
        """
        kernel_index, num_channels = int(kernel_index), int(num_channels)
        layer = keras.layers.DepthwiseConv2D(
            self.kernel_choices[kernel_index],
            strides=self.strides,
            padding="same",
            use_bias=False,
            name=name,
        )
        kernel = self.effective_kernel(kernel_index, num_channels)
        return with_weights(layer, num_channels, [kernel])

    def get_config(self):
        config = super().get_config()
        config.update(
            max_channels=self.max_channels,
            kernel_choices=self.kernel_choices,
            strides=self.strides,
        )
        return config


def _crop_matrix(big: int, small: int) -> np.ndarray:
    """`(small*small, big*big)` 0/1 matrix taking the centre `small x small` of a flat kernel."""
    start = (big - small) // 2
    m = np.zeros((small * small, big * big), np.float32)
    for i in range(small):
        for j in range(small):
            m[i * small + j, (start + i) * big + (start + j)] = 1.0
    return m
