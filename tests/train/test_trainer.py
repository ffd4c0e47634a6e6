"""A short real training run: losses fall, one trace, resume, workdir contract, errors."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import enas4d_tf as e4
from enas4d_tf.train import sampling
from enas4d_tf.train.config import TrainConfig
from enas4d_tf.train.logs import read_train_log
from enas4d_tf.train.trainer import train
from enas4d_tf.workdir import WorkdirError, load_supernet

TINY = e4.SearchSpace.preset("tiny")
FMNIST = e4.SearchSpace.preset("fashion_mnist")


def _small_config(workdir, **kw):
    base = {
        "workdir": str(workdir),
        "preset": "tiny",
        "epochs": 2,
        "batch_size": 64,
        "max_train_examples": 768,
        "max_eval_examples": 500,
        "num_calibration_images": 500,
        "learning_rate": 0.1,
        "warmup_epochs": 0.25,
        "log_every_steps": 6,
        "checkpoint_every_steps": 20,
        "eval_every_epochs": 2,
        # 3 architectures a step: the trace grows with their number (the loop is unrolled).
        "num_random_subnets": 1,
    }
    base.update(kw)
    return TrainConfig(**base)


def test_real_slice_loss_falls_for_largest_and_smallest_with_one_trace(tmp_path):
    # 768 real Fashion-MNIST images, 2 epochs of 12 steps (about 40 s on an idle machine).
    config = _small_config(tmp_path / "run")
    lines = []
    result = train(config, log=lines.append)
    assert result.step == result.total_steps == 24
    assert result.traces == 1  # every architecture of every step through one trace
    records = [r for r in read_train_log(config.workdir) if r["kind"] == "train"]
    assert [r["step"] for r in records] == [6, 12, 18, 24]
    first, last = records[0], records[-1]
    for name in ("largest", "smallest"):
        for s in range(TINY.num_stages):
            # Seen here: the last exit falls from about 2.4 to 1.9 (largest) and 2.1
            # (smallest); label smoothing 0.1 over 10 classes floors the loss at 0.5.
            assert last[name]["loss"][s] < first[name]["loss"][s] - 0.05, (name, s)
    # Validation after BN recalibration: well above the 10% of chance for the last exit.
    evaluation = result.evaluations[-1]
    assert evaluation["largest"]["accuracy"][-1] > 0.25
    assert evaluation["smallest"]["accuracy"][-1] > 0.2
    assert any(line.startswith("step 24/24") and "img/s" in line for line in lines)
    # What a budget plans on: each epoch's end (the session's seconds, rising), the one
    # evaluation's seconds inside the second epoch, and a pace without each epoch's first step.
    timing = result.timing
    assert len(timing.epoch_ends) == 2 and 0 < timing.epoch_ends[0] < timing.epoch_ends[1]
    assert len(timing.eval_seconds) == 1
    assert timing.epoch_ends[1] - timing.epoch_ends[0] > timing.eval_seconds[0] > 0
    assert timing.steps == 23 and timing.steady_steps == 22  # step 1 traced; step 13 first
    assert result.step_wall_seconds == timing.steady_wall_seconds / 22
    # The trace is announced once, before it starts, and its time said after it.
    tracing = [i for i, line in enumerate(lines) if "tracing the training step" in line]
    assert len(tracing) == 1 and lines[tracing[0]].startswith("step 1:")
    assert lines[tracing[0] + 1].startswith("step 1: traced and run in")
    # The workdir contract: run_config.json, checkpoints loadable by load_supernet.
    with open(os.path.join(config.workdir, "run_config.json")) as f:
        run_config = json.load(f)
    assert {"space", "num_classes", "dataset", "data_dir"} <= set(run_config)
    assert run_config["train"]["batch_size"] == 64
    net, _ = load_supernet(config.workdir)
    x = tf.random.normal((2, 28, 28, 1))
    arch = TINY.sample(seed=5)
    got = net(x, arch=arch)[-1].numpy()
    want = result.net(x, arch=arch)[-1].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert os.listdir(os.path.join(config.workdir, "tensorboard"))
    # Started again, a finished run says so and trains nothing.
    again = []
    rerun = train(config, log=again.append)
    assert rerun.steps_run == 0 and rerun.step == 24
    assert "already finished" in again[-1]


def _make_checkpointed_workdir(path):
    # A workdir as a short training leaves it: 2 steps, checkpoints ckpt-1 and ckpt-2.
    config = _small_config(
        path, epochs=1, max_train_examples=128, eval_every_epochs=0, checkpoint_every_steps=1
    )
    train(config, log=lambda line: None)
    return config


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    """One `_make_checkpointed_workdir`, shared: tests copy it."""
    return _make_checkpointed_workdir(tmp_path_factory.mktemp("checkpointed") / "run")


def _copy(config, path):
    shutil.copytree(config.workdir, path)
    return TrainConfig(**{**config.to_dict(), "workdir": str(path)})


def test_lost_checkpoint_pointer_resumes_from_the_newest_checkpoint(checkpointed, tmp_path):
    config = _copy(checkpointed, tmp_path / "run")
    folder = os.path.join(config.workdir, "checkpoints")
    pointer = os.path.join(folder, "checkpoint")
    # The pointer names a checkpoint whose files are gone (as after a disk clean-up).
    with open(pointer) as f:
        text = f.read()
    with open(pointer, "w") as f:
        f.write(text.replace('model_checkpoint_path: "ckpt-2"', 'model_checkpoint_path: "ckpt-3"'))
    lines = []
    result = train(config, log=lines.append)
    # ckpt-2, the newest that exists, is the run's last step: restored, nothing to train.
    assert (result.resumed_from, result.step, result.steps_run) == (2, 2, 0)
    assert lines[0] == (
        f"the checkpoint pointer {pointer} names a checkpoint whose files are missing; "
        f"using the newest checkpoint {folder}/ckpt-2"
    )
    assert lines[1].startswith("training already finished: step 2 of 2")


def test_checkpoint_of_another_network_or_corrupt_ends_with_workdir_error(checkpointed, tmp_path):
    config = _copy(checkpointed, tmp_path / "run")
    ckpt_dir = os.path.join(config.workdir, "checkpoints")
    # Continue the run for longer so that it has to restore.
    longer = TrainConfig(**{**config.to_dict(), "epochs": 2})

    # A checkpoint of the fashion_mnist supernet in a tiny workdir.
    foreign = tmp_path / "foreign"
    shutil.copytree(config.workdir, foreign)
    shutil.rmtree(foreign / "checkpoints")
    big = e4.Supernet(FMNIST, num_classes=10)
    tf.train.CheckpointManager(
        tf.train.Checkpoint(model=big), str(foreign / "checkpoints"), max_to_keep=1
    ).save()
    before = sorted(os.listdir(foreign / "checkpoints"))
    with pytest.raises(WorkdirError, match="does not match"):
        train(TrainConfig(**{**longer.to_dict(), "workdir": str(foreign)}))
    assert sorted(os.listdir(foreign / "checkpoints")) == before

    # A truncated data file.
    data_file = [f for f in os.listdir(ckpt_dir) if ".data-" in f and "ckpt-2." in f][0]
    path = os.path.join(ckpt_dir, data_file)
    with open(path, "r+b") as f:
        f.truncate(100)
    with pytest.raises(WorkdirError, match="corrupt|cannot be resumed"):
        train(longer)
    assert os.path.getsize(path) == 100  # left as it is

    # Another search space in the same workdir.
    other = TrainConfig(**{**longer.to_dict(), "preset": "fashion_mnist"})
    with pytest.raises(WorkdirError, match="space"):
        train(other)


# Slow (about 100 s: two short trainings); the key mapping itself is tested fast in
# tests/train/test_config.py.
@pytest.mark.slow
def test_workdir_of_an_older_version_resumes(tmp_path):
    # Its run_config.json names the BN-calibration count `calibration_images`, as written
    # before the flag became --num_calibration_images.
    config = _make_checkpointed_workdir(tmp_path / "run")
    path = os.path.join(config.workdir, "run_config.json")
    with open(path) as f:
        run_config = json.load(f)
    run_config["train"]["calibration_images"] = run_config["train"].pop("num_calibration_images")
    with open(path, "w") as f:
        json.dump(run_config, f)
    lines = []
    result = train(TrainConfig(**{**config.to_dict(), "epochs": 2}), log=lines.append)
    assert result.resumed_from == 2 and result.step == 4
    assert any(line.startswith("resuming from step 2 of 4") for line in lines)
    with open(path) as f:
        assert json.load(f)["train"]["num_calibration_images"] == 500


@pytest.mark.slow
def test_progressive_schedule_walks_the_phases_in_one_trace(tmp_path):
    # 4 epochs of 2 steps: one epoch per phase (starts 0, 1/4, 1/2, 3/4), about 15 s.
    config = _small_config(
        tmp_path / "run",
        schedule="progressive",
        epochs=4,
        max_train_examples=128,
        log_every_steps=2,
        eval_every_epochs=0,
        exit_weights=(0.2, 0.3, 0.5),
    )
    result = train(config, log=lambda line: None)
    assert result.step == 8 and result.traces == 1
    records = read_train_log(config.workdir)
    assert [r["phase"] for r in records] == [0, 1, 2, 3]


@pytest.mark.slow
def test_random_subnets_every_n_steps_trains_them_on_those_steps_only(tmp_path, monkeypatch):
    # 8 steps, random architectures on steps 0, 2, 4, 6: two traces (3 and 2 architectures).
    calls = []
    step_archs = sampling.step_archs

    def recording_step_archs(space, seed, step, num_random, phase, *recipe):
        archs = step_archs(space, seed, step, num_random, phase, *recipe)
        calls.append((step, len(archs)))
        return archs

    monkeypatch.setattr(sampling, "step_archs", recording_step_archs)
    config = _small_config(
        tmp_path / "run",
        epochs=1,
        max_train_examples=512,
        log_every_steps=4,
        eval_every_epochs=0,
        random_subnets_every=2,
    )
    result = train(config, log=lambda line: None)
    assert result.step == 8 and result.traces == 2
    assert calls == [(step, 3 if step % 2 == 0 else 2) for step in range(8)]
    records = read_train_log(config.workdir)
    assert [r["step"] for r in records] == [4, 8]
    for r in records:
        # The subnet rate counts the 2.5 architectures a step of the window trained on average.
        assert r["subnet_images_per_s"] / r["images_per_s"] == pytest.approx(2.5)
        assert np.isfinite(r["objective"]) and 0 < r["objective"] < 10
        assert all(0 <= a <= 1 for a in r["largest"]["accuracy"] + r["smallest"]["accuracy"])
