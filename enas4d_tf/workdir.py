"""Every path a run writes, in one place, and reading a training workdir back.

TensorFlow is imported only by the three functions that read checkpoints (`latest_checkpoint`,
`restore_model`, `load_supernet`), so a tool can check a workdir's paths and run config first.

Layout of `<workdir>` (`Workdir(root)` names each path):
  .lock                    held by the program writing the workdir (enas4d_tf/locking.py)
  run_config.json          what was trained (search space, dataset, classes, training flags)
  checkpoints/             `tf.train.CheckpointManager` files (model, optimizer, step, epoch)
  tensorboard/             TensorBoard summaries
  train_log.jsonl          one JSON record per progress line and evaluation
  train_summary.json       written when a training session ends
  search/                  tools/search.py: state.json, predictions/, archs/, pareto.{json,png}
  export/<network>/        tools/export.py: one folder per network (`ExportDir` names its files)
  cascade/<network>_<quantization>.json   tools/cascade.py reports (as the demo writes them)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import TYPE_CHECKING

from enas4d_tf.errors import WorkdirError
from enas4d_tf.space import SearchSpace

if TYPE_CHECKING:
    from enas4d_tf.model.supernet import Supernet

RUN_CONFIG = "run_config.json"
CHECKPOINT_DIR = "checkpoints"


@dataclasses.dataclass(frozen=True)
class Workdir:
    """The paths of one run's workdir; nothing is created or read."""

    root: str

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def lock(self) -> str:
        """The workdir lock (`enas4d_tf.locking.WorkdirLock`)."""
        return self._path(".lock")

    # -- training ------------------------------------------------------------------------
    @property
    def run_config(self) -> str:
        return self._path(RUN_CONFIG)

    @property
    def checkpoints(self) -> str:
        return self._path(CHECKPOINT_DIR)

    @property
    def tensorboard(self) -> str:
        return self._path("tensorboard")

    @property
    def train_log(self) -> str:
        return self._path("train_log.jsonl")

    @property
    def train_summary(self) -> str:
        return self._path("train_summary.json")

    # -- search --------------------------------------------------------------------------
    @property
    def search(self) -> str:
        return self._path("search")

    @property
    def search_state(self) -> str:
        return self._path("search", "state.json")

    @property
    def search_predictions(self) -> str:
        """Folder of one `.npz` of exit probabilities per measured candidate."""
        return self._path("search", "predictions")

    @property
    def search_archs(self) -> str:
        """Folder of the chosen networks' architecture files."""
        return self._path("search", "archs")

    def arch_file(self, name: str) -> str:
        return self._path("search", "archs", f"{name}.json")

    @property
    def pareto_json(self) -> str:
        return self._path("search", "pareto.json")

    @property
    def pareto_png(self) -> str:
        return self._path("search", "pareto.png")

    # -- export and cascade --------------------------------------------------------------
    @property
    def exports(self) -> str:
        return self._path("export")

    def export_dir(self, name: str) -> ExportDir:
        return ExportDir(self._path("export", name))

    @property
    def cascade_reports(self) -> str:
        return self._path("cascade")

    def cascade_report(self, name: str, quantization: str) -> str:
        return self._path("cascade", f"{name}_{quantization}.json")


@dataclasses.dataclass(frozen=True)
class ExportDir:
    """The files of one exported network's folder."""

    root: str

    @property
    def manifest(self) -> str:
        return os.path.join(self.root, "manifest.json")

    @property
    def subnet(self) -> str:
        return os.path.join(self.root, "subnet.keras")

    @staticmethod
    def stage_graph_name(exit_number: int, quantization: str) -> str:
        """File name of a stage graph; exits are numbered from 1, as users see them."""
        return f"stage{exit_number}_{quantization}.tflite"

    def stage_graph(self, exit_number: int, quantization: str) -> str:
        return os.path.join(self.root, self.stage_graph_name(exit_number, quantization))


def read_run_config(workdir: str) -> dict:
    path = Workdir(workdir).run_config
    if not os.path.isdir(workdir):
        raise WorkdirError(f"workdir {workdir} does not exist")
    if not os.path.exists(path):
        raise WorkdirError(f"{path} not found: {workdir} is not a training workdir")
    try:
        with open(path) as f:
            config = json.load(f)
        SearchSpace.from_dict(config["space"])
        int(config["num_classes"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise WorkdirError(f"{path} is unreadable or malformed: {e}") from None
    return config


# CheckpointManager's file names: `ckpt-<step>.index` beside `ckpt-<step>.data-*`.
_CHECKPOINT_INDEX = re.compile(r"^ckpt-(\d+)\.index$")


def find_checkpoint(checkpoint_dir: str) -> tuple[str | None, str | None]:
    """The newest checkpoint in `checkpoint_dir`, even when its `checkpoint` pointer is lost.

    The pointer file names the newest checkpoint; when it is missing, unreadable or names a
    checkpoint whose files are gone, the newest `ckpt-<step>` with an index and a data file is
    taken instead. Reads the folder only (no TensorFlow).

    Returns:
      `(path prefix or None, note)`: `note` is None, or one line saying why the pointer was
      not followed (for the run's log).
    """
    if not os.path.isdir(checkpoint_dir):
        return None, None
    names = os.listdir(checkpoint_dir)
    pointer = os.path.join(checkpoint_dir, "checkpoint")
    path, problem = _pointer_target(pointer)
    if path is not None:
        return path, None
    steps = []
    for name in names:
        match = _CHECKPOINT_INDEX.match(name)
        data = f"ckpt-{match.group(1)}.data-" if match else None
        if data and any(other.startswith(data) for other in names):
            steps.append(int(match.group(1)))
    if problem is None or (not steps and problem == "is missing"):
        return None, None  # a fresh folder
    if not steps:
        return None, f"the checkpoint pointer {pointer} {problem} and no checkpoint is left"
    newest = os.path.join(checkpoint_dir, f"ckpt-{max(steps)}")
    return (
        newest,
        f"the checkpoint pointer {pointer} {problem}; using the newest checkpoint {newest}",
    )


def _pointer_target(pointer: str) -> tuple[str | None, str | None]:
    """`(path, None)` for the checkpoint the pointer file names, if its index exists; else
    `(None, what is wrong with the pointer)`."""
    if not os.path.exists(pointer):
        return None, "is missing"
    try:
        with open(pointer, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return None, "is unreadable"
    # The text proto CheckpointManager writes: `model_checkpoint_path: "ckpt-24"`.
    match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"\s*$', text, re.MULTILINE)
    if match is None:
        return None, "is unreadable"
    path = os.path.join(os.path.dirname(pointer), match.group(1))  # absolute names stay
    if os.path.exists(path + ".index"):
        return path, None
    return None, "names a checkpoint whose files are missing"


def latest_checkpoint(workdir: str) -> str | None:
    """The newest checkpoint of the workdir (its path prefix), or None (see `find_checkpoint`)."""
    return find_checkpoint(Workdir(workdir).checkpoints)[0]


def checkpoint_digest(prefix: str | None) -> str:
    """The sha256 of checkpoint `prefix`'s `.index` file ("" for none): it lists every
    tensor's offset and checksum, so it tells two checkpoints of the same name apart (another
    workdir's `ckpt-5`, or this one trained again)."""
    if not prefix:
        return ""
    with open(prefix + ".index", "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def checkpoint_nonfinite(path: str, prefix: str = "") -> str | None:
    """The name of the first floating-point tensor of checkpoint `path` (among those whose
    name starts with `prefix`, e.g. "model/") holding NaN or Inf, or None if all are finite.

    Raises:
      WorkdirError: the checkpoint cannot be read.
    """
    import numpy as np
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(path)
        for name, dtype in sorted(reader.get_variable_to_dtype_map().items()):
            if name.startswith(prefix) and dtype.is_floating:
                if not np.all(np.isfinite(reader.get_tensor(name))):
                    return name
    except (tf.errors.OpError, ValueError, IndexError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WorkdirError(f"checkpoint {path} is corrupt: {first}") from None
    return None


def restore_model(net: Supernet, path: str) -> None:
    """Restores the model's weights from a training checkpoint.

    Raises:
      WorkdirError: the checkpoint is corrupt or was written for another network.
    """
    import tensorflow as tf

    try:
        status = tf.train.Checkpoint(model=net).restore(path)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError) as e:
        # A truncated file raises IndexError from deep in the reader; a foreign one, the rest.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WorkdirError(
            f"checkpoint {path} does not match this network or is corrupt: {first}"
        ) from None


def load_supernet(workdir: str) -> tuple[Supernet, dict]:
    """The supernet of a training workdir with its newest checkpoint's weights.

    `workdir` may name a released supernet, `pretrained:<name>` (`enas4d_tf.pretrained`).

    Returns:
      `(net, run_config)`.

    Raises:
      WorkdirError: no run config, no checkpoint, a checkpoint that does not match, or one
        holding NaN or Inf weights.
    """
    from enas4d_tf.model.supernet import Supernet
    from enas4d_tf.pretrained import resolve_workdir

    workdir = resolve_workdir(workdir)
    config = read_run_config(workdir)
    path = latest_checkpoint(workdir)
    if path is None:
        raise WorkdirError(f"no checkpoint in {Workdir(workdir).checkpoints}")
    net = Supernet(SearchSpace.from_dict(config["space"]), num_classes=int(config["num_classes"]))
    restore_model(net, path)
    bad = checkpoint_nonfinite(path, prefix="model/")
    if bad is not None:
        raise WorkdirError(
            f"checkpoint {path} holds non-finite weights (NaN or Inf in {bad}): the training "
            "diverged; retrain with a smaller learning rate"
        )
    return net, config
