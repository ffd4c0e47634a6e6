"""`MultiStageConv`: block-lower-triangular over groups, sliced per input group."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas4d_tf.model.layers import MultiStageConv
from enas4d_tf.model.layers.common import call_on_groups
from tests.model.layers.harness import run_layer_test


def _groups(rng, batch, side, widths):
    return [tf.constant(rng.normal(size=(batch, side, side, c)), tf.float32) for c in widths]


def test_layer_with_bias_and_stride(tmp_path):
    xs = _groups(np.random.default_rng(0), 2, 5, [3, 5])  # 3 of 4 and 5 of 6 active
    run_layer_test(
        MultiStageConv,
        dict(in_widths=[4, 6], out_widths=[5, 3], kernel_size=3, strides=2, use_bias=True),
        xs,
        tmp_path,
        call_kwargs=dict(group=1, width=2),
        expected_output_shape=(2, 3, 3, 2),  # 'same' padding, stride 2: ceil(5 / 2)
    )


def test_layer_with_shared_input(tmp_path):
    x = tf.zeros((2, 5, 5, 3))
    run_layer_test(
        MultiStageConv,
        dict(in_widths=[3], out_widths=[4, 4, 4], shared_input=True),
        x,
        tmp_path,
        call_kwargs=dict(group=2, width=4),
        expected_output_shape=(2, 5, 5, 4),
    )


def test_is_block_lower_triangular():
    conv = MultiStageConv([4, 6, 5], [3, 2, 4])
    xs = _groups(np.random.default_rng(0), 2, 5, [4, 6, 5])
    y1 = conv(xs, group=1, width=2)
    # Group 1 reads groups 0 and 1 only: changing group 2 changes nothing.
    xs2 = [xs[0], xs[1], xs[2] * 3.0]
    np.testing.assert_array_equal(conv(xs2, group=1, width=2), y1)
    # It equals a dense 1x1 conv over the first two groups with the stored kernel.
    kernel = conv.kernels[1].numpy()[0, 0]
    ref = np.einsum("bhwc,cd->bhwd", np.concatenate([xs[0], xs[1]], -1), kernel)
    np.testing.assert_allclose(y1, ref, atol=1e-5)


def test_slices_each_input_group_from_its_own_rows():
    conv = MultiStageConv([4, 6], [3, 5])
    x0, x1 = _groups(np.random.default_rng(1), 1, 3, [2, 3])  # 2 of 4 and 3 of 6 active
    y = conv([x0, x1], group=1, width=4)
    k = conv.kernels[1].numpy()[0, 0]
    rows = np.concatenate([k[0:2], k[4:7]])[:, :4]  # group 1's rows start at row 4
    ref = np.einsum("bhwc,cd->bhwd", np.concatenate([x0, x1], -1), rows)
    np.testing.assert_allclose(y, ref, atol=1e-5)


@pytest.mark.parametrize("in_sizes", [(2, 3), (0, 3)], ids=["both groups", "group 0 absent"])
def test_static_form_computes_the_group(in_sizes):
    conv = MultiStageConv([4, 6], [3, 5], kernel_size=3, strides=2, use_bias=True)
    conv.biases[1].assign(np.arange(5, dtype="float32"))
    xs = _groups(np.random.default_rng(2), 2, 5, in_sizes)
    static = conv.static_form(1, in_sizes, 4, "conv")
    assert type(static) is keras.layers.Conv2D and static.name == "conv"
    assert static.kernel.shape == (3, 3, sum(in_sizes), 4) and static.strides == (2, 2)
    present = [x if n > 0 else None for x, n in zip(xs, in_sizes, strict=True)]
    np.testing.assert_allclose(
        call_on_groups(static, present), conv(xs, group=1, width=4), atol=1e-5
    )
