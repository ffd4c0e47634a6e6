"""BN recalibration: population statistics of the active channels, one trace per network."""

import gc
import weakref

import numpy as np
import tensorflow as tf

import enas4d_tf as e4
from enas4d_tf.model.bn_calibration import BNCalibrator, calibrator_for
from tests.helpers import randomize_batch_norms


def _net():
    space = e4.SearchSpace.preset("tiny")
    net = e4.Supernet(space, num_classes=10)
    randomize_batch_norms(net, seed=1)
    return space, net


def test_statistics_are_those_of_the_population():
    space, net = _net()
    arch = space.smallest()
    images = np.random.default_rng(0).normal(size=(30, 28, 28, 1)).astype("float32")
    untouched = net.blocks[0].project_bns[0].moving_mean.numpy().copy()
    assert e4.recalibrate_bn(net, arch, images, num_images=25, batch_size=10) == 25
    # The stem BN of group 0 normalises the stem conv's output over the 25 images used.
    x = tf.image.resize(images[:25], (arch.resolution, arch.resolution))
    y = net.stem(x, group=0, width=space.stem_width).numpy()
    bn = net.stem_bns[0]
    np.testing.assert_allclose(bn.moving_mean.numpy(), y.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), y.var((0, 1, 2)), rtol=1e-3)
    # Channels the architecture leaves inactive keep their statistics.
    active = space.sizes(arch).width[0, 0]
    after = net.blocks[0].project_bns[0].moving_mean.numpy()
    np.testing.assert_array_equal(after[active:], untouched[active:])
    assert np.all(after[:active] != untouched[:active])


def test_one_trace_per_network_and_nothing_attached_to_it():
    space, net = _net()
    before = set(vars(net))
    images = np.zeros((8, 28, 28, 1), "float32")
    for arch in [space.largest(), space.smallest(), space.sample(seed=3)]:
        e4.recalibrate_bn(net, arch, images, batch_size=8)
    calibrator = calibrator_for(net)
    assert isinstance(calibrator, BNCalibrator) and calibrator.net is net
    assert calibrator._step.experimental_get_tracing_count() == 1
    assert set(vars(net)) == before


def test_the_cache_does_not_keep_a_network_alive():
    space, net = _net()
    e4.recalibrate_bn(net, space.smallest(), np.zeros((4, 28, 28, 1), "float32"))
    ref = weakref.ref(net)
    del net
    gc.collect()
    assert ref() is None


def test_every_bn_of_the_network_holds_its_inputs_statistics():
    """Network-level check against an independent forward pass: after recalibrating on one
    batch, every BN of the static network (standard Keras layers, built by extract_subnet)
    holds the mean and variance of its own input over those images. One batch makes the
    population statistics equal the batch statistics every BN normalised with during
    calibration, so the static network in inference mode replays that forward pass exactly."""
    import keras

    from enas4d_tf.model.subnet import extract_subnet

    space, net = _net()
    arch = space.sample(seed=5)
    assert arch != space.largest() and arch != space.smallest()
    images = np.random.default_rng(2).normal(size=(24, 28, 28, 1)).astype("float32")
    e4.recalibrate_bn(net, arch, images, num_images=24, batch_size=24)
    static = extract_subnet(net, arch)
    bns = [layer for layer in static.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) > 10
    probe = keras.Model(static.inputs, [bn.input for bn in bns])
    x = tf.image.resize(images, (arch.resolution, arch.resolution))
    inputs = probe(x, training=False)
    for bn, y in zip(bns, inputs, strict=True):
        y = np.asarray(y, np.float64)
        axes = tuple(range(y.ndim - 1))
        np.testing.assert_allclose(
            bn.moving_mean.numpy(), y.mean(axes), rtol=1e-3, atol=1e-5, err_msg=bn.name
        )
        np.testing.assert_allclose(
            bn.moving_variance.numpy(), y.var(axes), rtol=2e-3, atol=1e-5, err_msg=bn.name
        )
