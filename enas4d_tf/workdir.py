"""The training workdir: run configuration and checkpoints, shared by train, search, export.

Layout of `<workdir>`:
  run_config.json   what was trained (search space, dataset, classes, training flags)
  checkpoints/      `tf.train.CheckpointManager` files (model, optimizer, step, epoch)
  search/           written by tools/search.py
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from enas4d_tf.errors import WorkdirError
from enas4d_tf.model.supernet import Supernet
from enas4d_tf.space.search_space import SearchSpace

RUN_CONFIG = "run_config.json"
CHECKPOINT_DIR = "checkpoints"


def read_run_config(workdir: str) -> dict:
    path = os.path.join(workdir, RUN_CONFIG)
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
    return tf.train.latest_checkpoint(os.path.join(workdir, CHECKPOINT_DIR))


def restore_model(net: Supernet, path: str) -> None:
    """Restores the model's weights from a training checkpoint.

    Raises:
      WorkdirError: the checkpoint is corrupt or was written for another network.
    """
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
    config = read_run_config(workdir)
    path = latest_checkpoint(workdir)
    if path is None:
        raise WorkdirError(f"no checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)}")
    net = Supernet(SearchSpace.from_dict(config["space"]), num_classes=int(config["num_classes"]))
    restore_model(net, path)
    return net, config
