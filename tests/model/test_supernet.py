"""The supernet against its extracted subnets, causality and gradients."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import enas4d_tf as e4
from tests.helpers import randomize_batch_norms, randomize_transforms

# Presets under test, with the number of sampled architectures run by default; the slow
# variant runs the full 25 of the foundation issue.
# The fast suite samples fewer architectures of the larger spaces (each is a traced forward);
# `make test-slow` runs the full samples.
FAST = [("tiny", 25), ("fashion_mnist", 4)]
SLOW = [("fashion_mnist", 25), ("imagenet_mbv3", 3), ("imagenet_mbv3", 25)]


def _net(name):
    space = e4.SearchSpace.preset(name)
    net = e4.Supernet(space, num_classes=10)
    randomize_batch_norms(net, seed=1)
    randomize_transforms(net, seed=2)
    return space, net


def _check_agreement(name, num_sampled):
    space, net = _net(name)
    archs = [space.largest(), space.smallest()]
    archs += [space.sample(seed=100 + i) for i in range(num_sampled)]
    rng = np.random.default_rng(0)
    worst = 0.0
    for arch in archs:
        r = arch.resolution
        x = rng.normal(0.0, 1.0, (2, r, r, space.image_channels)).astype("float32")
        sup = net(x, arch=arch, training=False)
        sub = e4.extract_subnet(net, arch)(x)
        assert len(sup) == len(sub) == space.num_stages
        for a, b in zip(sup, sub, strict=True):
            assert a.shape == (2, 10)
            worst = max(worst, float(np.max(np.abs(np.asarray(a) - np.asarray(b)))))
    assert worst <= 1e-4, f"{name}: max abs logit difference {worst}"


@pytest.mark.parametrize("name, num_sampled", FAST)
def test_extracted_subnet_matches_supernet(name, num_sampled):
    _check_agreement(name, num_sampled)


@pytest.mark.slow
@pytest.mark.parametrize("name, num_sampled", SLOW)
def test_extracted_subnet_matches_supernet_slow(name, num_sampled):
    _check_agreement(name, num_sampled)


def _group_of(path):
    # Per-group weights end in `_g{t}` (their own or their layer's name).
    for part in reversed(path.split("/")):
        if "_g" in part:
            tail = part.rsplit("_g", 1)[1]
            if tail.isdigit():
                return int(tail)
    return None


@pytest.mark.parametrize("name", ["tiny", "fashion_mnist"])
def test_exit_s_ignores_every_weight_of_later_groups(name):
    space, net = _net(name)
    arch = space.sample(seed=7)
    x = np.random.default_rng(1).normal(size=(3, 28, 28, 1)).astype("float32")
    before = [np.asarray(z) for z in net(x, arch=arch)]
    rng = np.random.default_rng(3)
    for s in range(space.num_stages - 1):
        changed = 0
        for v in net.weights:
            g = _group_of(v.path)
            if g is not None and g > s:
                v.assign(rng.normal(size=v.shape).astype("float32") + 0.5)
                changed += 1
        assert changed > 0
        after = [np.asarray(z) for z in net(x, arch=arch)]
        for e in range(s + 1):
            np.testing.assert_array_equal(after[e], before[e])
        assert not np.allclose(after[-1], before[-1])
        before = after


def test_every_weight_belongs_to_one_group_or_is_shared_by_none():
    space, net = _net("tiny")
    unowned = [v.path for v in net.weights if _group_of(v.path) is None]
    # Only the depthwise kernel-transform matrices and depthwise kernels are named by
    # their layer's group (depthwise_g{t}); nothing may be left without a group.
    assert unowned == [], unowned


def test_gradients_reach_only_the_active_slices():
    space = e4.SearchSpace.preset("fashion_mnist")
    net = e4.Supernet(space, num_classes=10)
    arch = dataclasses.replace(
        space.largest(),
        depth=((2, 3, 3), (1, 3, 3), (3, 3, 3)),
        kernel=tuple(tuple(tuple(3 for _ in u) for u in s) for s in space.largest().kernel),
        width=((0.5, 1.0, 1.0), (0.75, 1.0, 1.0), (1.0, 1.0, 1.0)),
        expand=tuple(tuple(tuple(4 for _ in u) for u in s) for s in space.largest().expand),
    )
    sizes = space.sizes(arch)
    x = np.random.default_rng(0).normal(size=(4, 28, 28, 1)).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.add_n([tf.reduce_sum(tf.square(z)) for z in net(x, arch=arch, training=True)])
    grads = dict(
        zip(
            [v.path for v in net.trainable_variables],
            tape.gradient(loss, net.trainable_variables),
            strict=True,
        )
    )

    def grad(path):
        g = grads[path]
        return np.zeros(1) if g is None else np.asarray(tf.convert_to_tensor(g))

    def check(path, active):
        g = grad(path)
        assert np.all(g[~active] == 0), f"{path}: gradient outside the active slice"
        assert np.count_nonzero(g[active]) > 0.9 * active.sum(), f"{path}: dead active slice"

    # Unit 0 block 0 expand, output group 1: it reads the stem groups 0 and 1 (8 rows each,
    # the stem is not elastic); hidden = expand 4 x 8 input channels = 32 of 48 columns.
    k = net.blocks[0].expand.kernels[1]
    active = np.zeros(k.shape, bool)
    active[:, :, 0:16, :32] = True
    check(k.path, active)
    # Unit 0 block 0 project of group 0: hidden 32 of 48 rows, 4 of 8 output columns.
    k = net.blocks[0].project.kernels[0]
    active = np.zeros(k.shape, bool)
    active[:, :, :32, :4] = True
    check(k.path, active)
    # Depthwise of group 2 in unit 0 block 0: 3x3 is the transformed centre; the gradient
    # reaches the centre 5x5 of the 7x7 kernel (7->5 then 5->3 transforms), first 32 channels.
    k = net.blocks[0].depthwise[2].depthwise_kernel
    active = np.zeros(k.shape, bool)
    active[1:6, 1:6, :32] = True
    g = grad(k.path)
    assert np.all(g[~active] == 0) and np.count_nonzero(g[2:5, 2:5, :32]) > 0
    # Unit 0 block 1 is skipped by group 1: none of its group-1 weights learn.
    assert np.all(grad(net.blocks[1].expand.kernels[1].path) == 0)
    assert np.all(grad(net.blocks[1].depthwise_bns[1].gamma.path) == 0)
    # Group 1 at unit 0 block 2 is also skipped (depth 1); group 0 stops after block 1.
    assert np.all(grad(net.blocks[2].project.kernels[0].path) == 0)
    # BN gamma of group 0 in unit 0 block 0's project BN: 4 of 8 channels.
    gamma = net.blocks[0].project_bns[0].gamma
    active = np.zeros(gamma.shape, bool)
    active[:4] = True
    check(gamma.path, active)
    # Sizes used above, from the arch.
    assert sizes.width[0, 0] == 4 and sizes.hidden[2, 0, 0] == 32


def test_one_trace_serves_every_architecture():
    space = e4.SearchSpace.preset("tiny")
    net = e4.Supernet(space, num_classes=10)
    traces = []

    @tf.function
    def forward(x, sizes):
        traces.append(1)
        return net(x, arch=sizes, training=False)

    x = np.zeros((2, 28, 28, 1), "float32")
    archs = [space.largest(), space.smallest()] + [space.sample(seed=i) for i in range(4)]
    for arch in archs:
        out = forward(x, net.arch_tensors(arch))
        ref = net(x, arch=arch)
        np.testing.assert_allclose(np.asarray(out[-1]), np.asarray(ref[-1]), atol=1e-5)
    assert len(traces) == 1


def test_training_mode_updates_only_active_bn_statistics():
    space = e4.SearchSpace.preset("tiny")
    net = e4.Supernet(space, num_classes=10)
    arch = space.smallest()
    bn = net.blocks[0].project_bns[0]
    before = bn.moving_mean.numpy().copy()
    x = np.random.default_rng(0).normal(size=(8, 28, 28, 1)).astype("float32")
    net(x, arch=arch, training=True)
    after = bn.moving_mean.numpy()
    active = space.sizes(arch).width[0, 0]
    assert np.all(after[:active] != before[:active])
    np.testing.assert_array_equal(after[active:], before[active:])


def test_supernet_requires_an_architecture():
    net = e4.Supernet(e4.SearchSpace.preset("tiny"))
    with pytest.raises(ValueError, match="architecture"):
        net(np.zeros((1, 28, 28, 1), "float32"))


def test_zero_residual_gammas_make_deep_networks_start_as_shallow_ones():
    space = e4.SearchSpace.preset("tiny")
    net = e4.Supernet(space, num_classes=10)
    deep = space.largest()
    shallow = dataclasses.replace(
        deep, depth=tuple(tuple(min(space.depth_choices) for _ in u) for u in deep.depth)
    )
    side, channels = space.native_resolution, space.image_channels
    images = np.random.default_rng(0).normal(size=(4, side, side, channels)).astype(np.float32)
    before = [z.numpy() for z in net(images, arch=deep)]
    assert net.zero_residual_gammas() > 0
    deep_out = [z.numpy() for z in net(images, arch=deep)]
    shallow_out = [z.numpy() for z in net(images, arch=shallow)]
    for d, s, b in zip(deep_out, shallow_out, before, strict=True):
        np.testing.assert_allclose(d, s, rtol=1e-5, atol=1e-5)
        assert not np.allclose(d, b)  # the residual blocks did contribute before
