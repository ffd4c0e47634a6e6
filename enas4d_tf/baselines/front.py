"""The early-exit baseline's exit thresholds, fitted exactly as the search fits ours.

Every exit runs once over the validation split (`exit_probabilities`); for each MACs budget
`enas4d_tf.thresholds.fit_thresholds` (the search's fitter, on an
`enas4d_tf.exit_policy.ValidationSplit`) chooses the thresholds with the best validation
accuracy whose average cost `sum_s p_s * C_s` is within it. Like a network the search chose,
the final thresholds are fitted on the whole validation split; the test split is not read.

Without `--budgets`, the budgets are a geometric grid from exit 1's cost to the last exit's
(`budget_grid`), and `front.json` marks the points on the accuracy / average-MACs front.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from enas4d_tf import thresholds
from enas4d_tf.baselines.backbone import BackboneSpec, exit_macs
from enas4d_tf.baselines.config import point_name
from enas4d_tf.errors import TrainError
from enas4d_tf.exit_policy import FitResult, ValidationSplit, pareto_front

FRONT_VERSION = 1


def exit_probabilities(model: keras.Model, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Softmax probabilities of every exit, `(E, N, classes)` float32, exit 1 first.

    Args:
      model: the multi-exit model (`EarlyExitNetwork.model()`).
      images: normalised images at any side; resized (bilinear) to the model's input, as the
        training step and the cascade resize them.
      batch_size: images per forward pass.
    """
    side = int(model.input_shape[1])

    @tf.function(reduce_retracing=True)
    def forward(x):
        if x.shape[1] != side or x.shape[2] != side:
            x = tf.image.resize(x, [side, side], method="bilinear")
        return [tf.nn.softmax(tf.cast(z, tf.float32)) for z in model(x, training=False)]

    chunks = []
    for start in range(0, len(images), batch_size):
        batch = tf.convert_to_tensor(np.asarray(images[start : start + batch_size], np.float32))
        chunks.append(np.stack([p.numpy() for p in forward(batch)]))
    return np.concatenate(chunks, axis=1)


def exit_accuracies(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> list[float]:
    """Per-exit accuracy of `model` on `images`, exit 1 first."""
    probs = exit_probabilities(model, images)
    return [float(np.mean(p.argmax(-1) == np.asarray(labels))) for p in probs]


def budget_grid(stage_macs: Sequence[int], points: int) -> list[float]:
    """`points` budgets spaced geometrically from exit 1's cost to the last exit's, rounded to
    3 significant digits inward (the first up, the others down) so each stays feasible."""
    lo, hi = float(stage_macs[0]), float(stage_macs[-1])
    out = []
    for i, b in enumerate(np.geomspace(lo, hi, max(points, 2))):
        scale = 10 ** (math.floor(math.log10(b)) - 2)
        rounded = (math.ceil if i == 0 else math.floor)(b / scale) * scale
        out.append(float(f"{min(max(rounded, lo), hi):.3g}"))
    return sorted(set(out))


def fit_front(
    probs: np.ndarray, labels: np.ndarray, stage_macs: Sequence[int], budgets: Sequence[float]
) -> list[FitResult]:
    """Thresholds for each budget, fitted by `thresholds.fit_thresholds` on validation.

    Args:
      probs: `(E, N, C)` validation probabilities (`exit_probabilities`).
      labels: `(N,)` validation labels.
      stage_macs: cumulative MACs to each exit.
      budgets: average-MACs budgets, each at least exit 1's cost.

    Raises:
      ValueError: a budget below exit 1's cost.
    """
    split = ValidationSplit(probs, labels)
    return [thresholds.fit_thresholds(split, stage_macs, b) for b in budgets]


def front_record(
    spec: BackboneSpec, stage_macs: Sequence[int], probs: np.ndarray, labels, fits
) -> dict:
    """The contents of `front.json`: the network, each exit alone, and one point per budget.

    Keys: version, backbone, stage_macs, num_val_images, exit_accuracy (each exit alone on
    validation), points (name, budget_macs, thresholds, avg_macs, val_accuracy, exit_rates,
    on_front: no other point is as cheap and more accurate).
    """
    on_front = set(pareto_front([(f.avg_macs, f.accuracy) for f in fits]))
    points = [
        {
            "name": point_name(f.budget_macs),
            "budget_macs": float(f.budget_macs),
            "thresholds": list(f.thresholds),
            "avg_macs": float(f.avg_macs),
            "val_accuracy": float(f.accuracy),
            "exit_rates": list(f.exit_rates),
            "on_front": i in on_front,
        }
        for i, f in enumerate(fits)
    ]
    labels = np.asarray(labels)
    return {
        "version": FRONT_VERSION,
        "backbone": spec.to_dict(),
        "stage_macs": [int(c) for c in stage_macs],
        "num_val_images": int(len(labels)),
        "exit_accuracy": [float(np.mean(p.argmax(-1) == labels)) for p in probs],
        "points": points,
    }


def measure_front(
    model: keras.Model,
    spec: BackboneSpec,
    dataset: str,
    data_dir: str | None,
    budgets: Sequence[float] | None,
    pareto_points: int = 8,
    num_val_images: int | None = None,
) -> dict:
    """Runs every exit over the validation split and fits thresholds for each budget.

    Args:
      model: the trained multi-exit model.
      spec: its backbone.
      dataset, data_dir: the data it was trained on.
      budgets: average-MACs budgets; None or empty: `budget_grid(stage_macs, pareto_points)`.
      pareto_points: budgets of the grid.
      num_val_images: the first this many validation images (None: all).

    Returns:
      The `front_record`.

    Raises:
      DataError: the dataset cannot be read.
      TrainError: the network's outputs are not finite.
      ValueError: a budget below exit 1's cost.
    """
    from enas4d_tf.data import load_arrays

    images, labels = load_arrays(dataset, "validation", data_dir, max_examples=num_val_images)
    probs = exit_probabilities(model, images)
    finite = np.isfinite(probs).reshape(len(probs), -1).all(axis=1)
    if not finite.all():
        raise TrainError(
            f"exit {int(np.argmin(finite)) + 1}'s outputs on the validation split are not "
            "finite: the network diverged; train it again with a lower --learning_rate"
        )
    macs = exit_macs(spec)
    budgets = list(budgets) if budgets else budget_grid(macs, pareto_points)
    return front_record(spec, macs, probs, labels, fit_front(probs, labels, macs, budgets))


def points_to_export(record: dict, budgets_given: bool) -> list[dict]:
    """The points of a `front_record` to export: every given budget's, or else those on the
    front; one per name (the first)."""
    out, names = [], set()
    for point in record["points"]:
        if (budgets_given or point["on_front"]) and point["name"] not in names:
            names.add(point["name"])
            out.append(point)
    return out
