"""Training one architecture alone, from scratch, with the project's recipe.

`AloneTrainer` is the `Trainer` of a run with `TrainConfig.arch_file` (`tools.train
--arch_file=F`): the same data, augmentation, optimiser, schedule, label smoothing,
checkpoints and time budget as the supernet's training, but every step trains the one
architecture (no sandwich) on the labels alone (no distillation). The network is still held
by a `Supernet`, so the workdir is like any training workdir: `tools.export --arch=<the same
file>` exports the trained architecture unchanged (BN recalibrated for it). Only the slices
the architecture uses ever receive a gradient.

A network cut at exit `s` (`FixedArch.exit`) runs stages `1..s` only and learns from exit
`s`; a multi-exit one runs every stage and weighs its exits with the recipe's exit weights.
Progress records, TensorBoard scalars and evaluations name the network's exits
(`"network": {"exits": [...], "loss": [...], "accuracy": [...]}`) instead of the supernet's
largest and smallest networks.
"""

from __future__ import annotations

import numpy as np

from enas4d_tf.space import Arch
from enas4d_tf.train.fixed_arch import RUN_CONFIG_KEY, FixedArch, check_same_arch
from enas4d_tf.train.logs import MetricWindow, format_eta, summary_scalar
from enas4d_tf.train.step import TrainStep
from enas4d_tf.train.trainer import Trainer

NAME = "network"  # what records, scalars and messages call the one architecture


class AloneTrainer(Trainer):
    """The `Trainer` of a fixed-architecture run (`plan.fixed` is its `FixedArch`).

    Args: as `Trainer`.
    """

    def __init__(self, config, strategy, plan, log, write_dir):
        super().__init__(config, strategy, plan, log, write_dir)
        self.fixed: FixedArch = plan.fixed
        # One architecture a step; the forward pass computes its stages only.
        self.window = MetricWindow(1, self.fixed.num_stages(plan.space))
        # Columns of the window that are the network's exits (0-based, within its stages).
        self._columns = [e - 1 for e in self.fixed.exits(plan.space)]

    def run(self, dataset_fn, run_config: dict, previous: dict | None = None):
        """As `Trainer.run`; a workdir that trained another architecture is refused first.

        Raises:
          WorkdirError: the workdir's run config names another architecture or exit.
        """
        check_same_arch(previous, self.fixed, self.log.workdir.root)
        return super().run(dataset_fn, run_config, previous)

    def _step_archs(self, step: int, phase: int) -> list[Arch]:
        return [self.fixed.arch]

    def _arch_names(self, num_archs: int) -> list[str]:
        return [NAME]

    def _make_train_step(self) -> TrainStep:
        space = self.plan.space
        weights = self.fixed.exit_weights(self.config.normalized_exit_weights(space.num_stages))
        # The multi-exit network runs the supernet's own forward (num_stages None).
        stages = None if self.fixed.exit is None else self.fixed.exit
        return TrainStep(
            self.strategy,
            self.net,
            self.optimizer,
            self.config,
            num_stages=stages,
            exit_weights=weights,
        )

    def _run_summary(self) -> dict:
        # The architecture itself is in run_config.json; the summary names it.
        fixed = {"source": self.fixed.source, "exit": self.fixed.exit}
        return {RUN_CONFIG_KEY: fixed, "subnets_per_step": 1}

    def _log_window(self, epoch: int, phase: int) -> None:
        step, total = self.step, self.plan.total_steps
        learning_rate = float(self.schedule(step - 1))
        record = progress_record(
            self.window, self.fixed.exits(self.plan.space), self._columns, step, epoch
        )
        record["learning_rate"] = learning_rate
        record["images_per_s"] = _rate(self.window, self.config.batch_size)
        self.log.write(record)
        with self.log.writer.as_default(step=step):
            summary_scalar("train/objective", record["objective"])
            summary_scalar("train/learning_rate", learning_rate)
            if np.isfinite(record["images_per_s"]):
                summary_scalar("train/images_per_s", record["images_per_s"])
            _scalars("train", record[NAME])
        eta = (
            (total - step)
            * self.config.batch_size
            / self.session.images_per_s(self.config.batch_size)
        )
        losses = " ".join(
            f"exit {e} {x:.3f}"
            for e, x in zip(record[NAME]["exits"], record[NAME]["loss"], strict=True)
        )
        self.log.line(
            f"step {step}/{total} epoch {epoch + 1} loss {record['objective']:.4f} ({losses}) "
            f"lr {learning_rate:.4g} {record['images_per_s']:.0f} img/s "
            f"ETA {format_eta(eta) if np.isfinite(eta) else '?'}"
        )
        self.window.reset()

    def _evaluate_now(self, evaluator, epoch: int) -> dict:
        evaluator.copy_weights(self.net)
        measured = evaluator.evaluate(self.fixed.arch)  # every exit of the space
        exits = self.fixed.exits(self.plan.space)
        result = {
            "kind": "eval",
            "epoch": epoch + 1,
            "step": self.step,
            NAME: {
                "exits": exits,
                "accuracy": [measured["accuracy"][e - 1] for e in exits],
                "loss": [measured["loss"][e - 1] for e in exits],
            },
        }
        self.log.write(result)
        with self.log.writer.as_default(step=self.step):
            _scalars("validation", result[NAME])
        accs = ", ".join(
            f"exit {e} {100 * a:.2f}" for e, a in zip(exits, result[NAME]["accuracy"], strict=True)
        )
        self.log.line(f"epoch {epoch + 1} validation accuracy (%): {accs}")
        return result


def progress_record(
    window: MetricWindow, exits: list[int], columns: list[int], step: int, epoch: int
) -> dict:
    """The `train_log.jsonl` record of a window of a fixed-architecture run (its speed and
    learning rate are added by the trainer).

    Args:
      window: the window (one row: the network).
      exits: the network's exits, numbered from 1.
      columns: their columns in the window (0-based, within the computed stages).
      step, epoch: where the run is (epoch 0-based).

    Returns:
      `{"kind": "train", "step", "epoch", "objective", "network": {"exits", "loss",
      "accuracy"}}`: the mean training loss per step, and each exit's mean label
      cross-entropy and accuracy per example.
    """
    count = max(window.count, 1.0)
    loss = window.sums["loss"][0] / count
    accuracy = window.sums["correct"][0] / count
    return {
        "kind": "train",
        "step": step,
        "epoch": epoch,
        "objective": float(window.sums["objective"][0] / max(window.records, 1)),
        NAME: {
            "exits": list(exits),
            "loss": [float(loss[c]) for c in columns],
            "accuracy": [float(accuracy[c]) for c in columns],
        },
    }


def _rate(window: MetricWindow, batch_size: int) -> float:
    timing = window.timing
    if timing.steps and timing.seconds > 0:
        return batch_size * timing.steps / timing.seconds
    return float("nan")


def _scalars(prefix: str, values: dict) -> None:
    for e, loss, acc in zip(values["exits"], values["loss"], values["accuracy"], strict=True):
        summary_scalar(f"{prefix}/{NAME}/exit{e}/loss", loss)
        summary_scalar(f"{prefix}/{NAME}/exit{e}/accuracy", acc)
