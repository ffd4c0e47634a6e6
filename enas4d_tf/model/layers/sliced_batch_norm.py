"""`SlicedBatchNorm`: batch norm of one channel group whose first channels are active."""

from __future__ import annotations

import keras
import tensorflow as tf

from enas4d_tf.model.layers.common import channels, with_weights


@keras.saving.register_keras_serializable(package="enas4d_tf")
class SlicedBatchNorm(keras.layers.Layer):
    """Batch normalisation with one set of statistics per channel, sliced to the input width.

    Training updates the moving statistics of the active channels only. Calibration mode
    (`calibrate=True`) normalises with batch statistics, as training does, and accumulates
    exact per-channel sums; `finish_calibration()` then replaces the moving statistics of the
    channels it saw with the population mean and variance (BN recalibration of a subnet).

    Moving statistics and accumulators are on-read synchronised, so replicas update them
    locally inside `strategy.run`, and reading them in cross-replica context averages them.

    Args:
      max_channels: largest channel count of the group.
      momentum: moving-average momentum.
      epsilon: added to the variance.
    """

    def __init__(self, max_channels: int, momentum: float = 0.9, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.max_channels = int(max_channels)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        c = (self.max_channels,)
        self.gamma = self.add_weight(shape=c, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=c, initializer="zeros", name="beta")

        def stat(name, init, aggregation="mean"):
            # add_weight() has no `synchronization`; a Variable set as an attribute is tracked.
            with keras.name_scope(self.name):
                return keras.Variable(
                    initializer=init,
                    shape=c,
                    dtype="float32",
                    trainable=False,
                    synchronization="on_read",
                    aggregation=aggregation,
                    name=name,
                )

        self.moving_mean = stat("moving_mean", "zeros")
        self.moving_variance = stat("moving_variance", "ones")
        self.calib_sum = stat("calib_sum", "zeros", "sum")
        self.calib_sq_sum = stat("calib_sq_sum", "zeros", "sum")
        self.calib_count = stat("calib_count", "zeros", "sum")
        self.built = True

    def _pad(self, v):
        return tf.pad(v, [[0, self.max_channels - tf.shape(v)[0]]])

    def call(self, x, training=False, calibrate: bool = False):
        c = channels(x)
        gamma, beta = self.gamma[:c], self.beta[:c]
        if calibrate:
            # Exact (biased) batch moments: their sums give the population statistics.
            mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
            n = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), x.dtype)
            active = tf.range(self.max_channels) < c
            self.calib_sum.assign_add(self._pad(mean * n))
            self.calib_sq_sum.assign_add(self._pad((variance + tf.square(mean)) * n))
            self.calib_count.assign_add(tf.where(active, n, 0.0))
            return tf.nn.batch_normalization(x, mean, variance, beta, gamma, self.epsilon)
        if training:
            # The fused kernel: 2.5x faster than moments + batch_normalization on these CPUs.
            # It corrupted the heap inside a tf.while_loop over architectures with other
            # channel counts per iteration, so the training step unrolls that loop
            # (BUILD_NOTES.md).
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, is_training=True
            )
            # The kernel returns the Bessel-corrected variance; the moving statistics keep the
            # biased one, as calibration does.
            n = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), x.dtype)
            variance = variance * (n - 1.0) / tf.maximum(n, 2.0)
            active = tf.range(self.max_channels) < c
            m = self.momentum
            for stat, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
                stat.assign(tf.where(active, m * stat + (1 - m) * self._pad(batch), stat))
            return y
        mean, variance = self.moving_mean[:c], self.moving_variance[:c]
        return tf.nn.batch_normalization(x, mean, variance, beta, gamma, self.epsilon)

    def start_calibration(self):
        """Zeroes the calibration accumulators."""
        for v in (self.calib_sum, self.calib_sq_sum, self.calib_count):
            v.assign(tf.zeros_like(v))

    def finish_calibration(self):
        """Moves the accumulated population statistics into the moving statistics."""
        count = tf.convert_to_tensor(self.calib_count)
        seen = count > 0
        safe = tf.maximum(count, 1.0)
        mean = self.calib_sum / safe
        variance = tf.maximum(self.calib_sq_sum / safe - tf.square(mean), 0.0)
        self.moving_mean.assign(tf.where(seen, mean, self.moving_mean))
        self.moving_variance.assign(tf.where(seen, variance, self.moving_variance))

    def static_form(self, num_channels: int, name: str) -> keras.layers.BatchNormalization:
        """The first `num_channels` channels as a standard `BatchNormalization`.

        Returns:
          A built layer with this layer's epsilon and momentum, holding the first
          `num_channels` of gamma, beta and the moving statistics.
        """
        c = int(num_channels)
        layer = keras.layers.BatchNormalization(
            epsilon=self.epsilon, momentum=self.momentum, name=name
        )
        weights = [v[:c] for v in (self.gamma, self.beta, self.moving_mean, self.moving_variance)]
        return with_weights(layer, c, weights)

    def get_config(self):
        config = super().get_config()
        config.update(max_channels=self.max_channels, momentum=self.momentum, epsilon=self.epsilon)
        return config
