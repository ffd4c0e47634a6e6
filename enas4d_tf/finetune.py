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
from collections.abc import Sequence


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
    """

    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    epochs: int = 1
    batch_size: int = 128
    learning_rate: float = 1e-4
    steps_per_epoch: int | None = None


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


def finetune(model, config: FinetuneConfig) -> dict:
    """Fine-tunes `model` in place on the training split, validating on the validation split.

    Returns:
      The last epoch's metrics, `{name: float}` (loss, val_loss, exit1_loss, ...).

    Raises:
      DataError: the dataset cannot be read (before any training).
    """
    train, val = (
        finetune_dataset(
            model, config.dataset, split, config.data_dir, config.batch_size, training=training
        )
        for split, training in (("train", True), ("validation", False))
    )
    compile_for_finetuning(model, config.learning_rate)
    history = model.fit(
        train,
        validation_data=val,
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        verbose=2,
    )
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
