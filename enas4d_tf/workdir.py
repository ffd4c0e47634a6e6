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
import json
import os
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


def latest_checkpoint(workdir: str) -> str | None:
    """The newest checkpoint of the workdir (its path prefix), or None."""
    import tensorflow as tf

    return tf.train.latest_checkpoint(Workdir(workdir).checkpoints)


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

    Returns:
      `(net, run_config)`.

    Raises:
      WorkdirError: no run config, no checkpoint, or a checkpoint that does not match.
    """
    from enas4d_tf.model.supernet import Supernet

    config = read_run_config(workdir)
    path = latest_checkpoint(workdir)
    if path is None:
        raise WorkdirError(f"no checkpoint in {Workdir(workdir).checkpoints}")
    net = Supernet(SearchSpace.from_dict(config["space"]), num_classes=int(config["num_classes"]))
    restore_model(net, path)
    return net, config
