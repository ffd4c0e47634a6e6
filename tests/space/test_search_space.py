import dataclasses
import json

import numpy as np
import pytest

import enas4d_tf as e4
from enas4d_tf.space import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_largest_smallest_and_samples_are_valid(name):
    space = e4.SearchSpace.preset(name)
    for arch in [space.largest(), space.smallest(), *(space.sample(seed=i) for i in range(10))]:
        space.validate(arch)
        assert arch.num_stages == space.num_stages


def test_fashion_mnist_preset_matches_design():
    # The specification of the preset: S = 3, U = 3, D = 3, depth {1,2,3}, kernels {3,5,7}, expand {3,4,6},
    # width {0.5,0.75,1.0}, resolutions {24,28,32}, no SE, 28x28x1 images.
    space = e4.SearchSpace.preset("fashion_mnist")
    assert (space.num_stages, space.num_units, space.max_depth) == (3, 3, 3)
    assert space.depth_choices == (1, 2, 3)
    assert space.kernel_choices == (3, 5, 7)
    assert space.expand_choices == (3, 4, 6)
    assert space.width_choices == (0.5, 0.75, 1.0)
    assert space.resolution_choices == (24, 28, 32)
    assert not any(space.unit_se)
    assert (space.native_resolution, space.image_channels) == (28, 1)


def test_imagenet_preset_matches_design():
    space = e4.SearchSpace.preset("imagenet_mbv3")
    assert (space.num_stages, space.num_units) == (4, 5)
    assert space.depth_choices == (2, 3, 4)
    assert space.kernel_choices == (3, 5, 7) and space.expand_choices == (3, 4, 6)
    assert min(space.resolution_choices) == 128 and max(space.resolution_choices) == 224
    # SE and h-swish where MobileNetV3-Large has them (units 2, 4, 5 SE; units 3-5 h-swish).
    assert space.unit_se == (False, True, False, True, True)
    assert space.unit_activations[2:] == ("hard_swish",) * 3


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="fashion_mnist"):
        e4.SearchSpace.preset("cifar")


def test_sample_is_deterministic_per_seed_and_varies():
    space = e4.SearchSpace.preset("fashion_mnist")
    assert space.sample(seed=3) == space.sample(seed=3)
    assert len({space.sample(seed=i) for i in range(20)}) == 20


def test_largest_and_smallest_take_extreme_choices():
    space = e4.SearchSpace.preset("fashion_mnist")
    big, small = space.largest(), space.smallest()
    assert big.resolution == 32 and small.resolution == 24
    assert np.all(np.array(big.depth) == 3) and np.all(np.array(small.depth) == 1)
    assert np.all(np.array(big.kernel) == 7) and np.all(np.array(small.width) == 0.5)


def test_dict_round_trip_is_json_safe():
    space = e4.SearchSpace.preset("imagenet_mbv3")
    arch = space.sample(seed=1)
    d = json.loads(json.dumps(arch.to_dict()))
    assert set(d) == {"depth", "kernel", "expand", "width", "resolution", "version"}
    assert e4.Arch.from_dict(d) == arch
    assert e4.Arch.from_json(arch.to_json()) == arch


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["kernel"][0][1].__setitem__(2, 4), r"kernel\[0\]\[1\]\[2\] = 4"),
        (lambda d: d["depth"][2].__setitem__(0, 5), r"depth\[2\]\[0\] = 5 .*\[1, 2, 3\]"),
        (lambda d: d["width"][1].__setitem__(1, 0.6), r"width\[1\]\[1\] = 0.6"),
        (lambda d: d["expand"][0].pop(), r"expand\[0\] must have 3 entries"),
        (lambda d: d.__setitem__("resolution", 30), r"resolution = 30 .*\[24, 28, 32\]"),
        (lambda d: d["depth"].append([1, 1, 1]), r"depth must have 3 entries"),
    ],
)
def test_validate_names_the_bad_gene(change, message):
    space = e4.SearchSpace.preset("fashion_mnist")
    d = space.sample(seed=0).to_dict()
    change(d)
    with pytest.raises(ValueError, match=message):
        space.validate(e4.Arch.from_dict(d))


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"depth": [[1]]}', "missing gene"),
        ('{"depth": 1, "kernel": [], "expand": [], "width": [], "resolution": 28}', "depth"),
        (
            '{"depth": [], "kernel": [], "expand": [], "width": [], "resolution": "28"}',
            "resolution",
        ),
        (
            '{"depth": [], "kernel": [], "expand": [], "width": [], "resolution": 28, "x": 1}',
            "unknown key",
        ),
        (
            '{"depth": [], "kernel": [], "expand": [], "width": [], "resolution": 28, "version": 9}',
            "version",
        ),
        (
            '{"depth": [["a"]], "kernel": [[[]]], "expand": [[[]]], "width": [[]], "resolution": 28}',
            "not a number",
        ),
    ],
)
def test_from_json_rejects_malformed_input(text, message):
    with pytest.raises(ValueError, match=message):
        e4.Arch.from_json(text)


def test_sizes_follow_the_genes():
    space = e4.SearchSpace.preset("fashion_mnist")
    arch = dataclasses.replace(
        space.largest(),
        depth=((1, 3, 3), (3, 2, 3), (3, 3, 3)),
        width=((0.5, 1.0, 1.0), (1.0, 0.75, 1.0), (1.0, 1.0, 1.0)),
    )
    sizes = space.sizes(arch)
    # Unit widths per group are (8, 16, 24): 0.5 of 8 is 4, 0.75 of 16 is 12.
    assert sizes.width[0, 0] == 4 and sizes.width[1, 1] == 12
    # Group 0 skips blocks 1 and 2 of unit 0: hidden width 0.
    assert list(sizes.hidden[0, 0]) == [6 * 8, 0, 0]
    # Hidden = expand x the group's input width: block 0 of unit 1 reads unit 0 (4 channels).
    assert sizes.hidden[0, 1, 0] == 6 * 4
    assert sizes.hidden[1, 1, 2] == 0 and sizes.hidden[1, 1, 1] == 6 * 12


def test_encoding_is_fixed_length_and_ignores_inactive_blocks():
    space = e4.SearchSpace.preset("fashion_mnist")
    a = space.sample(seed=0)
    enc = space.encode(a)
    assert enc.shape == (space.encoding_size,) and enc.dtype == np.float32
    assert not np.array_equal(enc, space.encode(space.sample(seed=1)))
    # Changing the kernel of a block past the depth does not change the encoding.
    d = space.smallest().to_dict()
    d2 = json.loads(json.dumps(d))
    d2["kernel"][0][0][2] = 7
    assert np.array_equal(space.encode(e4.Arch.from_dict(d)), space.encode(e4.Arch.from_dict(d2)))
    d2["kernel"][0][0][0] = 7
    assert not np.array_equal(
        space.encode(e4.Arch.from_dict(d)), space.encode(e4.Arch.from_dict(d2))
    )


def test_space_round_trips_through_dict():
    space = e4.SearchSpace.preset("imagenet_mbv3")
    assert e4.SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
