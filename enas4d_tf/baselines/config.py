"""The configuration of an early-exit baseline run, and the files of its workdir (no TensorFlow).

The recipe fields and their defaults are the supernet's (`enas4d_tf.train.config.TrainConfig`,
tests/baselines/test_config.py keeps them equal): the same data pipeline and augmentation,
SGD with Nesterov momentum and decoupled weight decay, warm-up then cosine decay, label
smoothing, every exit weighted (equal weights by default). There is no distillation: the
network has no larger teacher.

Layout of a baseline workdir (`BaselineWorkdir` names each path):
  baseline_config.json   what is trained (backbone, dataset, recipe); a different one is refused
  checkpoints/           model, optimizer, step, elapsed training seconds
  train_log.jsonl        one JSON record per progress line and per validation evaluation
  train_summary.json     written when a session ends: steps, epochs and wall time reached
  front.json             thresholds fitted on the validation split for each MACs budget
"""

from __future__ import annotations

import dataclasses
import math
import os

from enas4d_tf.baselines.backbone import BackboneGenes, BackboneSpec, backbone_spec
from enas4d_tf.errors import TrainError, WorkdirError
from enas4d_tf.files import check_writable_dir, check_writable_file, read_json
from enas4d_tf.search.evolution import format_macs
from enas4d_tf.space import PRESETS, SearchSpace

CONFIG_FILE = "baseline_config.json"
KIND = "early_exit_baseline"
CONFIG_VERSION = 1
# Stage-graph quantisations the baseline exports (quantisation-aware training is the supernet
# exporter's alone).
EXPORT_QUANTIZATIONS = ("float32", "float16", "int8")

# Fields a resumed run may change: they say how this session runs, not what is trained.
SESSION_FIELDS = (
    "workdir",
    "data_dir",
    "max_train_minutes",
    "checkpoint_every_steps",
    "keep_checkpoints",
    "log_every_steps",
    "eval_every_epochs",
    "max_eval_examples",
)

_LOWER_BOUNDS = (
    ("epochs", 1),
    ("batch_size", 1),
    ("checkpoint_every_steps", 1),
    ("keep_checkpoints", 1),
    ("log_every_steps", 1),
    ("eval_every_epochs", 0),
    ("seed", 0),
)


@dataclasses.dataclass(frozen=True)
class BaselineWorkdir:
    """The paths of a baseline run's workdir; nothing is created or read."""

    root: str

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def config(self) -> str:
        return self._path(CONFIG_FILE)

    @property
    def checkpoints(self) -> str:
        return self._path("checkpoints")

    @property
    def train_log(self) -> str:
        return self._path("train_log.jsonl")

    @property
    def train_summary(self) -> str:
        return self._path("train_summary.json")

    @property
    def front(self) -> str:
        return self._path("front.json")


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    """Everything an early-exit baseline run depends on.

    Attributes:
      workdir: where checkpoints and logs go.
      preset: the search space whose stem, units and head the backbone takes.
      dataset, data_dir: the data (as `tools.train`).
      depth, kernel, expand, width, resolution, head_width: the backbone's configuration
        (`BackboneGenes`: one value for every unit or one per unit; None = the default).
      epochs: planned epochs; the learning-rate schedule decays to 0 at their end.
      max_train_minutes: stop at the end of the step that crosses this much training time
        (all sessions together), checkpoint and record how far it got; None = no limit.
      batch_size, learning_rate, momentum, warmup_epochs, weight_decay, label_smoothing,
        clip_norm: the recipe, as `TrainConfig`.
      exit_weights: loss weight of each exit (normalised to sum 1); None = equal.
      zero_init_residual: start the last batch norm's gamma of every residual block at 0
        (`tools.train --zero_init_residual`, so the recipes can match).
      checkpoint_every_steps, keep_checkpoints, log_every_steps: as `TrainConfig`.
      eval_every_epochs: per-exit validation accuracy every this many epochs and at the end
        (0: at the end only).
      max_train_examples, max_eval_examples, steps_per_epoch: as `TrainConfig`.
      seed: seeds the weights, the data order and the augmentation.
    """

    workdir: str
    preset: str = "fashion_mnist"
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    depth: tuple | None = None
    kernel: tuple | None = None
    expand: tuple | None = None
    width: tuple | None = None
    resolution: int | None = None
    head_width: int | None = None
    epochs: int = 10
    max_train_minutes: float | None = None
    batch_size: int = 256
    learning_rate: float = 0.1
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    clip_norm: float = 0.0
    exit_weights: tuple | None = None
    zero_init_residual: bool = False
    checkpoint_every_steps: int = 500
    keep_checkpoints: int = 3
    log_every_steps: int = 50
    eval_every_epochs: int = 1
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    steps_per_epoch: int | None = None
    seed: int = 0

    def __post_init__(self):
        for name in ("depth", "kernel", "expand", "width", "exit_weights"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(value))

    def space(self) -> SearchSpace:
        """The preset's search space."""
        return SearchSpace.preset(self.preset)

    def backbone(self, num_classes: int | None = None) -> BackboneSpec:
        """The network this run trains.

        Raises:
          SpaceError: a backbone value out of range.
        """
        genes = BackboneGenes(
            depth=_unwrap(self.depth),
            kernel=_unwrap(self.kernel),
            expand=_unwrap(self.expand),
            width=1.0 if self.width is None else _unwrap(self.width),
            resolution=self.resolution,
            head_width=self.head_width,
        )
        return backbone_spec(self.space(), genes, num_classes)

    def validate(self) -> None:
        """Checks every field (the backbone too).

        Raises:
          TrainError: one line naming the first bad field.
          SpaceError: a backbone value out of range.
        """

        def check(ok: bool, message: str) -> None:
            if not ok:
                raise TrainError(message)

        check(bool(self.workdir), "workdir must be given")
        check(self.preset in PRESETS, f"unknown preset {self.preset!r}; use one of {list(PRESETS)}")
        for name, low in _LOWER_BOUNDS:
            value = getattr(self, name)
            check(value >= low, f"{name} must be >= {low}, got {value}")
        for name in ("max_train_examples", "max_eval_examples", "steps_per_epoch"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"{name} must be >= 1, got {value}")
        minutes = self.max_train_minutes
        check(
            minutes is None or (math.isfinite(minutes) and minutes > 0),
            f"max_train_minutes must be > 0, got {minutes}",
        )
        check(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            f"learning_rate must be > 0, got {self.learning_rate}",
        )
        check(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        check(
            0 <= self.label_smoothing < 1,
            f"label_smoothing must be in [0, 1), got {self.label_smoothing}",
        )
        for name in ("warmup_epochs", "weight_decay", "clip_norm"):
            value = getattr(self, name)
            check(value >= 0 and math.isfinite(value), f"{name} must be >= 0, got {value}")
        check(
            self.warmup_epochs <= self.epochs,
            f"warmup_epochs ({self.warmup_epochs}) must not exceed epochs ({self.epochs})",
        )
        spec = self.backbone()
        if self.exit_weights is not None:
            w = self.exit_weights
            check(
                len(w) == spec.num_exits,
                f"exit_weights needs {spec.num_exits} numbers (one per exit, an exit after each "
                f"unit of preset {self.preset!r}), got {len(w)}",
            )
            check(
                all(math.isfinite(x) and x >= 0 for x in w) and sum(w) > 0,
                f"exit_weights must be non-negative with a positive sum, got {list(w)}",
            )

    def normalized_exit_weights(self, num_exits: int) -> list[float]:
        """Exit weights summing to 1 (equal when `exit_weights` is None)."""
        w = (
            [1.0] * num_exits
            if self.exit_weights is None
            else [float(x) for x in self.exit_weights]
        )
        total = sum(w)
        return [x / total for x in w]

    def to_dict(self) -> dict:
        """The fields as a JSON-safe dict."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> BaselineConfig:
        """Reads `to_dict()` output (unknown keys are an error: TypeError)."""
        return cls(**d)


def _unwrap(value):
    """A one-element tuple as its value (flags give lists)."""
    if isinstance(value, tuple) and len(value) == 1:
        return value[0]
    return value


# Fields added after baseline workdirs were first written, with the value those runs had: a
# saved config without the key trained with it.
ADDED_FIELDS = {"zero_init_residual": False}


def differences(old: dict, new: dict) -> list[str]:
    """`"name: old -> new"` for each recipe or backbone field (not `SESSION_FIELDS`) of two
    `BaselineConfig.to_dict()` values that differ (a field `old` predates counts as its
    `ADDED_FIELDS` value)."""
    old = {**ADDED_FIELDS, **old}
    out = []
    for key in sorted(set(old) | set(new)):
        if key in SESSION_FIELDS:
            continue
        if old.get(key) != new.get(key):
            out.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return out


def check_saved_config(root: str, config: BaselineConfig) -> dict | None:
    """The workdir's `baseline_config.json` (None when there is none), checked against `config`.

    Raises:
      WorkdirError: the workdir holds another kind of run, or this one with other settings
        (the message names the first difference); the file is left as it is.
    """
    path = BaselineWorkdir(root).config
    if not os.path.exists(path):
        return None
    old = read_json(path, WorkdirError, "baseline config")
    if not isinstance(old, dict) or old.get("kind") != KIND:
        raise WorkdirError(f"{path} is not an early-exit baseline config: use another workdir")
    diffs = differences(old.get("train") or {}, config.to_dict())
    if diffs:
        more = f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""
        raise WorkdirError(
            f"workdir {root} trains another configuration ({diffs[0]}{more}); resume it with "
            "its own settings or use another workdir"
        )
    return old


def check_baseline_workdir(root: str) -> None:
    """Refuses, before any work, a workdir that training could not write (one line)."""
    check_writable_dir(root, "workdir", WorkdirError)
    workdir = BaselineWorkdir(root)
    if os.path.lexists(workdir.checkpoints):
        check_writable_dir(workdir.checkpoints, "workdir folder", WorkdirError)
    for path in (workdir.config, workdir.train_log, workdir.train_summary, workdir.front):
        check_writable_file(path, "workdir file", WorkdirError)


def point_name(budget: float) -> str:
    """`early_exit_<budget>`, e.g. `early_exit_3.15M` (the search names its networks alike)."""
    return "early_exit_" + format_macs(budget)
