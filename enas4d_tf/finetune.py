"""Fine-tuning an exported `subnet.keras` with Keras `fit`, one loss per exit.

An export's `subnet.keras` is an ordinary functional Keras model with one logits output per
exit (`exit1`, `exit2`, ...). `finetune` is what `tools/finetune.py` runs; the pieces are
public for plain-Keras use (README.md "Fine-tuning with Keras"):

  model = keras.models.load_model("runs/demo/export/net/subnet.keras")
  compile_for_finetuning(model, learning_rate=1e-4)
  model.fit(finetune_dataset(model, "fashion_mnist", "train", None, 128, training=True))

`copy_subnet_weights` cuts a fine-tuned subnet into stage graphs again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from enas4d_tf.errors import DataError, TrainError


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """What `finetune` trains on and how (what `tools/finetune.py`'s flags set).

    Attributes:
      dataset: the dataset, by name.
      data_dir: where it is; default the dataset's own folder.
      epochs: passes over the training split.
      batch_size: images per step.
      learning_rate: Adam learning rate (small: the weights are trained).
      steps_per_epoch: stop each epoch after this many steps; None = the whole split.

    Raises:
      TrainError: a value out of range, or a learning rate that is not a finite number >= 0.
    """

    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    epochs: int = 1
    batch_size: int = 128
    learning_rate: float = 1e-4
    steps_per_epoch: int | None = None

    def __post_init__(self):
        if not isinstance(self.learning_rate, (int, float)) or not math.isfinite(
            self.learning_rate
        ):
            raise TrainError(f"learning rate must be a finite number, got {self.learning_rate}")
        if self.learning_rate < 0:
            raise TrainError(f"learning rate must be >= 0, got {self.learning_rate}")
        for name in ("epochs", "batch_size", "steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TrainError(f"{name} must be at least 1, got {value}")


def compile_for_finetuning(
    model, learning_rate: float = 1e-4, exit_weights: Sequence[float] | None = None
) -> None:
    """Compiles a multi-exit `subnet.keras` model for `fit` with one loss per exit.

    Every exit gets sparse categorical cross-entropy on logits; Keras reports each exit's
    loss (`exit1_loss`, ...) beside the total.

    Args:
      model: the loaded `subnet.keras` (S outputs).
      learning_rate: Adam learning rate.
      exit_weights: S loss weights; default all 1.
    """
    import keras

    num_exits = len(model.outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * num_exits,
        loss_weights=list(exit_weights) if exit_weights is not None else [1.0] * num_exits,
        metrics=[["accuracy"] for _ in range(num_exits)],
    )


def check_model_fits_data(model, info) -> None:
    """Checks that `model`'s exits classify `info`'s classes and its input takes its images.

    Args:
      model: a multi-exit Keras model (one logits output per exit).
      info: the dataset's `DatasetInfo`.

    Raises:
      DataError: the exits have another number of classes than the dataset, or the input
        another number of channels than its images.
    """
    classes = sorted({int(output.shape[-1]) for output in model.outputs})
    if classes != [info.num_classes]:
        have = " or ".join(str(c) for c in classes)
        raise DataError(
            f"the model classifies {have} classes but dataset {info.name!r} has "
            f"{info.num_classes}; fine-tune on a dataset with the model's classes"
        )
    channels = int(model.inputs[0].shape[-1])
    if channels != info.image_channels:
        raise DataError(
            f"the model takes images of {channels} channel(s) but dataset {info.name!r} has "
            f"{info.image_channels}"
        )


def finetune_dataset(model, dataset: str, split: str, data_dir, batch_size: int, training: bool):
    """`make_dataset` batches resized to the model's input side, labels repeated per exit.

    Raises:
      DataError: the dataset cannot be read.
    """
    import tensorflow as tf

    from enas4d_tf.data import make_dataset

    side = int(model.inputs[0].shape[1])
    num_exits = len(model.outputs)
    ds = make_dataset(dataset, split, data_dir=data_dir, batch_size=batch_size, training=training)

    def resize(images, labels):
        if images.shape[1] != side:
            images = tf.image.resize(images, [side, side], method="bilinear")
        return images, tuple([labels] * num_exits)

    return ds.map(resize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def _finite_guard():
    """A Keras callback that stops `fit` with a TrainError at the first non-finite loss or
    metric, naming it, the epoch and the step (`TerminateOnNaN` stops without a word)."""
    import keras

    class FiniteGuard(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            self._check(logs, f"step {batch + 1} of epoch {self.epoch + 1}")

        def on_epoch_end(self, epoch, logs=None):
            self._check(logs, f"the end of epoch {epoch + 1}")

        def _check(self, logs, when):
            for name, value in (logs or {}).items():
                if not math.isfinite(float(value)):
                    raise TrainError(
                        f"fine-tuning stopped: {name} became {float(value)} at {when}; "
                        "nothing was saved (try a smaller learning rate)"
                    )

    return FiniteGuard()


def _is_input_error(error) -> bool:
    # An op error raised while tf.data produced a batch (decoding an image), not by the
    # model: TensorFlow names the iterator in the message.
    return "Iterator" in (getattr(error, "message", "") or "")


def finetune(model, config: FinetuneConfig) -> dict:
    """Fine-tunes `model` in place on the training split, validating on the validation split.

    The dataset is checked against the model first (classes, channels). Training stops at
    the first non-finite loss; a model whose weights end non-finite is refused, so a caller
    that saves only after this returns never writes a NaN model.

    Returns:
      The last epoch's metrics, `{name: float}` (loss, val_loss, exit1_loss, ...).

    Raises:
      DataError: the dataset cannot be read (before any training), does not fit the model,
        or an image fails to decode during training (the file is named).
      TrainError: a loss became non-finite, or the weights did.
    """
    import numpy as np
    import tensorflow as tf

    from enas4d_tf.data import dataset_info, describe_read_error

    check_model_fits_data(model, dataset_info(config.dataset, config.data_dir))
    train, val = (
        finetune_dataset(
            model, config.dataset, split, config.data_dir, config.batch_size, training=training
        )
        for split, training in (("train", True), ("validation", False))
    )
    compile_for_finetuning(model, config.learning_rate)
    try:
        history = model.fit(
            train,
            validation_data=val,
            epochs=config.epochs,
            steps_per_epoch=config.steps_per_epoch,
            callbacks=[_finite_guard()],
            shuffle=False,  # the training pipeline shuffles; Keras would warn
            verbose=2,
        )
    except tf.errors.OpError as e:
        if not _is_input_error(e):
            raise
        raise describe_read_error(config.dataset, config.data_dir, e) from None
    if not all(np.isfinite(w).all() for w in model.get_weights()):
        raise TrainError("fine-tuning made weights non-finite; nothing was saved")
    return {k: float(v[-1]) for k, v in history.history.items()}


def copy_subnet_weights(subnet, stage_models) -> int:
    """Copies a (fine-tuned) subnet's weights into the stage models of the same network.

    `extract_subnet` and `extract_stage_models` name every layer the same way
    (`s{stage}_...`, `exit{n}`), so a `subnet.keras` fine-tuned with `fit` can be cut into
    stage graphs again.

    Returns:
      The number of layers copied.

    Raises:
      ValueError: a stage layer with weights has no twin of the same shapes in `subnet`.
    """
    copied = 0
    for model in stage_models:
        for layer in model.layers:
            if not layer.weights:
                continue
            try:
                twin = subnet.get_layer(layer.name)
            except ValueError:
                raise ValueError(f"the subnet has no layer {layer.name}") from None
            weights = twin.get_weights()
            if [w.shape for w in weights] != [tuple(w.shape) for w in layer.weights]:
                raise ValueError(f"layer {layer.name} has other shapes in the subnet")
            layer.set_weights(weights)
            copied += 1
    return copied
