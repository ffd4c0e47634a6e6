"""One test base for the elastic layers (keras-hub's `run_layer_test`, cut to what they need).

`run_layer_test` checks, for one layer class and its init arguments:

- the config round trip: `get_config()` survives JSON, holds every init argument under its
  own name, and `from_config` rebuilds a layer with the same config and weight shapes;
- registration: Keras rebuilds the layer from its serialized form alone;
- a tiny forward pass, against an expected output shape;
- saving: a `.keras` file of a model around the layer loads back (config and weights) and
  computes exactly the same outputs.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="enas4d_tf_tests")
class LayerModel(keras.Model):
    """A model that calls one layer with fixed keyword arguments (ints, lists, dicts).

    Our layers take lists of groups and Python-valued arguments (`group=`, `sizes=`), so they
    cannot sit in a functional model; this wrapper lets Keras save and load them.
    """

    def __init__(self, layer, call_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        self.layer = layer
        self.call_kwargs = dict(call_kwargs or {})

    def call(self, inputs):
        return self.layer(inputs, **self.call_kwargs)

    def build_from_config(self, config):
        # The elastic layers make their weights in __init__: nothing is left to build.
        self.built = True

    def get_config(self):
        return {
            "layer": keras.saving.serialize_keras_object(self.layer),
            "call_kwargs": self.call_kwargs,
            "name": self.name,
        }


def _shapes(output):
    if isinstance(output, (list, tuple)):
        return [_shapes(t) for t in output]
    return tuple(output.shape)


def _expected(shape):
    # One output: a tuple of ints; several: a list of those.
    return [_expected(v) for v in shape] if isinstance(shape, list) else tuple(shape)


def _assert_same(a, b):
    for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def run_layer_test(
    cls,
    init_kwargs: dict,
    inputs,
    tmp_path,
    call_kwargs: dict | None = None,
    expected_output_shape=None,
):
    """Runs the shared layer checks (see the module docstring); returns the layer's output.

    Args:
      cls: the layer class.
      init_kwargs: its init arguments (small sizes).
      inputs: what the layer is called on (a tensor or a list of group tensors).
      tmp_path: a folder for the saved model (pytest's `tmp_path`).
      call_kwargs: keyword arguments of the call, JSON-serialisable (ints, lists, dicts).
      expected_output_shape: the output's shape (a tuple), or a list of them for a layer
        that returns several tensors.
    """
    layer = cls(**init_kwargs, name="layer")
    config = json.loads(json.dumps(layer.get_config()))
    for key, value in init_kwargs.items():
        assert config[key] == value, key
    clone = cls.from_config(config)
    assert clone.get_config() == layer.get_config()
    assert [w.shape for w in clone.weights] == [w.shape for w in layer.weights]
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(rebuilt) is cls and rebuilt.get_config() == layer.get_config()

    model = LayerModel(layer, call_kwargs)
    output = model(inputs)
    if expected_output_shape is not None:
        assert _shapes(output) == _expected(expected_output_shape)
    # Weights other than their initial values, so that loading them is what is tested.
    rng = np.random.default_rng(0)
    for w in layer.weights:
        w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    output = model(inputs)
    path = str(tmp_path / f"{cls.__name__}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.layer) is cls and loaded.layer.get_config() == layer.get_config()
    _assert_same(loaded(inputs), output)
    return output
