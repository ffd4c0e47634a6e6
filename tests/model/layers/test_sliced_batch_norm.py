"""`SlicedBatchNorm`: the first channels' statistics, training updates and calibration."""

import keras
import numpy as np
import tensorflow as tf

from enas4d_tf.model.layers import SlicedBatchNorm
from tests.model.layers.harness import run_layer_test


def _random_statistics(bn, rng):
    for v in (bn.moving_mean, bn.beta):
        v.assign(rng.normal(size=bn.max_channels).astype("float32"))
    for v in (bn.moving_variance, bn.gamma):
        v.assign(rng.uniform(0.5, 2, size=bn.max_channels).astype("float32"))


def test_layer(tmp_path):
    run_layer_test(
        SlicedBatchNorm,
        dict(max_channels=7, momentum=0.8, epsilon=1e-4),
        tf.ones((2, 3, 3, 5)),
        tmp_path,
        expected_output_shape=(2, 3, 3, 5),
    )


def test_inference_uses_the_first_statistics():
    bn = SlicedBatchNorm(6, epsilon=1e-3)
    rng = np.random.default_rng(3)
    _random_statistics(bn, rng)
    x = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    y = bn(x, training=False)
    m, var = bn.moving_mean.numpy()[:4], bn.moving_variance.numpy()[:4]
    ref = (x - m) / np.sqrt(var + 1e-3) * bn.gamma.numpy()[:4] + bn.beta.numpy()[:4]
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_calibration_gives_population_statistics():
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


def test_training_normalises_with_batch_statistics():
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


def test_static_form_holds_the_first_channels():
    bn = SlicedBatchNorm(6, momentum=0.8, epsilon=1e-3)
    rng = np.random.default_rng(5)
    _random_statistics(bn, rng)
    static = bn.static_form(4, "bn")
    assert type(static) is keras.layers.BatchNormalization and static.name == "bn"
    assert static.epsilon == 1e-3 and static.momentum == 0.8
    for got, v in zip(
        static.get_weights(),
        (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance),
        strict=True,
    ):
        np.testing.assert_array_equal(got, v.numpy()[:4])
    x = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    np.testing.assert_allclose(static(x, training=False), bn(x, training=False), atol=1e-5)
