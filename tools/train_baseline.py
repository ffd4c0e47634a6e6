"""Trains the early-exit baseline, fits its thresholds and exports it.

  python -m tools.train_baseline --workdir=runs/ee --preset=fashion_mnist --epochs=18 \
      --batch_size=256 --learning_rate=0.2 --warmup_epochs=0.3 --max_train_minutes=88 \
      --out=runs/ee/export --quantization=float32,int8

One backbone of the preset's block family without the channel split (its stem, units and
strides; `--depth`, `--kernel`, `--expand`, `--width`, `--resolution` fix one configuration),
an exit after every unit, trained from scratch with the supernet's recipe. Then every exit
runs over the validation split and the search's threshold fitter picks thresholds for each
budget (`--budgets`, or a grid of `--pareto_points` from exit 1's cost to the last exit's):
`<workdir>/front.json`. With `--out`, the budgets' networks (or the front's) are exported as
`tools.export` exports a network, for `tools.cascade`.

How the benchmark of record configures it: the recipe flags of configs/train_benchmark.cfg
that apply (batch 256, learning rate 0.2, warm-up 0.3 epochs, weight decay 5e-4, label
smoothing 0.1, seed 0; `--exit_weights` equal by default, or that file's 1,1,3), the
supernet's wall time as `--max_train_minutes` (one deployment) or that time divided by the
number of networks the search chose (many deployments), and `--epochs` set to what fits in
that time, planned as `tools.train --fit_epochs_to_budget` plans it: a probe of 2 short
epochs times a step (from each batch's fetch), an epoch's end, an evaluation and the setup,
and 5% is added for noise, so the schedule decays to 0 by the end rather than being cut
off. The backbone keeps the defaults (the middle choice of each gene
and the largest network's widths: 4.5 / 6.5 / 8.1 M MACs to exits 1 / 2 / 3 on
fashion_mnist); a second configuration is compared on validation only (for example
`--depth=1 --kernel=3 --expand=3 --resolution=24`, 1.6 / 2.1 / 2.5 M MACs, for the cheap end
of the dynamic front).

Running the same command again resumes training from the newest checkpoint; a finished run
fits and exports at once. Bad input ends with one line on stderr and exit 1 (flag errors:
exit 2).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import warnings  # noqa: E402

from absl import app, flags, logging  # noqa: E402

# None of these imports TensorFlow: the input is checked before paying for it.
from enas4d_tf.baselines import config as config_lib  # noqa: E402
from enas4d_tf.baselines.backbone import exit_macs  # noqa: E402
from enas4d_tf.baselines.config import BaselineConfig, BaselineWorkdir  # noqa: E402
from enas4d_tf.errors import Enas4dError, TrainError, WorkdirError  # noqa: E402
from enas4d_tf.files import check_writable_dir  # noqa: E402
from enas4d_tf.locking import WorkdirLock  # noqa: E402
from enas4d_tf.space import PRESETS  # noqa: E402
from tools._cli import config_from_flags, fail, flags_parser, quiet_stderr  # noqa: E402

PROGRAM = "train_baseline"
_DEFAULTS = BaselineConfig(workdir="")

flags.DEFINE_string("workdir", None, "Where checkpoints, logs and front.json are written.")
flags.DEFINE_enum(
    "preset", _DEFAULTS.preset, list(PRESETS), "The search space whose stem and units it takes."
)
flags.DEFINE_string(
    "dataset", _DEFAULTS.dataset, "fashion_mnist, a tensorflow-datasets name, or folder:<root>."
)
flags.DEFINE_string("data_dir", None, "Where the dataset is; by default its usual location.")
flags.DEFINE_list(
    "depth", None, "Blocks per unit: one number, or one per unit; default the middle choice."
)
flags.DEFINE_list(
    "kernel", None, "Depthwise kernel size: one, or one per unit; default the middle choice."
)
flags.DEFINE_list("expand", None, "Expand ratio: one, or one per unit; default the middle choice.")
flags.DEFINE_list(
    "width",
    None,
    "Width multiplier of the largest network's channels: one, or one per unit; default 1.0.",
)
flags.DEFINE_integer(
    "resolution", None, "Input image side; default the middle choice.", lower_bound=1
)
flags.DEFINE_integer(
    "head_width", None, "Channels of each exit's 1x1 head; default the space's.", lower_bound=1
)
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Planned training epochs.", lower_bound=1)
flags.DEFINE_float(
    "max_train_minutes",
    None,
    "Stop training after this much wall time (all sessions together), at the end of a step.",
    lower_bound=1e-6,
)
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Batch size.", lower_bound=1)
flags.DEFINE_float(
    "learning_rate", _DEFAULTS.learning_rate, "Peak learning rate after warm-up.", lower_bound=1e-8
)
flags.DEFINE_float(
    "momentum", _DEFAULTS.momentum, "Nesterov momentum.", lower_bound=0.0, upper_bound=0.999
)
flags.DEFINE_float(
    "warmup_epochs", _DEFAULTS.warmup_epochs, "Linear warm-up epochs.", lower_bound=0.0
)
flags.DEFINE_float(
    "weight_decay",
    _DEFAULTS.weight_decay,
    "Decoupled weight decay of convolution and dense weights.",
    lower_bound=0.0,
)
flags.DEFINE_float(
    "label_smoothing",
    _DEFAULTS.label_smoothing,
    "Label smoothing, in [0, 1).",
    lower_bound=0.0,
    upper_bound=0.999,
)
flags.DEFINE_float(
    "clip_norm", _DEFAULTS.clip_norm, "Clip the gradient's global norm; 0: off.", lower_bound=0.0
)
flags.DEFINE_list("exit_weights", None, "Loss weight of each exit, one per unit; equal by default.")
flags.DEFINE_bool(
    "zero_init_residual",
    _DEFAULTS.zero_init_residual,
    "Start every residual block's last BN gamma at 0 (the block begins as the identity).",
)
flags.DEFINE_integer(
    "checkpoint_every_steps", _DEFAULTS.checkpoint_every_steps, "Checkpoint period.", lower_bound=1
)
flags.DEFINE_integer(
    "keep_checkpoints", _DEFAULTS.keep_checkpoints, "Checkpoints kept.", lower_bound=1
)
flags.DEFINE_integer(
    "log_every_steps", _DEFAULTS.log_every_steps, "Progress line period.", lower_bound=1
)
flags.DEFINE_integer(
    "eval_every_epochs",
    _DEFAULTS.eval_every_epochs,
    "Per-exit validation accuracy every this many epochs (and at the end; 0: at the end only).",
    lower_bound=0,
)
flags.DEFINE_integer(
    "max_train_examples", None, "Train on the first this many examples only.", lower_bound=1
)
flags.DEFINE_integer(
    "max_eval_examples", None, "Evaluate on the first this many only.", lower_bound=1
)
flags.DEFINE_integer("steps_per_epoch", None, "Override the steps per epoch.", lower_bound=1)
flags.DEFINE_integer(
    "seed", _DEFAULTS.seed, "Seeds weights, data order, augmentation.", lower_bound=0
)
flags.DEFINE_list("budgets", None, "Average-MACs budgets to fit thresholds for, e.g. 2e6,4e6.")
flags.DEFINE_integer(
    "pareto_points",
    8,
    "Without --budgets: budgets from exit 1's cost to the last's.",
    lower_bound=2,
)
flags.DEFINE_integer(
    "num_val_images",
    None,
    "Fit on the first this many validation images (default all).",
    lower_bound=1,
)
flags.DEFINE_string("out", None, "Export the fitted networks under this folder (default: none).")
flags.DEFINE_string("quantization", "float32", "Comma list: float32, float16, int8.")
flags.DEFINE_bool("overwrite", False, "Replace export folders that exist.")
flags.DEFINE_integer(
    "num_calibration_images", 300, "Training images for int8 calibration.", lower_bound=1
)

FLAGS = flags.FLAGS


def _numbers(name: str, values, kind=float):
    if values is None:
        return None
    try:
        return tuple(kind(v) for v in values)
    except ValueError:
        raise TrainError(f"--{name} must be comma-separated numbers, got {values}") from None


def _config() -> BaselineConfig:
    if not FLAGS.workdir:
        raise TrainError("--workdir is required")
    return config_from_flags(
        BaselineConfig,
        depth=_numbers("depth", FLAGS.depth, int),
        kernel=_numbers("kernel", FLAGS.kernel, int),
        expand=_numbers("expand", FLAGS.expand, int),
        width=_numbers("width", FLAGS.width),
        exit_weights=_numbers("exit_weights", FLAGS.exit_weights),
    )


def _check(config: BaselineConfig) -> tuple:
    """Everything checkable before TensorFlow; returns `(budgets, quantizations)`."""
    config.validate()
    costs = exit_macs(config.backbone())
    budgets = _numbers("budgets", FLAGS.budgets) or ()
    for b in budgets:
        if not b >= costs[0]:
            raise TrainError(
                f"--budgets: {b:.4g} MACs is below exit 1's cost ({costs[0]} MACs): no "
                "threshold can meet it"
            )
    quantizations = [q.strip() for q in FLAGS.quantization.split(",") if q.strip()]
    for q in quantizations or [""]:
        if q not in config_lib.EXPORT_QUANTIZATIONS:
            raise TrainError(
                f"--quantization: {q!r} is not one of {','.join(config_lib.EXPORT_QUANTIZATIONS)}"
            )
    config_lib.check_baseline_workdir(config.workdir)
    config_lib.check_saved_config(config.workdir, config)
    if FLAGS.out:
        check_writable_dir(FLAGS.out, "--out folder", WorkdirError)
        for b in budgets if not FLAGS.overwrite else ():
            folder = os.path.join(FLAGS.out, config_lib.point_name(b))
            if os.path.lexists(folder):
                raise WorkdirError(
                    f"output folder {folder} exists (pass --overwrite to replace it)"
                )
    return budgets, tuple(quantizations)


def _run(config: BaselineConfig, budgets, quantizations) -> None:
    with quiet_stderr():  # TensorFlow's start-up lines
        from enas4d_tf.baselines import export, front
        from enas4d_tf.baselines.trainer import train_baseline
        from enas4d_tf.export.exporter import load_export_data
        from enas4d_tf.files import write_json_atomic

    log = lambda line: print(line, flush=True)  # noqa: E731
    result = train_baseline(config, log=log)
    network = result.network
    record = front.measure_front(
        network.model(),
        network.spec,
        config.dataset,
        config.data_dir,
        budgets,
        FLAGS.pareto_points,
        FLAGS.num_val_images,
    )
    path = BaselineWorkdir(config.workdir).front
    write_json_atomic(path, record, error=WorkdirError)
    for p in record["points"]:
        log(
            f"{p['name']}: validation accuracy {100 * p['val_accuracy']:.2f}% at "
            f"{p['avg_macs'] / 1e6:.3f}M average MACs, exit rates "
            + " ".join(f"{r:.3f}" for r in p["exit_rates"])
        )
    log(f"wrote {path}")
    if FLAGS.out:
        export_config = export.BaselineExportConfig(
            out=FLAGS.out, quantizations=quantizations, overwrite=FLAGS.overwrite
        )
        # The validation images the front was fitted on: each quantisation's thresholds are
        # refitted on its own graphs' outputs there, as the supernet's exports are.
        data = load_export_data(
            config.dataset, config.data_dir, FLAGS.num_calibration_images, FLAGS.num_val_images
        )
        points = front.points_to_export(record, bool(budgets))
        for p in points:
            p["source"] = path
        export.export_points(network, points, data, export_config, log)


def _make_workdir(root: str) -> bool:
    if os.path.isdir(root):
        return False
    try:
        os.makedirs(root)
    except OSError as e:
        raise WorkdirError(f"cannot create workdir {root}: {e.strerror or e}") from None
    return True


def main(argv: list[str]) -> None:
    # Not TF's per-checkpoint INFO lines, nor the converter's and warnings after a refusal.
    logging.set_verbosity(logging.ERROR)
    warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated")
    created, root = False, None
    try:
        config = _config()
        budgets, quantizations = _check(config)
        root = config.workdir
        created = _make_workdir(root)
        with WorkdirLock(root, PROGRAM):
            _run(config, budgets, quantizations)
    except (Enas4dError, ValueError) as e:
        if created and not os.listdir(root):
            os.rmdir(root)  # a refused run leaves no empty workdir behind
        warnings.simplefilter("ignore")
        fail(PROGRAM, str(e))


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser(PROGRAM))
