"""Quantisation-aware fine-tuning of stage graphs through tensorflow-model-optimization.

`tfmot` quantises only `tf_keras` (Keras 2) functional models, while the stage graphs of
`extract_stage_models` are Keras 3 models. `to_tf_keras` rebuilds a Keras 3 functional model
layer by layer in `tf_keras` with the same weights. `tf_keras` has no activation equal to
Keras 3's `hard_swish` (and its `hard_sigmoid` is a different curve, `clip(0.2 x + 0.5)`), so
the two are rebuilt as small layers computing `x * relu6(x + 3) / 6` and `relu6(x + 3) / 6`
from TensorFlow ops; the TFLite converter maps them to its builtin HARD_SWISH and
MUL/ADD/RELU6 kernels.

The stage graphs of one network share no layers (stage `s` computes group `s` only), so each
stage is quantised on its own and the quantised stages are chained into one training model
(`QatCascade`) whose outputs are the exits' logits: one `fit` fine-tunes every stage with a
loss per exit, and the hand-off tensors are fake-quantised where a stage emits them and again
where the next reads them, as the int8 graphs will do.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_transforms as _d8,
)
from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import (
    model_transformer,
)

_tfmot_q = tfmot.quantization.keras


# -- tf_keras layers for the activations tf_keras lacks --------------------------------------


class HardSigmoid(tf_keras.layers.Layer):
    """`relu6(x + 3) / 6`, Keras 3's `hard_sigmoid` (tf_keras's is `clip(0.2 x + 0.5)`)."""

    def call(self, inputs):
        return tf.nn.relu6(inputs + 3.0) * (1.0 / 6.0)


class HardSwish(tf_keras.layers.Layer):
    """`x * relu6(x + 3) / 6`, Keras 3's `hard_swish`, which tf_keras does not know."""

    def call(self, inputs):
        return inputs * tf.nn.relu6(inputs + 3.0) * (1.0 / 6.0)


class OutputQuantizeConfig(_tfmot_q.QuantizeConfig):
    """Fake-quantises a weightless layer's output (8 bits, moving-average range).

    Used for the layers the default 8-bit registry does not cover (`Multiply` of the SE gate
    and the hard activations above); TFLite quantises their outputs the same way.
    """

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [
            _tfmot_q.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False
            )
        ]

    def get_config(self):
        return {}


CUSTOM_OBJECTS = {
    "HardSigmoid": HardSigmoid,
    "HardSwish": HardSwish,
    "OutputQuantizeConfig": OutputQuantizeConfig,
}


# -- Keras 3 -> tf_keras ---------------------------------------------------------------------


def _activation(name: str, layer_name: str):
    L = tf_keras.layers
    if name == "relu":
        return L.ReLU(name=layer_name)
    if name == "relu6":
        return L.ReLU(6.0, name=layer_name)
    if name in ("hard_swish", "hard_silu"):
        return HardSwish(name=layer_name)
    if name == "hard_sigmoid":
        return HardSigmoid(name=layer_name)
    if name == "linear":
        return L.Activation("linear", name=layer_name)
    raise ValueError(f"activation {name!r} of layer {layer_name} has no tf_keras rebuild")


def _tf_keras_layer(layer):
    """The tf_keras twin of one Keras 3 layer (not yet built)."""
    L = tf_keras.layers
    k3 = keras.layers
    name = layer.name
    if isinstance(layer, k3.DepthwiseConv2D):
        return L.DepthwiseConv2D(
            layer.kernel_size,
            strides=layer.strides,
            padding=layer.padding,
            depth_multiplier=layer.depth_multiplier,
            use_bias=layer.use_bias,
            name=name,
        )
    if isinstance(layer, k3.Conv2D):
        if layer.activation is not keras.activations.linear:
            raise ValueError(f"layer {name}: fused activations are not rebuilt")
        return L.Conv2D(
            layer.filters,
            layer.kernel_size,
            strides=layer.strides,
            padding=layer.padding,
            use_bias=layer.use_bias,
            name=name,
        )
    if isinstance(layer, k3.Dense):
        if layer.activation is not keras.activations.linear:
            raise ValueError(f"layer {name}: fused activations are not rebuilt")
        return L.Dense(layer.units, use_bias=layer.use_bias, name=name)
    if isinstance(layer, k3.BatchNormalization):
        return L.BatchNormalization(epsilon=layer.epsilon, momentum=layer.momentum, name=name)
    if isinstance(layer, k3.ReLU):
        return L.ReLU(
            max_value=layer.max_value,
            negative_slope=layer.negative_slope,
            threshold=layer.threshold,
            name=name,
        )
    if isinstance(layer, k3.Activation):
        act = layer.get_config()["activation"]
        if not isinstance(act, str):
            act = getattr(layer.activation, "__name__", str(act))
        return _activation(act, name)
    if isinstance(layer, k3.GlobalAveragePooling2D):
        return L.GlobalAveragePooling2D(keepdims=layer.keepdims, name=name)
    if isinstance(layer, k3.Concatenate):
        return L.Concatenate(axis=layer.axis, name=name)
    if isinstance(layer, k3.Add):
        return L.Add(name=name)
    if isinstance(layer, k3.Multiply):
        return L.Multiply(name=name)
    raise ValueError(f"layer {name} ({type(layer).__name__}) has no tf_keras rebuild")


def _is_hard_sigmoid(layer) -> bool:
    if not isinstance(layer, keras.layers.Activation):
        return False
    act = layer.get_config()["activation"]
    return act == "hard_sigmoid" or getattr(layer.activation, "__name__", "") == "hard_sigmoid"


def _fold_hard_sigmoid(layer, x, producers, consumers):
    """`relu6(conv(x) + 3) / 6` as `relu1(conv'(x))` with `conv'` = `(conv + 3) / 6`.

    Folding the affine part into the convolution before the SE gate keeps the gate an
    exact 8-bit-quantisable pair (conv, ReLU) with no extra ops for tfmot or TFLite.
    Returns the ReLU twin, or None when `layer` is not such a gate.
    """
    if not _is_hard_sigmoid(layer) or isinstance(x, (list, tuple)):
        return None
    if consumers.get(id(x), 0) != 1 or id(x) not in producers:
        return None
    src, src_twin = producers[id(x)]
    if not isinstance(src, (keras.layers.Conv2D, keras.layers.Dense)) or not src.use_bias:
        return None
    if isinstance(src, keras.layers.DepthwiseConv2D):
        return None
    kernel, bias = src_twin.get_weights()
    src_twin.set_weights([kernel / 6.0, (bias + 3.0) / 6.0])
    return tf_keras.layers.ReLU(max_value=1.0, name=layer.name)


def to_tf_keras(model: keras.Model, batch_size: int | None = None) -> tf_keras.Model:
    """Rebuilds a Keras 3 functional model in tf_keras, layer by layer, with its weights.

    Args:
      model: a functional model of the layers `extract_subnet`/`extract_stage_models` use
        (Conv2D, DepthwiseConv2D, Dense, BatchNormalization, ReLU, Activation, pooling,
        Concatenate, Add, Multiply). Every layer must be called once.
      batch_size: a fixed batch size for the inputs, or None.

    Returns:
      A tf_keras functional model with the same input names, the same output structure (a
      dict of named outputs or a list) and the same function. A `hard_sigmoid` gate right
      after a biased convolution is folded into it (see `_fold_hard_sigmoid`).

    Raises:
      ValueError: the model holds a layer or activation that has no rebuild.
    """
    tensors: dict[int, object] = {}
    inputs = {}
    for kt in model.inputs:
        name = kt.name
        t = tf_keras.Input(tuple(kt.shape[1:]), batch_size=batch_size, name=name)
        inputs[name] = t
        tensors[id(kt)] = t

    def look_up(x):
        if isinstance(x, (list, tuple)):
            return [look_up(v) for v in x]
        return tensors[id(x)]

    producers: dict[int, tuple] = {}  # Keras 3 tensor id -> (layer, twin)
    consumers: dict[int, int] = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for kt in node.input_tensors:
                consumers[id(kt)] = consumers.get(id(kt), 0) + 1
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if len(layer._inbound_nodes) != 1:
            raise ValueError(f"layer {layer.name} is called {len(layer._inbound_nodes)} times")
        node = layer._inbound_nodes[0]
        x = node.arguments.args[0]
        folded = _fold_hard_sigmoid(layer, x, producers, consumers)
        twin = folded if folded is not None else _tf_keras_layer(layer)
        out = twin(look_up(x))
        if layer.weights:
            twin.set_weights([np.asarray(w) for w in layer.get_weights()])
        tensors[id(node.output_tensors[0])] = out
        producers[id(node.output_tensors[0])] = (layer, twin)
    out_struct = model._outputs_struct
    if isinstance(out_struct, dict):
        outputs = {k: look_up(v) for k, v in out_struct.items()}
    else:
        outputs = look_up(out_struct)
    ins = inputs if isinstance(model._inputs_struct, dict) else list(inputs.values())
    return tf_keras.Model(ins, outputs, name=model.name)


# -- quantisation-aware training -------------------------------------------------------------


def _annotate(layer):
    if isinstance(layer, (HardSwish, HardSigmoid, tf_keras.layers.Multiply)):
        return _tfmot_q.quantize_annotate_layer(layer, OutputQuantizeConfig())
    if isinstance(layer, tf_keras.layers.InputLayer):
        return layer
    return _tfmot_q.quantize_annotate_layer(layer)


class _LayoutTransform(_tfmot_q.default_8bit.Default8BitQuantizeLayoutTransform):
    """tfmot's default 8-bit layout transforms without its `ConcatTransform*`.

    `ConcatTransform` rebuilds a `Concatenate` whose inputs are a model input and a layer
    output with its inputs swapped (tensorflow/model-optimization issue 1061, open): a stage
    that concatenates a hand-off with its own features then computes another function, and
    exits 2 and later fell to chance after QAT. Without the transform the registry quantises
    each concat input and its output, which TFLite's int8 CONCATENATION rescales.
    """

    def apply(self, model, layer_quantize_map):
        transforms = [
            _d8.InputLayerQuantize(),
            _d8.SeparableConv1DQuantize(),
            _d8.SeparableConvQuantize(),
            _d8.Conv2DReshapeBatchNormReLUQuantize(),
            _d8.Conv2DReshapeBatchNormActivationQuantize(),
            _d8.Conv2DBatchNormReLUQuantize(),
            _d8.Conv2DBatchNormActivationQuantize(),
            _d8.Conv2DReshapeBatchNormQuantize(),
            _d8.Conv2DBatchNormQuantize(),
            _d8.DenseBatchNormQuantize(),
            _d8.DenseBatchNormReLUQuantize(),
            _d8.DenseBatchNormActivationQuantize(),
            _d8.LayerReLUQuantize(),
            _d8.LayerReluActivationQuantize(),
        ]
        return model_transformer.ModelTransformer(
            model, transforms, set(layer_quantize_map.keys()), layer_quantize_map
        ).transform()


class _Scheme(_tfmot_q.default_8bit.Default8BitQuantizeScheme):
    """The default 8-bit scheme with `_LayoutTransform`."""

    def get_layout_transformer(self):
        return _LayoutTransform()


def _producers(layer) -> list[str]:
    """Names of the layers feeding `layer`'s last call, tfmot's wrappers seen through."""
    node = layer._inbound_nodes[-1]
    names = []
    for inbound in tf.nest.flatten(node.inbound_layers):
        while type(inbound).__name__ == "QuantizeLayer":
            inbound = inbound._inbound_nodes[-1].inbound_layers
        names.append(inbound.name.removeprefix("quant_"))
    return names


def _check_wiring(model: tf_keras.Model, quantized: tf_keras.Model) -> None:
    """Raises ValueError when a multi-input layer of `quantized` reads its inputs in
    another order than in `model` (the defect `_LayoutTransform` avoids)."""
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.InputLayer) or len(_producers(layer)) < 2:
            continue
        twin = quantized.get_layer("quant_" + layer.name)
        if _producers(twin) != _producers(layer):
            raise ValueError(
                f"quantize_apply rewired layer {layer.name}: inputs {_producers(twin)}, "
                f"expected {_producers(layer)}"
            )


def quantize_stage(model: tf_keras.Model) -> tf_keras.Model:
    """A fake-quantised (QAT) copy of a tf_keras stage model (tfmot's 8-bit scheme, without
    its Concatenate transform: see `_LayoutTransform`).

    Raises:
      ValueError: tfmot refuses a layer, or its copy computes another graph.
    """
    annotated = tf_keras.models.clone_model(model, clone_function=_annotate)
    annotated.set_weights(model.get_weights())
    with _tfmot_q.quantize_scope(CUSTOM_OBJECTS):
        quantized = _tfmot_q.quantize_apply(annotated, scheme=_Scheme())
    _check_wiring(model, quantized)
    return quantized


def qat_cascade(stages: list[tf_keras.Model], image_shape: tuple) -> tf_keras.Model:
    """Chains the (quantised) stage models into one model returning every exit's logits.

    Stage `s` gets the image and the hand-offs it names among its inputs; the chain is what
    the cascade runner does on a device, with every stage run.

    Args:
      stages: tf_keras stage models with dict inputs (`"image"` + hand-off names) and dict
        outputs (`"logits"` + hand-offs).
      image_shape: `(H, W, C)` of the image input.

    Returns:
      A tf_keras model: image -> list of S logits.
    """
    image = tf_keras.Input(image_shape, name="image")
    handoffs: dict = {}
    logits = []
    for s, stage in enumerate(stages):
        feed = {}
        for name in stage.input_names:
            feed[name] = image if name == "image" else handoffs[name]
        out = stage(feed)
        for name, t in out.items():
            if name == "logits":
                # Named so Keras reports one loss per exit (exits numbered from 1).
                logits.append(tf_keras.layers.Activation("linear", name=f"exit{s + 1}")(t))
            else:
                handoffs[name] = t
    return tf_keras.Model(image, logits, name="qat_cascade")


def qat_finetune(
    stage_models: list[keras.Model],
    images: np.ndarray,
    labels: np.ndarray,
    steps: int = 200,
    batch_size: int = 64,
    learning_rate: float = 1e-4,
    seed: int = 0,
) -> tuple[list[tf_keras.Model], list[float]]:
    """Quantisation-aware fine-tuning of a network's stage graphs on training data.

    Args:
      stage_models: Keras 3 stage models (`extract_stage_models`), BN recalibrated.
      images: training images at the architecture's resolution, `(N, H, W, C)` float32.
      labels: int labels `(N,)`.
      steps: optimizer steps (a short fine-tune: the float weights are already trained).
      batch_size: images per step.
      learning_rate: Adam learning rate.
      seed: shuffling seed.

    Returns:
      `(quantised tf_keras stage models, per-step mean loss over exits)`.
    """
    tf_stages = [quantize_stage(to_tf_keras(m)) for m in stage_models]
    cascade = qat_cascade(tf_stages, tuple(images.shape[1:]))
    num_stages = len(tf_stages)
    cascade.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss=[tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * num_stages,
    )
    rng = np.random.default_rng(seed)
    n = images.shape[0]
    # Epoch-wise shuffles laid end to end, so every image is seen before any is repeated.
    idx = np.concatenate([rng.permutation(n) for _ in range(-(-steps * batch_size // n))])
    losses = []
    for step in range(steps):
        batch = idx[step * batch_size : (step + 1) * batch_size]
        out = cascade.train_on_batch(images[batch], [labels[batch]] * num_stages)
        total = out[0] if isinstance(out, list) else out
        losses.append(float(total) / num_stages)
    return tf_stages, losses
