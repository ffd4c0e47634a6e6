"""Dynamic inference: the exit policy, its cost, and thresholds fitted for a MACs budget.

Pure numpy (DESIGN.md §4). An image leaves at the first exit `s` whose confidence (max softmax
probability) reaches `thresholds[s]`; a threshold of `None` means "never exit there" and the
last exit takes every image left. With `p_s` the fraction of images leaving at exit `s` and
`C_s` the cumulative MACs up to and including exit `s`'s head, the average cost is
`sum_s p_s * C_s`.

Thresholds are fitted on validation data only. The fitters take a `ValidationSplit`, which the
search builds from the "validation" split; they refuse anything else, so the test split cannot
be used to choose thresholds by accident.

Example:
  >>> split = ValidationSplit(probs, labels)              # probs (S, N, C) from validation
  >>> fit = fit_thresholds(split, stage_macs, budget=2e6)
  >>> fit.thresholds                                       # S entries, last 0.0
  >>> evaluate_policy(test_probs, test_labels, stage_macs, fit.thresholds).accuracy
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

# Quantile grid of the accuracy-maximising fitter: candidate thresholds of exit `s` are these
# quantiles of exit `s`'s confidence over the validation images (plus "never exit").
DEFAULT_GRID_SIZE = 256
_MAX_SWEEPS = 50
_BISECTION_STEPS = 60
# log q range of the geometric schedule: e^-30 puts everything on exit 1, e^30 on the last.
_LOG_Q_RANGE = 30.0


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
            raise ValueError(f"threshold {s} is {t!r}, not a number or null")
        if not 0.0 <= float(t) <= 1.0:
            raise ValueError(f"threshold {s} = {t} is outside [0, 1]")
    if thresholds[-1] is None or float(thresholds[-1]) != 0.0:
        raise ValueError(
            f"the last threshold must be 0.0 (the last exit takes the rest), got {thresholds[-1]!r}"
        )
    return [None if t is None else float(t) for t in thresholds]


def _threshold_array(thresholds: Sequence) -> np.ndarray:
    # None -> +inf: a confidence never reaches it. The last exit always takes the rest.
    t = np.array([np.inf if v is None else float(v) for v in thresholds], np.float64)
    t[-1] = -np.inf
    return t


def _exits(confidence: np.ndarray, t: np.ndarray) -> np.ndarray:
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
    t = _threshold_array(thresholds)
    if len(t) != confidence.shape[0]:
        raise ValueError(f"need {confidence.shape[0]} thresholds, got {len(t)}")
    return _exits(confidence, t).astype(np.int64)


def average_macs(exit_rates: Sequence[float], stage_macs: Sequence[float]) -> float:
    """`sum_s p_s * C_s`: the average cost of a policy with these exit rates."""
    return float(np.dot(np.asarray(exit_rates, np.float64), np.asarray(stage_macs, np.float64)))


def _result(exits: np.ndarray, correct: np.ndarray, stage_macs, thresholds) -> tuple:
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
    _check_macs(stage_macs, confidence.shape[0])
    exits = exit_indices(confidence, thresholds)
    return PolicyResult(*_result(exits, correct, stage_macs, thresholds))


def static_thresholds(num_stages: int) -> list:
    """The policy of a single-exit network: `[None, ..., None, 0.0]`."""
    return [None] * (num_stages - 1) + [0.0]


def _check_macs(stage_macs, num_stages: int) -> np.ndarray:
    c = np.asarray(stage_macs, np.float64)
    if c.shape != (num_stages,):
        raise ValueError(f"need {num_stages} cumulative stage MACs, got {c.shape}")
    if np.any(np.diff(c) < 0) or c[0] <= 0:
        raise ValueError(f"cumulative stage MACs must be positive and non-decreasing, got {c}")
    return c


def _check_split(split) -> ValidationSplit:
    if not isinstance(split, ValidationSplit):
        raise TypeError(
            "thresholds are fitted on a ValidationSplit only (the test split is never used to "
            f"choose anything), got {type(split).__name__}"
        )
    return split


def _check_budget(budget: float, stage_macs: np.ndarray) -> float:
    budget = float(budget)
    if not math.isfinite(budget) or budget <= 0:
        raise ValueError(f"MACs budget must be a positive number, got {budget}")
    if budget < stage_macs[0]:
        raise ValueError(
            f"MACs budget {budget:.4g} is below {stage_macs[0]:.4g}, the cost of the first "
            "exit: no threshold can meet it"
        )
    return budget


# ------------------------------------------------------------------------------------------
# (a) MSDNet's geometric schedule.


def geometric_proportions(q: float, num_stages: int) -> np.ndarray:
    """Exit proportions `q^s / sum_j q^j`, `s = 0 .. S-1` (MSDNet's budgeted schedule)."""
    if q <= 0:
        p = np.zeros(num_stages)
        p[0] = 1.0
        return p
    logs = np.arange(num_stages) * math.log(q)
    w = np.exp(logs - logs.max())  # stable for very large or small q
    return w / w.sum()


def thresholds_for_proportions(confidence: np.ndarray, proportions: Sequence[float]) -> list:
    """Thresholds that send (about) `proportions[s]` of the images out at exit `s`.

    Walks the exits in order: of the images still running, the most confident leave at exit
    `s` until the cumulative target `round(N * sum_{j<=s} p_j)` is reached; the threshold is
    the confidence of the last one to leave (ties leave together). A target of zero images
    gives `None`.

    Args:
      confidence: `(S, N)` confidences.
      proportions: `S` non-negative numbers summing to 1.

    Returns:
      `S` thresholds, last 0.0.
    """
    S, N = confidence.shape
    cumulative = np.rint(np.cumsum(proportions) * N).astype(np.int64)
    remaining = np.ones(N, bool)
    left = 0
    thresholds: list = []
    for s in range(S - 1):
        want = int(cumulative[s]) - left
        pool = confidence[s, remaining]
        if want <= 0 or pool.size == 0:
            thresholds.append(None)
            continue
        want = min(want, pool.size)
        t = float(np.partition(pool, pool.size - want)[pool.size - want])
        thresholds.append(t)
        leaving = remaining & (confidence[s] >= t)
        left += int(leaving.sum())
        remaining &= ~leaving
    thresholds.append(0.0)
    return thresholds


def geometric_thresholds(
    split: ValidationSplit, stage_macs: Sequence[float], budget: float
) -> FitResult:
    """MSDNet's baseline: geometric exit proportions whose average cost meets the budget.

    The proportions are `q^s` normalised; `q` is found by bisection (on `log q`) as the largest
    value whose thresholds keep the *measured* validation average MACs within `budget`, so the
    result is within budget whatever rounding and ties do.

    Args:
      split: the validation predictions.
      stage_macs: `S` cumulative MACs.
      budget: average MACs allowed.

    Returns:
      A FitResult (method "geometric").

    Raises:
      ValueError: the budget is below the first exit's cost (impossible) or not positive.
      TypeError: `split` is not a ValidationSplit.
    """
    split = _check_split(split)
    c = _check_macs(stage_macs, split.num_stages)
    budget = _check_budget(budget, c)
    S = split.num_stages

    def attempt(log_q: float | None):
        q = 0.0 if log_q is None else math.exp(log_q)
        t = thresholds_for_proportions(split.confidence, geometric_proportions(q, S))
        exits = exit_indices(split.confidence, t)
        return _result(exits, split.correct, c, t)

    best = attempt(None)  # everything leaves at exit 1: cost C_1 <= budget
    if best[2] > budget:  # cannot happen for valid inputs; guards the invariant
        raise ValueError(f"MACs budget {budget:.4g} cannot be met")
    hi = attempt(_LOG_Q_RANGE)
    if hi[2] <= budget:
        best = hi
    else:
        lo_x, hi_x = -_LOG_Q_RANGE, _LOG_Q_RANGE
        low = attempt(lo_x)
        if low[2] <= budget:
            best = low
            for _ in range(_BISECTION_STEPS):
                mid = 0.5 * (lo_x + hi_x)
                r = attempt(mid)
                if r[2] <= budget:
                    lo_x, best = mid, r
                else:
                    hi_x = mid
    return FitResult(*best, budget_macs=budget, method="geometric")


# ------------------------------------------------------------------------------------------
# (b) Accuracy-maximising fitter.


def _block_move(
    conf: np.ndarray,
    correct: np.ndarray,
    c: np.ndarray,
    t: np.ndarray,
    s: int,
    j: int | None,
    grids: list,
    budget: float,
) -> bool:
    """Sets `t[s]` (and `t[j]`, `s < j < S-1`) to the best pair of grid values within budget.

    Every candidate pair is scored exactly in `O(N + G^2)`: each image falls into a cell of
    (rank of its exit-`s` confidence among the `t[s]` candidates, rank of its exit-`j`
    confidence among the `t[j]` candidates), and prefix sums over the cells give, for every
    pair, how many images are correct and the total cost. The current values are candidates
    and win ties, so `t` changes only for a strictly better policy (more images correct, or
    as many for less cost). Modifies `t` in place; returns whether it changed.
    """
    N = conf.shape[1]
    columns = np.arange(N)
    exits = _exits(conf, t)
    gone = exits < s  # left before exit s: t[s] and t[j] do not matter to them
    fixed_correct = int(correct[exits[gone], columns[gone]].sum())
    fixed_cost = float(c[exits[gone]].sum())
    idx = np.nonzero(~gone)[0]
    # Where an image that does not leave at s goes, with the current later thresholds.
    t_skip = t.copy()
    t_skip[s] = np.inf
    if j is not None:
        t_skip[j] = np.inf
    onward = s + 1 + _exits(conf[s + 1 :, idx], t_skip[s + 1 :])
    base_correct = correct[onward, idx].astype(np.float64)
    base_cost = c[onward]
    cand_a = np.unique(np.concatenate([[t[s], np.inf], grids[s]]))
    ka = np.searchsorted(cand_a, conf[s, idx], side="right")  # leaves at s for a_k, k < ka
    if j is None:
        cand_b = np.array([np.inf])
        kb = np.zeros(idx.size, np.int64)
        reach_j = np.zeros(idx.size, bool)
    else:
        cand_b = np.unique(np.concatenate([[t[j], np.inf], grids[j]]))
        kb = np.searchsorted(cand_b, conf[j, idx], side="right")
        # Images that, not leaving at s, get to exit j (none of s+1..j-1 takes them).
        reach_j = onward >= j
    ga, gb = cand_a.size, cand_b.size

    def table(stay, base, at_j):
        # value[k, l] = sum_{ka > k} stay + sum_{ka <= k} base + sum_{ka <= k, kb > l} at_j
        stay_sums = np.bincount(ka, weights=stay, minlength=ga + 1)
        leave = stay_sums.sum() - np.cumsum(stay_sums)[:ga]
        go_on = np.cumsum(np.bincount(ka, weights=base, minlength=ga + 1))[:ga]
        h = np.zeros((ga + 1, gb + 1))
        np.add.at(h, (ka[reach_j], kb[reach_j]), at_j[reach_j])
        h = np.cumsum(h, axis=0)[:ga]
        above = np.cumsum(h[:, ::-1], axis=1)[:, ::-1]  # above[k, l] = sum_{u >= l}
        return leave[:, None] + go_on[:, None] + above[:, 1 : gb + 1]

    if j is None:
        j_correct = np.zeros(idx.size)
        j_cost = np.zeros(idx.size)
    else:
        j_correct = correct[j, idx] - base_correct
        j_cost = c[j] - base_cost
    n_correct = fixed_correct + table(correct[s, idx].astype(np.float64), base_correct, j_correct)
    cost = fixed_cost + table(np.full(idx.size, c[s]), base_cost, j_cost)
    n_correct = np.rint(n_correct).astype(np.int64)
    k_now = int(np.searchsorted(cand_a, t[s]))
    l_now = 0 if j is None else int(np.searchsorted(cand_b, t[j]))
    feasible = cost / N <= budget
    if not feasible.any():
        return False
    key = np.where(feasible, n_correct, -1).astype(np.float64)
    best_correct = key.max()
    ties = feasible & (n_correct == best_correct)
    best_cost = cost[ties].min()
    now_key = (int(n_correct[k_now, l_now]), -float(cost[k_now, l_now]))
    if not feasible[k_now, l_now] or (int(best_correct), -float(best_cost)) > now_key:
        k, k_b = (int(v[0]) for v in np.nonzero(ties & (cost == best_cost)))
        t[s] = cand_a[k]
        if j is not None:
            t[j] = cand_b[k_b]
        return True
    return False


def fit_thresholds(
    split: ValidationSplit,
    stage_macs: Sequence[float],
    budget: float,
    grid_size: int = DEFAULT_GRID_SIZE,
) -> FitResult:
    """Thresholds that maximise validation accuracy with average MACs within `budget`.

    Block coordinate ascent started from the geometric solution: for each pair of exits
    `(s, j)` (each single exit when `S = 2`), the thresholds of both are set to the best
    pair on a grid (their current values, "never exit", and `grid_size` quantiles of each
    exit's confidence), scored exactly over all pairs; sweeps repeat until nothing changes.
    With `S = 3` a sweep is an exhaustive search of the grid. A move is taken only when it is
    strictly better and within budget, so the result is at least as accurate as
    `geometric_thresholds` on the same data, by construction. Deterministic.

    Args:
      split: the validation predictions.
      stage_macs: `S` cumulative MACs.
      budget: average MACs allowed.
      grid_size: quantiles per exit.

    Returns:
      A FitResult (method "greedy").

    Raises:
      ValueError: the budget is below the first exit's cost or not positive.
      TypeError: `split` is not a ValidationSplit.
    """
    start = geometric_thresholds(split, stage_macs, budget)
    c = np.asarray(stage_macs, np.float64)
    conf, correct = split.confidence, split.correct
    S = conf.shape[0]
    if S == 1:
        return dataclasses.replace(start, method="greedy")
    levels = np.linspace(0.0, 1.0, grid_size)
    grids = [np.unique(np.quantile(conf[s].astype(np.float64), levels)) for s in range(S - 1)]
    blocks = [(s, j) for s in range(S - 1) for j in range(s + 1, S - 1)] or [(0, None)]
    t = _threshold_array(start.thresholds)
    for _ in range(_MAX_SWEEPS):
        changed = False
        for s, j in blocks:
            changed |= _block_move(conf, correct, c, t, s, j, grids, budget)
        if not changed:
            break
    thresholds = [None if math.isinf(v) else float(v) for v in t[:-1]] + [0.0]
    best = _result(exit_indices(conf, thresholds), correct, c, thresholds)
    if best[2] > budget or best[0] < start.accuracy:
        # Only floating-point edge cases could get here; the start point is within budget.
        return dataclasses.replace(start, method="greedy")
    return FitResult(*best, budget_macs=budget, method="greedy")


FITTERS = {"geometric": geometric_thresholds, "greedy": fit_thresholds}


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
