import numpy as np
import pytest

import enas4d_tf as e4
from enas4d_tf.model.macs import keras_model_macs, truncated_macs
from enas4d_tf.model.subnet import extract_truncated


@pytest.mark.parametrize(
    "name, num_sampled",
    [
        ("tiny", 10),
        ("fashion_mnist", 2),
        # The larger samples build many Keras models: with the slow tests.
        pytest.param("fashion_mnist", 10, marks=pytest.mark.slow),
        pytest.param("imagenet_mbv3", 2, marks=pytest.mark.slow),
    ],
)
def test_stage_macs_equal_a_count_of_the_extracted_layers(name, num_sampled):
    space = e4.SearchSpace.preset(name)
    net = e4.Supernet(space, num_classes=10)
    archs = [space.largest(), space.smallest()] + [space.sample(seed=i) for i in range(num_sampled)]
    for arch in archs:
        macs = e4.stage_macs(space, arch, num_classes=10)
        assert macs == keras_model_macs(e4.extract_subnet(net, arch), space.num_stages)
        assert np.all(np.diff(macs) > 0)


def test_fashion_mnist_cost_range_matches_the_design():
    # The fashion_mnist preset is sized so: largest about 10-20 M MACs at resolution 32,
    # smallest about an order of magnitude less.
    space = e4.SearchSpace.preset("fashion_mnist")
    largest = e4.stage_macs(space, space.largest())[-1]
    smallest = e4.stage_macs(space, space.smallest())[-1]
    assert 10e6 <= largest <= 20e6
    assert 8 <= largest / smallest <= 30


def test_stem_and_classifier_costs_by_hand():
    # The tiny smallest network at 20x20: stem 3x3x1 -> 4 channels per group, stride 2 -> 10x10:
    # 9 * 1 * 4 * 100 = 3,600 MACs per group. Removing everything but the stem and exit heads
    # is not possible, so check the difference between exits instead: exit 2 adds group 2's
    # share of every layer plus its head conv and classifier (16*3 pooled -> 10 classes = 480).
    space = e4.SearchSpace.preset("tiny")
    arch = space.smallest()
    per_stage = np.diff([0, *e4.stage_macs(space, arch)])
    sizes = space.sizes(arch)
    # Group 0 alone: stem 3,600; unit 0 block 0: expand 4->8 at 10x10 (3,200), depthwise 3x3
    # stride 2 on 8 channels at 5x5 (1,800), project 8->4 at 5x5 (800); unit 1 block 0 with SE:
    # expand 4->8 at 5x5 (800), depthwise 3x3 on 8 at 3x3 (648), SE 8->2 and 2->8 (32),
    # project 8->6 at 3x3 (432); head 6->16 at 3x3 (864); classifier 16->10 (160).
    assert sizes.width[0].tolist() == [4, 6] and sizes.hidden[0, :, 0].tolist() == [8, 8]
    assert per_stage[0] == 3600 + 3200 + 1800 + 800 + 800 + 648 + 32 + 432 + 864 + 160


def test_truncated_macs_equal_a_count_of_the_truncated_layers():
    # A few (architecture, exit) pairs: building a Keras model costs seconds on a loaded CPU.
    cases = []
    for name in ("tiny", "fashion_mnist"):
        space = e4.SearchSpace.preset(name)
        net = e4.Supernet(space, num_classes=10)
        cases += [(space, net, space.sample(seed=4), 2), (space, net, space.largest(), 3)]
        if name == "tiny":
            cases += [(space, net, space.smallest(), 1), (space, net, space.smallest(), 3)]
    for space, net, arch, s in cases:
        model = extract_truncated(net, arch, s)
        assert len(model.outputs) == 1
        expected = truncated_macs(space, arch, s, num_classes=10)
        assert keras_model_macs(model, s)[-1] == expected, (arch, s)
        assert expected < e4.stage_macs(space, arch, num_classes=10)[s - 1] or s == 1


def test_truncated_macs_leave_out_only_the_earlier_classifiers():
    # Exit s's classifier reads the pooled head groups <= s, so the head convs of exits < s
    # still run; their classifiers (pooled head groups <= t -> classes) do not.
    space = e4.SearchSpace.preset("tiny")
    for arch in (space.largest(), space.smallest(), space.sample(seed=3)):
        stage = e4.stage_macs(space, arch, num_classes=7)
        head = space.sizes(arch).head
        for s in range(1, space.num_stages + 1):
            unused = sum(int(head[: t + 1].sum()) * 7 for t in range(s - 1))
            assert truncated_macs(space, arch, s, num_classes=7) == stage[s - 1] - unused
        assert truncated_macs(space, arch, 1, num_classes=7) == stage[0]
        last = truncated_macs(space, arch, space.num_stages, num_classes=7)
        assert last < stage[-1]  # the S-1 earlier classifiers are gone


def test_truncated_macs_default_classes_and_bad_exits():
    space = e4.SearchSpace.preset("tiny")
    arch = space.smallest()
    assert truncated_macs(space, arch, 2) == truncated_macs(
        space, arch, 2, num_classes=space.default_num_classes
    )
    assert truncated_macs(space, arch, np.int64(2)) == truncated_macs(space, arch, 2)
    for bad in (0, space.num_stages + 1, -1, 1.0, True, "1"):
        with pytest.raises(ValueError, match="exit"):
            truncated_macs(space, arch, bad)
