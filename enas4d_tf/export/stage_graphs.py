"""Early-exit stage graphs converted to TFLite flatbuffers of builtin ops.

Every stage graph is converted with a fixed batch of 1 (what a phone runs) through a
SavedModel (`keras.export.ExportArchive` for Keras 3 models, `tf.saved_model.save` for the
tf_keras QAT models), so the TFLite signature keeps the input names (`image` and the hand-off
names) and the output names (`logits` and the hand-offs). `TFLiteConverter.from_keras_model`
cannot do this for Keras 3 dict-input models here (it feeds a list to the model).

Quantisations (`QUANTIZATIONS`, named in `enas4d_tf.export.plan`):
  float32   plain conversion;
  float16   float16 weights (`target_spec.supported_types = [tf.float16]`), float compute on
            CPU, half the file size;
  int8      post-training full-integer quantisation calibrated on representative data (dict
            samples keyed by input name, which the converter matches to the signature's
            inputs for a multi-input graph); inputs and outputs stay float32,
            so hand-offs cross stage boundaries as float32 (QUANTIZE/DEQUANTIZE inside);
  int8_qat  a quantisation-aware fine-tuned tf_keras stage (`enas4d_tf.export.quantization`)
            converted to int8 with its learned ranges, float32 at the boundaries as well.

Only TFLite builtin ops are allowed (no SELECT_TF_OPS / Flex): `convert_stage` checks the
result with `litert.op_names`. Inspecting and running the graphs is `enas4d_tf.export.litert`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import tempfile
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import tensorflow as tf

from enas4d_tf.errors import ConversionError
from enas4d_tf.export.litert import is_builtin, op_names
from enas4d_tf.export.plan import QUANTIZATIONS


def input_signature(model, batch_size: int = 1) -> dict:
    """`{input name: tf.TensorSpec}` of a dict-input Keras (3 or tf_keras) model."""
    return {
        t.name.split(":")[0]: tf.TensorSpec(
            (batch_size, *tuple(t.shape[1:])), tf.float32, name=t.name.split(":")[0]
        )
        for t in model.inputs
    }


def _saved_model_keras3(model, folder: str, batch_size: int) -> None:
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        functools.partial(model.__call__, training=False),
        input_signature=[input_signature(model, batch_size)],
    )
    archive.write_out(folder, verbose=False)


def _saved_model_tf_keras(model, folder: str, batch_size: int) -> None:
    spec = input_signature(model, batch_size)

    @tf.function(input_signature=[spec])
    def serve(inputs):
        return model(inputs, training=False)

    tf.saved_model.save(model, folder, signatures={"serving_default": serve})


def _is_tf_keras(model) -> bool:
    return type(model).__module__.startswith("tf_keras")


def representative_samples(feeds: Mapping[str, np.ndarray], limit: int | None = None):
    """A representative-dataset callable yielding one dict sample (batch 1) per image.

    Args:
      feeds: `{input name: array (N, ...)}`, the stage's inputs for N images.
      limit: use at most this many images.
    """
    n = min(len(v) for v in feeds.values())
    n = n if limit is None else min(n, limit)

    def gen():
        for i in range(n):
            yield {k: np.asarray(v[i : i + 1], np.float32) for k, v in feeds.items()}

    return gen


def convert_stage(
    model,
    quantization: str,
    representative: Callable[[], Iterable[dict]] | None = None,
    batch_size: int = 1,
) -> bytes:
    """Converts one stage graph to a TFLite flatbuffer of builtin ops.

    Args:
      model: a Keras 3 stage model (`extract_stage_models`) or, for "int8_qat", a quantised
        tf_keras stage model (`enas4d_tf.export.quantization.qat_finetune`).
      quantization: one of `QUANTIZATIONS`.
      representative: for "int8", a callable returning an iterator of dict samples keyed by
        input name (`representative_samples`).
      batch_size: the fixed batch of the graph's inputs.

    Returns:
      The flatbuffer bytes.

    Raises:
      ValueError: unknown quantisation or "int8" without representative data.
      ConversionError: the converter failed or needed non-builtin ops.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantisation {quantization!r}")
    if quantization == "int8" and representative is None:
        raise ValueError("int8 post-training quantisation needs representative data")
    with tempfile.TemporaryDirectory(prefix="enas4d_sm_") as folder:
        if _is_tf_keras(model):
            _saved_model_tf_keras(model, folder, batch_size)
        else:
            _saved_model_keras3(model, folder, batch_size)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantization == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantization == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            # Full integer: the converter fails instead of leaving float ops behind.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        elif quantization == "int8_qat":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        try:
            # The converter prints MLIR diagnostics on stdout/stderr; keep them out of tools'
            # output unless it fails.
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                flatbuffer = converter.convert()
        except Exception as e:  # the converter raises several private error types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConversionError(f"TFLite conversion ({quantization}) failed: {first}") from e
    ops = op_names(flatbuffer)
    bad = [o for o in ops if not is_builtin(o)]
    if bad:
        raise ConversionError(f"stage graph needs non-builtin ops: {', '.join(bad)}")
    return flatbuffer


def keras_stage_feeds(stage_models, images: np.ndarray, batch_size: int = 256) -> list[dict]:
    """Every stage's inputs for `images`, computed by running the float Keras stages in turn.

    Args:
      stage_models: Keras 3 stage models of one network.
      images: images at the architecture's resolution, `(N, H, W, C)`.
      batch_size: images per Keras call.

    Returns:
      One dict per stage, `{input name: array (N, ...)}` (the representative data of int8
      post-training quantisation).
    """
    feeds = [{n: [] for n in (t.name for t in m.inputs)} for m in stage_models]
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start : start + batch_size], np.float32)
        handoffs = {"image": batch}
        for s, model in enumerate(stage_models):
            inputs = {n: handoffs[n] for n in feeds[s]}
            for n, v in inputs.items():
                feeds[s][n].append(v)
            out = model(inputs, training=False)
            handoffs.update({k: np.asarray(v) for k, v in out.items() if k != "logits"})
    return [{n: np.concatenate(v) for n, v in f.items()} for f in feeds]
