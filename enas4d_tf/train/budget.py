"""A training run's time budget (`TrainConfig.max_train_minutes`), and epochs fitted to it.

The budget counts the run's wall time: from the start of each session's training loop
(tracing, steps, input pipeline, checkpoints and evaluations between epochs) to its end,
over every session of the run, as the early-exit baseline counts it
(`enas4d_tf.baselines`). The run stops at the end of the step
during which the count reaches the budget, saves a checkpoint, and records how far it got in
`train_summary.json` (`budget_summary`).

A resumed session learns the time of the earlier ones from `train_log.jsonl`: each checkpoint
of a budgeted run is followed by a record `{"kind": "budget", "step": n, "train_seconds": t}`
(`TimeBudget.record`), and the record of the step a session resumes from says where the
count stands (`seconds_before`).

The learning-rate schedule is planned for `TrainConfig.epochs`, so a run the budget stops
ends before its schedule does (its learning rate never decays to 0). `fit_epochs_to_budget`
plans the epochs for the budget instead: it times `PROBE_STEPS` steps first, at the loop's
pace, and allows `LOOP_OVERHEAD` more for epoch ends and evaluations (`fit_epochs`).

The benchmark of record (issue 16: networks trained alone, given the supernet's wall time or
that time divided by the number of networks the search chose) uses the second:
`tools.train --arch_file=F --max_train_minutes=M --fit_epochs_to_budget --epochs=<a cap>`,
so each network gets a whole warm-up + cosine schedule that ends within M minutes; the hard
stop is then only a safety net. That is the stronger baseline: a schedule cut short by the
clock leaves the network at a high learning rate.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable

from enas4d_tf.files import read_json
from enas4d_tf.train.config import TrainConfig
from enas4d_tf.workdir import Workdir

RECORD_KIND = "budget"
# Steps the epoch fit times after the first (which traces and is not timed): 40, so that the
# few steps after tracing, fed from batches prefetched meanwhile, weigh little (2026-12-06).
PROBE_STEPS = 40
# What a run spends beyond its steps at the probe's loop pace, as a share of them: the loop's
# logs and checkpoints, the epoch ends (a new epoch's input pipeline, a checkpoint) and the
# evaluations every few epochs. Measured 2026-12-06/07 for the largest fashion_mnist network
# alone (214-step epochs, an evaluation every 3), probe 1.020 s a step: its first five epochs
# took 226-263 s (mean 254 s) against 218 s of steps, +16%; the extra came in bursts of
# 30-60 s at some epoch ends. Planned on the steps alone, the clock cut the schedule at ~91%.
# A share is a stopgap: the per-epoch cost is closer to fixed seconds, which weigh more for a
# smaller network.
LOOP_OVERHEAD = 0.20


def seconds_before(records: Iterable[dict], step: int) -> float:
    """The training seconds a run had spent when it saved its checkpoint of `step`.

    Args:
      records: the run's `train_log.jsonl` records.
      step: the step the session resumes from (0: a fresh run).

    Returns:
      `train_seconds` of the newest budget record at a step `<= step` (a checkpoint older than
      the newest, after a fallback, has its own record); 0.0 when there is none.
    """
    best_step, seconds = -1, 0.0
    for r in records:
        if r.get("kind") == RECORD_KIND and best_step <= r.get("step", -1) <= step:
            best_step, seconds = r["step"], float(r["train_seconds"])
    return seconds


class TimeBudget:
    """The training time of a run, against its limit.

    Args:
      max_minutes: the limit; None counts the time but never stops the run.
      seconds_before: training seconds of the run's earlier sessions.
      clock: seconds from an arbitrary origin (tests pass a fake one).
    """

    def __init__(
        self,
        max_minutes: float | None,
        seconds_before: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_minutes = max_minutes
        self.limit = None if max_minutes is None else 60.0 * float(max_minutes)
        self.before = float(seconds_before)
        self._clock = clock
        self._start: float | None = None
        self.stopped = False  # set by `check` once the limit is reached

    @property
    def spent(self) -> bool:
        """Whether the run had reached its limit before this session trained."""
        return self.limit is not None and self.before >= self.limit

    def start(self) -> None:
        """Starts counting this session's training time."""
        self._start = self._clock()

    def elapsed(self) -> float:
        """Training seconds of the run so far, every session's."""
        if self._start is None:
            return self.before
        return self.before + self._clock() - self._start

    def check(self) -> bool:
        """After a step: whether the limit is reached (then `stopped` stays True)."""
        if self.limit is not None and not self.stopped:
            self.stopped = self.elapsed() >= self.limit
        return self.stopped

    def record(self, step: int) -> dict | None:
        """The log record that follows the checkpoint of `step`; None without a limit (a run
        without a budget logs no budget records)."""
        if self.limit is None:
            return None
        return {"kind": RECORD_KIND, "step": step, "train_seconds": round(self.elapsed(), 3)}

    def summary(self, step: int, steps_per_epoch: int) -> dict:
        """The `train_summary.json` fields: the limit, training seconds, epochs done (a
        fraction when the budget stopped the run inside an epoch) and whether it stopped."""
        return {
            "max_train_minutes": self.max_minutes,
            "train_seconds": round(self.elapsed(), 3),
            "epochs_done": round(step / steps_per_epoch, 4),
            "stopped_by_budget": bool(self.stopped or self.spent),
        }


@dataclasses.dataclass(frozen=True)
class EpochFit:
    """What `fit_epochs` measured and chose.

    Attributes:
      epochs: the epochs planned (at most the config's, at least 1).
      step_seconds: seconds of a timed step.
      setup_seconds: the probe's seconds besides its timed steps (building, tracing, saving):
        what the run pays again before its first step.
      probe_seconds: the probe's wall time.
      steps_per_epoch: steps of an epoch of the run.
    """

    epochs: int
    step_seconds: float
    setup_seconds: float
    probe_seconds: float
    steps_per_epoch: int

    def line(self, max_minutes: float) -> str:
        """A log line saying what was planned and why."""
        steps = self.epochs * self.steps_per_epoch * self.step_seconds * (1 + LOOP_OVERHEAD)
        planned = (self.setup_seconds + steps) / 60
        short = (
            "; not even one epoch fits: the budget will stop the run inside it"
            if planned > max_minutes
            else ""
        )
        return (
            f"fit_epochs_to_budget: a step takes {self.step_seconds:.3f} s and setting up "
            f"{self.setup_seconds:.1f} s (timed on {PROBE_STEPS} steps in "
            f"{self.probe_seconds:.1f} s; {100 * LOOP_OVERHEAD:.0f}% more for epoch ends and "
            f"evaluations): planning {self.epochs} epochs of "
            f"{self.steps_per_epoch} steps, about {planned:.1f} of {max_minutes:g} minutes{short}"
        )


def epochs_that_fit(
    max_minutes: float, max_epochs: int, steps_per_epoch: int, step_seconds: float, setup: float
) -> int:
    """The most whole epochs (1..`max_epochs`) whose steps and setup fit in `max_minutes`."""
    room = 60.0 * max_minutes - setup
    epochs = math.floor(room / (steps_per_epoch * step_seconds)) if step_seconds > 0 else max_epochs
    return max(1, min(max_epochs, epochs))


def fit_epochs(config: TrainConfig, strategy, dataset_fn=None, log=None) -> TrainConfig:
    """`config` with `epochs` planned for its budget (`fit_epochs_to_budget`).

    A workdir whose run config was fitted before keeps its epochs (a resumed run plans
    nothing again). A fresh run first trains `1 + PROBE_STEPS` steps of the same network in a
    scratch folder (removed after) and times them in the loop (`TrainResult.step_wall_seconds`);
    the run then gets the most epochs, at most `config.epochs`, whose steps (plus
    `LOOP_OVERHEAD` for epoch ends and evaluations) and the setup the probe paid fit in the
    budget. The probe's own time is not counted in the run's budget; the log line states it.

    Args:
      config: the run (returned unchanged without `fit_epochs_to_budget`).
      strategy: the run's distribution strategy.
      dataset_fn: the run's training data (as `train` takes it).
      log: where the line saying what was planned goes (default: print).

    Returns:
      The config to train with.
    """
    if not config.fit_epochs_to_budget:
        return config
    previous = _previous_train_fields(config)
    if previous is not None:
        # A resumed run keeps what it planned; a workdir that was not fitted is left to the
        # trainer's check of its run config, which names the difference.
        if previous.get("fit_epochs_to_budget") and isinstance(previous.get("epochs"), int):
            return dataclasses.replace(config, epochs=previous["epochs"])
        return config
    # The trainer imports this module; `_plan` works out the run's steps as the run will.
    from enas4d_tf.train.plan import _plan
    from enas4d_tf.train.trainer import train

    scratch = tempfile.mkdtemp(prefix="enas4d_budget_probe_")
    probe = dataclasses.replace(
        config,
        workdir=os.path.join(scratch, "run"),
        epochs=1,
        steps_per_epoch=1 + PROBE_STEPS,
        warmup_epochs=0.0,
        eval_every_epochs=0,
        log_every_steps=1 + PROBE_STEPS,
        checkpoint_every_steps=1 + PROBE_STEPS,
        max_train_minutes=None,
        fit_epochs_to_budget=False,
    )
    try:
        t0 = time.monotonic()
        result = train(probe, strategy, dataset_fn, log=lambda line: None)
        probe_seconds = time.monotonic() - t0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # The loop's pace (batch fetch, step, results read back), not the step function's alone:
    # the latter ran 7-12% under the run's pace, enough for the budget to cut the schedule.
    step_seconds = result.step_wall_seconds
    if step_seconds is None:  # no timed step in the loop: the step function's rate
        step_seconds = config.batch_size / result.images_per_s
    setup = probe_seconds - PROBE_STEPS * step_seconds
    steps_per_epoch = _plan(config, strategy).steps_per_epoch
    epochs = epochs_that_fit(
        config.max_train_minutes,
        config.epochs,
        steps_per_epoch,
        step_seconds * (1 + LOOP_OVERHEAD),
        setup,
    )
    fit = EpochFit(epochs, step_seconds, setup, probe_seconds, steps_per_epoch)
    (log or print)(fit.line(config.max_train_minutes))
    return dataclasses.replace(config, epochs=epochs)


def _previous_train_fields(config: TrainConfig) -> dict | None:
    """The `train` fields of the workdir's run config, or None for a fresh workdir."""
    path = Workdir(config.workdir).run_config
    if not os.path.exists(path):
        return None
    from enas4d_tf.errors import WorkdirError

    previous = read_json(path, WorkdirError, "run config")
    train_fields = previous.get("train") if isinstance(previous, dict) else None
    return train_fields if isinstance(train_fields, dict) else {}
