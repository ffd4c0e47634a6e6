import numpy as np
import pytest

import enas4d_tf as e4
from enas4d_tf.model.macs import keras_model_macs


@pytest.mark.parametrize(
    "name, num_sampled", [("tiny", 10), ("fashion_mnist", 10), ("imagenet_mbv3", 2)]
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
