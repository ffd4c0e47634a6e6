"""The latency model's picture of a stage graph against the real one: stage_io against the
Keras stage models' inputs and outputs, and (slow) the ops of every part graph together
against the ops of the converted stage graph."""

from collections import Counter

import numpy as np
import pytest

import enas4d_tf as e4
from enas4d_tf.latency.handoffs import stage_io
from enas4d_tf.latency.parts import stage_parts

SPACE = e4.SearchSpace.preset("tiny")


@pytest.fixture(scope="module")
def net():
    net = e4.Supernet(SPACE, num_classes=10)
    net(np.zeros((1, 28, 28, 1), np.float32), arch=SPACE.largest())
    return net


def test_stage_io_names_the_stage_models_inputs_and_outputs(net):
    # Seed 5 skips blocks in some groups but not others: hand-offs of the last active block.
    arch = SPACE.sample(seed=5)
    models = e4.extract_stage_models(net, arch)
    for model, io in zip(models, stage_io(SPACE, arch, 10), strict=True):
        inputs = {t.name.split(":")[0]: tuple(t.shape[1:]) for t in model.inputs}
        outputs = {name: tuple(t.shape[1:]) for name, t in model.output.items()}
        assert inputs == io.inputs
        assert outputs == io.outputs


def _ops(flatbuffer) -> Counter:
    from enas4d_tf.export.litert import _interpreter

    it = _interpreter(model_content=flatbuffer)
    return Counter(o["op_name"] for o in it._get_ops_details())


@pytest.mark.slow
def test_the_part_graphs_hold_the_ops_of_the_stage_graph(net):
    """The stage graph runs exactly the ops of its part graphs, op for op (BN folded into the
    convs, ReLU fused, h-swish a HARD_SWISH op, the SE gate's hard sigmoid a fused ReLU6 and a
    MUL), so summing the parts' times leaves nothing out and counts nothing twice."""
    from enas4d_tf.export.stage_graphs import convert_stage
    from enas4d_tf.latency.part_graphs import convert_part

    arch = SPACE.sample(seed=5)
    models = e4.extract_stage_models(net, arch)
    for s, model in enumerate(models):
        parts = Counter()
        for key in stage_parts(SPACE, arch, s, 10):
            parts += _ops(convert_part(key))
        assert parts == _ops(convert_stage(model, "float32")), f"stage {s + 1}"


@pytest.mark.parametrize("quantization", ["float16", "int8"])
def test_quantized_part_graphs(quantization):
    """int8 parts take and return int8 (a stage graph quantises once at its boundaries,
    which the table's per-tensor fit carries); float16 parts keep float32 inputs and
    dequantise their float16 weights, as the float16 stage graphs do."""
    from enas4d_tf.export.litert import _interpreter
    from enas4d_tf.latency.part_graphs import convert_part

    key = "conv:act=hard_swish,cin=8,cout=24,k=1,side=6,stride=1"
    it = _interpreter(model_content=convert_part(key, quantization))
    ops = [o["op_name"] for o in it._get_ops_details()]
    inputs = [np.dtype(d["dtype"]).name for d in it.get_input_details()]
    if quantization == "int8":
        assert ops == ["CONV_2D", "HARD_SWISH"] and inputs == ["int8"]
    else:
        assert ops[-2:] == ["CONV_2D", "HARD_SWISH"] and "DEQUANTIZE" in ops
        assert inputs == ["float32"]
