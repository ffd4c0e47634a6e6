"""`ElasticDepthwiseConv`: smaller kernels are transformed centre crops of the largest."""

import keras
import numpy as np
import tensorflow as tf

from enas4d_tf.model.layers import ElasticDepthwiseConv
from tests.model.layers.harness import run_layer_test


def test_layer(tmp_path):
    run_layer_test(
        ElasticDepthwiseConv,
        dict(max_channels=6, kernel_choices=[3, 5, 7], strides=2),
        tf.zeros((2, 6, 6, 4)),  # 4 of 6 channels active
        tmp_path,
        call_kwargs=dict(kernel_index=1),
        expected_output_shape=(2, 3, 3, 4),
    )


def test_kernel_sizes_are_transformed_centre_crops():
    dw = ElasticDepthwiseConv(4, [3, 5, 7])
    rng = np.random.default_rng(2)
    t5 = np.eye(25) + rng.normal(0, 0.1, (25, 25))
    t3 = np.eye(9) + rng.normal(0, 0.1, (9, 9))
    dw.transforms[5].assign(t5.astype("float32"))
    dw.transforms[3].assign(t3.astype("float32"))
    w = dw.depthwise_kernel.numpy()[:, :, :3, 0]  # 3 active channels
    # Once-for-all: k5 = crop5(k7) through T5, k3 = crop3(k5) through T3, per channel.
    k5 = (w[1:6, 1:6].reshape(25, 3).T @ t5).T.reshape(5, 5, 3)
    k3 = (k5[1:4, 1:4].reshape(9, 3).T @ t3).T.reshape(3, 3, 3)
    np.testing.assert_allclose(dw.effective_kernel(2, 3)[..., 0], w, atol=1e-6)
    np.testing.assert_allclose(dw.effective_kernel(1, 3)[..., 0], k5, atol=1e-5)
    np.testing.assert_allclose(dw.effective_kernel(0, 3)[..., 0], k3, atol=1e-5)
    # A tensor index gives the same kernel (the traced path).
    np.testing.assert_allclose(dw.effective_kernel(tf.constant(0), 3), dw.effective_kernel(0, 3))
    x = tf.constant(rng.normal(size=(1, 6, 6, 3)), tf.float32)
    y = dw(x, kernel_index=0)
    ref = tf.nn.depthwise_conv2d(x, k3[..., None].astype("float32"), [1, 1, 1, 1], "SAME")
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_transforms_start_as_identity():
    dw = ElasticDepthwiseConv(2, [3, 5, 7])
    w = dw.depthwise_kernel.numpy()[:, :, :, 0]
    np.testing.assert_allclose(dw.effective_kernel(0, 2)[..., 0], w[2:5, 2:5], atol=1e-6)


def test_static_form_is_the_effective_kernel():
    dw = ElasticDepthwiseConv(6, [3, 5, 7], strides=2)
    rng = np.random.default_rng(3)
    dw.transforms[5].assign((np.eye(25) + rng.normal(0, 0.1, (25, 25))).astype("float32"))
    static = dw.static_form(1, 4, "dw")
    assert type(static) is keras.layers.DepthwiseConv2D and static.name == "dw"
    assert static.kernel_size == (5, 5) and static.strides == (2, 2) and not static.use_bias
    np.testing.assert_array_equal(static.kernel, dw.effective_kernel(1, 4))
    x = tf.constant(rng.normal(size=(2, 7, 7, 4)), tf.float32)
    np.testing.assert_allclose(static(x), dw(x, kernel_index=1), atol=1e-5)
