"""Helpers shared by the elastic layers."""

from __future__ import annotations

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
