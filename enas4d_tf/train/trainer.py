"""Once-for-all training of a multi-stage supernet under `tf.distribute`: the run.

`train(config)` checks the config against the data, writes `<workdir>/run_config.json`,
restores the newest checkpoint if there is one, and trains the remaining steps with one
traced `TrainStep` (see train/step.py for what a step trains). Every path it writes is a
`Workdir` path. The pieces: train/config.py (the config), train/distribution.py (the
strategy), train/sampling.py (each step's architectures), train/optimization.py (optimiser
and schedule), train/logs.py (what it reports), train/evaluate.py (epoch-end evaluation).

Example:
  >>> config = TrainConfig(workdir="/tmp/run", preset="tiny", epochs=1, max_train_examples=512)
  >>> result = train(config)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable

import keras
import tensorflow as tf

from enas4d_tf import data as data_lib
from enas4d_tf.errors import TrainError, WorkdirError
from enas4d_tf.files import write_json_atomic
from enas4d_tf.model.supernet import Supernet
from enas4d_tf.space import Arch
from enas4d_tf.train import sampling
from enas4d_tf.train.budget import TimeBudget, fit_epochs, seconds_before
from enas4d_tf.train.config import TrainConfig
from enas4d_tf.train.distribution import DatasetFn, distributed_epoch, is_chief, make_strategy
from enas4d_tf.train.evaluate import Evaluator, _evaluate
from enas4d_tf.train.guard import (
    arch_names,
    kept_checkpoint,
    nonfinite_message,
    restore_checkpoint,
    save_checkpoint,
    weights_only_step,
)
from enas4d_tf.train.logs import MetricWindow, Timing, TrainLog, progress_record, read_train_log
from enas4d_tf.train.optimization import make_optimizer, warmup_cosine
from enas4d_tf.train.plan import (
    TrainResult,
    _Plan,
    _plan,
    default_dataset_fn,
    random_subnets_at,
)
from enas4d_tf.train.resume import check_finished, check_run_config, init_source
from enas4d_tf.train.step import TrainStep
from enas4d_tf.workdir import Workdir, find_checkpoint, restore_model


def train(
    config: TrainConfig,
    strategy: tf.distribute.Strategy | None = None,
    dataset_fn: DatasetFn | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Trains (or resumes training of) a supernet as `config` says.

    Running it again with the same config resumes from the newest checkpoint in
    `<workdir>/checkpoints`; a run that has finished returns at once.

    Args:
      config: the run.
      strategy: the distribution strategy (default: `make_strategy(config.strategy)`).
      dataset_fn: training data, `fn(input_context, epoch)` -> dataset of per-pipeline
        `(images, labels)` batches, endless; default `default_dataset_fn(config)`.
      log: where progress lines go (default: print to stdout); only the chief logs.

    Returns:
      The TrainResult.

    Raises:
      TrainError: a bad config, or one that does not fit the data or the strategy.
      DataError: the dataset cannot be read.
      WorkdirError: the workdir belongs to another run, or its checkpoint does not match the
        network or is corrupt (the checkpoint is left as it is).
    """
    config.validate()
    strategy = strategy or make_strategy(config.strategy)
    chief = is_chief(strategy)
    config = fit_epochs(config, strategy, dataset_fn, log)
    plan = _plan(config, strategy)
    workdir = Workdir(os.path.abspath(config.workdir))
    run_config = plan.run_config(config)
    previous = check_run_config(workdir, run_config)
    # Non-chief workers write their (identical) checkpoints to a temporary directory: saving
    # reads replica-local variables, which is a collective every worker must join.
    write_dir = workdir if chief else Workdir(tempfile.mkdtemp(prefix="enas4d_worker_"))
    try:
        trainer_class = Trainer
        if plan.fixed is not None:
            from enas4d_tf.train.alone import AloneTrainer  # a subclass of Trainer

            trainer_class = AloneTrainer
        trainer = trainer_class(config, strategy, plan, TrainLog(workdir, chief, log), write_dir)
        return trainer.run(dataset_fn or default_dataset_fn(config), run_config, previous)
    finally:
        if not chief:
            shutil.rmtree(write_dir.root, ignore_errors=True)


class Trainer:
    """One session of a run: builds the network and its training state, resumes from the
    newest checkpoint, trains the remaining steps and reports them through a `TrainLog`.

    Building seeds Keras with `config.seed` first, so the initial weights are repeatable.

    Args:
      config: the run.
      strategy: the distribution strategy; the network and optimiser live in its scope.
      plan: the run's space, data and step counts.
      log: where the run reports (the run's workdir).
      write_dir: where checkpoints are written (the workdir, or a scratch folder on a
        non-chief worker).
    """

    def __init__(
        self,
        config: TrainConfig,
        strategy: tf.distribute.Strategy,
        plan: _Plan,
        log: TrainLog,
        write_dir: Workdir,
    ):
        self.config, self.strategy, self.plan, self.log = config, strategy, plan, log
        # Seeds weight initialisation (and Python, numpy and TF global generators) so a run is
        # repeatable; under multi_worker the chief's initial values are broadcast anyway.
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            self.net = Supernet(plan.space, num_classes=plan.info.num_classes)
            if config.zero_init_residual:
                self.net.zero_residual_gammas()
            self.schedule = warmup_cosine(config, plan.total_steps, plan.steps_per_epoch)
            self.optimizer = make_optimizer(config, self.net.trainable_variables, self.schedule)
        self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(
            model=self.net, optimizer=self.optimizer, step=self.step_var, epoch=self.epoch_var
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint,
            write_dir.checkpoints,
            max_to_keep=config.keep_checkpoints,
            step_counter=self.step_var,
        )
        self.step = 0
        self.steps_run = 0
        self.evaluations: list[dict] = []
        self.session = Timing()  # this session's timed steps
        # The window's rows: the most architectures a step trains.
        self.window = MetricWindow(2 + config.num_random_subnets, plan.space.num_stages)
        self.train_step: TrainStep | None = None

    def run(
        self, dataset_fn: DatasetFn, run_config: dict, previous: dict | None = None
    ) -> TrainResult:
        """Resumes from the newest checkpoint and trains to the end of the run.

        Args:
          dataset_fn: the training data.
          run_config: this run's `run_config.json`, written only if the run trains.
          previous: the workdir's run config (None for a fresh workdir); a finished run
            whose `epochs` differ from this config's is refused.

        Raises:
          TrainError: the loss, gradient or weights became NaN or Inf (nothing of that step
            is saved; the newest checkpoint is the last finite one).
          WorkdirError: the checkpoint cannot be resumed, or a file cannot be written.
        """
        total_steps = self.plan.total_steps
        resumed_from = self._resume()
        self.budget = TimeBudget(self.config.max_train_minutes, self._seconds_before())
        if self.step >= total_steps or self.budget.spent:
            if self.step >= total_steps:
                check_finished(previous, self.config, self.log.workdir.root)
            why = "finished" if self.step >= total_steps else "stopped by its time budget"
            self.log.line(
                f"training already {why}: step {self.step} of {total_steps} in "
                f"{self.log.workdir.root}"
            )
            return TrainResult(self.net, self.step, total_steps, 0, resumed_from, 0, None, [])
        if self.log.chief:
            write_json_atomic(self.log.workdir.run_config, run_config, error=WorkdirError)
        self.train_step = self._make_train_step()
        evaluator = self._evaluator()
        self.log.open_summaries()
        self.budget.start()
        for epoch in range(self.step // self.plan.steps_per_epoch, self.config.epochs):
            self._train_epoch(epoch, dataset_fn)
            self._end_epoch(epoch, evaluator)
            if self.budget.stopped:
                break
        self.log.flush()
        return self._finish(resumed_from)

    def _resume(self) -> int:
        """Restores the newest checkpoint of the workdir, if any; returns its step (or 0)."""
        latest, note = find_checkpoint(self.log.workdir.checkpoints)
        if note:
            self.log.line(note)
        if not latest:
            if self.config.init_from is not None:
                self._init_weights()
            return 0
        released_step = weights_only_step(latest)
        if released_step is not None:
            # A released supernet's weights: finished, or nothing to resume from.
            restore_model(self.net, latest)  # names a checkpoint of another network
            if released_step < self.plan.total_steps:
                raise WorkdirError(
                    f"checkpoint {latest} holds weights only (a released supernet, no "
                    f"optimiser state) at step {released_step} of {self.plan.total_steps}: "
                    "it cannot be resumed; train in a new workdir"
                )
            self.step = released_step
            return self.step
        restore_checkpoint(self.net, self.checkpoint, latest)
        self.step = int(self.step_var.numpy())
        # Records of steps after the checkpoint are logged again as the run redoes them.
        self.log.drop_records_after(self.step)
        if self.step and self.step < self.plan.total_steps:
            self.log.line(f"resuming from step {self.step} of {self.plan.total_steps} ({latest})")
        return self.step

    def _init_weights(self) -> None:
        """A fresh run with `init_from` starts from that run's newest weights (only the
        network's: the optimiser, step and schedule start afresh)."""
        source = init_source(self.config.init_from, self.plan.space.to_dict())
        restore_model(self.net, source["checkpoint"])
        self.log.line(f"starting from the weights of {source['checkpoint']}")

    def _init_summary(self) -> dict:
        """What train_summary.json says about the run this one started from."""
        if self.config.init_from is None:
            return {}
        try:
            source = init_source(self.config.init_from, self.plan.space.to_dict())
        except WorkdirError:  # moved or deleted since: name it, count no time
            source = {"workdir": self.config.init_from, "checkpoint": None, "train_seconds": None}
        return {"init_from": source}

    def _seconds_before(self) -> float:
        """Training seconds of the run's earlier sessions (counted only under a budget)."""
        if self.config.max_train_minutes is None or not self.step:
            return 0.0
        return seconds_before(read_train_log(self.log.workdir.root), self.step)

    def _make_train_step(self) -> TrainStep:
        return TrainStep(self.strategy, self.net, self.optimizer, self.config)

    def _evaluator(self) -> Evaluator | None:
        config = self.config
        if config.eval_every_epochs <= 0:
            return None
        calibration, _ = data_lib.load_arrays(
            config.dataset, "train", config.data_dir, max_examples=config.num_calibration_images
        )
        val_images, val_labels = data_lib.load_arrays(
            config.dataset, "validation", config.data_dir, max_examples=config.max_eval_examples
        )
        num_classes = self.plan.info.num_classes
        return Evaluator(
            self.plan.space,
            num_classes,
            calibration,
            val_images,
            val_labels,
            spread=config.eval_spread_archs,
        )

    def _train_epoch(self, epoch: int, dataset_fn: DatasetFn) -> None:
        config, steps_per_epoch = self.config, self.plan.steps_per_epoch
        phase = sampling.phase_for_epoch(epoch, config.epochs, config.schedule, config.phase_starts)
        skip = self.step - epoch * steps_per_epoch
        iterator = iter(distributed_epoch(self.strategy, dataset_fn, epoch, skip))
        epoch_end = (epoch + 1) * steps_per_epoch
        first = True  # the step that waits for the new pipeline's first batch
        while self.step < epoch_end:
            self._train_one_step(iterator, phase, first)
            first = False
            stop = self.budget.check()
            if (
                stop
                or self.step % config.log_every_steps == 0
                or self.step == self.plan.total_steps
            ):
                self._log_window(epoch, phase)
            if stop:
                break  # _end_epoch saves the checkpoint
            if self.step % config.checkpoint_every_steps == 0 and self.step < epoch_end:
                self._save()

    def _step_archs(self, step: int, phase: int) -> list[Arch]:
        """The architectures step `step` trains: the sandwich rule."""
        num_random = random_subnets_at(self.config, step)
        return sampling.step_archs(
            self.plan.space, self.config.seed, step, num_random, phase, self.config.arch_sampling
        )

    def _arch_names(self, num_archs: int) -> list[str]:
        return arch_names(num_archs)

    def _train_one_step(self, iterator, phase: int, first_of_epoch: bool = False) -> None:
        begin = time.perf_counter()
        space, step = self.plan.space, self.step
        archs = self._step_archs(step, phase)
        stacked = sampling.stack_arch_tensors(space, archs)
        batch = next(iterator)
        traces = self.train_step.traces
        if not traces:  # a newcomer watching sees why nothing happens for a while
            self.log.line(f"step {step + 1}: tracing the training step (a minute or more) ...")
        t0 = time.perf_counter()
        out = self.train_step(batch, stacked)
        seconds = time.perf_counter() - t0
        if not traces:
            self.log.line(f"step {step + 1}: traced and run in {seconds:.0f} s")
        problem = nonfinite_message(out, self._arch_names(len(archs)))
        if problem:
            raise TrainError(f"step {step + 1}: {problem}; training stopped, {self._kept()}")
        self.step += 1
        self.steps_run += 1
        self.step_var.assign(self.step)
        timed = self.train_step.traces == traces  # a step that traced is not timed
        if timed:
            self.session.add(seconds, time.perf_counter() - begin, first_of_epoch)
        self.window.add(out, len(archs), seconds if timed else None)

    def _kept(self) -> str:
        return kept_checkpoint(self.manager)

    def _save(self) -> None:
        variables = list(self.net.weights) + list(self.optimizer.variables)
        save_checkpoint(self.manager, variables, self.step)
        record = self.budget.record(self.step)  # under a budget: the time at this checkpoint
        if record is not None:
            self.log.write(record)

    def _log_window(self, epoch: int, phase: int) -> None:
        batch_size = self.config.batch_size
        learning_rate = float(self.schedule(self.step - 1))
        record = progress_record(self.window, self.step, epoch, phase, learning_rate, batch_size)
        session_rate = self.session.images_per_s(batch_size)
        self.log.progress(record, self.plan.total_steps, batch_size, session_rate)
        self.window.reset()

    def _end_epoch(self, epoch: int, evaluator: Evaluator | None) -> None:
        """Saves and evaluates at the end of an epoch, or where the time budget stopped it."""
        complete = self.step == (epoch + 1) * self.plan.steps_per_epoch
        if complete:
            self.epoch_var.assign(epoch + 1)
        self._save()
        every = self.config.eval_every_epochs
        last = epoch + 1 == self.config.epochs or self.budget.stopped
        if evaluator is not None and ((complete and (epoch + 1) % every == 0) or last):
            t0 = time.perf_counter()
            self.evaluations.append(self._evaluate_now(evaluator, epoch))
            self.session.eval_seconds.append(time.perf_counter() - t0)
        self.session.epoch_ends.append(self.budget.elapsed() - self.budget.before)

    def _evaluate_now(self, evaluator: Evaluator, epoch: int) -> dict:
        log = self.log
        space, step = self.plan.space, self.step
        return _evaluate(evaluator, self.net, space, epoch, step, log.line, log.write, log.writer)

    def _run_summary(self) -> dict:
        """What train_summary.json says about the architectures a step trained."""
        config = self.config
        return {
            "subnets_per_step": 2 + config.num_random_subnets,
            "random_subnets_every": config.random_subnets_every,
        }

    def _finish(self, resumed_from: int) -> TrainResult:
        config, step, total_steps = self.config, self.step, self.plan.total_steps
        timing = self.session
        images_per_s = config.batch_size * timing.steps / timing.seconds if timing.steps else None
        if self.log.chief:
            summary = {
                "step": step,
                "total_steps": total_steps,
                "finished": step >= total_steps,
                "images_per_s_last_session": images_per_s,
                **self._run_summary(),
                **self._init_summary(),
                **self.budget.summary(step, self.plan.steps_per_epoch),
                "evaluations": self.evaluations,
            }
            write_json_atomic(self.log.workdir.train_summary, summary, error=WorkdirError)
        why = "stopped by its time budget" if self.budget.stopped else "finished"
        self.log.line(
            f"training {why}: step {step} of {total_steps}, checkpoints in {self.log.workdir.root}"
        )
        traces = self.train_step.traces
        return TrainResult(
            self.net,
            step,
            total_steps,
            self.steps_run,
            resumed_from,
            traces,
            images_per_s,
            self.evaluations,
            timing.step_wall_seconds(),
            timing,
        )
