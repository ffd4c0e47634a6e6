"""Fine-tunes an exported `subnet.keras` with Keras `fit`, one loss per exit.

  python -m tools.finetune --model=runs/demo/export/net0/subnet.keras --epochs=2 \
      --learning_rate=1e-4 --out=runs/demo/export/net0/subnet_ft.keras

The same in plain Keras (what this program does through `enas4d_tf.finetune`):

  model = keras.models.load_model("subnet.keras")
  model.compile("adam", loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True)]
                * len(model.outputs))
  model.fit(images, [labels] * len(model.outputs), epochs=2)

Images must be at the model's input side (`model.inputs[0].shape[1]`, the architecture's
resolution): this program resizes the dataset's images to it. The output is written to a
temporary file and renamed when complete. Bad input ends with one line on stderr, exit 1.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from tools._cli import config_from_flags, fail, flags_parser, quiet_stderr  # noqa: E402

flags.DEFINE_string("model", None, "The subnet.keras file to fine-tune.")
flags.DEFINE_string("dataset", "fashion_mnist", "The dataset to fine-tune on (by name).")
flags.DEFINE_string("data_dir", None, "Where the dataset is; default the dataset's own.")
flags.DEFINE_integer("epochs", 1, "Passes over the training split.", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Images per step.", lower_bound=1)
flags.DEFINE_float(
    "learning_rate", 1e-4, "Adam learning rate (small: the weights are trained).", lower_bound=0
)
flags.DEFINE_integer(
    "steps_per_epoch",
    None,
    "Stop each epoch after this many steps (default: whole split).",
    lower_bound=1,
)
flags.DEFINE_string("out", None, "Where to write the fine-tuned .keras model.")

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if not FLAGS.model or not FLAGS.out:
        fail("finetune", "--model and --out are required", code=2)
    if not FLAGS.out.endswith(".keras"):
        fail("finetune", f"--out must end with .keras, got {FLAGS.out}", code=2)
    if not os.path.isfile(FLAGS.model):
        fail("finetune", f"model file {FLAGS.model} does not exist")
    with quiet_stderr():
        import keras

        from enas4d_tf.errors import DataError
        from enas4d_tf.files import save_model_atomic
        from enas4d_tf.finetune import FinetuneConfig, finetune

    try:
        model = keras.models.load_model(FLAGS.model)
    except Exception as e:  # Keras raises many types for a bad archive
        fail(
            "finetune",
            f"cannot load {FLAGS.model}: {str(e).strip().splitlines()[0] if str(e) else e}",
        )
    try:
        final = finetune(model, config_from_flags(FinetuneConfig))
    except DataError as e:
        fail("finetune", str(e))
    save_model_atomic(model, FLAGS.out)
    print(json.dumps({"out": FLAGS.out, "final": final}, sort_keys=True))


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("finetune"))
