"""`ElasticDepthwiseConv`: one group's depthwise convolution with an elastic kernel size."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from enas4d_tf.layers.common import channels


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

    def _kernels_by_size(self, num_channels):
        """Effective kernels of every size, largest first, for the first channels."""
        kernel = self.depthwise_kernel[:, :, :num_channels, :]
        out = {self.kernel_choices[-1]: kernel}
        for k in reversed(self.kernel_choices[:-1]):
            big = kernel.shape[0]
            start = (big - k) // 2
            crop = kernel[start : start + k, start : start + k, :, 0]  # (k, k, C)
            flat = tf.transpose(tf.reshape(crop, (k * k, -1)))  # (C, k*k)
            flat = tf.matmul(flat, self.transforms[k])
            kernel = tf.reshape(tf.transpose(flat), (k, k, -1, 1))
            out[k] = kernel
        return out

    def effective_kernel(self, kernel_index, num_channels):
        """The `(k, k, C, 1)` kernel for `kernel_choices[kernel_index]` and `C` channels.

        `kernel_index` may be a Python int (static choice) or a scalar int tensor (one
        traced function serves every choice; only the chosen branch runs).
        """
        if isinstance(kernel_index, (int, np.integer)):
            size = self.kernel_choices[int(kernel_index)]
            return self._kernels_by_size(num_channels)[size]
        branches = [
            (lambda k=k: self._kernels_by_size(num_channels)[k]) for k in self.kernel_choices
        ]
        return tf.switch_case(tf.cast(kernel_index, tf.int32), branches)

    def call(self, x, kernel_index):
        kernel = self.effective_kernel(kernel_index, channels(x))
        return tf.nn.depthwise_conv2d(
            x, kernel, strides=[1, self.strides, self.strides, 1], padding="SAME"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            max_channels=self.max_channels,
            kernel_choices=self.kernel_choices,
            strides=self.strides,
        )
        return config
