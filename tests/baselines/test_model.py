"""The early-exit baseline's Keras models: MACs, stage models, standard layers."""

import keras
import numpy as np
import pytest

from enas4d_tf.baselines.backbone import BackboneGenes, backbone_spec, exit_macs
from enas4d_tf.baselines.model import EarlyExitNetwork
from enas4d_tf.model.macs import keras_model_macs
from enas4d_tf.space import SearchSpace


@pytest.mark.parametrize(
    "preset, genes",
    [
        ("tiny", BackboneGenes()),
        # SE in unit 2, residual blocks, per-unit kernels, an odd width and resolution.
        ("tiny", BackboneGenes(depth=2, kernel=(5, 3), expand=3, width=(0.75, 0.5), resolution=23)),
        ("fashion_mnist", BackboneGenes(depth=(1, 2, 3), kernel=(3, 5, 7), width=0.75)),
    ],
)
def test_exit_macs_equal_a_count_from_the_keras_layers(preset, genes):
    spec = backbone_spec(SearchSpace.preset(preset), genes)
    model = EarlyExitNetwork(spec).model()
    assert keras_model_macs(model, spec.num_exits) == exit_macs(spec)
    assert len(model.outputs) == spec.num_exits


def test_stage_models_chain_to_the_multi_exit_model():
    spec = backbone_spec(SearchSpace.preset("tiny"), BackboneGenes(depth=2, resolution=24))
    network = EarlyExitNetwork(spec)
    rng = np.random.default_rng(0)
    for w in network.model().weights:  # move BN statistics off the identity
        if "moving" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    images = rng.normal(size=(3, 24, 24, 1)).astype("float32")
    full = [np.asarray(z) for z in network.model()(images, training=False)]
    stages = network.stage_models()
    assert [sorted(m.input) for m in stages] == [["image"], ["unit1_out"]]
    first = stages[0]({"image": images}, training=False)
    second = stages[1]({"unit1_out": first["unit1_out"]}, training=False)
    assert sorted(first) == ["logits", "unit1_out"] and sorted(second) == ["logits"]
    np.testing.assert_allclose(first["logits"], full[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(second["logits"], full[1], rtol=1e-5, atol=1e-5)
    assert not np.allclose(full[0], full[1])  # two different exits


def test_only_standard_keras_layers():
    spec = backbone_spec(SearchSpace.preset("tiny"), BackboneGenes())
    model = EarlyExitNetwork(spec).model()
    assert {type(layer).__module__.split(".")[0] for layer in model.layers} == {"keras"}
    names = [layer.name for layer in model.layers]
    assert "exit1" in names and "exit2" in names and "s2_head_conv" in names
    assert isinstance(model.get_layer("s2_u1b0_se_scale"), keras.layers.Multiply)


def test_zero_residual_gammas_make_residual_blocks_the_identity():
    # With its projection's gamma (and beta) at 0 a residual block adds nothing: deeper
    # networks start as the shallow ones they contain (tools.train --zero_init_residual).
    spec = backbone_spec(SearchSpace.preset("tiny"), BackboneGenes(depth=2, resolution=24))
    network = EarlyExitNetwork(spec)
    network.model()
    blocks = [b for unit in network.units for b in unit]
    residual = [b for b in blocks if b.residual is not None]
    assert residual and len(residual) < len(blocks)
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(2, 6, 6, b.plan.out_width)).astype("float32") for b in residual]
    before = [np.asarray(b(x)) for b, x in zip(residual, inputs, strict=True)]
    assert not any(np.allclose(y, x, atol=1e-3) for y, x in zip(before, inputs, strict=True))
    assert network.zero_residual_gammas() == len(residual)
    for block, x in zip(residual, inputs, strict=True):
        np.testing.assert_allclose(block(x), x, atol=1e-6)
    # A block without a residual keeps its projection's gamma.
    plain = [b for b in blocks if b.residual is None]
    assert all(np.all(np.asarray(b.project_bn.gamma) == 1) for b in plain)
