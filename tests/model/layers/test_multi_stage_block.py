"""`MultiStageBlock`: an elastic MBConv over groups; a group with no hidden width skips it."""

import keras
import numpy as np
import tensorflow as tf

from enas4d_tf.model.layers import MultiStageBlock
from enas4d_tf.model.layers.multi_stage_block import BlockGroupSizes
from tests.model.layers.harness import run_layer_test

KWARGS = dict(
    in_widths=[4, 4],
    out_widths=[4, 4],
    hidden_widths=[12, 12],
    kernel_choices=[3, 5],
    se_widths=[3, 3],
    activation_name="hard_swish",
    residual=True,
)


def _groups(seed):
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.normal(size=(2, 5, 5, 4)), tf.float32) for _ in range(2)]


def test_layer(tmp_path):
    sizes = {"hidden": [8, 0], "kernel_index": [1, 0], "se": [2, 0], "width": [4, 4]}
    run_layer_test(
        MultiStageBlock,
        KWARGS,
        _groups(0),
        tmp_path,
        call_kwargs=dict(sizes=sizes),
        expected_output_shape=[(2, 5, 5, 4), (2, 5, 5, 4)],
    )


def test_block_skips_a_group_with_zero_hidden_width():
    block = MultiStageBlock([4, 4], [4, 4], [12, 12], [3, 5], residual=True)
    xs = _groups(5)
    sizes = {
        "hidden": [tf.constant(0), tf.constant(8)],
        "kernel_index": [tf.constant(0), tf.constant(1)],
        "se": [tf.constant(0), tf.constant(0)],
        "width": [tf.constant(4), tf.constant(4)],
    }
    y0, y1 = block(xs, sizes=sizes)
    np.testing.assert_array_equal(y0, xs[0])  # group 0 passes through
    assert not np.allclose(y1, xs[1])


def test_static_form_computes_each_group():
    block = MultiStageBlock(**KWARGS)
    rng = np.random.default_rng(1)
    for w in block.weights:
        w.assign(rng.normal(0.3, 0.3, w.shape).astype("float32"))
    xs = _groups(2)
    sizes = {"hidden": [8, 12], "kernel_index": [1, 0], "se": [2, 3], "width": [4, 4]}
    y0, _ = block(xs, sizes=sizes)
    static = block.static_form(
        0, BlockGroupSizes(inputs=(4,), hidden=(8,), se=(2,), kernel_index=1, width=4), "b_"
    )
    assert static.depthwise.kernel_size == (5, 5) and static.project.name == "b_project"
    assert isinstance(static.residual, keras.layers.Add)
    np.testing.assert_allclose(static(xs[:1], [], [])[0], y0, atol=1e-5)
    # Group 1 with group 0 skipping the block: it reads group 0's input, no hidden or SE.
    sizes = {"hidden": [0, 12], "kernel_index": [1, 0], "se": [0, 3], "width": [4, 4]}
    _, y1 = block(xs, sizes=sizes)
    static = block.static_form(
        1, BlockGroupSizes(inputs=(4, 4), hidden=(0, 12), se=(0, 3), kernel_index=0, width=4), "b_"
    )
    np.testing.assert_allclose(static(xs, [None], [None])[0], y1, atol=1e-5)
