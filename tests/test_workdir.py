"""Reading a training workdir back: settings compared on a resume, places checked before
work, checkpoints found when their pointer is lost, and non-finite weights refused."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from enas4d_tf.errors import WorkdirError
from enas4d_tf.space import SearchSpace
from enas4d_tf.train.config import TrainConfig
from enas4d_tf.train.resume import (
    check_run_config,
    check_train_workdir,
    describe_differences,
    run_config_differences,
    writes_workdir,
)
from enas4d_tf.workdir import Workdir, checkpoint_nonfinite, find_checkpoint, load_supernet
from tests.helpers import make_tiny_workdir


def _run_config(**train):
    config = TrainConfig(workdir="/w", preset="tiny", **train)
    return {
        "space": SearchSpace.preset("tiny").to_dict(),
        "num_classes": 10,
        "dataset": "fashion_mnist",
        "image_size": (28, 28),
        "steps_per_epoch": 12,
        "train": config.to_dict(),
    }


def test_differences_name_what_the_weights_learn_only():
    old = json.loads(json.dumps(_run_config(learning_rate=0.05)))  # as read back from disk
    # Moving the workdir or logging more often changes nothing the weights learn.
    same = _run_config(learning_rate=0.05, log_every_steps=1, keep_checkpoints=9)
    same["train"]["workdir"] = "/elsewhere"
    assert run_config_differences(old, same) == {}
    new = _run_config(learning_rate=1e6, seed=3)
    new["space"] = SearchSpace.preset("fashion_mnist").to_dict()
    differences = run_config_differences(old, new)
    assert differences == {
        "space": ("tiny", "fashion_mnist"),
        "learning_rate": (0.05, 1e6),
        "seed": (0, 3),
    }
    assert describe_differences(differences) == (
        "space 'tiny' -> 'fashion_mnist', learning_rate 0.05 -> 1000000.0, seed 0 -> 3"
    )


def test_differences_of_an_older_run_config():
    # An older version wrote `calibration_images` and no image_size / steps_per_epoch.
    old = _run_config(num_calibration_images=700, epochs=3)
    del old["image_size"], old["steps_per_epoch"]
    old["train"]["calibration_images"] = old["train"].pop("num_calibration_images")
    new = _run_config(num_calibration_images=700, epochs=3)
    new["image_size"] = (32, 32)  # not in the old file: not compared
    assert run_config_differences(old, new) == {}
    new = _run_config(num_calibration_images=700, epochs=3, kd_ratio=0.0)
    assert run_config_differences(old, new) == {"kd_ratio": (1.0, 0.0)}


def test_check_run_config_refuses_other_settings_and_allows_more_epochs(tmp_path):
    root = str(tmp_path)
    assert check_run_config(Workdir(root), _run_config()) is None  # a fresh workdir
    with open(Workdir(root).run_config, "w") as f:
        json.dump(_run_config(learning_rate=0.05), f)
    before = open(Workdir(root).run_config).read()
    previous = check_run_config(Workdir(root), _run_config(learning_rate=0.05, epochs=20))
    assert previous["train"]["epochs"] == 10  # the trainer decides on the epochs
    with pytest.raises(WorkdirError) as e:
        check_run_config(Workdir(root), _run_config(learning_rate=1e6, momentum=0.5))
    message = str(e.value)
    assert "learning_rate 0.05 -> 1000000.0" in message and "momentum 0.9 -> 0.5" in message
    assert "\n" not in message
    assert open(Workdir(root).run_config).read() == before  # never rewritten


def test_check_train_workdir_refuses_wrong_kinds(tmp_path):
    check_train_workdir(str(tmp_path / "new" / "run"))  # can be created: fine
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(WorkdirError, match="is a file"):
        check_train_workdir(str(a_file))
    with pytest.raises(WorkdirError, match="is a file"):
        check_train_workdir(str(a_file / "run"))
    root = tmp_path / "run"
    root.mkdir()
    (root / "checkpoints").write_text("x")
    with pytest.raises(WorkdirError, match="checkpoints"):
        check_train_workdir(str(root))
    (root / "checkpoints").unlink()
    (root / "train_log.jsonl").mkdir()
    with pytest.raises(WorkdirError, match="train_log.jsonl is a folder"):
        check_train_workdir(str(root))
    assert sorted(os.listdir(root)) == ["train_log.jsonl"]  # nothing created


def _nan_checkpoints(folder):
    """Checkpoints 1, 2 and 3 of one variable; checkpoint 3 holds a NaN."""
    import tensorflow as tf

    v = tf.Variable(np.ones(3, np.float32))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=v), folder, max_to_keep=5)
    for step in (1, 2, 3):
        if step == 3:
            v.assign([1.0, np.nan, 1.0])
        manager.save(checkpoint_number=step)
    return os.path.join(folder, "ckpt-{}")


def test_find_checkpoint_falls_back_when_the_pointer_is_lost(tmp_path):
    folder = str(tmp_path / "checkpoints")
    assert find_checkpoint(folder) == (None, None)
    prefix = _nan_checkpoints(folder)
    assert find_checkpoint(folder) == (prefix.format(3), None)
    for name in os.listdir(folder):
        if name.startswith("ckpt-3."):
            os.remove(os.path.join(folder, name))
    path, note = find_checkpoint(folder)
    assert path == prefix.format(2)
    assert "names a checkpoint whose files are missing" in note and "ckpt-2" in note
    with open(os.path.join(folder, "checkpoint"), "w") as f:
        f.write("\x00 not a pointer {")
    path, note = find_checkpoint(folder)
    assert path == prefix.format(2) and "unreadable" in note
    os.remove(os.path.join(folder, "checkpoint"))
    path, note = find_checkpoint(folder)
    assert path == prefix.format(2) and "is missing" in note


def test_checkpoint_nonfinite_names_the_variable(tmp_path):
    prefix = _nan_checkpoints(str(tmp_path))
    assert checkpoint_nonfinite(prefix.format(2)) is None
    assert checkpoint_nonfinite(prefix.format(3)).startswith("v/")
    assert checkpoint_nonfinite(prefix.format(3), prefix="model/") is None


def test_load_supernet_refuses_non_finite_weights(tmp_path):
    import tensorflow as tf

    root = str(tmp_path / "run")
    space, net = make_tiny_workdir(root)
    load_supernet(root)  # finite: loads
    kernel = net.trainable_variables[0]
    kernel.assign(np.full(kernel.shape, np.inf, np.float32))
    tf.train.CheckpointManager(
        tf.train.Checkpoint(model=net), Workdir(root).checkpoints, max_to_keep=1
    ).save()
    with pytest.raises(WorkdirError, match="NaN or Inf"):
        load_supernet(root)


def test_only_the_chief_of_a_multi_worker_run_writes_the_workdir():
    def tf_config(kind, index, chief=False):
        cluster = {"worker": ["a:1", "b:2"], **({"chief": ["c:3"]} if chief else {})}
        return {
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})
        }

    assert writes_workdir("default", tf_config("worker", 1))  # TF_CONFIG unused
    assert writes_workdir("multi_worker", tf_config("worker", 0))
    assert not writes_workdir("multi_worker", tf_config("worker", 1))
    assert not writes_workdir("multi_worker", tf_config("worker", 0, chief=True))
    assert writes_workdir("multi_worker", tf_config("chief", 0, chief=True))
    assert writes_workdir("multi_worker", {"TF_CONFIG": "{not json"})
