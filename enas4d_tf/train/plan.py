"""What a training run trains, worked out before it starts: its space, data and step counts
(`RunPlan`), its training data, and what `train` returns (`TrainResult`)."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from enas4d_tf import data as data_lib
from enas4d_tf.errors import TrainError
from enas4d_tf.model.supernet import Supernet
from enas4d_tf.space import SearchSpace
from enas4d_tf.train.config import TrainConfig
from enas4d_tf.train.config import steps_per_epoch as config_steps_per_epoch
from enas4d_tf.train.distribution import DatasetFn
from enas4d_tf.train.fixed_arch import RUN_CONFIG_KEY, FixedArch, read_fixed_arch
from enas4d_tf.train.logs import Timing


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
      net: the trained supernet (distributed variables under a strategy).
      step: the global step reached.
      total_steps: the run's total steps.
      steps_run: steps this call ran (0 when the run had already finished).
      resumed_from: the step restored from a checkpoint (0 for a fresh run).
      traces: how often the training step was traced in this call.
      images_per_s: training images (global batch) per second over this call's steps,
        excluding the first step (which traces); None when fewer than 2 steps ran.
      evaluations: epoch-end evaluations of this call.
      step_wall_seconds: wall seconds of a step over the same steps less each epoch's first
        (which waits for the epoch's input pipeline), from choosing its architectures and
        fetching its batch to its results being read back (the loop's pace, which
        `images_per_s`, the step function's time alone, underestimates); None when fewer
        than 2 steps ran.
      timing: this call's `logs.Timing` (steps, epoch ends, evaluations), which
        `budget.fit_epochs` plans on; None when the run had already finished.
    """

    net: Supernet
    step: int
    total_steps: int
    steps_run: int
    resumed_from: int
    traces: int
    images_per_s: float | None
    evaluations: list[dict]
    step_wall_seconds: float | None = None
    timing: Timing | None = None


def default_dataset_fn(config: TrainConfig) -> DatasetFn:
    """Training data of `config`: `fn(input_context, epoch)` -> endless batches of epoch
    `epoch` (reshuffled with a seed derived from the run's seed and the epoch)."""

    def fn(input_context, epoch):
        return data_lib.make_dataset(
            config.dataset,
            "train",
            config.data_dir,
            batch_size=config.batch_size,
            training=True,
            seed=config.seed * 100_003 + epoch,
            input_context=input_context,
            max_examples=config.max_train_examples,
            repeat=True,
        )

    return fn


def random_subnets_at(config: TrainConfig, step: int) -> int:
    """How many random architectures step `step` (0-based) trains besides largest and smallest."""
    return config.num_random_subnets if step % config.random_subnets_every == 0 else 0


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What a run trains, worked out from its config and its data."""

    space: SearchSpace
    info: data_lib.DatasetInfo
    steps_per_epoch: int
    total_steps: int
    fixed: FixedArch | None = None  # the one architecture of a run with `arch_file`

    def run_config(self, config: TrainConfig) -> dict:
        """The contents of `run_config.json`."""
        fixed = {} if self.fixed is None else {RUN_CONFIG_KEY: self.fixed.record()}
        return {
            **fixed,
            "space": self.space.to_dict(),
            "num_classes": self.info.num_classes,
            "dataset": config.dataset,
            "data_dir": config.data_dir,
            "image_size": self.info.image_size,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "train": config.to_dict(),
        }


def _plan(config: TrainConfig, strategy: tf.distribute.Strategy) -> _Plan:
    info = data_lib.dataset_info(config.dataset, config.data_dir)
    space = SearchSpace.preset(config.preset)
    if info.image_channels != space.image_channels:
        raise TrainError(
            f"dataset {config.dataset!r} has {info.image_channels}-channel images but preset "
            f"{config.preset!r} expects {space.image_channels}"
        )
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise TrainError(
            f"batch_size {config.batch_size} is not divisible by the {replicas} replicas"
        )
    steps_per_epoch = config_steps_per_epoch(config, info)
    fixed = None if config.arch_file is None else read_fixed_arch(config.arch_file, space)
    return _Plan(space, info, steps_per_epoch, steps_per_epoch * config.epochs, fixed)
