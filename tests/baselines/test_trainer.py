"""Training the early-exit baseline: every exit learns, resume, time budget, NaN guard."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from enas4d_tf.baselines.config import BaselineConfig, BaselineWorkdir
from enas4d_tf.baselines.model import EarlyExitNetwork
from enas4d_tf.baselines.step import TrainStep
from enas4d_tf.baselines.trainer import default_dataset_fn, train_baseline
from enas4d_tf.data import load_arrays
from enas4d_tf.errors import TrainError, WorkdirError
from enas4d_tf.train.budget import LoopCosts
from enas4d_tf.train.optimization import make_optimizer, warmup_cosine

# 256 training images in batches of 32: 8 steps an epoch, 16 in all; quick to trace and run.
SMALL = dict(
    preset="tiny",
    epochs=2,
    batch_size=32,
    max_train_examples=256,
    max_eval_examples=100,
    learning_rate=0.05,
    warmup_epochs=0.5,
    checkpoint_every_steps=3,
    log_every_steps=4,
    eval_every_epochs=0,
)


def _quiet(line):
    del line


def test_every_exit_learns_a_fixed_batch():
    config = BaselineConfig(workdir="unused", preset="tiny", learning_rate=0.05, warmup_epochs=0.0)
    spec = config.backbone(10)
    tf.keras.utils.set_random_seed(0)
    model = EarlyExitNetwork(spec).model()
    optimizer = make_optimizer(config, model.trainable_variables, warmup_cosine(config, 1000, 10))
    step = TrainStep(model, optimizer, config, spec)
    images, labels = load_arrays("fashion_mnist", "train", max_examples=32)
    losses = [step(tf.constant(images), tf.constant(labels))["loss"] / 32 for _ in range(30)]
    first, last = losses[0], np.mean(losses[-3:], axis=0)
    assert losses[0].shape == (2,)
    # Both exits fit the batch: each loss falls from ~2.3 by more than 15% (measured: exit 1
    # to 1.76, exit 2 to 1.19); an exit left out of the loss would stay near 2.3.
    assert np.all(last < 0.85 * first), (first, last)


def _weights(network):
    return [np.asarray(w) for w in network.model().weights]


# Slow (three trainings: a reference, a budget-stopped one and a killed one).
@pytest.mark.slow
def test_a_stopped_and_a_killed_run_resume_to_the_same_weights(tmp_path):
    reference = train_baseline(BaselineConfig(workdir=str(tmp_path / "a"), **SMALL), log=_quiet)
    config = BaselineConfig(workdir=str(tmp_path / "b"), **SMALL)
    paths = BaselineWorkdir(config.workdir)
    # Session 1: a time budget of 0.001 minutes (60 ms) is spent during the first step, which
    # traces: it stops there and checkpoints step 1.
    budget = dataclasses.replace(config, max_train_minutes=0.001)
    stopped = train_baseline(budget, log=_quiet)
    assert stopped.step == 1 and stopped.stopped_by_budget and not stopped.finished
    summary = json.load(open(paths.train_summary))
    assert summary["stopped_by_budget"] and summary["train_seconds"] >= 0.06
    assert train_baseline(budget, log=_quiet).steps_run == 0  # the budget stays spent
    # Session 2 (no budget: a session field): its data ends after 6 more steps, as if it were
    # killed at step 8; its newest checkpoint is step 6 (every 3 steps).
    full = default_dataset_fn(config)
    with pytest.raises(StopIteration):
        train_baseline(config, dataset_fn=lambda epoch: full(epoch).take(6), log=_quiet)
    assert tf.train.latest_checkpoint(paths.checkpoints).endswith("-6")
    resumed = train_baseline(config, log=_quiet)
    assert resumed.resumed_from == 6 and resumed.steps_run == 10 and resumed.finished
    for a, b in zip(_weights(reference.network), _weights(resumed.network), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # A resumed run logs each step once; the summary says where it stopped.
    records = [json.loads(line) for line in open(paths.train_log)]
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 16
    summary = json.load(open(paths.train_summary))
    assert summary["finished"] and summary["epochs_completed"] == 2.0
    assert len(summary["evaluations"][-1]["exit_accuracy"]) == 2
    assert summary["evaluations"][-1]["seconds"] > 0  # what the claim's probe plans on
    again = train_baseline(config, log=_quiet)
    assert again.steps_run == 0 and again.step == 16
    saved = open(paths.config).read()
    with pytest.raises(WorkdirError, match="learning_rate: 0.05 -> 0.1"):
        train_baseline(dataclasses.replace(config, learning_rate=0.1), log=_quiet)
    assert open(paths.config).read() == saved


def test_divergence_stops_with_one_line_and_keeps_a_finite_checkpoint(tmp_path):
    config = BaselineConfig(
        workdir=str(tmp_path), **{**SMALL, "learning_rate": 1e6, "checkpoint_every_steps": 1}
    )
    with pytest.raises(TrainError, match="diverged at step|non-finite") as caught:
        train_baseline(config, log=_quiet)
    assert "\n" not in str(caught.value)
    newest = tf.train.latest_checkpoint(os.path.join(tmp_path, "checkpoints"))
    assert newest is not None
    reader = tf.train.load_checkpoint(newest)
    for name, dtype in reader.get_variable_to_dtype_map().items():
        if dtype.is_floating:
            assert np.all(np.isfinite(reader.get_tensor(name))), name


def test_the_claims_timing_probe_reads_a_real_two_epoch_run(tmp_path):
    from bench import claim_choices as ch

    n = ch.PROBE_EPOCH_STEPS
    # The probe's flags (bench/claim_stages._probe): 2 epochs of n steps, every step logged,
    # an evaluation after the first epoch.
    probe = dict(SMALL, epochs=2, log_every_steps=1, checkpoint_every_steps=n, eval_every_epochs=1)
    probe.update(max_train_examples=32 * n, warmup_epochs=0.0)
    config = BaselineConfig(workdir=str(tmp_path / "probe"), **probe)
    train_baseline(config, log=_quiet)
    paths = BaselineWorkdir(config.workdir)
    records = [json.loads(line) for line in open(paths.train_log)]
    summary = json.load(open(paths.train_summary))
    timing = ch.probe_timing(records, summary, batch_size=32)
    (inside,) = [r for r in records if r["kind"] == "eval" and r["step"] == n]
    assert timing["eval_seconds"] == inside["seconds"] > 0
    assert timing["step_seconds"] > 0 and timing["setup_seconds"] > 0
    # The costs add up to the probe's training seconds at its last step (none clamped at 0),
    # and, planned on them, its 2 epochs (one evaluation inside the budget, the final one
    # after it) fit in those seconds with the margin; counting the final evaluation too,
    # they would not.
    end = {r["step"]: r for r in records if r["kind"] == "train"}[2 * n]["train_seconds"]
    costs = LoopCosts(
        **{k: timing[k] for k in ("step_seconds", "epoch_seconds", "eval_seconds", "setup_seconds")}
    )
    assert costs.seconds(2, n, 1) == pytest.approx(1.05 * end)
    assert ch.baseline_epochs(timing, 1.05 * end / 60 + 1e-6, 5, n, eval_every=1) == 2
    assert costs.seconds(2, n, 2) > 1.05 * end + 1e-6
