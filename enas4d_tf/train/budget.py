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
plans the epochs for the budget instead (`fit_epochs`): a probe trains two short epochs of
the same network and measures what a run's time is made of (`LoopCosts`): a step at the
loop's pace, the fixed seconds of an epoch's end and the next one's start (checkpoint, a new
input pipeline), one evaluation, and the setup (tracing the step and the evaluation). The
run gets the most epochs whose sum, with `MARGIN` for noise, fits the budget.

The benchmark of record (issue 16: networks trained alone, given the supernet's wall time or
that time divided by the number of networks the search chose) uses the second:
`tools.train --arch_file=F --max_train_minutes=M --fit_epochs_to_budget --epochs=<a cap>`,
so each network gets a whole warm-up + cosine schedule that ends within M minutes; the hard
stop is then only a safety net. That is the stronger baseline: a schedule cut short by the
clock leaves the network at a high learning rate.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable

from enas4d_tf.files import read_json
from enas4d_tf.train.config import TrainConfig
from enas4d_tf.workdir import Workdir

RECORD_KIND = "budget"
# Steps of each of the probe's two epochs (the first step traces and is not timed): 41 timed
# steps, so that the few steps after tracing, fed from batches prefetched meanwhile, weigh
# little (2026-12-06).
PROBE_EPOCH_STEPS = 21
# What the plan allows beyond the measured costs, for the noise between the probe and the run.
# It does not cover all of it: two probes of the same network on the same idle VM timed 0.893
# and 1.020 s a step, and a margin that wide would take 14% of every baseline's schedule
# away. Being cut instead costs little: a budget that stops a run at 95% of its cosine
# schedule leaves its learning rate at 0.6% of the peak. (A checkpoint inside an epoch costs
# at most what an epoch's end does: 0.2 and 2.1 s in two probes of the largest fashion_mnist
# network, against ~210 s of steps an epoch.)
MARGIN = 0.05


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
class LoopCosts:
    """What a run's training seconds are made of, as a probe measured them.

    Attributes:
      step_seconds: a step at the loop's pace (batch fetch to results read back), other than
        an epoch's first.
      epoch_seconds: each epoch's fixed cost beyond its steps: its checkpoint, the next
        epoch's input pipeline and the wait for its first batch.
      eval_seconds: one epoch-end evaluation.
      setup_seconds: once per session: tracing the step.
    """

    step_seconds: float
    epoch_seconds: float
    eval_seconds: float
    setup_seconds: float

    def seconds(self, epochs: int, steps_per_epoch: int, evaluations: int) -> float:
        """Planned training seconds of `epochs` epochs with `evaluations` evaluations, `MARGIN`
        included."""
        epoch = steps_per_epoch * self.step_seconds + self.epoch_seconds
        return (1 + MARGIN) * (
            self.setup_seconds + epochs * epoch + evaluations * self.eval_seconds
        )

    def line(self) -> str:
        """The costs, for a log line."""
        return (
            f"a step takes {self.step_seconds:.3f} s, an epoch's end {self.epoch_seconds:.1f} s, "
            f"an evaluation {self.eval_seconds:.1f} s and setting up {self.setup_seconds:.1f} s"
        )


def loop_costs(
    step_seconds: float,
    probe_epoch_steps: int,
    first_end: float,
    second_end: float,
    eval_seconds: float,
    first_evaluated: bool = False,
) -> LoopCosts:
    """The costs a two-epoch probe measured.

    Args:
      step_seconds: the probe's pace of a step other than an epoch's first.
      probe_epoch_steps: steps of each probe epoch.
      first_end: training seconds at the end of the first epoch.
      second_end: training seconds at the end of the second, which evaluated once.
      eval_seconds: the second epoch's evaluation (0 for a run that does not evaluate).
      first_evaluated: the first epoch evaluated too (`tools.train`'s probe). That first
        evaluation also traced the evaluation's functions, which later ones reuse: only the
        second is an evaluation's cost, and the difference is setup.

    Returns:
      The second epoch less its steps and evaluation is an epoch's fixed cost; the first less
      its steps, that fixed cost and (when it evaluated) an evaluation is the setup (neither
      below 0).
    """
    steps = probe_epoch_steps * step_seconds
    epoch = max(0.0, second_end - first_end - steps - eval_seconds)
    setup = max(0.0, first_end - steps - epoch - (eval_seconds if first_evaluated else 0.0))
    return LoopCosts(step_seconds, epoch, eval_seconds, setup)


def evaluations_in(epochs: int, every: int, last_counts: bool) -> int:
    """Epoch-end evaluations a run of `epochs` epochs pays from its budget: one every `every`
    epochs (none for `every <= 0`), and, with `last_counts`, one after the last epoch when
    that is not already one of them (`tools.train` evaluates at the end inside its budget;
    the early-exit baseline's final evaluation comes after its budget closes)."""
    if every <= 0:
        return 0
    if last_counts:
        return epochs // every + (1 if epochs % every else 0)
    return (epochs - 1) // every


def epochs_that_fit(
    max_minutes: float,
    max_epochs: int,
    steps_per_epoch: int,
    costs: LoopCosts,
    eval_every: int,
    last_counts: bool = True,
) -> int:
    """The most whole epochs (1..`max_epochs`) whose planned seconds (`LoopCosts.seconds`)
    fit in `max_minutes`."""
    room = 60.0 * max_minutes
    for epochs in range(max_epochs, 0, -1):
        evaluations = evaluations_in(epochs, eval_every, last_counts)
        if costs.seconds(epochs, steps_per_epoch, evaluations) <= room:
            return epochs
    return 1


@dataclasses.dataclass(frozen=True)
class EpochFit:
    """What `fit_epochs` measured and chose.

    Attributes:
      epochs: the epochs planned (at most the config's, at least 1).
      costs: what the probe measured.
      probe_seconds: the probe's wall time.
      steps_per_epoch: steps of an epoch of the run.
      evaluations: epoch-end evaluations the plan counts.
    """

    epochs: int
    costs: LoopCosts
    probe_seconds: float
    steps_per_epoch: int
    evaluations: int

    def line(self, max_minutes: float) -> str:
        """A log line saying what was planned and why."""
        planned = self.costs.seconds(self.epochs, self.steps_per_epoch, self.evaluations) / 60
        short = (
            "; not even one epoch fits: the budget will stop the run inside it"
            if planned > max_minutes
            else ""
        )
        return (
            f"fit_epochs_to_budget: {self.costs.line()} (a probe of 2 epochs of "
            f"{PROBE_EPOCH_STEPS} steps, {self.probe_seconds:.1f} s; {100 * MARGIN:.0f}% more "
            f"for noise): planning {self.epochs} epochs of {self.steps_per_epoch} steps and "
            f"{self.evaluations} evaluations, about {planned:.1f} of {max_minutes:g} "
            f"minutes{short}"
        )


def fit_epochs(config: TrainConfig, strategy, dataset_fn=None, log=None) -> TrainConfig:
    """`config` with `epochs` planned for its budget (`fit_epochs_to_budget`).

    A workdir whose run config was fitted before keeps its epochs (a resumed run plans
    nothing again). A fresh run first trains the same network for 2 epochs of
    `PROBE_EPOCH_STEPS` steps in a scratch folder (removed after), evaluating after each as
    the run evaluates (the first evaluation traces), and reads its `TrainResult.timing`
    (`loop_costs`). The run then
    gets the most epochs, at most `config.epochs`, whose planned seconds fit the budget
    (`epochs_that_fit`). The probe's own time is not counted in the run's budget; the log line
    states it.

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
    n = PROBE_EPOCH_STEPS
    evaluates = config.eval_every_epochs > 0
    probe = dataclasses.replace(
        config,
        workdir=os.path.join(scratch, "run"),
        epochs=2,
        steps_per_epoch=n,
        warmup_epochs=0.0,
        eval_every_epochs=1 if evaluates else 0,  # the second evaluation is the cost
        log_every_steps=n,
        checkpoint_every_steps=n,
        max_train_minutes=None,
        fit_epochs_to_budget=False,
    )
    try:
        t0 = time.monotonic()
        result = train(probe, strategy, dataset_fn, log=lambda line: None)
        probe_seconds = time.monotonic() - t0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    timing = result.timing
    # The loop's pace (batch fetch, step, results read back), not the step function's alone:
    # the latter ran 7-12% under the run's pace, enough for the budget to cut the schedule.
    step_seconds = timing.step_wall_seconds()
    if step_seconds is None:  # no timed step in the loop: the step function's rate
        step_seconds = config.batch_size / result.images_per_s
    first_end, second_end = timing.epoch_ends[:2]
    eval_seconds = timing.eval_seconds[1] if evaluates else 0.0
    costs = loop_costs(step_seconds, n, first_end, second_end, eval_seconds, evaluates)
    steps_per_epoch = _plan(config, strategy).steps_per_epoch
    every = config.eval_every_epochs
    epochs = epochs_that_fit(config.max_train_minutes, config.epochs, steps_per_epoch, costs, every)
    evaluations = evaluations_in(epochs, every, last_counts=True)
    fit = EpochFit(epochs, costs, probe_seconds, steps_per_epoch, evaluations)
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
