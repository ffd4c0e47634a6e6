"""What keeps a training run from going on from bad state.

* A workdir is resumed only with the settings it was trained with (train/resume.py).
* A checkpoint is resumed only if it matches the network and holds finite numbers
  (`restore_checkpoint`).
* A step whose loss or gradient is NaN or Inf stops the run (`nonfinite_message` reads the
  flags `TrainStep` returns), and weights that became NaN or Inf are never saved
  (`first_nonfinite`, checked before every checkpoint), so every kept checkpoint is finite.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from enas4d_tf.errors import TrainError, WorkdirError
from enas4d_tf.model.supernet import Supernet
from enas4d_tf.train.logs import op_error_reason
from enas4d_tf.workdir import checkpoint_nonfinite, restore_model


def restore_checkpoint(net: Supernet, checkpoint: tf.train.Checkpoint, path: str) -> None:
    """Restores a run's state (model, optimiser, counters) from checkpoint `path`.

    Raises:
      WorkdirError: the checkpoint belongs to another network, is corrupt, or holds NaN or
        Inf (the files are left as they are).
    """
    try:
        restore_model(net, path)  # names a checkpoint of another network
        checkpoint.restore(path).assert_existing_objects_matched()
    except WorkdirError:
        raise
    # A truncated file surfaces as IndexError from the checkpoint reader.
    except (tf.errors.OpError, AssertionError, ValueError, IndexError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WorkdirError(f"checkpoint {path} is corrupt or cannot be resumed: {first}") from None
    bad = checkpoint_nonfinite(path)
    if bad is not None:
        raise WorkdirError(
            f"checkpoint {path} holds NaN or Inf (in {bad}): it cannot be resumed; remove it "
            "to resume from an older checkpoint, or use another workdir"
        )


def weights_only_step(path: str) -> int | None:
    """The step of a checkpoint that holds only a model's weights (a released supernet's:
    `enas4d_tf.pretrained` saves no optimiser state and numbers the file by its step), or None
    for a training checkpoint, which records its step.

    Raises:
      WorkdirError: the checkpoint cannot be read.
    """
    try:
        names = tf.train.load_checkpoint(path).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError, IndexError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WorkdirError(f"checkpoint {path} is corrupt or cannot be resumed: {first}") from None
    if any(name.startswith("step/") for name in names):
        return None
    suffix = path.rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0


def arch_names(num_archs: int) -> list[str]:
    """What the user calls the architectures of a step, in `sampling.step_archs` order."""
    names = ["largest network", "smallest network"]
    names += [f"random network {k}" for k in range(1, num_archs - 1)]
    return names[:num_archs]


def nonfinite_message(out: dict[str, np.ndarray], names: list[str]) -> str | None:
    """What went NaN or Inf in a step, from `TrainStep`'s outputs; None if nothing did.

    Args:
      out: the step's outputs (`objective` (K,), `nonfinite_loss` (K, S),
        `nonfinite_grad` ()).
      names: what the user calls each of the K architectures (`arch_names`).

    Returns:
      One phrase naming the first network and exit (numbered from 1) whose loss is not
      finite, or the gradient, e.g. "the loss of the smallest network at exit 2 is NaN or
      Inf".
    """
    flags = np.asarray(out["nonfinite_loss"])[: len(names)]
    for k, name in enumerate(names):
        exits = np.flatnonzero(flags[k])
        if exits.size:
            return f"the loss of the {name} at exit {int(exits[0]) + 1} is NaN or Inf"
        if not np.isfinite(out["objective"][k]):
            return f"the loss of the {name} is NaN or Inf"
    if float(out["nonfinite_grad"]):
        return "the gradient (of all networks together) is NaN or Inf"
    return None


def first_nonfinite(variables) -> str | None:
    """The path of the first floating-point variable holding NaN or Inf, or None."""
    for v in variables:
        if v.dtype in ("float16", "bfloat16", "float32", "float64"):
            if not np.all(np.isfinite(keras.ops.convert_to_numpy(v))):
                return getattr(v, "path", None) or v.name  # Keras variables have a path
    return None


def kept_checkpoint(manager: tf.train.CheckpointManager) -> str:
    """What a stopped run keeps, as the end of its one-line error."""
    latest = manager.latest_checkpoint
    return f"the newest checkpoint {latest} is kept" if latest else "no checkpoint was written"


def save_checkpoint(manager: tf.train.CheckpointManager, variables, step: int) -> None:
    """Saves the checkpoint of step `step`, if every one of `variables` (the model's and the
    optimiser's) is finite: a checkpoint never holds NaN or Inf, so the rotation of old
    checkpoints keeps finite ones only.

    Raises:
      TrainError: a variable is NaN or Inf (nothing is written).
      WorkdirError: the checkpoint cannot be written (the older ones are kept).
    """
    bad = first_nonfinite(variables)
    if bad is not None:
        raise TrainError(
            f"step {step}: the update made {bad} NaN or Inf; training stopped, "
            f"{kept_checkpoint(manager)}"
        )
    try:
        manager.save(checkpoint_number=step)
    except (OSError, tf.errors.OpError) as e:
        reason = op_error_reason(e) if isinstance(e, tf.errors.OpError) else e.strerror or e
        raise WorkdirError(
            f"cannot write the checkpoint of step {step} in {manager.directory}: {reason}; "
            f"training stopped, {kept_checkpoint(manager)}"
        ) from None
