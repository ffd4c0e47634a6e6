"""Once-for-all training of a multi-stage supernet under `tf.distribute` (DESIGN.md §3).

A custom training loop (`strategy.run`), because Keras 3 `Model.fit` does not run under
`MultiWorkerMirroredStrategy` (FACTS.md item 2). Each step trains the architectures of the
sandwich rule (`train_sampling.step_archs`): the largest network learns from the labels, and
its last exit's softened predictions teach every exit of the smallest and the random ones
(in-place distillation). The architectures are fed to ONE traced step as stacked size
tensors; inside it an unrolled loop runs a forward and backward pass per architecture and
sums the gradients, so the whole run traces once whatever the architectures are.

Example:
  >>> config = TrainConfig(workdir="/tmp/run", preset="tiny", epochs=1, max_train_examples=512)
  >>> result = train(config)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from enas4d_tf import data as data_lib
from enas4d_tf.files import write_json_atomic
from enas4d_tf.model.supernet import Supernet
from enas4d_tf.space.search_space import PRESETS, SearchSpace
from enas4d_tf.train import sampling as train_sampling
from enas4d_tf.train.evaluate import Evaluator, _evaluate
from enas4d_tf.train.logs import summary_scalar
from enas4d_tf.workdir import (
    CHECKPOINT_DIR,
    RUN_CONFIG,
    WorkdirError,
    restore_model,
)

STRATEGIES = ("default", "mirrored", "multi_worker")
TRAIN_LOG = "train_log.jsonl"
TENSORBOARD_DIR = "tensorboard"


# ------------------------------------------------------------------------------------------
# Configuration.


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; written to `<workdir>/run_config.json`.

    Attributes:
      workdir: where checkpoints, logs and summaries go.
      preset: the search space (`SearchSpace.preset` name).
      dataset: the dataset name (see `enas4d_tf.data.dataset_info`).
      data_dir: where the dataset is (None: the dataset's default).
      epochs: training epochs.
      batch_size: global batch size (all replicas together).
      strategy: "default", "mirrored" or "multi_worker".
      num_random_subnets: random architectures per step besides the largest and smallest.
      random_subnets_every: train the random architectures on every this-many-th step only
        (steps 0, n, 2n, ...); the largest and the smallest train on every step. 1: every
        step. A random architecture does about a fifth of the largest network's MACs but
        costs about half its step on CPU (bench/supernet_step.py: small convolutions run
        less efficiently), so n > 1 buys the largest network more epochs in the same time,
        at some cost to the middle networks. A run with n > 1 and random architectures
        traces its step twice (with and without them).
      kd_ratio: weight of the distillation loss from the largest network's last exit.
      label_smoothing: label smoothing of the cross-entropy on the labels.
      exit_weights: loss weight of each exit (normalised to sum to 1); None: equal.
      learning_rate: peak learning rate (reached after warm-up) for the global batch.
      momentum: Nesterov momentum.
      warmup_epochs: linear warm-up length, in epochs (may be fractional).
      weight_decay: decoupled weight decay (`w -= lr * weight_decay * w` each step) on
        convolution, dense and kernel-transform weights; BN parameters and biases get none.
      clip_norm: clip the all-reduced gradient to this global norm; 0 disables clipping.
      schedule: "sandwich" (every gene elastic from the start) or "progressive".
      phase_starts: for "progressive", the epoch fractions at which phases 0..3 start.
      checkpoint_every_steps: save a checkpoint every this many steps (and at epoch ends).
      keep_checkpoints: how many checkpoints to keep.
      max_train_examples: train on the first this many examples of the train split only.
      max_eval_examples: evaluate on the first this many validation examples only.
      steps_per_epoch: override the steps per epoch (default: train examples // batch size).
      log_every_steps: one console line and one summary every this many steps.
      eval_every_epochs: evaluate largest and smallest every this many epochs and at the end;
        0 disables evaluation.
      calibration_images: training images used to recalibrate BN before evaluating.
      cpu_replicas: replicas (logical CPUs) under "mirrored" when there is no GPU.
      seed: seeds the data order, augmentation and architecture sampling.
    """

    workdir: str
    preset: str = "fashion_mnist"
    dataset: str = data_lib.DEFAULT_DATASET
    data_dir: str | None = None
    epochs: int = 10
    batch_size: int = 256
    strategy: str = "default"
    num_random_subnets: int = 2
    random_subnets_every: int = 1
    kd_ratio: float = 1.0
    label_smoothing: float = 0.1
    exit_weights: tuple[float, ...] | None = None
    learning_rate: float = 0.1
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    weight_decay: float = 5e-4
    clip_norm: float = 0.0
    schedule: str = "sandwich"
    phase_starts: tuple[float, ...] = train_sampling.DEFAULT_PHASE_STARTS
    checkpoint_every_steps: int = 500
    keep_checkpoints: int = 3
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    steps_per_epoch: int | None = None
    log_every_steps: int = 50
    eval_every_epochs: int = 1
    calibration_images: int = 2000
    cpu_replicas: int = 2
    seed: int = 0

    def __post_init__(self):
        if self.exit_weights is not None:
            object.__setattr__(self, "exit_weights", tuple(float(w) for w in self.exit_weights))
        object.__setattr__(self, "phase_starts", tuple(float(f) for f in self.phase_starts))

    def validate(self) -> None:
        """Checks every field.

        Raises:
          ValueError: one line naming the first bad field and what is allowed.
        """

        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        check(bool(self.workdir), "workdir must be given")
        check(self.preset in PRESETS, f"unknown preset {self.preset!r}; use one of {list(PRESETS)}")
        check(
            self.strategy in STRATEGIES,
            f"unknown strategy {self.strategy!r}; use one of {list(STRATEGIES)}",
        )
        check(
            self.schedule in train_sampling.SCHEDULES,
            f"unknown schedule {self.schedule!r}; use one of {list(train_sampling.SCHEDULES)}",
        )
        for name, low in (
            ("epochs", 1),
            ("batch_size", 1),
            ("num_random_subnets", 0),
            ("random_subnets_every", 1),
            ("checkpoint_every_steps", 1),
            ("keep_checkpoints", 1),
            ("log_every_steps", 1),
            ("eval_every_epochs", 0),
            ("calibration_images", 1),
            ("cpu_replicas", 1),
            ("seed", 0),
        ):
            value = getattr(self, name)
            check(value >= low, f"{name} must be >= {low}, got {value}")
        for name in ("max_train_examples", "max_eval_examples", "steps_per_epoch"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"{name} must be >= 1, got {value}")
        check(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        check(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        check(
            0 <= self.label_smoothing < 1,
            f"label_smoothing must be in [0, 1), got {self.label_smoothing}",
        )
        for name in ("kd_ratio", "warmup_epochs", "weight_decay", "clip_norm"):
            value = getattr(self, name)
            check(value >= 0 and math.isfinite(value), f"{name} must be >= 0, got {value}")
        check(
            self.warmup_epochs <= self.epochs,
            f"warmup_epochs ({self.warmup_epochs}) must not exceed epochs ({self.epochs})",
        )
        space = SearchSpace.preset(self.preset)
        if self.exit_weights is not None:
            w = self.exit_weights
            check(
                len(w) == space.num_stages,
                f"exit_weights needs {space.num_stages} numbers (one per exit of preset "
                f"{self.preset!r}), got {len(w)}",
            )
            check(
                all(x >= 0 and math.isfinite(x) for x in w) and sum(w) > 0,
                f"exit_weights must be non-negative with a positive sum, got {list(w)}",
            )
        if self.schedule == "progressive":
            train_sampling.check_phase_starts(self.phase_starts)

    def to_dict(self) -> dict:
        """The fields as a JSON-safe dict."""
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def normalized_exit_weights(self, num_stages: int) -> np.ndarray:
        """Exit weights summing to 1 (equal when `exit_weights` is None)."""
        w = np.ones(num_stages) if self.exit_weights is None else np.asarray(self.exit_weights)
        return (w / w.sum()).astype(np.float32)


# ------------------------------------------------------------------------------------------
# Strategies.


def configure_cpu_replicas(num: int) -> None:
    """Splits the host CPU into `num` logical devices for `MirroredStrategy` (FACTS.md item 3).

    Must run before TensorFlow runs any op. Does nothing when a GPU is visible or `num` < 2.

    Raises:
      ValueError: TensorFlow is already initialised with another device layout.
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
            raise ValueError(
                f"cannot split the CPU into {num} logical devices: TensorFlow is already "
                "initialised (configure devices before running any op)"
            ) from None


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The distribution strategy named `name`.

    "default": the default (no-op) strategy. "mirrored": `MirroredStrategy` over the GPUs,
    or over the logical CPUs (see `configure_cpu_replicas`) when there is none.
    "multi_worker": `MultiWorkerMirroredStrategy` over the cluster described by `TF_CONFIG`.

    Raises:
      ValueError: unknown name, or "multi_worker" without a usable `TF_CONFIG`.
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
            raise ValueError("TF_CONFIG is not valid JSON with a 'cluster' entry") from None
        if not cluster:
            raise ValueError("strategy multi_worker needs TF_CONFIG describing the cluster")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; use one of {list(STRATEGIES)}")


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


# ------------------------------------------------------------------------------------------
# Optimisation.


@keras.saving.register_keras_serializable(package="enas4d_tf")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then cosine decay to 0 at
    `total_steps`.

    Args:
      peak: the learning rate at the end of warm-up.
      total_steps: steps of the whole run.
      warmup_steps: steps of linear warm-up (0: start at the peak).
    """

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = float(max(self.warmup_steps, 1))
        decay = float(max(self.total_steps - self.warmup_steps, 1))
        progress = tf.clip_by_value((step - self.warmup_steps) / decay, 0.0, 1.0)
        cosine = 0.5 * self.peak * (1.0 + tf.cos(math.pi * progress))
        # Step s of warm-up trains at (s + 1) / warmup_steps of the peak, never at 0.
        warmup = self.peak * (step + 1.0) / warm
        return tf.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
        }


def make_optimizer(
    config: TrainConfig, variables: Sequence[tf.Variable], total_steps: int, steps_per_epoch: int
) -> keras.optimizers.Optimizer:
    """SGD with Nesterov momentum, warm-up + cosine learning rate and decoupled weight decay.

    Weight decay skips every variable of rank <= 1 (BN gamma/beta, biases). Create it under
    the strategy's scope; it is built on `variables`.

    Returns:
      The built optimizer.
    """
    schedule = WarmupCosine(
        config.learning_rate, total_steps, int(round(config.warmup_epochs * steps_per_epoch))
    )
    opt = keras.optimizers.SGD(
        learning_rate=schedule,
        momentum=config.momentum,
        nesterov=True,
        weight_decay=config.weight_decay if config.weight_decay > 0 else None,
    )
    if config.weight_decay > 0:
        opt.exclude_from_weight_decay(var_list=[v for v in variables if len(v.shape) <= 1])
    opt.build(list(variables))
    return opt


def exit_losses(
    logits: Sequence[tf.Tensor],
    labels: tf.Tensor,
    teacher_probs: tf.Tensor,
    label_smoothing: float,
    num_classes: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-example losses of every exit.

    Args:
      logits: `S` tensors `(B, classes)`.
      labels: int labels `(B,)`.
      teacher_probs: `(B, classes)` soft targets (the largest network's last exit).
      label_smoothing: smoothing of the one-hot labels.
      num_classes: classes.

    Returns:
      `(ce, kd)`, each `(S, B)` float32: label-smoothed cross-entropy on the labels, and
      cross-entropy against `teacher_probs`.
    """
    one_hot = tf.one_hot(labels, num_classes, dtype=tf.float32)
    targets = one_hot * (1.0 - label_smoothing) + label_smoothing / num_classes
    ce, kd = [], []
    for z in logits:
        log_p = tf.nn.log_softmax(tf.cast(z, tf.float32), axis=-1)
        ce.append(-tf.reduce_sum(targets * log_p, axis=-1))
        kd.append(-tf.reduce_sum(teacher_probs * log_p, axis=-1))
    return tf.stack(ce), tf.stack(kd)


def _num_correct(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    predictions = tf.argmax(logits, -1, output_type=tf.int32)
    return tf.reduce_sum(tf.cast(tf.equal(predictions, labels), tf.float32))


# ------------------------------------------------------------------------------------------
# The training step.


class TrainStep:
    """The one traced training step of a run.

    `step(batch, archs)`: `batch` is a distributed `(images, labels)` batch and `archs` the
    stacked size arrays of the step's architectures (`train_sampling.stack_arch_tensors`,
    largest first). Returns a dict of numpy arrays summed over replicas: `objective` (K,)
    global-batch mean training loss of each architecture, `loss` (K, S) summed per-exit
    label cross-entropy, `correct` (K, S) correct predictions, `count` () examples.
    `traces` counts how often the step was traced (1 for a whole run).
    """

    def __init__(
        self,
        strategy: tf.distribute.Strategy,
        net: Supernet,
        optimizer: keras.optimizers.Optimizer,
        config: TrainConfig,
    ):
        self.strategy = strategy
        self.net = net
        self.optimizer = optimizer
        self.num_classes = net.num_classes
        self.num_stages = net.space.num_stages
        self.exit_weights = config.normalized_exit_weights(self.num_stages)
        self.kd_ratio = float(config.kd_ratio)
        self.label_smoothing = float(config.label_smoothing)
        self.clip_norm = float(config.clip_norm)
        self.variables = list(net.trainable_variables)
        self.traces = 0
        self._fn = tf.function(self._distributed_step)

    def __call__(self, batch, archs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        archs = {k: tf.constant(v) for k, v in archs.items()}
        out = self._fn(batch, archs)
        return {k: v.numpy() for k, v in out.items()}

    def _distributed_step(self, batch, archs):
        self.traces += 1  # runs at trace time only
        images, labels = batch
        out = self.strategy.run(self._replica_step, args=(images, labels, archs))
        return {
            k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in out.items()
        }

    def _replica_step(self, images, labels, archs):
        K = int(archs["resolution"].shape[0])
        exit_weights = tf.constant(self.exit_weights)[:, None]
        variables = self.variables
        grads = [tf.zeros_like(v) for v in variables]
        teacher = tf.zeros([tf.shape(images)[0], self.num_classes], tf.float32)
        objective, exit_loss, correct = [], [], []
        # A Python loop: the K forward and backward passes are unrolled into one graph, so the
        # executor can run the students' passes side by side once the teacher's is done.
        for i in range(K):
            arch = {k: v[i] for k, v in archs.items()}
            with tf.GradientTape() as tape:
                logits = self.net(images, arch=arch, training=True)
                logits = [tf.cast(z, tf.float32) for z in logits]
                ce, kd = exit_losses(
                    logits, labels, teacher, self.label_smoothing, self.num_classes
                )
                # The largest network (i == 0) learns from the labels alone.
                per_example = tf.reduce_sum(
                    exit_weights * (ce if i == 0 else ce + self.kd_ratio * kd), 0
                )
                loss = tf.nn.compute_average_loss(per_example)
            step_grads = tape.gradient(loss, variables)
            grads = [
                g if sg is None else g + tf.convert_to_tensor(sg)
                for g, sg in zip(grads, step_grads, strict=True)
            ]
            if i == 0:
                # The largest network runs first; its last exit teaches the others.
                teacher = tf.nn.softmax(tf.stop_gradient(logits[-1]))
            objective.append(loss)
            exit_loss.append(tf.reduce_sum(ce, axis=1))
            correct.append(tf.stack([_num_correct(z, labels) for z in logits]))
        if self.clip_norm > 0:
            # Clip the global gradient, not each replica's: sum over replicas first, then
            # hand the optimizer 1/N of it (it sums over replicas again).
            ctx = tf.distribute.get_replica_context()
            grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm)
            grads = [g / ctx.num_replicas_in_sync for g in grads]
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return {
            "objective": tf.stack(objective),
            "loss": tf.stack(exit_loss),
            "correct": tf.stack(correct),
            "count": tf.cast(tf.shape(images)[0], tf.float32),
        }


# ------------------------------------------------------------------------------------------
# The run.


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
    """

    net: Supernet
    step: int
    total_steps: int
    steps_run: int
    resumed_from: int
    traces: int
    images_per_s: float | None
    evaluations: list[dict]


DatasetFn = Callable[[tf.distribute.InputContext, int], tf.data.Dataset]


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


def _check_run_config(path: str, new: dict) -> None:
    """A workdir trained before must be resumed with the same space, data and classes."""
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError) as e:
        raise WorkdirError(f"{path} is unreadable or malformed: {e}") from None
    for key in ("space", "num_classes", "dataset"):
        if old.get(key) != new[key]:
            what = old.get(key)
            if key == "space" and isinstance(what, dict):
                what = what.get("name")
            want = new[key]["name"] if key == "space" else new[key]
            raise WorkdirError(
                f"{path} was written for {key} {what!r}, not {want!r}: use another workdir"
            )


def random_subnets_at(config: TrainConfig, step: int) -> int:
    """How many random architectures step `step` (0-based) trains besides largest and smallest."""
    return config.num_random_subnets if step % config.random_subnets_every == 0 else 0


def _format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


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
      ValueError: a bad config.
      DataError: the dataset cannot be read.
      WorkdirError: the workdir belongs to another run, or its checkpoint does not match the
        network or is corrupt (the checkpoint is left as it is).
    """
    config.validate()
    strategy = strategy or make_strategy(config.strategy)
    chief = is_chief(strategy)
    log = (log or (lambda line: print(line, flush=True))) if chief else (lambda line: None)
    info = data_lib.dataset_info(config.dataset, config.data_dir)
    space = SearchSpace.preset(config.preset)
    if info.image_channels != space.image_channels:
        raise ValueError(
            f"dataset {config.dataset!r} has {info.image_channels}-channel images but preset "
            f"{config.preset!r} expects {space.image_channels}"
        )
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(
            f"batch_size {config.batch_size} is not divisible by the {replicas} replicas"
        )
    num_train = info.num_train
    if config.max_train_examples is not None:
        num_train = min(num_train, config.max_train_examples)
    steps_per_epoch = config.steps_per_epoch or num_train // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the {num_train} training examples"
        )
    total_steps = steps_per_epoch * config.epochs

    run_config = {
        "space": space.to_dict(),
        "num_classes": info.num_classes,
        "dataset": config.dataset,
        "data_dir": config.data_dir,
        "image_size": info.image_size,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "train": config.to_dict(),
    }
    workdir = os.path.abspath(config.workdir)
    config_path = os.path.join(workdir, RUN_CONFIG)
    if os.path.exists(config_path):
        _check_run_config(config_path, run_config)
    # Non-chief workers write their (identical) checkpoints to a temporary directory: saving
    # reads replica-local variables, which is a collective every worker must join.
    write_dir = workdir if chief else tempfile.mkdtemp(prefix="enas4d_worker_")
    try:
        if chief:
            write_json_atomic(config_path, run_config)
        return _run(
            config,
            strategy,
            chief,
            log,
            info,
            space,
            workdir,
            write_dir,
            steps_per_epoch,
            total_steps,
            dataset_fn or default_dataset_fn(config),
        )
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def _run(
    config: TrainConfig,
    strategy,
    chief,
    log,
    info,
    space,
    workdir,
    write_dir,
    steps_per_epoch,
    total_steps,
    dataset_fn,
) -> TrainResult:
    # Seeds weight initialisation (and Python, numpy and TF global generators) so a run is
    # repeatable; under multi_worker the chief's initial values are broadcast anyway.
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        net = Supernet(space, num_classes=info.num_classes)
        optimizer = make_optimizer(config, net.trainable_variables, total_steps, steps_per_epoch)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=net, optimizer=optimizer, step=step_var, epoch=epoch_var)
    manager = tf.train.CheckpointManager(
        checkpoint,
        os.path.join(write_dir, CHECKPOINT_DIR),
        max_to_keep=config.keep_checkpoints,
        step_counter=step_var,
    )
    latest = tf.train.latest_checkpoint(os.path.join(workdir, CHECKPOINT_DIR))
    resumed_from = 0
    if latest:
        _restore(net, checkpoint, latest)
        resumed_from = int(step_var.numpy())
    step = resumed_from
    if step >= total_steps:
        log(f"training already finished: step {step} of {total_steps} in {workdir}")
        return TrainResult(net, step, total_steps, 0, resumed_from, 0, None, [])
    if resumed_from:
        log(f"resuming from step {step} of {total_steps} ({latest})")

    train_step = TrainStep(strategy, net, optimizer, config)
    evaluator = None
    if config.eval_every_epochs > 0:
        calibration, _ = data_lib.load_arrays(
            config.dataset, "train", config.data_dir, max_examples=config.calibration_images
        )
        val_images, val_labels = data_lib.load_arrays(
            config.dataset, "validation", config.data_dir, max_examples=config.max_eval_examples
        )
        evaluator = Evaluator(space, info.num_classes, calibration, val_images, val_labels)
    writer = (
        tf.summary.create_file_writer(os.path.join(workdir, TENSORBOARD_DIR))
        if chief
        else tf.summary.create_noop_writer()
    )
    log_path = os.path.join(workdir, TRAIN_LOG)
    schedule = WarmupCosine(
        config.learning_rate, total_steps, int(round(config.warmup_epochs * steps_per_epoch))
    )

    def write_log(record: dict) -> None:
        if chief:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    K = 2 + config.num_random_subnets  # the most architectures a step trains
    S = space.num_stages
    evaluations = []
    steps_run = 0
    timed_steps, timed_seconds = 0, 0.0
    window = {"objective": np.zeros(K), "loss": np.zeros((K, S)), "correct": np.zeros((K, S))}
    window_count, window_records, window_steps, window_seconds = 0.0, 0, 0, 0.0
    window_archs = 0
    start_epoch = step // steps_per_epoch
    for epoch in range(start_epoch, config.epochs):
        phase = train_sampling.phase_for_epoch(
            epoch, config.epochs, config.schedule, config.phase_starts
        )
        skip = step - epoch * steps_per_epoch
        iterator = iter(_distributed_epoch(strategy, dataset_fn, epoch, skip))
        epoch_end = (epoch + 1) * steps_per_epoch
        while step < epoch_end:
            archs = train_sampling.step_archs(
                space, config.seed, step, random_subnets_at(config, step), phase
            )
            stacked = train_sampling.stack_arch_tensors(space, archs)
            batch = next(iterator)
            traces = train_step.traces
            t0 = time.perf_counter()
            out = train_step(batch, stacked)
            seconds = time.perf_counter() - t0
            step += 1
            steps_run += 1
            step_var.assign(step)
            if train_step.traces == traces:  # a step that traced is not timed
                timed_steps += 1
                timed_seconds += seconds
                window_steps += 1
                window_seconds += seconds
            for k in window:
                # A step without the random architectures fills only the first rows.
                window[k][: len(out[k])] += out[k]
            window_count += float(out["count"])
            window_records += 1
            window_archs += len(archs)
            if step % config.log_every_steps == 0 or step == total_steps:
                _log_progress(
                    log,
                    write_log,
                    writer,
                    window,
                    window_count,
                    window_records,
                    window_steps,
                    window_seconds,
                    step,
                    total_steps,
                    epoch,
                    phase,
                    float(schedule(step - 1)),
                    config.batch_size,
                    window_archs / window_records,
                    timed_steps,
                    timed_seconds,
                )
                window = {k: np.zeros_like(v) for k, v in window.items()}
                window_count, window_records, window_steps, window_seconds = 0.0, 0, 0, 0.0
                window_archs = 0
            if step % config.checkpoint_every_steps == 0 and step < epoch_end:
                manager.save(checkpoint_number=step)
        epoch_var.assign(epoch + 1)
        manager.save(checkpoint_number=step)
        last = epoch + 1 == config.epochs
        if evaluator is not None and ((epoch + 1) % config.eval_every_epochs == 0 or last):
            evaluations.append(
                _evaluate(evaluator, net, space, epoch, step, log, write_log, writer)
            )
    writer.flush()
    images_per_s = config.batch_size * timed_steps / timed_seconds if timed_steps else None
    if chief:
        write_json_atomic(
            os.path.join(workdir, "train_summary.json"),
            {
                "step": step,
                "total_steps": total_steps,
                "finished": step >= total_steps,
                "images_per_s_last_session": images_per_s,
                "subnets_per_step": K,
                "random_subnets_every": config.random_subnets_every,
                "evaluations": evaluations,
            },
        )
    log(f"training finished: step {step} of {total_steps}, checkpoints in {workdir}")
    return TrainResult(
        net,
        step,
        total_steps,
        steps_run,
        resumed_from,
        train_step.traces,
        images_per_s,
        evaluations,
    )


def _restore(net: Supernet, checkpoint: tf.train.Checkpoint, path: str) -> None:
    """Restores a run's state; a foreign or corrupt checkpoint is a one-line WorkdirError."""
    try:
        restore_model(net, path)  # names a checkpoint of another network
        checkpoint.restore(path).assert_existing_objects_matched()
    except WorkdirError:
        raise
    # A truncated file surfaces as IndexError from the checkpoint reader.
    except (tf.errors.OpError, AssertionError, ValueError, IndexError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WorkdirError(f"checkpoint {path} is corrupt or cannot be resumed: {first}") from None


def _distributed_epoch(strategy, dataset_fn: DatasetFn, epoch: int, skip_steps: int):
    def fn(input_context):
        ds = dataset_fn(input_context, epoch)
        # A step takes one batch per replica; each pipeline feeds its share of the replicas.
        per_step = input_context.num_replicas_in_sync // input_context.num_input_pipelines
        return ds.skip(skip_steps * per_step) if skip_steps else ds

    return strategy.distribute_datasets_from_function(fn)


def _log_progress(
    log,
    write_log,
    writer,
    window,
    count,
    records,
    steps,
    seconds,
    step,
    total_steps,
    epoch,
    phase,
    learning_rate,
    batch_size,
    num_subnets,
    timed_steps,
    timed_seconds,
) -> None:
    count = max(count, 1.0)
    mean_loss = window["loss"] / count
    accuracy = window["correct"] / count
    rate = batch_size * steps / seconds if steps and seconds > 0 else float("nan")
    overall = batch_size * timed_steps / timed_seconds if timed_steps else float("nan")
    eta = (total_steps - step) * batch_size / overall if timed_steps else float("nan")
    eta_text = _format_eta(eta) if math.isfinite(eta) else "?"
    record = {
        "kind": "train",
        "step": step,
        "epoch": epoch,
        "phase": phase,
        "learning_rate": learning_rate,
        # Mean over the window's steps and the step's architectures (num_subnets: the mean
        # number of architectures a step of the window trained).
        "objective": float(np.sum(window["objective"]) / num_subnets / max(records, 1)),
        "images_per_s": rate,
        "subnet_images_per_s": rate * num_subnets,
        "largest": {"loss": mean_loss[0].tolist(), "accuracy": accuracy[0].tolist()},
        "smallest": {"loss": mean_loss[1].tolist(), "accuracy": accuracy[1].tolist()},
    }
    write_log(record)
    with writer.as_default(step=step):
        summary_scalar("train/objective", record["objective"])
        summary_scalar("train/learning_rate", learning_rate)
        if math.isfinite(rate):
            summary_scalar("train/images_per_s", rate)
        for name in ("largest", "smallest"):
            for s in range(mean_loss.shape[1]):
                summary_scalar(f"train/{name}/exit{s + 1}/loss", record[name]["loss"][s])
                summary_scalar(f"train/{name}/exit{s + 1}/accuracy", record[name]["accuracy"][s])
    log(
        f"step {step}/{total_steps} epoch {epoch + 1} loss {record['objective']:.4f} "
        f"(largest {mean_loss[0, -1]:.3f}, smallest {mean_loss[1, -1]:.3f}) "
        f"lr {learning_rate:.4g} {rate:.0f} img/s ETA {eta_text}"
    )


def read_train_log(workdir: str) -> list[dict]:
    """The records of `<workdir>/train_log.jsonl` (empty when there is none).

    A line cut short by a killed process is skipped.
    """
    path = os.path.join(workdir, TRAIN_LOG)
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
