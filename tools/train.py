"""Trains a multi-stage once-for-all supernet (README.md, "Training").

  python -m tools.train --flagfile=configs/train_quick.cfg --workdir=/tmp/enas4d_quick

With --arch_file it trains one architecture alone, from scratch, with the same recipe (a
file with "exit": s is a network cut at exit s); --max_train_minutes bounds a run's time:

  python -m tools.train --flagfile=configs/train_benchmark.cfg --workdir=/tmp/alone \
      --arch_file=runs/demo/search/archs/static_1M.json --max_train_minutes=88 \
      --fit_epochs_to_budget --epochs=200

Running the same command again resumes from the newest checkpoint in the workdir; a run
that has finished says so and exits 0. Bad input ends with one line on stderr and exit 1
(flag errors: exit 2): the flags, the workdir (writable, not in use by another program, its
run config matching these settings) are checked before TensorFlow is imported. While it
trains, the program holds the workdir lock (`<workdir>/.lock`).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import warnings  # noqa: E402
from contextlib import nullcontext  # noqa: E402

from absl import app, flags, logging  # noqa: E402

# None of these imports TensorFlow: the input is checked before paying for it.
from enas4d_tf.errors import Enas4dError, WorkdirError  # noqa: E402
from enas4d_tf.locking import WorkdirLock  # noqa: E402
from enas4d_tf.pretrained import is_pretrained  # noqa: E402
from enas4d_tf.space import PRESETS, SearchSpace  # noqa: E402
from enas4d_tf.train import sampling  # noqa: E402
from enas4d_tf.train.config import DEFAULT_DATASET, STRATEGIES, TrainConfig  # noqa: E402
from enas4d_tf.train.fixed_arch import check_same_arch, read_fixed_arch  # noqa: E402
from enas4d_tf.train.resume import (  # noqa: E402
    check_run_config,
    check_train_workdir,
    init_source,
    writes_workdir,
)
from enas4d_tf.workdir import Workdir, read_run_config  # noqa: E402
from tools._cli import config_from_flags, fail, flags_parser, quiet_stderr  # noqa: E402

_DEFAULTS = TrainConfig(workdir="")

flags.DEFINE_enum(
    "preset", _DEFAULTS.preset, list(PRESETS), "The search space the supernet covers."
)
flags.DEFINE_string(
    "dataset",
    DEFAULT_DATASET,
    "The dataset: fashion_mnist, a tensorflow-datasets name, or folder:<root>.",
)
flags.DEFINE_string(
    "data_dir", None, "Where the dataset is; by default the dataset's usual location."
)
flags.DEFINE_string("workdir", None, "Where checkpoints, logs and summaries are written.")
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Training epochs.", lower_bound=1)
flags.DEFINE_integer(
    "batch_size", _DEFAULTS.batch_size, "Global batch size (all replicas).", lower_bound=1
)
flags.DEFINE_enum(
    "strategy",
    _DEFAULTS.strategy,
    list(STRATEGIES),
    "Distribution strategy: default (one device), mirrored (the GPUs, or logical CPUs), or "
    "multi_worker (the cluster in TF_CONFIG).",
)
flags.DEFINE_integer(
    "cpu_replicas",
    _DEFAULTS.cpu_replicas,
    "Under --strategy=mirrored without a GPU, split the CPU into this many replicas.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "num_random_subnets",
    _DEFAULTS.num_random_subnets,
    "Random architectures trained per step besides the largest and the smallest.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "random_subnets_every",
    _DEFAULTS.random_subnets_every,
    "Train the random architectures on every this-many-th step only (1: every step); the "
    "largest and the smallest train on every step.",
    lower_bound=1,
)
flags.DEFINE_float(
    "kd_ratio",
    _DEFAULTS.kd_ratio,
    "Weight of the distillation loss from the largest network's last exit.",
    lower_bound=0.0,
)
flags.DEFINE_float(
    "label_smoothing",
    _DEFAULTS.label_smoothing,
    "Label smoothing of the cross-entropy on the labels, in [0, 1).",
    lower_bound=0.0,
    upper_bound=0.999,
)
flags.DEFINE_list(
    "exit_weights",
    None,
    "Loss weight of each exit, comma-separated, one per exit (normalised to sum to 1); "
    "equal weights by default.",
)
flags.DEFINE_float(
    "learning_rate",
    _DEFAULTS.learning_rate,
    "Peak learning rate (after warm-up) for the global batch.",
    lower_bound=1e-8,
)
flags.DEFINE_float(
    "momentum", _DEFAULTS.momentum, "Nesterov momentum.", lower_bound=0.0, upper_bound=0.999
)
flags.DEFINE_float(
    "warmup_epochs",
    _DEFAULTS.warmup_epochs,
    "Epochs of linear learning-rate warm-up before the cosine decay.",
    lower_bound=0.0,
)
flags.DEFINE_float(
    "weight_decay",
    _DEFAULTS.weight_decay,
    "Decoupled weight decay (w -= lr * weight_decay * w each step) of convolution and dense "
    "weights; BN parameters and biases get none.",
    lower_bound=0.0,
)
flags.DEFINE_float(
    "clip_norm",
    _DEFAULTS.clip_norm,
    "Clip the gradient to this global norm; 0 disables clipping.",
    lower_bound=0.0,
)
flags.DEFINE_enum(
    "schedule",
    _DEFAULTS.schedule,
    list(sampling.SCHEDULES),
    "sandwich: every gene elastic from the start; progressive: progressive shrinking "
    "(resolution+kernel, then depth, then expand, then width).",
)
flags.DEFINE_list(
    "phase_starts",
    [str(f) for f in _DEFAULTS.phase_starts],
    "Under --schedule=progressive, the fractions of the epochs at which the four phases start.",
)
flags.DEFINE_integer(
    "checkpoint_every_steps",
    _DEFAULTS.checkpoint_every_steps,
    "Save a checkpoint every this many steps (and at the end of every epoch).",
    lower_bound=1,
)
flags.DEFINE_integer(
    "keep_checkpoints", _DEFAULTS.keep_checkpoints, "Checkpoints to keep.", lower_bound=1
)
flags.DEFINE_integer(
    "max_train_examples",
    None,
    "Train on the first this many examples of the train split only.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "max_eval_examples",
    None,
    "Evaluate on the first this many examples of the validation split only.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "steps_per_epoch",
    None,
    "Steps per epoch; by default the training examples divided by the batch size.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "log_every_steps",
    _DEFAULTS.log_every_steps,
    "Print a progress line and write summaries every this many steps.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "eval_every_epochs",
    _DEFAULTS.eval_every_epochs,
    "Evaluate the largest and smallest networks every this many epochs and at the end; 0 never.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "num_calibration_images",
    _DEFAULTS.num_calibration_images,
    "Training images used to recalibrate batch norm before an evaluation.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "seed", _DEFAULTS.seed, "Seeds data order, augmentation and sampling.", lower_bound=0
)
flags.DEFINE_string(
    "arch_file",
    None,
    "Train this one architecture alone, from scratch, instead of the supernet: an "
    "architecture file as the search writes it, or a bare Arch.to_dict() JSON; its key "
    '"exit": s makes it a network cut at exit s (trained on exit s alone). Same recipe; no '
    "sandwich, no distillation (--num_random_subnets and --kd_ratio do not apply).",
)
flags.DEFINE_string(
    "init_from",
    None,
    "Start a fresh run from the network weights of this training workdir's newest checkpoint "
    "(or pretrained:<name>) of the same preset, instead of random ones: for example the "
    "largest network trained alone first with --arch_file (once-for-all's order). The "
    "optimiser and schedule start afresh; train_summary.json counts that run's training "
    "time too.",
)
flags.DEFINE_float(
    "max_train_minutes",
    None,
    "Time budget: stop at the end of the step during which the run's wall time (all "
    "sessions) reaches this many minutes, save a checkpoint and record how far it got in "
    "train_summary.json. The schedule is still planned for --epochs.",
    lower_bound=1e-6,
)
flags.DEFINE_bool(
    "fit_epochs_to_budget",
    _DEFAULTS.fit_epochs_to_budget,
    "With --max_train_minutes: first train 2 short epochs to time a step, an epoch's end and "
    "an evaluation, then plan the most epochs (at most --epochs) whose schedule, with 5% for "
    "noise, ends within the budget.",
)
flags.DEFINE_enum(
    "arch_sampling",
    _DEFAULTS.arch_sampling,
    list(sampling.ARCH_SAMPLINGS),
    "How random architectures are drawn: uniform: every gene uniform (their MACs bunch in "
    "the middle of the space); macs: a MACs target log-uniform over the space, then the "
    "closest of a few draws (every cost range trains).",
)
flags.DEFINE_float(
    "student_batch_fraction",
    _DEFAULTS.student_batch_fraction,
    "The smallest and random architectures train on this fraction of each batch, in (0, 1]; "
    "the largest sees all of it.",
    lower_bound=1e-6,
    upper_bound=1.0,
)
flags.DEFINE_list(
    "student_exit_weights",
    None,
    "Loss weight of each exit for the smallest and random architectures, comma-separated "
    "(normalised); by default --exit_weights.",
)
flags.DEFINE_bool(
    "zero_init_residual",
    _DEFAULTS.zero_init_residual,
    "Start the last batch norm gamma of every residual block at 0.",
)
flags.DEFINE_float(
    "min_learning_rate",
    _DEFAULTS.min_learning_rate,
    "The learning rate the cosine decay ends at (below --learning_rate).",
    lower_bound=0.0,
)
flags.DEFINE_integer(
    "eval_spread_archs",
    _DEFAULTS.eval_spread_archs,
    "Evaluations also measure this many fixed architectures spread over the space's MACs.",
    lower_bound=0,
)

FLAGS = flags.FLAGS


def _floats(name: str, values: list[str] | None) -> tuple[float, ...] | None:
    if values is None:
        return None
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise ValueError(f"--{name} must be comma-separated numbers, got {values}") from None


def _config() -> TrainConfig:
    if not FLAGS.workdir:
        raise ValueError("--workdir is required")
    return config_from_flags(
        TrainConfig,
        exit_weights=_floats("exit_weights", FLAGS.exit_weights),
        student_exit_weights=_floats("student_exit_weights", FLAGS.student_exit_weights),
        phase_starts=_floats("phase_starts", FLAGS.phase_starts),
        # Absolute, so that a resume from another folder names the same file.
        arch_file=os.path.abspath(FLAGS.arch_file) if FLAGS.arch_file else None,
        init_from=_init_from(FLAGS.init_from),
    )


def _init_from(value: str | None) -> str | None:
    """--init_from as the run config records it: absolute, unless a release's name."""
    if not value or is_pretrained(value):
        return value
    return os.path.abspath(value)


def _check_arch_file(config: TrainConfig) -> None:
    """The architecture of a run with --arch_file is readable, of the preset's space, and the
    one the workdir trained (if it trained one): checked before TensorFlow is imported."""
    if config.arch_file is None:
        return
    space = SearchSpace.preset(config.preset)
    fixed = read_fixed_arch(config.arch_file, space)
    workdir = Workdir(config.workdir)
    if os.path.isfile(workdir.run_config):
        check_same_arch(read_run_config(workdir.root), fixed, workdir.root)


def _check_workdir(config: TrainConfig) -> None:
    """What can be checked before TensorFlow: the workdir can be written, and a workdir
    trained before was trained with these settings (as far as they are known without the
    data; the trainer compares the rest)."""
    root = config.workdir
    check_train_workdir(root)
    known = {
        "space": SearchSpace.preset(config.preset).to_dict(),
        "dataset": config.dataset,
        "train": config.to_dict(),
    }
    check_run_config(Workdir(root), known)


def _check_init_from(config: TrainConfig) -> None:
    """The run --init_from names holds a checkpoint of the same space; checked before
    TensorFlow is imported. A workdir that has its own checkpoint resumes from it instead."""
    if config.init_from is None:
        return
    init_source(config.init_from, SearchSpace.preset(config.preset).to_dict())


def _make_workdir(root: str) -> bool:
    """Creates the workdir if needed; returns whether it was created."""
    if os.path.isdir(root):
        return False
    try:
        os.makedirs(root)
    except OSError as e:
        raise WorkdirError(f"cannot create workdir {root}: {e.strerror or e}") from None
    return True


def _train(config: TrainConfig) -> None:
    with quiet_stderr():  # TensorFlow's start-up lines
        from enas4d_tf.train.distribution import configure_cpu_replicas
        from enas4d_tf.train.trainer import train
    if config.strategy == "mirrored":
        # Logical CPUs must be configured before TensorFlow runs any op.
        configure_cpu_replicas(config.cpu_replicas)
    train(config)


def main(argv: list[str]) -> None:
    # Not TF's per-checkpoint INFO lines, nor the warnings a failed restore leaves behind:
    # bad input ends with one line.
    logging.set_verbosity(logging.ERROR)
    created, root = False, None
    try:
        config = _config()
        config.validate()
        root = config.workdir
        _check_arch_file(config)
        _check_workdir(config)
        _check_init_from(config)
        created = _make_workdir(root)
        # A multi_worker run's other workers write nowhere in the workdir: the chief locks it.
        lock = WorkdirLock(root, "train") if writes_workdir(config.strategy) else nullcontext()
        with lock:
            _train(config)
    except (Enas4dError, ValueError) as e:
        if created and not os.listdir(root):
            os.rmdir(root)  # a refused run leaves no empty workdir behind
        # Warnings (Keras, a half-restored checkpoint) printed at exit would follow the line.
        warnings.simplefilter("ignore")
        fail("train", str(e))


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("train"))
