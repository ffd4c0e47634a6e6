"""Training the early-exit baseline from scratch with the project's recipe.

`train_baseline(config)` trains (or resumes) one `EarlyExitNetwork` in a custom loop on one
device, with what the supernet's training uses: the same data pipeline and augmentation
(`enas4d_tf.data.make_dataset`, seeded per epoch as `tools.train` seeds it), the same
optimiser and learning-rate schedule (`enas4d_tf.train.optimization`), label-smoothed
cross-entropy on every exit (`enas4d_tf.train.step.exit_losses`) weighted by the exit
weights. There is no distillation.

A run is resumable: checkpoints hold the model, the optimiser, the step and the training
seconds so far. `max_train_minutes` bounds the wall time of all sessions together (tracing,
data, checkpoints and evaluations included): the run stops at the end of the step that
crosses it, saves a checkpoint and records how far it got. A non-finite loss or gradient
stops the run with one line; a non-finite checkpoint is never written and never resumed.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from enas4d_tf import data as data_lib
from enas4d_tf.baselines.config import BaselineConfig, BaselineWorkdir
from enas4d_tf.baselines.front import exit_accuracies
from enas4d_tf.baselines.model import EarlyExitNetwork
from enas4d_tf.baselines.plan import (
    DatasetFn,
    Plan,
    append_log,
    check_workdir_config,
    default_dataset_fn,
    make_plan,
    truncate_log,
)
from enas4d_tf.baselines.step import TrainStep, all_finite, divergence_message
from enas4d_tf.errors import TrainError, WorkdirError
from enas4d_tf.files import write_json_atomic
from enas4d_tf.train.optimization import make_optimizer, warmup_cosine

Log = Callable[[str], None]


@dataclasses.dataclass
class BaselineResult:
    """What `train_baseline` returns.

    Attributes:
      network: the trained network (its `model()` holds the weights).
      step, total_steps: the step reached and the run's planned steps.
      steps_run: steps this call ran.
      resumed_from: the step restored from a checkpoint (0 for a fresh run).
      train_seconds: training wall time of all sessions so far.
      finished: every planned step ran.
      stopped_by_budget: the run stopped at `max_train_minutes` before the planned steps.
      evaluations: per-exit validation records of this call.
    """

    network: EarlyExitNetwork
    step: int
    total_steps: int
    steps_run: int
    resumed_from: int
    train_seconds: float
    finished: bool
    stopped_by_budget: bool
    evaluations: list


def newest_checkpoint(folder: str) -> str | None:
    """The newest checkpoint of `folder` whose files exist (the `checkpoint` pointer may
    name one that was deleted); None when there is none."""
    pointed = tf.train.latest_checkpoint(folder)
    if pointed and os.path.exists(pointed + ".index"):
        return pointed
    found = []
    for index in glob.glob(os.path.join(folder, "ckpt-*.index")):
        match = re.search(r"ckpt-(\d+)\.index$", index)
        if match:
            found.append((int(match.group(1)), index[: -len(".index")]))
    return max(found)[1] if found else None


class Session:
    """One session of a run; see the module docstring.

    Args:
      config: the run.
      plan: its backbone, data and steps (`trainer.make_plan`).
      workdir: its files.
      log: where progress lines go.
    """

    def __init__(self, config: BaselineConfig, plan: Plan, workdir: BaselineWorkdir, log: Log):
        self.config, self.plan, self.workdir, self.log = config, plan, workdir, log
        keras.utils.set_random_seed(config.seed)  # repeatable initial weights
        self.network = EarlyExitNetwork(plan.spec)
        self.model = self.network.model()
        if config.zero_init_residual:
            self.network.zero_residual_gammas()
        self.schedule = warmup_cosine(config, plan.total_steps, plan.steps_per_epoch)
        # make_optimizer reads the recipe fields BaselineConfig shares with TrainConfig.
        self.optimizer = make_optimizer(config, self.model.trainable_variables, self.schedule)
        self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.seconds_var = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="seconds")
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step_var, seconds=self.seconds_var
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint,
            workdir.checkpoints,
            config.keep_checkpoints,
            step_counter=self.step_var,
        )
        self.step = 0
        self.steps_run = 0
        self.evaluations: list[dict] = []
        self._base_seconds = 0.0
        self._started = time.perf_counter()
        self._window = self._empty_window()
        self._saved_step = 0

    # -- time ---------------------------------------------------------------------------------
    def seconds(self) -> float:
        """Training wall time of all sessions, this one so far included."""
        return self._base_seconds + time.perf_counter() - self._started

    def _budget_spent(self) -> bool:
        minutes = self.config.max_train_minutes
        return minutes is not None and self.seconds() >= 60.0 * minutes

    # -- checkpoints --------------------------------------------------------------------------
    def _resume(self) -> int:
        path = newest_checkpoint(self.workdir.checkpoints)
        if path is None:
            return 0
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError, IndexError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise WorkdirError(
                f"checkpoint {path} is corrupt or cannot be resumed: {first}"
            ) from None
        if not all_finite(self.model.weights):
            raise WorkdirError(
                f"checkpoint {path} holds non-finite weights; it cannot be resumed (move it "
                "away to resume from an older one)"
            )
        self.step = self._saved_step = int(self.step_var.numpy())
        self._base_seconds = float(self.seconds_var.numpy())
        return self.step

    def _save(self) -> None:
        if self.step == self._saved_step:
            return
        if not all_finite(self.model.weights):
            raise TrainError(
                f"the weights became non-finite by step {self.step}; the newest checkpoint "
                f"(step {self._saved_step}) is kept"
            )
        self.step_var.assign(self.step)
        self.seconds_var.assign(self.seconds())
        try:
            self.manager.save(checkpoint_number=self.step)
        except (OSError, tf.errors.OpError) as e:
            raise WorkdirError(
                f"cannot write a checkpoint to {self.workdir.checkpoints}: {e}; the newest "
                f"checkpoint (step {self._saved_step}) is kept"
            ) from None
        self._saved_step = self.step

    # -- the run ------------------------------------------------------------------------------
    def run(self, dataset_fn: DatasetFn) -> BaselineResult:
        """Resumes and trains to the end of the run or of its time budget."""
        resumed_from = self._resume()
        total = self.plan.total_steps
        if self.step >= total or self._budget_spent():
            self.log(
                f"training already finished: step {self.step} of {total} in "
                f"{self.workdir.root} ({self._base_seconds / 60:.1f} training minutes)"
            )
            return self._result(resumed_from)
        if resumed_from:
            truncate_log(self.workdir.train_log, self.step)
            self.log(f"resuming from step {self.step} of {total}")
        self._started = time.perf_counter()
        step_fn = TrainStep(self.model, self.optimizer, self.config, self.plan.spec)
        val = self._validation_data()
        spe = self.plan.steps_per_epoch
        for epoch in range(self.step // spe, self.config.epochs):
            if not self._train_epoch(epoch, dataset_fn, step_fn):
                break
            every = self.config.eval_every_epochs
            if every and (epoch + 1) % every == 0 and self.step < total:
                self._evaluate(val)
        self._save()
        self._evaluate(val)
        self._write_summary()
        return self._result(resumed_from)

    def _train_epoch(self, epoch: int, dataset_fn: DatasetFn, step_fn: TrainStep) -> bool:
        """Trains the rest of epoch `epoch`; False when the time budget stopped it."""
        spe, config = self.plan.steps_per_epoch, self.config
        skip = self.step - epoch * spe
        iterator = iter(dataset_fn(epoch).skip(skip) if skip else dataset_fn(epoch))
        while self.step < (epoch + 1) * spe:
            # Timed from the batch fetch: the loop's pace, which the claim's probe plans on.
            t0 = time.perf_counter()
            images, labels = next(iterator)
            out = step_fn(images, labels)
            message = divergence_message(
                self.step + 1, out, f"the newest checkpoint is step {self._saved_step}"
            )
            if message:
                raise TrainError(message)
            self.step += 1
            self.steps_run += 1
            self._add_to_window(out, time.perf_counter() - t0)
            if self.step % config.log_every_steps == 0:
                self._log_window(epoch)
            if self._budget_spent():
                self._log_window(epoch)
                self.log(
                    f"time budget of {config.max_train_minutes} minutes spent at step {self.step}"
                )
                return False
            if self.step % config.checkpoint_every_steps == 0:
                self._save()
        self._save()  # at every epoch end
        return True

    # -- reporting ----------------------------------------------------------------------------
    def _empty_window(self) -> dict:
        exits = self.plan.spec.num_exits
        return {
            "loss": np.zeros(exits),
            "correct": np.zeros(exits),
            "count": 0.0,
            "steps": 0,
            "seconds": 0.0,
        }

    def _add_to_window(self, out: dict, seconds: float) -> None:
        w = self._window
        w["loss"] += out["loss"]
        w["correct"] += out["correct"]
        w["count"] += float(out["count"])
        w["steps"] += 1
        w["seconds"] += seconds

    def _log_window(self, epoch: int) -> None:
        w = self._window
        if not w["steps"]:
            return
        count = max(w["count"], 1.0)
        record = {
            "kind": "train",
            "step": self.step,
            "epoch": epoch,
            "learning_rate": float(self.schedule(self.step - 1)),
            "loss": [float(v) for v in w["loss"] / count],
            "train_accuracy": [float(v) for v in w["correct"] / count],
            "images_per_s": w["count"] / w["seconds"] if w["seconds"] > 0 else None,
            "train_seconds": round(self.seconds(), 3),
        }
        append_log(self.workdir.train_log, record)
        losses = " ".join(f"{v:.3f}" for v in record["loss"])
        self.log(
            f"step {self.step}/{self.plan.total_steps} epoch {epoch + 1} "
            f"lr {record['learning_rate']:.4g} exit losses {losses}"
        )
        self._window = self._empty_window()

    def _validation_data(self):
        return data_lib.load_arrays(
            self.config.dataset,
            "validation",
            self.config.data_dir,
            max_examples=self.config.max_eval_examples,
        )

    def _evaluate(self, val) -> None:
        if self.evaluations and self.evaluations[-1]["step"] == self.step:
            return
        images, labels = val
        t0 = time.perf_counter()
        accuracy = exit_accuracies(self.model, images, labels)
        record = {
            "kind": "eval",
            "step": self.step,
            "epoch": self.step / self.plan.steps_per_epoch,
            "split": "validation",
            "num_images": int(len(labels)),
            "exit_accuracy": accuracy,
            "seconds": round(time.perf_counter() - t0, 3),  # what a budget plans on
        }
        append_log(self.workdir.train_log, record)
        self.evaluations.append(record)
        shown = " ".join(f"{100 * a:.2f}%" for a in accuracy)
        self.log(f"validation accuracy per exit at step {self.step}: {shown}")

    def _write_summary(self) -> None:
        spe = self.plan.steps_per_epoch
        seconds = float(self.seconds_var.numpy())
        summary = {
            "step": self.step,
            "total_steps": self.plan.total_steps,
            "finished": self.step >= self.plan.total_steps,
            "stopped_by_budget": self.step < self.plan.total_steps,
            "epochs_completed": self.step / spe,
            "planned_epochs": self.config.epochs,
            "train_seconds": round(seconds, 1),
            "max_train_minutes": self.config.max_train_minutes,
            "evaluations": self.evaluations,
        }
        write_json_atomic(self.workdir.train_summary, summary, error=WorkdirError)
        self.log(
            f"training {'finished' if summary['finished'] else 'stopped by its time budget'}: "
            f"step {self.step} of {self.plan.total_steps} ({summary['epochs_completed']:.2f} "
            f"epochs, {seconds / 60:.1f} minutes), checkpoints in {self.workdir.checkpoints}"
        )

    def _result(self, resumed_from: int) -> BaselineResult:
        return BaselineResult(
            network=self.network,
            step=self.step,
            total_steps=self.plan.total_steps,
            steps_run=self.steps_run,
            resumed_from=resumed_from,
            train_seconds=float(self.seconds_var.numpy()),
            finished=self.step >= self.plan.total_steps,
            stopped_by_budget=self.step < self.plan.total_steps,
            evaluations=self.evaluations,
        )


def train_baseline(
    config: BaselineConfig, dataset_fn: DatasetFn | None = None, log: Log | None = None
) -> BaselineResult:
    """Trains (or resumes) the early-exit baseline `config` describes.

    Running it again with the same config resumes from the newest checkpoint; a run that has
    finished (or spent its `max_train_minutes`) returns at once with its network restored.

    Args:
      config: the run.
      dataset_fn: training data, `fn(epoch)` -> endless `(images, labels)` batches; default
        `default_dataset_fn(config)`.
      log: where progress lines go (default: print).

    Returns:
      The BaselineResult.

    Raises:
      TrainError: a bad config, or a loss or gradient that is not finite (the newest
        checkpoint is kept).
      SpaceError: a backbone value out of range.
      DataError: the dataset cannot be read.
      WorkdirError: the workdir holds another run or a corrupt or non-finite checkpoint.
    """
    plan = make_plan(config)
    workdir = BaselineWorkdir(os.path.abspath(config.workdir))
    record = plan.record(config)
    if not check_workdir_config(workdir, config, record):
        write_json_atomic(workdir.config, record, error=WorkdirError)
    session = Session(config, plan, workdir, log or print)
    return session.run(dataset_fn or default_dataset_fn(config))
