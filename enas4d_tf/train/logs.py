"""What a training run reports while it runs: console lines, `train_log.jsonl` records and
TensorBoard scalars, and the window of step metrics they summarise.

Exits are numbered from 1 in every summary name (`train/largest/exit1/loss`); the per-exit
lists of a `train_log.jsonl` record hold exit 1 first.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from enas4d_tf.errors import WorkdirError
from enas4d_tf.files import write_bytes_atomic
from enas4d_tf.workdir import Workdir

# TensorBoard's scalar plugin metadata (what `tf.summary.scalar` writes), built from TF's own
# protos so that writing summaries does not need the `tensorboard` package installed.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
).SerializeToString()


def summary_scalar(name: str, value: float, step: int | None = None) -> None:
    """Writes a scalar summary to the default writer, readable by TensorBoard's scalars tab.

    Args:
      name: the tag.
      value: the number.
      step: the step (default: the writer's default step).
    """
    tf.summary.write(
        name, tf.constant(float(value), tf.float32), step=step, metadata=_SCALAR_METADATA
    )


def read_train_log(workdir: str) -> list[dict]:
    """The records of `<workdir>/train_log.jsonl` (empty when there is none).

    A line cut short by a killed process is skipped.
    """
    path = Workdir(workdir).train_log
    records = []
    if not os.path.exists(path):
        return records
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def op_error_reason(error: tf.errors.OpError) -> str:
    """The reason of a TensorFlow op error without the op's decoration."""
    text = re.sub(r"\{\{[^}]*\}\}|\[Op:[^\]]*\]( name:\S*)?", "", error.message)
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__


def _record_step(line: bytes) -> float:
    """The step of a `train_log.jsonl` line; infinity for a line that is not a whole record
    (a line cut short by a killed process), so that it is dropped."""
    try:
        record = json.loads(line)
        return float(record["step"]) if line.endswith(b"\n") else math.inf
    except (ValueError, KeyError, TypeError):
        return math.inf


def format_eta(seconds: float) -> str:
    """`seconds` as `h:mm:ss` (negative counts as 0)."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclasses.dataclass
class Timing:
    """Timed steps and their seconds (a step that traced is not timed): of the step function
    alone (`seconds`), and of the whole step in the loop (`wall_seconds`: choosing its
    architectures, fetching the batch, the step, reading its results back).

    Also what `enas4d_tf.train.budget` plans a run's epochs on: the steps after the first of
    each epoch (`steady_steps`, `steady_wall_seconds`: the first waits for the epoch's new
    input pipeline), the session's training seconds at each epoch end, after its checkpoint
    and evaluation (`epoch_ends`), and the seconds of each epoch-end evaluation
    (`eval_seconds`)."""

    steps: int = 0
    seconds: float = 0.0
    wall_seconds: float = 0.0
    steady_steps: int = 0
    steady_wall_seconds: float = 0.0
    epoch_ends: list = dataclasses.field(default_factory=list)
    eval_seconds: list = dataclasses.field(default_factory=list)

    def add(
        self, seconds: float, wall_seconds: float | None = None, first_of_epoch: bool = False
    ) -> None:
        """Counts one timed step of `seconds` (`wall_seconds`: default the same);
        `first_of_epoch`: the step fetched the first batch of an epoch's pipeline."""
        wall = seconds if wall_seconds is None else wall_seconds
        self.steps += 1
        self.seconds += seconds
        self.wall_seconds += wall
        if not first_of_epoch:
            self.steady_steps += 1
            self.steady_wall_seconds += wall

    def step_wall_seconds(self) -> float | None:
        """Mean wall seconds of a timed step other than an epoch's first (of any timed step
        when there is no other); None when no step was timed."""
        if self.steady_steps:
            return self.steady_wall_seconds / self.steady_steps
        return self.wall_seconds / self.steps if self.steps else None

    def images_per_s(self, batch_size: int) -> float:
        """Images per second over the timed steps; NaN when there is none."""
        return batch_size * self.steps / self.seconds if self.steps else float("nan")


class MetricWindow:
    """The sums of the training step's outputs since the last progress line.

    Args:
      max_archs: the most architectures a step trains (rows of the sums).
      num_stages: exits of the network (columns).
    """

    def __init__(self, max_archs: int, num_stages: int):
        self._shape = (max_archs, num_stages)
        self.reset()

    def reset(self) -> None:
        """Empties the window."""
        K, S = self._shape
        self.sums = {
            "objective": np.zeros(K),
            "loss": np.zeros((K, S)),
            "correct": np.zeros((K, S)),
        }
        self.count = 0.0  # examples
        self.student_count = 0.0  # examples the students saw (all but the largest network)
        self.records = 0  # steps added
        self.archs = 0  # architectures trained, over all steps added
        self.timing = Timing()

    def add(self, out: dict[str, np.ndarray], num_archs: int, seconds: float | None) -> None:
        """Adds one step's outputs (see `TrainStep`); `seconds` None: the step is not timed."""
        if seconds is not None:
            self.timing.add(seconds)
        for k, total in self.sums.items():
            # A step without the random architectures fills only the first rows.
            total[: len(out[k])] += out[k]
        self.count += float(out["count"])
        self.student_count += float(out.get("student_count", out["count"]))
        self.records += 1
        self.archs += num_archs


def progress_record(
    window: MetricWindow, step: int, epoch: int, phase: int, learning_rate: float, batch_size: int
) -> dict:
    """The `train_log.jsonl` record of a window: means per example, per step and per
    architecture, and the window's speed (NaN when none of its steps was timed)."""
    # Row 0 (the largest) saw every example; the students' rows saw `student_count`.
    count = np.full((len(window.sums["loss"]), 1), max(window.student_count, 1.0))
    count[0] = max(window.count, 1.0)
    mean_loss = window.sums["loss"] / count
    accuracy = window.sums["correct"] / count
    timing = window.timing
    rate = (
        batch_size * timing.steps / timing.seconds
        if timing.steps and timing.seconds > 0
        else float("nan")
    )
    # The mean number of architectures a step of the window trained.
    num_subnets = window.archs / window.records
    # Images through a network per step: the largest's batch plus the students' share.
    student_share = window.student_count / max(window.count, 1.0)
    subnet_images = 1.0 + (num_subnets - 1.0) * student_share
    return {
        "kind": "train",
        "step": step,
        "epoch": epoch,
        "phase": phase,
        "learning_rate": learning_rate,
        # Mean over the window's steps and the step's architectures.
        "objective": float(np.sum(window.sums["objective"]) / num_subnets / max(window.records, 1)),
        "images_per_s": rate,
        "subnet_images_per_s": rate * subnet_images,
        "largest": {"loss": mean_loss[0].tolist(), "accuracy": accuracy[0].tolist()},
        "smallest": {"loss": mean_loss[1].tolist(), "accuracy": accuracy[1].tolist()},
    }


class TrainLog:
    """Where a run reports. Only the chief writes; on other workers every method is silent.

    Args:
      workdir: the run's workdir (`train_log.jsonl`, `tensorboard/`).
      chief: whether this process writes.
      print_line: where console lines go (default: print to stdout).
    """

    def __init__(
        self, workdir: Workdir, chief: bool, print_line: Callable[[str], None] | None = None
    ):
        self.workdir = workdir
        self.chief = chief
        self._print = print_line or (lambda line: print(line, flush=True))
        self.writer = None

    def line(self, text: str) -> None:
        """A console line."""
        if self.chief:
            self._print(text)

    def write(self, record: dict) -> None:
        """Appends a record to `train_log.jsonl`.

        Raises:
          WorkdirError: the log cannot be written (what it holds so far is kept).
        """
        if not self.chief:
            return
        try:
            with open(self.workdir.train_log, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise WorkdirError(
                f"cannot write {self.workdir.train_log}: {e.strerror or e}; training stopped, "
                "the checkpoints and the log so far are kept"
            ) from None

    def drop_records_after(self, step: int) -> None:
        """Removes the records of steps after `step` (and a line cut short) from
        `train_log.jsonl`: a run resumed from the checkpoint of `step` logs them again, and
        one step must not have two records. The log is replaced atomically, only if needed.
        """
        path = self.workdir.train_log
        if not self.chief or not os.path.exists(path):
            return
        with open(path, "rb") as f:
            lines = f.read().splitlines(keepends=True)
        kept = [line for line in lines if _record_step(line) <= step]
        if len(kept) != len(lines):
            write_bytes_atomic(path, b"".join(kept), error=WorkdirError)

    def open_summaries(self) -> tf.summary.SummaryWriter:
        """Creates the TensorBoard writer (a no-op one on other workers) and returns it."""
        try:
            self.writer = (
                tf.summary.create_file_writer(self.workdir.tensorboard)
                if self.chief
                else tf.summary.create_noop_writer()
            )
        except tf.errors.OpError as e:
            raise WorkdirError(
                f"cannot write TensorBoard summaries to {self.workdir.tensorboard}: "
                f"{op_error_reason(e)}; nothing was trained in this session"
            ) from None
        return self.writer

    def flush(self) -> None:
        """Flushes the TensorBoard writer, if it was opened."""
        if self.writer is not None:
            self.writer.flush()

    def progress(self, record: dict, total_steps: int, batch_size: int, session_rate: float):
        """Writes a `progress_record` to the log and TensorBoard, and prints its line.

        Args:
          record: the window's record.
          total_steps: the run's steps.
          batch_size: the global batch size.
          session_rate: images per second over this session's timed steps (NaN: none yet).
        """
        self.write(record)
        with self.writer.as_default(step=record["step"]):
            summary_scalar("train/objective", record["objective"])
            summary_scalar("train/learning_rate", record["learning_rate"])
            if math.isfinite(record["images_per_s"]):
                summary_scalar("train/images_per_s", record["images_per_s"])
            for name in ("largest", "smallest"):
                losses, accuracies = record[name]["loss"], record[name]["accuracy"]
                for s, (loss, accuracy) in enumerate(zip(losses, accuracies, strict=True)):
                    summary_scalar(f"train/{name}/exit{s + 1}/loss", loss)
                    summary_scalar(f"train/{name}/exit{s + 1}/accuracy", accuracy)
        self.line(progress_line(record, total_steps, batch_size, session_rate))


def progress_line(record: dict, total_steps: int, batch_size: int, session_rate: float) -> str:
    """The console line of a progress record; the time left assumes `session_rate` images/s.

    Example, the last line of a configs/train_smoke.cfg run (one line; the losses in
    brackets are the last exit's):
      step 24/24 epoch 2 loss 3.6228 (largest 1.982, smallest 2.123) lr 0.0003798
      427 img/s ETA 0:00:00
    """
    step = record["step"]
    eta = (total_steps - step) * batch_size / session_rate
    eta_text = format_eta(eta) if math.isfinite(eta) else "?"
    largest, smallest = record["largest"]["loss"][-1], record["smallest"]["loss"][-1]
    return (
        f"step {step}/{total_steps} epoch {record['epoch'] + 1} loss {record['objective']:.4f} "
        f"(largest {largest:.3f}, smallest {smallest:.3f}) "
        f"lr {record['learning_rate']:.4g} {record['images_per_s']:.0f} img/s ETA {eta_text}"
    )
