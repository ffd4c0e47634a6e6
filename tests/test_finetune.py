"""finetune: the config refuses non-finite values, the dataset must fit the model, a
non-finite loss or an undecodable image stops `fit` with one line."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from enas4d_tf import data
from enas4d_tf.data.folder_files import scan_image_folder
from enas4d_tf.errors import DataError, TrainError
from enas4d_tf.finetune import FinetuneConfig, check_model_fits_data, finetune
from tests.data.images import damage_middle, write_image_folder, write_png


def tiny_multi_exit_model(num_classes: int = 2, side: int = 8, channels: int = 1):
    """A two-exit functional model shaped like an exported subnet (outputs exit1, exit2)."""
    inputs = keras.Input((side, side, channels))
    x = keras.layers.Conv2D(4, 3, padding="same", name="s1_conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(
        inputs,
        [keras.layers.Dense(num_classes, name=f"exit{i}")(x) for i in (1, 2)],
    )


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({"learning_rate": math.nan}, "learning rate must be a finite number, got nan"),
        ({"learning_rate": math.inf}, "learning rate must be a finite number, got inf"),
        ({"learning_rate": -1e-3}, "learning rate must be >= 0"),
        ({"epochs": 0}, "epochs must be at least 1, got 0"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"steps_per_epoch": 0}, "steps_per_epoch must be at least 1"),
    ],
)
def test_config_refuses_values_that_cannot_train(fields, problem):
    with pytest.raises(TrainError, match=problem):
        FinetuneConfig(**fields)
    FinetuneConfig(learning_rate=0.0, steps_per_epoch=None)  # the edges are fine


def _info(num_classes: int, channels: int = 1) -> data.DatasetInfo:
    return data.DatasetInfo(
        name="folder:x",
        num_classes=num_classes,
        image_channels=channels,
        image_size=8,
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        num_train=10,
        num_validation=2,
        num_test=0,
    )


def test_the_dataset_must_have_the_models_classes_and_channels():
    model = tiny_multi_exit_model(num_classes=10)
    check_model_fits_data(model, _info(10))
    with pytest.raises(DataError, match="classifies 10 classes but dataset 'folder:x' has 12"):
        check_model_fits_data(model, _info(12))
    with pytest.raises(DataError, match="has 3"):
        check_model_fits_data(model, _info(3))  # fewer classes is as wrong as more
    with pytest.raises(DataError, match="images of 1 channel.* has 3"):
        check_model_fits_data(model, _info(10, channels=3))


def test_a_folder_with_other_classes_is_refused_before_training(tmp_path):
    write_image_folder(tmp_path, {f"c{i}": 2 for i in range(12)})
    model = tiny_multi_exit_model(num_classes=10)
    before = [w.copy() for w in model.get_weights()]
    config = FinetuneConfig(dataset=f"folder:{tmp_path}", batch_size=4)
    with pytest.raises(DataError, match="classifies 10 classes but dataset .* has 12"):
        finetune(model, config)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_non_finite_loss_stops_with_one_line(tmp_path):
    write_image_folder(tmp_path, {"a": 8, "b": 8})
    model = tiny_multi_exit_model()
    kernel, bias = model.get_layer("exit2").get_weights()
    kernel[0, 0] = np.nan  # exit 2's logits are NaN from the first step
    model.get_layer("exit2").set_weights([kernel, bias])
    config = FinetuneConfig(dataset=f"folder:{tmp_path}", batch_size=4, epochs=2)
    with pytest.raises(TrainError) as info:
        finetune(model, config)
    message = str(info.value)
    assert message.startswith("fine-tuning stopped: ")
    assert "became nan at step 1 of epoch 1" in message and "nothing was saved" in message
    assert message.split(":")[1].split()[0] in ("exit2_loss", "loss")


def test_an_image_that_fails_to_decode_mid_run_is_named(tmp_path, monkeypatch):
    # Open the folder estimating its mean and std on 2 images, so that the damaged one is
    # first decoded by `fit`'s pipeline, as in a folder of more than 2,000 images.
    monkeypatch.setattr(data.sources, "_STATS_EXAMPLES", 2)
    write_image_folder(tmp_path, {"a": 8, "b": 8})
    name = f"folder:{tmp_path}"
    damaged = scan_image_folder(name).splits["train"][0][-1]
    damage_middle(damaged)
    model = tiny_multi_exit_model()
    config = FinetuneConfig(dataset=name, batch_size=4)
    with pytest.raises(DataError) as info:
        finetune(model, config)
    assert str(info.value) == (
        f"image file {damaged} cannot be decoded: Invalid PNG. Failed to initialize decoder."
    )


@pytest.mark.slow  # tools.finetune's own test (tests/export) trains too
def test_finetune_trains_on_a_folder(tmp_path):
    # Dark images are class a, bright ones class b: a few steps of Adam separate them.
    rng = np.random.default_rng(0)
    for label, low in (("a", 0), ("b", 160)):
        for i in range(20):
            write_png(tmp_path / "train" / label / f"{i}.png", rng.integers(low, low + 96, (8, 8)))
    model = tiny_multi_exit_model()
    config = FinetuneConfig(
        dataset=f"folder:{tmp_path}", batch_size=8, epochs=6, learning_rate=3e-2
    )
    final = finetune(model, config)
    assert {"loss", "val_loss", "exit1_loss", "exit2_loss"} <= set(final)
    assert all(math.isfinite(v) for v in final.values())
    assert final["exit1_accuracy"] > 0.9 and final["val_exit1_accuracy"] == 1.0
