"""Every elastic layer: config round trip, weights, and what it computes."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas4d_tf.model.layers import (
    ElasticDepthwiseConv,
    ExitHead,
    MultiStageBlock,
    MultiStageConv,
    MultiStageSE,
    SlicedBatchNorm,
)

LAYERS = [
    (
        MultiStageConv,
        dict(in_widths=[4, 6], out_widths=[5, 3], kernel_size=3, strides=2, use_bias=True),
    ),
    (MultiStageConv, dict(in_widths=[3], out_widths=[4, 4, 4], shared_input=True)),
    (ElasticDepthwiseConv, dict(max_channels=6, kernel_choices=[3, 5, 7], strides=2)),
    (SlicedBatchNorm, dict(max_channels=7, momentum=0.8, epsilon=1e-4)),
    (MultiStageSE, dict(hidden_widths=[8, 8], se_widths=[2, 2])),
    (
        ExitHead,
        dict(in_widths=[4, 4, 4], head_width=6, num_classes=5, activation_name="hard_swish"),
    ),
    (
        MultiStageBlock,
        dict(
            in_widths=[4, 4],
            out_widths=[4, 4],
            hidden_widths=[12, 12],
            kernel_choices=[3, 5],
            se_widths=[3, 3],
            activation_name="hard_swish",
            residual=True,
        ),
    ),
]


@pytest.mark.parametrize("cls, kwargs", LAYERS, ids=[c.__name__ for c, _ in LAYERS])
def test_config_round_trip(cls, kwargs):
    layer = cls(**kwargs, name="layer")
    config = json.loads(json.dumps(layer.get_config()))
    for key, value in kwargs.items():
        assert config[key] == value
    clone = cls.from_config(config)
    assert clone.get_config() == layer.get_config()
    assert [w.shape for w in clone.weights] == [w.shape for w in layer.weights]
    # Registered: Keras can rebuild it from its serialized form alone.
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(rebuilt) is cls and rebuilt.get_config() == layer.get_config()


def test_multi_stage_conv_is_block_lower_triangular():
    conv = MultiStageConv([4, 6, 5], [3, 2, 4])
    rng = np.random.default_rng(0)
    xs = [tf.constant(rng.normal(size=(2, 5, 5, c)), tf.float32) for c in (4, 6, 5)]
    y1 = conv(xs, group=1, width=2)
    # Group 1 reads groups 0 and 1 only: changing group 2 changes nothing.
    xs2 = [xs[0], xs[1], xs[2] * 3.0]
    np.testing.assert_array_equal(conv(xs2, group=1, width=2), y1)
    # It equals a dense 1x1 conv over the first two groups with the stored kernel.
    kernel = conv.kernels[1].numpy()[0, 0]
    ref = np.einsum("bhwc,cd->bhwd", np.concatenate([xs[0], xs[1]], -1), kernel)
    np.testing.assert_allclose(y1, ref, atol=1e-5)


def test_multi_stage_conv_slices_each_input_group_from_its_own_rows():
    conv = MultiStageConv([4, 6], [3, 5])
    rng = np.random.default_rng(1)
    x0 = tf.constant(rng.normal(size=(1, 3, 3, 2)), tf.float32)  # 2 of 4 channels active
    x1 = tf.constant(rng.normal(size=(1, 3, 3, 3)), tf.float32)  # 3 of 6 active
    y = conv([x0, x1], group=1, width=4)
    k = conv.kernels[1].numpy()[0, 0]
    rows = np.concatenate([k[0:2], k[4:7]])[:, :4]  # group 1's rows start at row 4
    ref = np.einsum("bhwc,cd->bhwd", np.concatenate([x0, x1], -1), rows)
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_depthwise_kernel_sizes_are_transformed_centre_crops():
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


def test_sliced_batch_norm_inference_uses_the_first_statistics():
    bn = SlicedBatchNorm(6, epsilon=1e-3)
    rng = np.random.default_rng(3)
    for v in (bn.moving_mean, bn.beta):
        v.assign(rng.normal(size=6).astype("float32"))
    for v in (bn.moving_variance, bn.gamma):
        v.assign(rng.uniform(0.5, 2, size=6).astype("float32"))
    x = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    y = bn(x, training=False)
    m, var = bn.moving_mean.numpy()[:4], bn.moving_variance.numpy()[:4]
    ref = (x - m) / np.sqrt(var + 1e-3) * bn.gamma.numpy()[:4] + bn.beta.numpy()[:4]
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_sliced_batch_norm_calibration_gives_population_statistics():
    bn = SlicedBatchNorm(6)
    rng = np.random.default_rng(4)
    data = rng.normal(2.0, 3.0, size=(10, 4, 4, 5)).astype("float32")
    old = bn.moving_mean.numpy().copy()
    bn.start_calibration()
    for batch in np.split(data, 5):
        bn(batch, calibrate=True)
    bn.finish_calibration()
    np.testing.assert_allclose(bn.moving_mean.numpy()[:5], data.mean((0, 1, 2)), rtol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy()[:5], data.var((0, 1, 2)), rtol=1e-3)
    assert bn.moving_mean.numpy()[5] == old[5]  # the channel it never saw keeps its value


def test_block_skips_a_group_with_zero_hidden_width():
    block = MultiStageBlock([4, 4], [4, 4], [12, 12], [3, 5], residual=True)
    rng = np.random.default_rng(5)
    xs = [tf.constant(rng.normal(size=(2, 5, 5, 4)), tf.float32) for _ in range(2)]
    sizes = {
        "hidden": [tf.constant(0), tf.constant(8)],
        "kernel_index": [tf.constant(0), tf.constant(1)],
        "se": [tf.constant(0), tf.constant(0)],
        "width": [tf.constant(4), tf.constant(4)],
    }
    y0, y1 = block(xs, sizes=sizes)
    np.testing.assert_array_equal(y0, xs[0])  # group 0 passes through
    assert not np.allclose(y1, xs[1])


def test_exit_head_reads_only_earlier_pooled_features():
    head = ExitHead([4, 4], head_width=3, num_classes=5)
    rng = np.random.default_rng(6)
    xs = [tf.constant(rng.normal(size=(2, 4, 4, 4)), tf.float32) for _ in range(2)]
    z0, p0 = head(xs[:1], [], exit=0)
    z1, p1 = head(xs, [p0], exit=1)
    assert z0.shape == (2, 5) and z1.shape == (2, 5) and p1.shape == (2, 3)
    # Exit 1's classifier reads [p0, p1]: the first 3 rows weigh p0.
    k = head.classifier_kernels[1].numpy()
    ref = np.concatenate([p0, p1], -1) @ k + head.classifier_biases[1].numpy()
    np.testing.assert_allclose(z1, ref, atol=1e-5)


def test_sliced_batch_norm_training_normalises_with_batch_statistics():
    bn = SlicedBatchNorm(6, momentum=0.5, epsilon=1e-3)
    rng = np.random.default_rng(7)
    bn.gamma.assign(rng.uniform(0.5, 2, size=6).astype("float32"))
    x = rng.normal(1.0, 2.0, size=(4, 3, 3, 5)).astype("float32")
    y = bn(x, training=True)
    m, v = x.mean((0, 1, 2)), x.var((0, 1, 2))
    ref = (x - m) / np.sqrt(v + 1e-3) * bn.gamma.numpy()[:5]
    np.testing.assert_allclose(y, ref, atol=1e-4)
    # Moving statistics move halfway (momentum 0.5) toward the batch's, for active channels.
    np.testing.assert_allclose(bn.moving_mean.numpy()[:5], 0.5 * m, rtol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy()[:5], 0.5 + 0.5 * v, rtol=1e-4)
    assert bn.moving_mean.numpy()[5] == 0.0 and bn.moving_variance.numpy()[5] == 1.0
