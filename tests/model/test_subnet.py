"""Extracted models: standard layers, saving, stage graphs."""

import keras
import numpy as np
import pytest

import enas4d_tf as e4
from enas4d_tf.model.subnet import extract_truncated
from tests.helpers import randomize_batch_norms, randomize_transforms

STANDARD = (
    keras.layers.InputLayer,
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.BatchNormalization,
    keras.layers.ReLU,
    keras.layers.Activation,
    keras.layers.Add,
    keras.layers.Multiply,
    keras.layers.Concatenate,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.Dense,
)


def _net(name="tiny"):
    space = e4.SearchSpace.preset(name)
    net = e4.Supernet(space, num_classes=10)
    randomize_batch_norms(net, 1)
    randomize_transforms(net, 2)
    return space, net


def test_subnet_has_only_standard_layers_and_s_outputs():
    space, net = _net()
    sub = e4.extract_subnet(net, space.sample(seed=0))
    assert len(sub.outputs) == space.num_stages
    for layer in sub.layers:
        assert type(layer) in STANDARD, type(layer)


def test_names_number_stages_groups_and_exits_from_1():
    space, net = _net()
    arch = space.sample(seed=0)
    sub = e4.extract_subnet(net, arch)
    assert sub.output_names == ["exit1", "exit2", "exit3"]
    prefixes = ("s1_", "s2_", "s3_")
    for layer in sub.layers:
        assert (
            layer.name == "image"
            or layer.name in sub.output_names
            or (layer.name.startswith(prefixes))
        ), layer.name
    assert {"s1_stem_conv", "s3_head_conv", "s2_u0b0_expand"} <= {x.name for x in sub.layers}
    stages = e4.extract_stage_models(net, arch)
    assert [m.name for m in stages] == ["stage1", "stage2", "stage3"]
    assert "g1_stem" in stages[0].output and "g1_head_pool" in stages[0].output
    # A stage model's layers are named as in the subnet, so weights can be copied by name.
    names = {x.name for x in sub.layers}
    for m in stages:
        assert all(x.name in names for x in m.layers if not x.name.startswith(("image", "g")))


def test_keras_save_and_load_gives_identical_outputs(tmp_path):
    space, net = _net()
    arch = space.sample(seed=1)
    sub = e4.extract_subnet(net, arch)
    path = str(tmp_path / "subnet.keras")
    sub.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(0).normal(size=(3, arch.resolution, arch.resolution, 1))
    for a, b in zip(sub(x.astype("float32")), loaded(x.astype("float32")), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_stage_models_chain_to_the_one_piece_subnet():
    space, net = _net()
    arch = space.sample(seed=2)
    sub = e4.extract_subnet(net, arch)
    stages = e4.extract_stage_models(net, arch)
    x = np.random.default_rng(1).normal(size=(2, arch.resolution, arch.resolution, 1))
    x = x.astype("float32")
    whole = [np.asarray(z) for z in sub(x)]
    handed = {}
    for s, model in enumerate(stages):
        inputs = {"image": x}
        for name in model.input:
            if name != "image":
                assert not name.startswith(f"g{s + 1}_")  # reads only earlier groups
                inputs[name] = handed[name]
        out = model(inputs)
        np.testing.assert_allclose(np.asarray(out["logits"]), whole[s], atol=1e-5)
        for name, value in out.items():
            if name != "logits":
                assert name.startswith(f"g{s + 1}_")  # hands on only its own group
                handed[name] = np.asarray(value)
    assert handed, "earlier stages must hand tensors on"
    # The last stage hands nothing on; the first reads nothing but the image.
    assert set(stages[-1].output) == {"logits"}
    assert set(stages[0].input) == {"image"}


def test_truncated_network_computes_its_exit_and_no_other_classifier():
    space, net = _net()
    arch = space.sample(seed=3)
    x = np.random.default_rng(2).normal(size=(2, arch.resolution, arch.resolution, 1))
    x = x.astype("float32")
    whole = [np.asarray(z) for z in e4.extract_subnet(net, arch)(x)]
    for s in (1, 3):
        cut = extract_truncated(net, arch, s)
        assert cut.output_names == [f"exit{s}"]
        assert [x.name for x in cut.layers if x.name.startswith("exit")] == [f"exit{s}"]
        # Groups above s are not computed at all.
        assert not any(x.name.startswith(f"s{s + 1}_") for x in cut.layers)
        out = cut(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        np.testing.assert_allclose(np.asarray(out), whole[s - 1], atol=1e-5)
    graph = extract_truncated(net, arch, 2, name="stage2", dict_io=True)
    assert set(graph.input) == {"image"} and set(graph.output) == {"logits"}
    out = graph({"image": x})
    np.testing.assert_allclose(np.asarray(out["logits"]), whole[1], atol=1e-5)
    for bad in (0, 4, True):
        with pytest.raises(ValueError, match="exit"):
            extract_truncated(net, arch, bad)
