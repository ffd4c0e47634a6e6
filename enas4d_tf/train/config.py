"""The configuration of a training run: one validated dataclass, written to the workdir.

Example:
  >>> config = TrainConfig(workdir="/tmp/run", preset="tiny", epochs=1)
  >>> config.validate()
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from enas4d_tf.errors import TrainError
from enas4d_tf.space import PRESETS, SearchSpace
from enas4d_tf.train import sampling

STRATEGIES = ("default", "mirrored", "multi_worker")
# `enas4d_tf.data.DEFAULT_DATASET`, named here because importing `enas4d_tf.data` imports
# TensorFlow, and tools.train checks its flags before paying for that.
DEFAULT_DATASET = "fashion_mnist"

# Fields renamed since older run_config.json files were written: old name -> new name.
_RENAMED_FIELDS = {"calibration_images": "num_calibration_images"}

# Integer fields and their smallest allowed value.
_LOWER_BOUNDS = (
    ("epochs", 1),
    ("batch_size", 1),
    ("num_random_subnets", 0),
    ("random_subnets_every", 1),
    ("checkpoint_every_steps", 1),
    ("keep_checkpoints", 1),
    ("log_every_steps", 1),
    ("eval_every_epochs", 0),
    ("num_calibration_images", 1),
    ("cpu_replicas", 1),
    ("seed", 0),
    ("eval_spread_archs", 0),
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; written to `<workdir>/run_config.json`.

    Attributes:
      workdir: where checkpoints, logs and summaries go.
      preset: the search space (`SearchSpace.preset` name).
      dataset: the dataset name (see `enas4d_tf.data.dataset_info`).
      data_dir: where the dataset is (None: the dataset's default).
      epochs: training epochs.
      batch_size: global batch size (all replicas together).
      strategy: "default", "mirrored" or "multi_worker".
      num_random_subnets: random architectures per step besides the largest and smallest.
      random_subnets_every: train the random architectures on every this-many-th step only
        (steps 0, n, 2n, ...); the largest and the smallest train on every step. 1: every
        step. A random architecture does about a fifth of the largest network's MACs but
        costs about half its step on CPU (bench/supernet_step.py: small convolutions run
        less efficiently), so n > 1 buys the largest network more epochs in the same time,
        at some cost to the middle networks. A run with n > 1 and random architectures
        traces its step twice (with and without them).
      kd_ratio: weight of the distillation loss from the largest network's last exit.
      label_smoothing: label smoothing of the cross-entropy on the labels.
      exit_weights: loss weight of each exit (normalised to sum to 1); None: equal.
      learning_rate: peak learning rate (reached after warm-up) for the global batch.
      momentum: Nesterov momentum.
      warmup_epochs: linear warm-up length, in epochs (may be fractional).
      weight_decay: decoupled weight decay (`w -= lr * weight_decay * w` each step) on
        convolution, dense and kernel-transform weights; BN parameters and biases get none.
      clip_norm: clip the all-reduced gradient to this global norm; 0 disables clipping.
      schedule: "sandwich" (every gene elastic from the start) or "progressive".
      phase_starts: for "progressive", the epoch fractions at which phases 0..3 start.
      checkpoint_every_steps: save a checkpoint every this many steps (and at epoch ends).
      keep_checkpoints: how many checkpoints to keep.
      max_train_examples: train on the first this many examples of the train split only.
      max_eval_examples: evaluate on the first this many validation examples only.
      steps_per_epoch: override the steps per epoch (default: train examples // batch size).
      log_every_steps: one console line and one summary every this many steps.
      eval_every_epochs: evaluate largest and smallest every this many epochs and at the end;
        0 disables evaluation.
      num_calibration_images: training images used to recalibrate BN before evaluating.
      cpu_replicas: replicas (logical CPUs) under "mirrored" when there is no GPU.
      seed: seeds the data order, augmentation and architecture sampling.
      arch_file: train this one architecture alone, from scratch, instead of the supernet:
        an architecture file as the search writes it, or a bare `Arch.to_dict()` JSON; its
        key `"exit": s` (1-based) makes it a network cut at exit `s` (its groups `<= s` and
        exit `s`'s head). Every step trains that architecture on the labels only:
        the sandwich and distillation fields are set to none (`num_random_subnets` 0,
        `kd_ratio` 0), so the run config records what ran. A multi-exit architecture weighs
        its exits with `exit_weights`; a cut one trains exit `s` alone.
      max_train_minutes: stop at the end of the step during which the run's training time
        (every session's, evaluations and checkpoints included) reaches this many minutes, save a
        checkpoint, and record how far it got in train_summary.json. None: no budget. The
        learning-rate schedule is still planned for `epochs`.
      arch_sampling: how a step's random architectures are drawn: "uniform" (every gene
        uniform over its choices, so the MACs of the draws bunch around the middle of the
        space) or "macs" (a MACs target uniform between the phase's smallest and largest
        network, then the closest of a few gene-uniform draws: every cost range trains about
        equally often; `sampling.sample_arch_by_macs`).
      student_batch_fraction: the smallest and the random architectures train on this
        fraction of each replica's batch (its first examples); the largest always sees all
        of it. Below 1 it buys a random architecture on more steps at the same cost.
      student_exit_weights: loss weight of each exit for the smallest and the random
        architectures (normalised); None: `exit_weights`. The networks the search picks
        send most images out at their first exits, which a last-exit-heavy weighting
        chosen for the largest network trains less.
      zero_init_residual: start the last batch norm's gamma of every residual block at 0, so
        each residual block starts as the identity and a deep network starts as the
        shallow one it contains.
      min_learning_rate: the cosine decay ends at this learning rate instead of 0.
      eval_spread_archs: besides the largest and the smallest, training-time evaluation
        measures this many fixed architectures spread over the space's MACs
        (`sampling.spread_archs`), so the log watches the whole space.
      fit_epochs_to_budget: choose `epochs` so that the planned schedule ends within
        `max_train_minutes`: a fresh run first trains 2 short epochs in a scratch folder
        and measures a step, an epoch's end, an evaluation and the setup
        (`budget.LoopCosts`), then plans the largest number of epochs (at most `epochs`)
        that fits, with `budget.MARGIN` for noise. A resumed run keeps the epochs its run
        config records.
      init_from: start a fresh run from the network weights of the newest checkpoint of
        this training workdir (or `pretrained:<name>`) of the same space, instead of a
        random initialisation: once-for-all's order, the largest network trained alone
        first (`arch_file`), then the supernet from it. Only the weights: the optimiser,
        the step and the schedule start afresh. A run that resumes restores its own
        checkpoint instead. train_summary.json records the checkpoint and the training
        seconds of the run it came from, so the two runs' time is counted together.
    """

    workdir: str
    preset: str = "fashion_mnist"
    dataset: str = DEFAULT_DATASET
    data_dir: str | None = None
    epochs: int = 10
    batch_size: int = 256
    strategy: str = "default"
    num_random_subnets: int = 2
    random_subnets_every: int = 1
    kd_ratio: float = 1.0
    label_smoothing: float = 0.1
    exit_weights: tuple[float, ...] | None = None
    learning_rate: float = 0.1
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    weight_decay: float = 5e-4
    clip_norm: float = 0.0
    schedule: str = "sandwich"
    phase_starts: tuple[float, ...] = sampling.DEFAULT_PHASE_STARTS
    checkpoint_every_steps: int = 500
    keep_checkpoints: int = 3
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    steps_per_epoch: int | None = None
    log_every_steps: int = 50
    eval_every_epochs: int = 1
    num_calibration_images: int = 2000
    cpu_replicas: int = 2
    seed: int = 0
    arch_file: str | None = None
    max_train_minutes: float | None = None
    fit_epochs_to_budget: bool = False
    arch_sampling: str = "uniform"
    student_batch_fraction: float = 1.0
    student_exit_weights: tuple[float, ...] | None = None
    zero_init_residual: bool = False
    min_learning_rate: float = 0.0
    eval_spread_archs: int = 0
    init_from: str | None = None

    def __post_init__(self):
        if self.arch_file is not None:
            # One architecture, on the labels: no sandwich, no distillation.
            object.__setattr__(self, "num_random_subnets", 0)
            object.__setattr__(self, "random_subnets_every", 1)
            object.__setattr__(self, "kd_ratio", 0.0)
        for name in ("exit_weights", "student_exit_weights"):
            weights = getattr(self, name)
            if weights is not None:
                object.__setattr__(self, name, tuple(float(w) for w in weights))
        object.__setattr__(self, "phase_starts", tuple(float(f) for f in self.phase_starts))

    @classmethod
    def from_dict(cls, fields: dict) -> TrainConfig:
        """The config of `to_dict()` output, also as older versions wrote it in
        `run_config.json` (a field renamed since, e.g. `calibration_images`, is mapped to its
        new name)."""
        fields = {_RENAMED_FIELDS.get(k, k): v for k, v in fields.items()}
        return cls(**fields)

    def validate(self) -> None:
        """Checks every field.

        Raises:
          TrainError: one line naming the first bad field and what is allowed.
        """

        def check(ok: bool, message: str) -> None:
            if not ok:
                raise TrainError(message)

        check(bool(self.workdir), "workdir must be given")
        check(self.preset in PRESETS, f"unknown preset {self.preset!r}; use one of {list(PRESETS)}")
        check(
            self.strategy in STRATEGIES,
            f"unknown strategy {self.strategy!r}; use one of {list(STRATEGIES)}",
        )
        check(
            self.schedule in sampling.SCHEDULES,
            f"unknown schedule {self.schedule!r}; use one of {list(sampling.SCHEDULES)}",
        )
        for name, low in _LOWER_BOUNDS:
            value = getattr(self, name)
            check(value >= low, f"{name} must be >= {low}, got {value}")
        for name in ("max_train_examples", "max_eval_examples", "steps_per_epoch"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"{name} must be >= 1, got {value}")
        check(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        check(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        check(
            0 <= self.label_smoothing < 1,
            f"label_smoothing must be in [0, 1), got {self.label_smoothing}",
        )
        for name in ("kd_ratio", "warmup_epochs", "weight_decay", "clip_norm"):
            value = getattr(self, name)
            check(value >= 0 and math.isfinite(value), f"{name} must be >= 0, got {value}")
        check(
            self.warmup_epochs <= self.epochs,
            f"warmup_epochs ({self.warmup_epochs}) must not exceed epochs ({self.epochs})",
        )
        num_stages = SearchSpace.preset(self.preset).num_stages
        for name in ("exit_weights", "student_exit_weights"):
            if getattr(self, name) is not None:
                self._validate_exit_weights(name, num_stages)
        self._validate_recipe()
        if self.schedule == "progressive":
            sampling.check_phase_starts(self.phase_starts)
        self._validate_alone_and_budget()

    def _validate_alone_and_budget(self) -> None:
        if self.arch_file is not None:
            if not self.arch_file:
                raise TrainError("arch_file must name a file")
            if self.schedule != "sandwich":
                raise TrainError(
                    f"schedule {self.schedule!r} shrinks a supernet; a run with arch_file "
                    "trains one architecture: use schedule 'sandwich'"
                )
        minutes = self.max_train_minutes
        if minutes is not None:
            if not (minutes > 0 and math.isfinite(minutes)):
                raise TrainError(f"max_train_minutes must be > 0, got {minutes}")
            if self.strategy == "multi_worker":
                raise TrainError(
                    "max_train_minutes is not supported with strategy 'multi_worker': each "
                    "worker's clock would stop it at a different step"
                )
        if self.fit_epochs_to_budget and minutes is None:
            raise TrainError("fit_epochs_to_budget needs max_train_minutes")
        if self.init_from is not None:
            if not self.init_from:
                raise TrainError("init_from must name a training workdir")
            if os.path.abspath(self.init_from) == os.path.abspath(self.workdir):
                raise TrainError(
                    f"init_from names the run's own workdir {self.workdir}: a run resumes from "
                    "its own checkpoints anyway; name the workdir of another run"
                )

    def _validate_exit_weights(self, name: str, num_stages: int) -> None:
        w = getattr(self, name)
        if len(w) != num_stages:
            raise TrainError(
                f"{name} needs {num_stages} numbers (one per exit of preset "
                f"{self.preset!r}), got {len(w)}"
            )
        if not (all(x >= 0 and math.isfinite(x) for x in w) and sum(w) > 0):
            raise TrainError(f"{name} must be non-negative with a positive sum, got {list(w)}")

    def _validate_recipe(self) -> None:
        if self.arch_sampling not in sampling.ARCH_SAMPLINGS:
            raise TrainError(
                f"unknown arch_sampling {self.arch_sampling!r}; use one of "
                f"{list(sampling.ARCH_SAMPLINGS)}"
            )
        fraction = self.student_batch_fraction
        if not (0 < fraction <= 1):
            raise TrainError(f"student_batch_fraction must be in (0, 1], got {fraction}")
        floor = self.min_learning_rate
        if not (0 <= floor < self.learning_rate):
            raise TrainError(
                f"min_learning_rate must be >= 0 and below learning_rate "
                f"({self.learning_rate}), got {floor}"
            )

    def to_dict(self) -> dict:
        """The fields as a JSON-safe dict."""
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def normalized_exit_weights(self, num_stages: int) -> np.ndarray:
        """Exit weights summing to 1 (equal when `exit_weights` is None)."""
        w = np.ones(num_stages) if self.exit_weights is None else np.asarray(self.exit_weights)
        return (w / w.sum()).astype(np.float32)

    def normalized_student_exit_weights(self, num_stages: int) -> np.ndarray:
        """The students' exit weights summing to 1 (`exit_weights`' when not set)."""
        if self.student_exit_weights is None:
            return self.normalized_exit_weights(num_stages)
        w = np.asarray(self.student_exit_weights)
        return (w / w.sum()).astype(np.float32)


def steps_per_epoch(config, info) -> int:
    """Optimizer steps per epoch of a run on the dataset `info` describes.

    `config` is any training config with `batch_size`, `steps_per_epoch` (None: one pass over
    the training split, at most `max_train_examples` of it) and `max_train_examples`, such as
    `TrainConfig` or the early-exit baseline's `BaselineConfig`.

    Raises:
      TrainError: the batch is larger than the training examples.
    """
    num_train = info.num_train
    if config.max_train_examples is not None:
        num_train = min(num_train, config.max_train_examples)
    steps = config.steps_per_epoch or num_train // config.batch_size
    if steps < 1:
        raise TrainError(
            f"batch_size {config.batch_size} is larger than the {num_train} training examples"
        )
    return steps
