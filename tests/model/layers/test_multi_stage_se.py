"""`MultiStageSE`: squeeze-excitation whose two layers are block-lower-triangular."""

import numpy as np
import tensorflow as tf

from enas4d_tf.model.layers import MultiStageSE
from tests.model.layers.harness import run_layer_test


def test_layer(tmp_path):
    run_layer_test(
        MultiStageSE,
        dict(hidden_widths=[8, 8], se_widths=[2, 2]),
        [tf.ones((2, 4, 4, 6))],  # group 0 at 6 of 8 hidden channels
        tmp_path,
        call_kwargs=dict(reduced=[], group=0, se_width=2),
        expected_output_shape=[(2, 4, 4, 6), (2, 1, 1, 2)],
    )


def test_static_form_gates_like_the_layer():
    se = MultiStageSE([8, 8], [3, 3])
    rng = np.random.default_rng(0)
    for w in se.weights:
        w.assign(rng.normal(0, 0.5, w.shape).astype("float32"))
    h0, h1 = (tf.constant(rng.normal(size=(2, 4, 4, c)), tf.float32) for c in (6, 5))
    g0, r0 = se([h0], [], group=0, se_width=2)
    g1, r1 = se([h0, h1], [r0], group=1, se_width=1)
    static = se.static_form(1, [6, 5], [2, 1], "se_")
    assert [p.name for p in static.pools] == ["se_pool1", "se_pool2"]
    s1, sr1 = static([h0, h1], [r0])
    np.testing.assert_allclose(s1, g1, atol=1e-5)
    np.testing.assert_allclose(sr1, r1, atol=1e-5)
    # Group 0 absent (it skipped the block): group 1 reads its own hidden group only.
    e0, e_r0 = tf.zeros((2, 4, 4, 0)), tf.zeros((2, 1, 1, 0))
    g1_alone, _ = se([e0, h1], [e_r0], group=1, se_width=1)
    static = se.static_form(1, [0, 5], [0, 1], "se_")
    assert static.pools[0] is None
    np.testing.assert_allclose(static([None, h1], [None])[0], g1_alone, atol=1e-5)
