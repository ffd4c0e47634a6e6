"""Whether a workdir may be trained: its folders can be written, and a run trained there
before is resumed only with the settings it was trained with.

A run config (`<workdir>/run_config.json`) records what the weights were trained with; a
resumed run may change only what does not change what they learn (`RESUMABLE_FIELDS`), and
`epochs` while the run is not finished. Nothing here imports TensorFlow: tools.train checks
all it can before it starts.
"""

from __future__ import annotations

import json
import os

from enas4d_tf.errors import WorkdirError
from enas4d_tf.files import check_writable_dir, check_writable_file
from enas4d_tf.train.config import TrainConfig
from enas4d_tf.workdir import Workdir, find_checkpoint, read_run_config

# `train` fields of a run config that a resumed run may change: where things are, how the run
# reports, evaluates and is distributed. Any other field changes what the weights learn.
RESUMABLE_FIELDS = frozenset(
    {
        "workdir",
        "data_dir",
        "strategy",
        "cpu_replicas",
        "log_every_steps",
        "checkpoint_every_steps",
        "keep_checkpoints",
        "eval_every_epochs",
        "max_eval_examples",
        "num_calibration_images",
        "eval_spread_archs",
    }
)
# Top-level run config entries compared on a resume ("data_dir" may move; "total_steps"
# follows from the epochs, which the trainer compares itself).
_COMPARED = ("space", "num_classes", "dataset", "image_size", "steps_per_epoch")


def run_config_differences(old: dict, new: dict) -> dict[str, tuple]:
    """What a resumed run would change in the run that `old` (a `run_config.json`) describes.

    Args:
      old: the workdir's run config (as any version wrote it).
      new: the new run's run config, or part of it: only the entries it has are compared
        (a tool checks `space`, `dataset` and `train` before it knows the data).

    Returns:
      `{name: (old value, new value)}` for each difference, in a stable order: top-level
      entries by their name (the space by its name), `train` fields by theirs, except
      `RESUMABLE_FIELDS`.

    Raises:
      WorkdirError: `old["train"]` is not a training config of any version.
    """
    new = json.loads(json.dumps(new))  # as it would read back (tuples become lists)
    out: dict[str, tuple] = {}
    for key in _COMPARED:
        # An entry an older version did not write is not compared.
        if key in new and key in old and old[key] != new[key]:
            if key == "space":
                out[key] = (_space_name(old.get(key)), _space_name(new[key]))
            else:
                out[key] = (old.get(key), new[key])
    if "train" in new and "train" in old:
        try:
            before = TrainConfig.from_dict(dict(old.get("train", {}))).to_dict()
        except (TypeError, ValueError) as e:
            raise WorkdirError(f"the run config's training settings are malformed: {e}") from None
        for name, value in new["train"].items():
            if name not in RESUMABLE_FIELDS and before.get(name) != value:
                out[name] = (before.get(name), value)
    return out


def _space_name(space) -> object:
    return space.get("name", space) if isinstance(space, dict) else space


def describe_differences(differences: dict[str, tuple]) -> str:
    """`run_config_differences` as one line: `learning_rate 0.05 -> 1000000.0, epochs 2 -> 3`."""
    return ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in differences.items())


def check_run_config(workdir: Workdir, new: dict) -> dict | None:
    """A workdir trained before is resumed only with the settings it was trained with.

    Settings that do not change what the weights learn (`RESUMABLE_FIELDS`) may change, and
    so may `epochs` while the run is not finished (`check_finished`).

    Imports no TensorFlow: tools.train checks the settings it knows before it starts.

    Args:
      workdir: the run's workdir.
      new: this run's run config, or the part of it known before the data is read (see
        `run_config_differences`).

    Returns:
      The workdir's run config, or None for a fresh workdir.

    Raises:
      WorkdirError: the run config is unreadable, or another setting differs (all named).
    """
    if not os.path.exists(workdir.run_config):
        return None
    previous = read_run_config(workdir.root)
    differences = run_config_differences(previous, new)
    differences.pop("epochs", None)
    if differences:
        raise WorkdirError(
            f"{workdir.root} was trained with other settings "
            f"({describe_differences(differences)}): resume it with the same settings, or "
            "use another workdir"
        )
    return previous


def init_source(init_from: str, space: dict) -> dict:
    """The checkpoint a fresh run with `TrainConfig.init_from` starts from, checked.

    Imports no TensorFlow: tools.train checks it before it starts, and the trainer again
    before it restores.

    Args:
      init_from: a training workdir, or `pretrained:<name>`.
      space: the new run's search space (`SearchSpace.to_dict()`); the source must have
        trained the same one.

    Returns:
      `{"workdir", "checkpoint", "train_seconds"}`: the source's folder, its newest
      checkpoint, and the training seconds its `train_summary.json` records (with those of
      the run it started from in turn); `train_seconds` is None when it records none.

    Raises:
      WorkdirError: not a training workdir, another space, or no checkpoint.
    """
    from enas4d_tf.pretrained import resolve_workdir

    root = resolve_workdir(init_from)
    previous = read_run_config(root)
    if previous["space"] != json.loads(json.dumps(space)):
        raise WorkdirError(
            f"init_from {init_from} trained space {_space_name(previous['space'])!r}, not "
            f"{_space_name(space)!r}: start from a run of the same preset"
        )
    checkpoint, _ = find_checkpoint(Workdir(root).checkpoints)
    if checkpoint is None:
        raise WorkdirError(f"init_from {init_from} has no checkpoint to start from")
    return {
        "workdir": os.path.abspath(root),
        "checkpoint": os.path.abspath(checkpoint),
        "train_seconds": _chain_seconds(Workdir(root).train_summary),
    }


def _chain_seconds(summary_path: str) -> float | None:
    """Training seconds a `train_summary.json` records, its own run's and those of the run
    it started from (`init_from`); None when it records none or cannot be read."""
    try:
        with open(summary_path) as f:
            summary = json.load(f)
        seconds = float(summary["train_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    before = (summary.get("init_from") or {}).get("train_seconds")
    return seconds + float(before) if isinstance(before, (int, float)) else seconds


def check_train_workdir(root: str) -> None:
    """Refuses, before any work, a workdir that training could not write.

    Checks (without creating anything) that the workdir is a writable folder or can be made,
    that `checkpoints/` and `tensorboard/` are writable folders where they exist, and that
    the files training writes are not folders and, where they exist, are writable.

    Raises:
      WorkdirError: one line naming the path and the problem.
    """
    check_writable_dir(root, "workdir", WorkdirError)
    workdir = Workdir(root)
    for folder in (workdir.checkpoints, workdir.tensorboard):
        if os.path.lexists(folder):
            check_writable_dir(folder, "workdir folder", WorkdirError)
    for path in (workdir.run_config, workdir.train_log, workdir.train_summary):
        check_writable_file(path, "workdir file", WorkdirError)


def check_finished(previous: dict | None, config: TrainConfig, root: str) -> None:
    """A finished run is not rerun with other epochs: it would call finished a run that its
    weights were not trained for (and its run config would lie).

    Raises:
      WorkdirError: `previous` (the workdir's run config) was trained for other epochs.
    """
    before = ((previous or {}).get("train") or {}).get("epochs")
    if before is not None and before != config.epochs:
        raise WorkdirError(
            f"{root} finished training with epochs {before}, not {config.epochs} "
            f"(epochs {before!r} -> {config.epochs!r}); use another workdir"
        )


def writes_workdir(strategy: str, environ=None) -> bool:
    """Whether this process writes the workdir (and so holds its lock): always, except a
    non-chief task of a "multi_worker" run, whose checkpoints go to a scratch folder.

    Reads `TF_CONFIG` as `distribution.is_chief` reads the cluster, without TensorFlow: the
    chief task, or worker 0 of a cluster without one. A `TF_CONFIG` that does not parse counts
    as the chief's (the strategy refuses it later, in one line).

    Args:
      strategy: the run's strategy name.
      environ: the environment (default `os.environ`).
    """
    if strategy != "multi_worker":
        return True
    environ = os.environ if environ is None else environ
    try:
        tf_config = json.loads(environ.get("TF_CONFIG") or "{}")
        task, cluster = tf_config.get("task") or {}, tf_config.get("cluster") or {}
        kind, index = task.get("type"), int(task.get("index", 0))
    except (ValueError, TypeError, AttributeError):
        return True
    if not kind or kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in cluster
