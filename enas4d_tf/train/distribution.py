"""Where a training run runs: its `tf.distribute` strategy and which process is the chief.

Training is a custom loop (`strategy.run`) because Keras 3 `Model.fit` does not run under
`MultiWorkerMirroredStrategy`. Without a GPU, "mirrored" splits the CPU into logical
devices (`configure_cpu_replicas`), which is how the tests run two replicas on one host.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import tensorflow as tf

from enas4d_tf.errors import TrainError
from enas4d_tf.train.config import STRATEGIES

# Training data: `fn(input_context, epoch)` -> an endless dataset of per-pipeline
# `(images, labels)` batches of that epoch.
DatasetFn = Callable[[tf.distribute.InputContext, int], tf.data.Dataset]


def configure_cpu_replicas(num: int) -> None:
    """Splits the host CPU into `num` logical devices for `MirroredStrategy`.

    TensorFlow fixes its device layout when it first runs an op, so this must come before.
    Does nothing when a GPU is visible or `num` < 2.

    Raises:
      TrainError: TensorFlow is already initialised with another device layout.
    """
    if num < 2 or tf.config.list_physical_devices("GPU"):
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num
        )
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) != num:
            raise TrainError(
                f"cannot split the CPU into {num} logical devices: TensorFlow is already "
                "initialised (configure devices before running any op)"
            ) from None


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The distribution strategy named `name`.

    "default": the default (no-op) strategy. "mirrored": `MirroredStrategy` over the GPUs,
    or over the logical CPUs (see `configure_cpu_replicas`) when there is none.
    "multi_worker": `MultiWorkerMirroredStrategy` over the cluster described by `TF_CONFIG`.

    Raises:
      TrainError: unknown name, or "multi_worker" without a usable `TF_CONFIG`.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        raw = os.environ.get("TF_CONFIG", "")
        try:
            cluster = json.loads(raw)["cluster"] if raw else None
        except (ValueError, KeyError, TypeError):
            raise TrainError("TF_CONFIG is not valid JSON with a 'cluster' entry") from None
        if not cluster:
            raise TrainError("strategy multi_worker needs TF_CONFIG describing the cluster")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise TrainError(f"unknown strategy {name!r}; use one of {list(STRATEGIES)}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the real workdir (always, except non-chief workers)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def distributed_epoch(
    strategy: tf.distribute.Strategy, dataset_fn: DatasetFn, epoch: int, skip_steps: int
) -> tf.distribute.DistributedDataset:
    """The batches of epoch `epoch` for `strategy`, from step `skip_steps` of the epoch on
    (a resumed run continues where the checkpoint left off)."""

    def fn(input_context):
        ds = dataset_fn(input_context, epoch)
        # A step takes one batch per replica; each pipeline feeds its share of the replicas.
        per_step = input_context.num_replicas_in_sync // input_context.num_input_pipelines
        return ds.skip(skip_steps * per_step) if skip_steps else ds

    return strategy.distribute_datasets_from_function(fn)
