"""The training library: sampling schedules, losses, optimiser, and a short real run."""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import enas4d_tf as e4
from enas4d_tf.errors import TrainError
from enas4d_tf.train import sampling as train_sampling
from enas4d_tf.train.config import TrainConfig
from enas4d_tf.train.logs import format_eta, read_train_log
from enas4d_tf.train.optimization import WarmupCosine, make_optimizer, warmup_cosine
from enas4d_tf.train.step import exit_losses
from enas4d_tf.train.trainer import train
from enas4d_tf.workdir import WorkdirError, load_supernet

TINY = e4.SearchSpace.preset("tiny")
FMNIST = e4.SearchSpace.preset("fashion_mnist")
GENES = ("depth", "kernel", "expand", "width")


def _flat(arch, gene):
    return np.ravel(np.array(getattr(arch, gene), dtype=float))


# -- sampling ----------------------------------------------------------------------------


def test_sandwich_sampler_is_a_function_of_the_step():
    a = train_sampling.step_archs(FMNIST, seed=3, step=17, num_random=4)
    b = train_sampling.step_archs(FMNIST, seed=3, step=17, num_random=4)
    assert a == b  # same step: identical on every replica, worker and restart
    assert a[0] == FMNIST.largest() and a[1] == FMNIST.smallest()
    assert len(a) == 6 and len(set(a[2:])) == 4
    c = train_sampling.step_archs(FMNIST, seed=3, step=18, num_random=4)
    assert c[:2] == a[:2] and c[2:] != a[2:]
    d = train_sampling.step_archs(FMNIST, seed=4, step=17, num_random=4)
    assert d[2:] != a[2:]
    for arch in a + c:
        FMNIST.validate(arch)


@pytest.mark.parametrize("phase", [0, 1, 2, 3])
def test_progressive_sampler_keeps_genes_not_yet_elastic_at_largest(phase):
    elastic = train_sampling.elastic_genes(phase)
    rng = np.random.default_rng(0)
    archs = [train_sampling.sample_arch(FMNIST, rng, phase) for _ in range(40)]
    largest = FMNIST.largest()
    for gene in GENES:
        values = np.stack([_flat(a, gene) for a in archs])
        if gene in elastic:
            # 40 draws of dozens of uniform genes: every choice shows up.
            assert set(np.unique(values)) == set(getattr(FMNIST, f"{gene}_choices"))
        else:
            assert np.all(values == _flat(largest, gene)), gene
    resolutions = {a.resolution for a in archs}
    assert resolutions == set(FMNIST.resolution_choices)  # elastic from phase 0
    smallest = train_sampling.smallest_arch(FMNIST, phase)
    for gene in GENES:
        want = min if gene in elastic else max
        assert np.all(_flat(smallest, gene) == want(getattr(FMNIST, f"{gene}_choices")))


def test_phase_schedule():
    starts = (0.0, 0.25, 0.5, 0.75)
    phases = [train_sampling.phase_for_epoch(e, 8, "progressive", starts) for e in range(8)]
    assert phases == [0, 0, 1, 1, 2, 2, 3, 3]
    assert train_sampling.phase_for_epoch(0, 8, "sandwich") == 3
    with pytest.raises(ValueError, match="increase"):
        train_sampling.check_phase_starts((0.0, 0.5, 0.4, 0.9))
    assert train_sampling.elastic_genes(0) == {"resolution", "kernel"}
    assert train_sampling.elastic_genes(3) == {"resolution", "kernel", "depth", "expand", "width"}


def test_stacked_arch_tensors_have_one_row_per_arch():
    archs = train_sampling.step_archs(TINY, 0, 0, 2)
    stacked = train_sampling.stack_arch_tensors(TINY, archs)
    assert stacked["resolution"].tolist() == [a.resolution for a in archs]
    assert stacked["hidden"].shape == (4, 3, 2, 2)  # (K, S, U, D) of the tiny space
    assert stacked["hidden"].dtype == np.int32


# -- loss, schedule, optimiser --------------------------------------------------------------


def test_exit_losses_match_hand_computation():
    logits = [tf.constant([[2.0, 0.0, -1.0]]), tf.constant([[0.0, 1.0, 0.0]])]
    labels = tf.constant([0])
    teacher = tf.constant([[0.5, 0.25, 0.25]])
    ce, kd = exit_losses(logits, labels, teacher, 0.3, 3)
    for s, z in enumerate(logits):
        log_p = z.numpy()[0] - np.log(np.sum(np.exp(z.numpy()[0])))
        target = np.array([0.8, 0.1, 0.1])  # 0.7 * one-hot + 0.3 / 3
        assert ce.numpy()[s, 0] == pytest.approx(-np.sum(target * log_p), rel=1e-5)
        assert kd.numpy()[s, 0] == pytest.approx(-np.sum([0.5, 0.25, 0.25] * log_p), rel=1e-5)


def test_warmup_cosine_schedule():
    lr = WarmupCosine(0.4, total_steps=110, warmup_steps=10)
    values = [float(lr(s)) for s in (0, 4, 9, 10, 60, 110, 200)]
    # Warm-up: (s + 1) / 10 of the peak; then 0.2 * (1 + cos(pi * (s - 10) / 100)).
    assert values == pytest.approx([0.04, 0.2, 0.4, 0.4, 0.2, 0.0, 0.0], abs=1e-6)
    assert float(WarmupCosine(0.1, 10, 0)(0)) == pytest.approx(0.1)


def test_weight_decay_spares_batch_norm_and_biases():
    net = e4.Supernet(TINY, num_classes=10)
    config = TrainConfig(workdir="unused", preset="tiny", weight_decay=0.1)
    schedule = warmup_cosine(config, total_steps=100, steps_per_epoch=10)
    assert (schedule.peak, schedule.total_steps, schedule.warmup_steps) == (0.1, 100, 10)
    opt = make_optimizer(config, net.trainable_variables, schedule)
    variables = net.trainable_variables
    before = [v.numpy().copy() for v in variables]
    opt.apply_gradients([(tf.zeros_like(v), v) for v in variables])
    lr = 0.1 * 1 / 10  # warm-up step 0 of 1 epoch = 10 steps, peak 0.1
    decayed = spared = 0
    for v, b in zip(variables, before, strict=True):
        if len(v.shape) <= 1:  # BN gamma/beta, biases
            np.testing.assert_array_equal(v.numpy(), b)
            spared += 1
        else:  # decoupled: w -= lr * wd * w with a zero gradient
            np.testing.assert_allclose(v.numpy(), b * (1 - lr * 0.1), rtol=1e-6)
            decayed += 1
    assert decayed > 10 and spared > 10
    assert isinstance(opt, keras.optimizers.SGD) and opt.nesterov


def test_config_validation_names_the_bad_field():
    good = TrainConfig(workdir="w", preset="tiny")
    good.validate()
    bad = {
        "epochs": 0,
        "label_smoothing": 1.0,
        "exit_weights": (1.0, 2.0),
        "strategy": "tpu",
        "schedule": "random",
        "learning_rate": 0.0,
        "warmup_epochs": 20.0,
        "random_subnets_every": 0,
    }
    for field, value in bad.items():
        config = TrainConfig(**{**good.to_dict(), field: value})
        with pytest.raises(TrainError, match=field):
            config.validate()


def test_config_from_dict_takes_the_old_name_of_a_renamed_field():
    config = TrainConfig(workdir="w", preset="tiny", num_calibration_images=77, seed=3)
    assert TrainConfig.from_dict(config.to_dict()) == config
    old = {k: v for k, v in config.to_dict().items() if k != "num_calibration_images"}
    assert TrainConfig.from_dict({**old, "calibration_images": 77}) == config


def test_format_eta():
    assert format_eta(3 * 3600 + 5 * 60 + 7.9) == "3:05:07"
    assert format_eta(-4) == "0:00:00"


# -- a short real run ----------------------------------------------------------------------


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
    # A workdir as training leaves it, without training: 1 step's worth of state.
    config = _small_config(path, epochs=1, max_train_examples=128, eval_every_epochs=0)
    train(config, log=lambda line: None)
    return config


def test_checkpoint_of_another_network_or_corrupt_ends_with_workdir_error(tmp_path):
    config = _make_checkpointed_workdir(tmp_path / "run")
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


def test_random_subnets_every_n_steps_trains_them_on_those_steps_only(tmp_path, monkeypatch):
    # 8 steps, random architectures on steps 0, 2, 4, 6: two traces (3 and 2 architectures).
    calls = []
    step_archs = train_sampling.step_archs

    def recording_step_archs(space, seed, step, num_random, phase):
        archs = step_archs(space, seed, step, num_random, phase)
        calls.append((step, len(archs)))
        return archs

    monkeypatch.setattr(train_sampling, "step_archs", recording_step_archs)
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
