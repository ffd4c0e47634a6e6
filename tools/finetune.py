"""Fine-tunes an exported `subnet.keras` with Keras `fit`, one loss per exit.

  python -m tools.finetune --model=runs/demo/export/net0/subnet.keras --epochs=2 \
      --learning_rate=1e-4 --out=runs/demo/export/net0/subnet_ft.keras

The same in plain Keras (what this program does through `enas4d_tf.finetune`):

  model = keras.models.load_model("subnet.keras")
  model.compile("adam", loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True)]
                * len(model.outputs))
  model.fit(images, [labels] * len(model.outputs), epochs=2)

Images must be at the model's input side (`model.inputs[0].shape[1]`, the architecture's
resolution): this program resizes the dataset's images to it. The dataset must have the
model's classes and channels.

Nothing is written unless the fine-tuned model is finite: training stops at the first
non-finite loss. `--out` may not be `--model`, and an existing `--out` is replaced only with
`--overwrite`; the output is written to a temporary file and renamed when complete. Bad
input ends with one line on stderr (exit 2 for bad flags, 1 otherwise); flags, paths and an
image folder are checked before TensorFlow is imported.
"""

from __future__ import annotations

import json
import math
import os
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402

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
flags.DEFINE_bool("overwrite", False, "Replace --out when it exists.")

FLAGS = flags.FLAGS
PROGRAM = "finetune"


def _check_paths() -> None:
    """Refuses bad --model/--out before any work (no TensorFlow)."""
    from enas4d_tf.errors import Enas4dError
    from enas4d_tf.files import check_writable_file

    model, out = FLAGS.model, FLAGS.out
    if not model or not out:
        fail(PROGRAM, "--model and --out are required", code=2)
    if not out.endswith(".keras"):
        fail(PROGRAM, f"--out must end with .keras, got {out}", code=2)
    if not os.path.isfile(model):
        what = "is a folder, not a file" if os.path.isdir(model) else "does not exist"
        fail(PROGRAM, f"model file {model} {what}")
    if not zipfile.is_zipfile(model):
        # A .keras file is a zip archive; an empty, truncated or foreign file is not.
        fail(PROGRAM, f"cannot load {model}: not a .keras archive (empty, truncated or foreign)")
    if os.path.realpath(out) == os.path.realpath(model) or (
        os.path.exists(out) and os.path.samefile(out, model)
    ):
        fail(PROGRAM, f"--out {out} is the --model file; write the fine-tuned model elsewhere")
    try:
        check_writable_file(out, "--out")
    except Enas4dError as e:
        fail(PROGRAM, e)
    if os.path.exists(out) and not FLAGS.overwrite:
        fail(PROGRAM, f"--out {out} exists; pass --overwrite to replace it")


def _check_inputs():
    """Checks flags, paths and an image folder before TensorFlow; returns the config."""
    if not math.isfinite(FLAGS.learning_rate):
        fail(PROGRAM, f"--learning_rate must be a finite number, got {FLAGS.learning_rate}", 2)
    _check_paths()
    from enas4d_tf.data.folder_files import FOLDER_PREFIX, scan_image_folder
    from enas4d_tf.errors import Enas4dError
    from enas4d_tf.finetune import FinetuneConfig

    try:
        config = config_from_flags(FinetuneConfig)
        if config.dataset.startswith(FOLDER_PREFIX):
            scan_image_folder(config.dataset)
    except Enas4dError as e:
        fail(PROGRAM, e)
    return config


def _load(path: str):
    """The Keras model in `path`; any failure is an Enas4dError (raised, not printed: this
    runs while stderr is hidden)."""
    import keras

    from enas4d_tf.errors import Enas4dError

    try:
        return keras.models.load_model(path)
    except Exception as e:  # Keras raises many types for a bad archive
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Enas4dError(f"cannot load {path}: {reason}") from None


def main(argv: list[str]) -> None:
    del argv
    config = _check_inputs()
    with quiet_stderr():
        import keras  # noqa: F401  (TensorFlow's start-up noise goes here)

        from enas4d_tf.errors import Enas4dError
        from enas4d_tf.files import save_model_atomic
        from enas4d_tf.finetune import finetune
    logging.set_verbosity(logging.ERROR)
    try:
        # Keras and TensorFlow print warnings while loading and training; the one line of a
        # refusal must stand alone. Progress goes to stdout.
        with quiet_stderr():
            model = _load(FLAGS.model)
            final = finetune(model, config)
            save_model_atomic(model, FLAGS.out)
    except Enas4dError as e:
        fail(PROGRAM, e)
    print(json.dumps({"out": FLAGS.out, "final": final}, sort_keys=True))


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser(PROGRAM))
