"""`ExitHead`: exit `s` reads the last groups `<= s` and the pooled heads of earlier exits."""

import numpy as np
import tensorflow as tf

from enas4d_tf.model.layers import ExitHead
from tests.model.layers.harness import run_layer_test


def _groups(seed, n):
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.normal(size=(2, 4, 4, 4)), tf.float32) for _ in range(n)]


def test_layer(tmp_path):
    run_layer_test(
        ExitHead,
        dict(in_widths=[4, 4, 4], head_width=6, num_classes=5, activation_name="hard_swish"),
        _groups(0, 1),
        tmp_path,
        call_kwargs=dict(pooled=[], exit=0),
        expected_output_shape=[(2, 5), (2, 6)],
    )


def test_exit_head_reads_only_earlier_pooled_features():
    head = ExitHead([4, 4], head_width=3, num_classes=5)
    xs = _groups(6, 2)
    z0, p0 = head(xs[:1], [], exit=0)
    z1, p1 = head(xs, [p0], exit=1)
    assert z0.shape == (2, 5) and z1.shape == (2, 5) and p1.shape == (2, 3)
    # Exit 1's classifier reads [p0, p1]: the first 3 rows weigh p0.
    k = head.classifier_kernels[1].numpy()
    ref = np.concatenate([p0, p1], -1) @ k + head.classifier_biases[1].numpy()
    np.testing.assert_allclose(z1, ref, atol=1e-5)


def test_static_form_computes_the_exit():
    head = ExitHead([4, 4], head_width=3, num_classes=5, activation_name="hard_swish")
    rng = np.random.default_rng(1)
    for w in head.weights:
        w.assign(rng.normal(0.5, 0.3, w.shape).astype("float32"))
    xs = _groups(2, 2)
    _, p0 = head(xs[:1], [], exit=0)
    z1, p1 = head(xs, [p0], exit=1)
    static = head.static_form(1, [4, 4], "h_", "exit2")
    assert static.classifier.name == "exit2" and static.classifier.kernel.shape == (6, 5)
    sz1, sp1 = static(xs, [p0])
    np.testing.assert_allclose(sz1, z1, atol=1e-5)
    np.testing.assert_allclose(sp1, p1, atol=1e-5)
