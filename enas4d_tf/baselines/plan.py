"""What an early-exit baseline run trains, and its workdir's config and log files.

`make_plan` checks a config against its data and works out the steps; `baseline_config.json`
is written once, for the run that trains with it, and a later session with other settings is
refused (`check_workdir_config`); `train_log.jsonl` gets one JSON record per line.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

import tensorflow as tf

from enas4d_tf import data as data_lib
from enas4d_tf.baselines import config as config_lib
from enas4d_tf.baselines.backbone import BackboneSpec
from enas4d_tf.baselines.config import BaselineConfig, BaselineWorkdir
from enas4d_tf.errors import TrainError, WorkdirError
from enas4d_tf.files import write_bytes_atomic
from enas4d_tf.train import plan as train_plan
from enas4d_tf.train.config import steps_per_epoch as config_steps_per_epoch

# Training data: `fn(epoch)` -> an endless dataset of `(images, labels)` batches of that epoch.
DatasetFn = Callable[[int], tf.data.Dataset]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run trains, from its config and its data."""

    spec: BackboneSpec
    info: data_lib.DatasetInfo
    steps_per_epoch: int
    total_steps: int

    def record(self, config: BaselineConfig) -> dict:
        """The contents of `baseline_config.json`."""
        return {
            "kind": config_lib.KIND,
            "version": config_lib.CONFIG_VERSION,
            "backbone": self.spec.to_dict(),
            "dataset": config.dataset,
            "num_classes": self.info.num_classes,
            "image_size": self.info.image_size,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "train": config.to_dict(),
        }


def make_plan(config: BaselineConfig) -> Plan:
    """Checks `config` against its data and works out the steps.

    Raises:
      TrainError, SpaceError: a bad config, or one that does not fit the data.
      DataError: the dataset cannot be read.
    """
    config.validate()
    info = data_lib.dataset_info(config.dataset, config.data_dir)
    spec = config.backbone(info.num_classes)
    if info.image_channels != spec.image_channels:
        raise TrainError(
            f"dataset {config.dataset!r} has {info.image_channels}-channel images but preset "
            f"{config.preset!r} expects {spec.image_channels}"
        )
    steps_per_epoch = config_steps_per_epoch(config, info)
    return Plan(spec, info, steps_per_epoch, steps_per_epoch * config.epochs)


def check_workdir_config(workdir: BaselineWorkdir, config: BaselineConfig, record: dict) -> bool:
    """Whether `baseline_config.json` exists; if it does, it must describe the same run
    (`config_lib.check_saved_config`) on the same data.

    Raises:
      WorkdirError: another kind of run, other settings or other data; the file is kept.
    """
    old = config_lib.check_saved_config(workdir.root, config)
    if old is None:
        return False
    for key in ("dataset", "num_classes", "backbone"):
        if old.get(key) != record[key]:
            raise WorkdirError(
                f"workdir {workdir.root} was trained with another {key}: use another workdir"
            )
    return True


def default_dataset_fn(config: BaselineConfig) -> DatasetFn:
    """The training data of `config`: `tools.train`'s own (`enas4d_tf.train.plan.
    default_dataset_fn`, the same data, augmentation and per-epoch seed), with no input
    context."""
    train_fn = train_plan.default_dataset_fn(config)
    return lambda epoch: train_fn(None, epoch)


def append_log(path: str, record: dict) -> None:
    """Appends one JSON record to a `train_log.jsonl`."""
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:
        raise WorkdirError(f"cannot write {path}: {e.strerror or e}") from None


def truncate_log(path: str, step: int) -> None:
    """Drops the records after `step` (a resumed run redoes those steps and logs them again)."""
    if not os.path.exists(path):
        return
    kept = []
    with open(path) as f:
        for line in f:
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line if line.endswith("\n") else line + "\n")
            except ValueError:
                continue  # a line cut short by a killed process
    write_bytes_atomic(path, "".join(kept).encode(), error=WorkdirError)
