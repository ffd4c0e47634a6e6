"""Helpers shared by the elastic layers."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def activation(name: str):
    """The activation called `name` (Keras 3 names), as a TF function."""
    if name == "relu":
        return tf.nn.relu
    if name == "relu6":
        return tf.nn.relu6
    if name == "hard_swish":
        return lambda x: x * hard_sigmoid(x)
    if name in ("linear", None):
        return lambda x: x
    raise ValueError(f"unknown activation {name!r}")


def hard_sigmoid(x):
    """relu6(x + 3) / 6: Keras 3's `hard_sigmoid`."""
    return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


def channels(x) -> tf.Tensor:
    """The (dynamic) channel count of an NHWC tensor."""
    return tf.shape(x)[-1]


def gather_group_rows(kernel, row_offsets, row_sizes, out_size):
    """Rows of a block-lower-triangular kernel that one output group reads.

    `kernel` is `(..., rows, cols)`: the rows of input group `t` start at `row_offsets[t]`.
    The first `row_sizes[t]` rows of each input group and the first `out_size` columns are
    the active part. Sizes may be ints or scalar tensors.
    """
    parts = [kernel[..., o : o + n, :out_size] for o, n in zip(row_offsets, row_sizes, strict=True)]
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=-2)


# -- the static (standard Keras) form of the layers -----------------------------------------


def static_activation(name: str, layer_name: str) -> keras.layers.Layer:
    """The standard Keras layer for the activation called `name` (see `activation`)."""
    if name == "relu":
        return keras.layers.ReLU(name=layer_name)
    if name == "relu6":
        return keras.layers.ReLU(6.0, name=layer_name)
    return keras.layers.Activation(name, name=layer_name)


def with_weights(layer: keras.layers.Layer, num_channels: int, weights) -> keras.layers.Layer:
    """`layer` built for inputs of `num_channels` channels, holding `weights` (numpy copies).

    Images are `(batch, H, W, C)` and features `(batch, C)`: only the channel count matters
    to the weights, so the other dimensions are left open.
    """
    rank = 2 if isinstance(layer, keras.layers.Dense) else 4
    layer.build((None,) * (rank - 1) + (int(num_channels),))
    layer.set_weights([np.asarray(w) for w in weights])
    return layer


def call_on_groups(layer: keras.layers.Layer, xs, concat_name: str | None = None):
    """Calls `layer` on the groups `xs` joined along channels.

    `None` stands for a group that is absent here (it skipped a block) and is left out. More
    than one group goes through a `Concatenate` named `concat_name` (default
    `{layer.name}_concat`).
    """
    xs = [x for x in xs if x is not None]
    if len(xs) > 1:
        name = layer.name + "_concat" if concat_name is None else concat_name
        xs = [keras.layers.Concatenate(name=name)(xs)]
    return layer(xs[0])
