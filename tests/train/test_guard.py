"""The NaN guard around checkpoints: nothing non-finite is saved or resumed, and a checkpoint
that cannot be written is one line saying what was kept."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from enas4d_tf.errors import TrainError, WorkdirError
from enas4d_tf.train.guard import first_nonfinite, save_checkpoint


def _manager(folder, keep=2):
    weights = tf.Variable(np.ones(4, np.float32), name="w")
    steps = tf.Variable(0, dtype=tf.int64, name="n")  # not floating: never checked
    checkpoint = tf.train.Checkpoint(w=weights, n=steps)
    return weights, tf.train.CheckpointManager(checkpoint, folder, max_to_keep=keep)


def test_first_nonfinite_names_the_variable():
    import keras

    good = keras.Variable(np.ones(3, np.float32), name="good")
    bad = keras.Variable(np.array([1.0, np.inf, 0.0], np.float32), name="bad")
    assert first_nonfinite([good]) is None
    assert first_nonfinite([good, bad]) == "bad"


def test_a_non_finite_state_is_never_saved_and_rotation_keeps_finite_ones(tmp_path):
    folder = str(tmp_path / "checkpoints")
    weights, manager = _manager(folder, keep=1)
    save_checkpoint(manager, [weights], step=5)
    before = sorted(os.listdir(folder))
    weights.assign([1.0, np.nan, 1.0, 1.0])
    with pytest.raises(TrainError) as e:
        save_checkpoint(manager, [weights], step=10)
    message = str(e.value)
    assert message.startswith("step 10: the update made w:0") and "NaN or Inf" in message
    assert f"the newest checkpoint {folder}/ckpt-5 is kept" in message
    # keep=1: a saved NaN checkpoint would have rotated ckpt-5 out.
    assert sorted(os.listdir(folder)) == before
    assert tf.train.latest_checkpoint(folder).endswith("ckpt-5")


def test_a_checkpoint_that_cannot_be_written_is_one_line(tmp_path):
    folder = tmp_path / "checkpoints"
    weights, manager = _manager(str(folder))
    save_checkpoint(manager, [weights], step=1)
    # Replace the folder by a file: the next save cannot write there.
    for name in os.listdir(folder):
        os.remove(folder / name)
    folder.rmdir()
    folder.write_text("in the way")
    with pytest.raises(WorkdirError) as e:
        save_checkpoint(manager, [weights], step=2)
    message = str(e.value)
    assert message.startswith(f"cannot write the checkpoint of step 2 in {folder}")
    assert "training stopped" in message and "\n" not in message
    assert folder.read_text() == "in the way"
