"""One small LiteRT graph per part key: the op the stage graphs run, alone (imports TensorFlow).

Each graph is built from TensorFlow ops with constant weights, in the form the converter
leaves a stage graph's layers in (batch 1, the converter folds batch norm into the conv
bias and fuses ReLU into the conv, so a part is the conv with a bias and its activation;
h-swish becomes a HARD_SWISH op and the SE gate's hard sigmoid a fused ReLU6 and a MUL,
as in the stage graphs). Building from ops instead of Keras layers converts about ten times
faster, which is what makes measuring the thousands of keys of a space practical.

Quantisations are those of the export: float32; float16 weights; int8 post-training
quantisation calibrated on random inputs, with int8 inputs and outputs so that a part is
timed without the QUANTIZE/DEQUANTIZE a stage graph runs once at its boundaries (the
table's per-tensor fit carries those).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import tensorflow as tf

from enas4d_tf.errors import LatencyError
from enas4d_tf.latency.parts import parse_key

# A graph every part graph has beside its op: its invoke time is taken off each part's.
NULL_KEY = "null"


def _activation(name: str, x):
    if name == "relu":
        return tf.nn.relu(x)
    if name == "linear":
        return x
    if name == "hard_swish":  # Keras 3: x * relu6(x + 3) / 6
        return x * (tf.nn.relu6(x + 3.0) * (1.0 / 6.0))
    if name == "hard_sigmoid":
        return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)
    raise LatencyError(f"unknown activation {name!r} in a latency part key")


def _weights(rng, shape) -> tf.Tensor:
    return tf.constant(rng.normal(0.0, 0.1, shape).astype(np.float32))


def _spec(shape) -> tf.TensorSpec:
    return tf.TensorSpec((1, *shape), tf.float32)


def _split(total: int, n: int) -> list[int]:
    """`total` channels as `n` near-equal groups (the concatenated groups' sizes)."""
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


def part_function(key: str, seed: int = 0):
    """A concrete `tf.function` computing the part `key` at batch 1.

    Raises:
      LatencyError: not a part key.
    """
    try:
        op, p = parse_key(key) if key != NULL_KEY else ("null", {})
    except ValueError as e:
        raise LatencyError(str(e)) from None
    rng = np.random.default_rng(seed)
    if op == "conv":
        w = _weights(rng, (p["k"], p["k"], p["cin"], p["cout"]))
        b = _weights(rng, (p["cout"],))
        conv = lambda x: tf.nn.conv2d(x, w, p["stride"], "SAME") + b
        shapes = [(p["side"], p["side"], p["cin"])]
        body = lambda xs: _activation(p["act"], conv(xs[0]))
    elif op == "dwconv":
        w = _weights(rng, (p["k"], p["k"], p["c"], 1))
        b = _weights(rng, (p["c"],))
        strides = [1, p["stride"], p["stride"], 1]
        dw = lambda x: tf.nn.depthwise_conv2d(x, w, strides, "SAME") + b
        shapes = [(p["side"], p["side"], p["c"])]
        body = lambda xs: _activation(p["act"], dw(xs[0]))
    elif op == "concat":
        shapes = [(p["side"], p["side"], c) for c in _split(p["c"], p["n"])]
        body = lambda xs: tf.concat(xs, axis=-1)
    elif op == "mean":
        shapes = [(p["side"], p["side"], p["c"])]
        body = lambda xs: tf.reduce_mean(xs[0], axis=[1, 2], keepdims=True)
    elif op == "mul":
        shapes = [(p["side"], p["side"], p["c"]), (1, 1, p["c"])]
        body = lambda xs: xs[0] * xs[1]
    elif op == "add":
        shapes = [(p["side"], p["side"], p["c"])] * 2
        body = lambda xs: xs[0] + xs[1]
    elif op == "fc":
        w = _weights(rng, (p["cin"], p["cout"]))
        b = _weights(rng, (p["cout"],))
        shapes = [(p["cin"],)]
        body = lambda xs: tf.matmul(xs[0], w) + b
    else:  # the null graph: one element through one op
        shapes = [(1,)]
        body = lambda xs: xs[0] + 1.0
    specs = [_spec(s) for s in shapes]
    fn = tf.function(lambda *xs: body(list(xs)), input_signature=specs)
    return fn.get_concrete_function()


def convert_part(key: str, quantization: str = "float32", seed: int = 0) -> bytes:
    """The part graph of `key` as a TFLite flatbuffer of builtin ops.

    Raises:
      LatencyError: an unknown key or quantisation, or the converter failed.
    """
    fn = part_function(key, seed)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], fn)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization in ("float16",):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization in ("int8", "int8_qat"):
        # QAT graphs run the same int8 kernels as post-training ones: one table serves both.
        shapes = [tuple(s.shape) for s in fn.structured_input_signature[0]]
        rng = np.random.default_rng(seed)

        def representative():
            for _ in range(8):
                yield [rng.normal(0.0, 1.0, s).astype(np.float32) for s in shapes]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif quantization != "float32":
        raise LatencyError(f"unknown quantisation {quantization!r}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return converter.convert()
    except Exception as e:  # the converter raises several private error types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LatencyError(f"part {key} did not convert ({quantization}): {first}") from e
