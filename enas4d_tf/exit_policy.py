"""Dynamic inference: the exit policy and its average cost (pure numpy).

An image leaves at the first exit whose confidence (max softmax probability) reaches that
exit's threshold; a threshold of `None` means "never exit there" and the last exit takes every
image left. With `p_s` the fraction of images leaving at exit `s` and `C_s` the cumulative MACs
up to and including exit `s`'s head, the average cost is `sum_s p_s * C_s` (README.md,
"Search"). Code indices of exits are 0-based; messages number exits from 1, as users do.

Thresholds are fitted for a MACs budget by `enas4d_tf.thresholds`, on validation data only:
the fitters take a `ValidationSplit`, which the search builds from the "validation" split, and
refuse anything else, so the test split cannot be used to choose thresholds by accident.

Example:
  >>> split = ValidationSplit(probs, labels)              # probs (S, N, C) from validation
  >>> fit = thresholds.fit_thresholds(split, stage_macs, budget=2e6)
  >>> fit.thresholds                                       # S entries, last 0.0
  >>> evaluate_policy(test_probs, test_labels, stage_macs, fit.thresholds).accuracy
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True, init=False, eq=False)
class ValidationSplit:
    """Per-exit predictions on the validation split: the only data thresholds are fitted on.

    Args:
      probs: `(S, N, C)` softmax probabilities of every exit, or `(S, N)` confidences when
        `correct` is given.
      labels: `(N,)` int labels, or None when `correct` is given.
      correct: optional `(S, N)` bool, whether exit `s` classifies image `n` correctly.

    Attributes:
      confidence: `(S, N)` float32 max-softmax probability of each exit.
      correct: `(S, N)` bool, whether each exit's prediction is right.

    Raises:
      ValueError: shapes that do not match, or no images.
    """

    confidence: np.ndarray
    correct: np.ndarray

    def __init__(self, probs, labels=None, correct=None):
        if correct is None:
            confidence, correct = confidences_and_correct(probs, labels)
        else:
            confidence = np.asarray(probs, np.float32)
            correct = np.asarray(correct, bool)
            if confidence.ndim != 2 or confidence.shape != correct.shape:
                raise ValueError(
                    "confidences and correctness must both be (S, N), got "
                    f"{confidence.shape} and {correct.shape}"
                )
        if confidence.shape[1] == 0:
            raise ValueError("the validation split has no images")
        object.__setattr__(self, "confidence", confidence)
        object.__setattr__(self, "correct", correct)

    @classmethod
    def from_confidences(cls, confidence, correct) -> ValidationSplit:
        """From `(S, N)` max-softmax confidences and `(S, N)` correctness."""
        return cls(confidence, correct=correct)

    @property
    def num_stages(self) -> int:
        return int(self.confidence.shape[0])

    @property
    def num_images(self) -> int:
        return int(self.confidence.shape[1])


@dataclasses.dataclass(frozen=True)
class PolicyResult:
    """What an exit policy does on one split.

    Attributes:
      accuracy: fraction of images classified correctly at the exit they leave at.
      exit_rates: `S` fractions of images leaving at each exit (they sum to 1).
      avg_macs: `sum_s exit_rates[s] * stage_macs[s]`.
      thresholds: the thresholds applied (JSON form).
    """

    accuracy: float
    exit_rates: list
    avg_macs: float
    thresholds: list


@dataclasses.dataclass(frozen=True)
class FitResult(PolicyResult):
    """A `PolicyResult` on the validation split plus the budget it was fitted for."""

    budget_macs: float = math.inf
    method: str = ""


def confidences_and_correct(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """Max-softmax confidence and correctness of every exit.

    Args:
      probs: `(S, N, C)` per-exit softmax probabilities.
      labels: `(N,)` int labels.

    Returns:
      `(confidence float32 (S, N), correct bool (S, N))`.

    Raises:
      ValueError: shapes do not match.
    """
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if probs.ndim != 3:
        raise ValueError(f"per-exit probabilities must be (S, N, C), got shape {probs.shape}")
    if labels.shape != (probs.shape[1],):
        raise ValueError(f"labels must be ({probs.shape[1]},), got shape {labels.shape}")
    confidence = probs.max(axis=2).astype(np.float32)
    correct = probs.argmax(axis=2) == labels[None, :]
    return confidence, correct


def check_thresholds(thresholds: Sequence, num_stages: int) -> list:
    """Validates thresholds in the JSON form and returns them as a list.

    Raises:
      ValueError: wrong length, a value that is not a number in [0, 1] or None, or a last
        threshold other than 0.0.
    """
    thresholds = list(thresholds)
    if len(thresholds) != num_stages:
        raise ValueError(f"need {num_stages} thresholds, one per exit, got {len(thresholds)}")
    for s, t in enumerate(thresholds):
        if t is None:
            continue
        if isinstance(t, bool) or not isinstance(t, (int, float, np.floating)):
            raise ValueError(f"threshold of exit {s + 1} is {t!r}, not a number or null")
        if not 0.0 <= float(t) <= 1.0:
            raise ValueError(f"threshold of exit {s + 1} = {t} is outside [0, 1]")
    if thresholds[-1] is None or float(thresholds[-1]) != 0.0:
        raise ValueError(
            f"the last threshold must be 0.0 (the last exit takes the rest), got {thresholds[-1]!r}"
        )
    return [None if t is None else float(t) for t in thresholds]


def threshold_array(thresholds: Sequence) -> np.ndarray:
    """Thresholds as float64 for comparisons: None -> +inf (a confidence never reaches it),
    the last one -inf (the last exit always takes the rest)."""
    t = np.array([np.inf if v is None else float(v) for v in thresholds], np.float64)
    t[-1] = -np.inf
    return t


def first_exits(confidence: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The exit each image leaves at, for `(S, N)` confidences and a `threshold_array`."""
    leaves = confidence >= t[:, None]
    leaves[-1] = True
    return np.argmax(leaves, axis=0)


def exit_indices(confidence, thresholds: Sequence) -> np.ndarray:
    """The exit each image leaves at.

    Args:
      confidence: `(S, N)` max-softmax confidences (or `(S, N, C)` probabilities).
      thresholds: `S` thresholds, None for "never exit here"; the last exit takes the rest
        whatever its threshold says.

    Returns:
      `(N,)` int64 exit indices in `0 .. S-1`.
    """
    confidence = np.asarray(confidence)
    if confidence.ndim == 3:
        confidence = confidence.max(axis=2)
    t = threshold_array(thresholds)
    if len(t) != confidence.shape[0]:
        raise ValueError(f"need {confidence.shape[0]} thresholds, got {len(t)}")
    return first_exits(confidence, t).astype(np.int64)


def average_macs(exit_rates: Sequence[float], stage_macs: Sequence[float]) -> float:
    """`sum_s p_s * C_s`: the average cost of a policy with these exit rates."""
    return float(np.dot(np.asarray(exit_rates, np.float64), np.asarray(stage_macs, np.float64)))


def policy_outcome(exits: np.ndarray, correct: np.ndarray, stage_macs, thresholds) -> tuple:
    """`(accuracy, exit_rates, avg_macs, thresholds)` of images leaving at `exits`: the fields
    of a `PolicyResult`, in order."""
    S, N = correct.shape
    counts = np.bincount(exits, minlength=S)
    accuracy = float(correct[exits, np.arange(N)].mean())
    # Total cost / N: the same exact integer sum the fitters compare with the budget.
    avg = float(np.dot(counts, np.asarray(stage_macs, np.float64)) / N)
    return accuracy, [float(r) for r in counts / N], avg, thresholds


def evaluate_policy(probs, labels, stage_macs: Sequence[float], thresholds) -> PolicyResult:
    """Accuracy, exit rates and average MACs of an exit policy on any split.

    Args:
      probs: `(S, N, C)` per-exit softmax probabilities.
      labels: `(N,)` int labels.
      stage_macs: `S` cumulative MACs, `C_s`.
      thresholds: `S` thresholds in the JSON form.

    Returns:
      The PolicyResult.
    """
    confidence, correct = confidences_and_correct(probs, labels)
    return evaluate_confidences(confidence, correct, stage_macs, thresholds)


def evaluate_confidences(confidence, correct, stage_macs, thresholds) -> PolicyResult:
    """`evaluate_policy` from precomputed `(S, N)` confidences and correctness."""
    confidence = np.asarray(confidence)
    correct = np.asarray(correct, bool)
    thresholds = check_thresholds(thresholds, confidence.shape[0])
    check_stage_macs(stage_macs, confidence.shape[0])
    exits = exit_indices(confidence, thresholds)
    return PolicyResult(*policy_outcome(exits, correct, stage_macs, thresholds))


def static_thresholds(num_stages: int) -> list:
    """The policy of a single-exit network: `[None, ..., None, 0.0]`."""
    return [None] * (num_stages - 1) + [0.0]


def check_stage_macs(stage_macs, num_stages: int) -> np.ndarray:
    """`stage_macs` as float64 after checking there is one positive, non-decreasing
    cumulative cost per exit; raises ValueError otherwise."""
    c = np.asarray(stage_macs, np.float64)
    if c.shape != (num_stages,):
        raise ValueError(f"need {num_stages} cumulative stage MACs, got {c.shape}")
    if np.any(np.diff(c) < 0) or c[0] <= 0:
        raise ValueError(f"cumulative stage MACs must be positive and non-decreasing, got {c}")
    return c


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points of `(cost, accuracy)` pairs, cheapest first.

    A point is kept when no other point is at most as costly and strictly more accurate, or
    strictly cheaper and at least as accurate. Among equal points the first is kept.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front
