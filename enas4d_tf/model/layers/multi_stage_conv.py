"""`MultiStageConv`: a convolution whose weight is block-lower-triangular over groups."""

from __future__ import annotations

import itertools

import keras
import tensorflow as tf

from enas4d_tf.model.layers.common import channels, gather_group_rows, with_weights


@keras.saving.register_keras_serializable(package="enas4d_tf")
class MultiStageConv(keras.layers.Layer):
    """A `k x k` convolution over channel groups; output group `s` reads input groups `<= s`.

    Each output group has its own kernel `kernel_g{s}` of shape
    `(k, k, sum(in_widths[:s+1]), out_widths[s])`; the rows of input group `t` follow those
    of group `t - 1`. Elastic widths take the first rows of each input group and the first
    columns, so the compute follows the active sizes. With `shared_input=True` every output
    group reads one shared input (the image) instead of the groups below.

    Args:
      in_widths: largest channels of each input group (one entry if `shared_input`).
      out_widths: largest channels of each output group.
      kernel_size: spatial kernel side.
      strides: convolution stride ('same' padding).
      shared_input: all output groups read the same single input.
      use_bias: add a bias per output channel.

    Example:
      >>> conv = MultiStageConv([8, 8], [16, 16])
      >>> y1 = conv([x0, x1], group=1, width=12)   # group 1 reads groups 0 and 1
    """

    def __init__(
        self,
        in_widths,
        out_widths,
        kernel_size: int = 1,
        strides: int = 1,
        shared_input: bool = False,
        use_bias: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.in_widths = [int(w) for w in in_widths]
        self.out_widths = [int(w) for w in out_widths]
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.shared_input = bool(shared_input)
        self.use_bias = bool(use_bias)
        if shared_input and len(self.in_widths) != 1:
            raise ValueError("shared_input needs exactly one input width")
        if not shared_input and len(self.in_widths) != len(self.out_widths):
            raise ValueError("in_widths and out_widths need one entry per group")
        self.kernels = []
        self.biases = []
        k = self.kernel_size
        for s, out in enumerate(self.out_widths):
            rows = self.in_widths[0] if shared_input else sum(self.in_widths[: s + 1])
            self.kernels.append(
                self.add_weight(
                    shape=(k, k, rows, out),
                    initializer=keras.initializers.HeNormal(),
                    name=f"kernel_g{s}",
                )
            )
            if use_bias:
                self.biases.append(
                    self.add_weight(shape=(out,), initializer="zeros", name=f"bias_g{s}")
                )
        self.built = True

    @property
    def num_groups(self) -> int:
        return len(self.out_widths)

    def row_offsets(self, group: int) -> list[int]:
        """Where the rows of each input group start in `kernel_g{group}`."""
        if self.shared_input:
            return [0]
        return [0, *itertools.accumulate(self.in_widths[:group])]

    def group_kernel(self, group: int, in_sizes, out_size):
        """The active kernel of output group `group`: `(k, k, sum(in_sizes), out_size)`."""
        return gather_group_rows(
            self.kernels[group], self.row_offsets(group), list(in_sizes), out_size
        )

    def group_bias(self, group: int, out_size):
        return self.biases[group][:out_size] if self.use_bias else None

    def call(self, inputs, group: int, width):
        """Computes output group `group` at `width` channels.

        Args:
          inputs: the input groups `0..group` (a list), each at its active width, or the
            shared input tensor when `shared_input`.
          group: the output group (a Python int: it selects a weight).
          width: active output channels (int or scalar tensor).
        """
        xs = [inputs] if self.shared_input else list(inputs)[: group + 1]
        kernel = self.group_kernel(group, [channels(x) for x in xs], width)
        x = xs[0] if len(xs) == 1 else tf.concat(xs, axis=-1)
        y = tf.nn.conv2d(x, kernel, strides=self.strides, padding="SAME")
        if self.use_bias:
            y = y + self.group_bias(group, width)
        return y

    def static_form(self, group: int, in_sizes, width: int, name: str) -> keras.layers.Conv2D:
        """Output group `group` as a standard `Conv2D` holding its active weights.

        Args:
          group: the output group.
          in_sizes: active channels of each input group it reads (groups `0..group`, or the
            one shared input); 0 for a group that is absent (it skipped a block).
          width: active output channels.
          name: the layer's name.

        Returns:
          A built `Conv2D` (same padding, this layer's kernel size and stride) that reads the
          present input groups concatenated in order, as `call` does.
        """
        in_sizes = [int(n) for n in in_sizes]
        width = int(width)
        weights = [self.group_kernel(group, in_sizes, width)]
        if self.use_bias:
            weights.append(self.group_bias(group, width))
        layer = keras.layers.Conv2D(
            width,
            self.kernel_size,
            strides=self.strides,
            padding="same",
            use_bias=self.use_bias,
            name=name,
        )
        return with_weights(layer, sum(in_sizes), weights)

    def get_config(self):
        config = super().get_config()
        config.update(
            in_widths=self.in_widths,
            out_widths=self.out_widths,
            kernel_size=self.kernel_size,
            strides=self.strides,
            shared_input=self.shared_input,
            use_bias=self.use_bias,
        )
        return config
