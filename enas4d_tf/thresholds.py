"""Thresholds of the exit policy fitted for an average-MACs budget, on validation data only.

Two fitters, both taking a `exit_policy.ValidationSplit` (never the test split) and returning a
`exit_policy.FitResult` whose measured validation average MACs are within the budget:

* `geometric_thresholds`: MSDNet's budgeted schedule, exit proportions `q^s` normalised, with
  `q` found by bisection;
* `fit_thresholds`: accuracy-maximising block coordinate ascent started from the geometric
  solution (at least as accurate by construction).

`FITTERS` maps the method names stored in search states ("geometric", "greedy") to them.

Example:
  >>> split = exit_policy.ValidationSplit(probs, labels)   # probs (S, N, C) from validation
  >>> fit = fit_thresholds(split, stage_macs, budget=2e6)
  >>> fit.thresholds, fit.accuracy, fit.avg_macs
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from enas4d_tf.exit_policy import (
    FitResult,
    ValidationSplit,
    check_stage_macs,
    exit_indices,
    first_exits,
    policy_outcome,
    threshold_array,
)

# Quantile grid of the accuracy-maximising fitter: candidate thresholds of exit `s` are these
# quantiles of exit `s`'s confidence over the validation images (plus "never exit").
DEFAULT_GRID_SIZE = 256
_MAX_SWEEPS = 50
_BISECTION_STEPS = 60
# log q range of the geometric schedule: e^-30 puts everything on exit 1, e^30 on the last.
_LOG_Q_RANGE = 30.0


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
    c = check_stage_macs(stage_macs, split.num_stages)
    budget = _check_budget(budget, c)
    S = split.num_stages

    def attempt(log_q: float | None):
        q = 0.0 if log_q is None else math.exp(log_q)
        t = thresholds_for_proportions(split.confidence, geometric_proportions(q, S))
        exits = exit_indices(split.confidence, t)
        return policy_outcome(exits, split.correct, c, t)

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


@dataclasses.dataclass(frozen=True)
class _Cells:
    """Where each image still running at exit `s` falls in the grid of candidate pairs
    `(t[s], t[j])`: the rank of its exit-`s` confidence among the `t[s]` candidates and of its
    exit-`j` confidence among the `t[j]` candidates."""

    cand_a: np.ndarray  # candidate values of t[s]
    ka: np.ndarray  # the image leaves at s for cand_a[k], k < ka
    cand_b: np.ndarray  # candidate values of t[j] ([inf] without a j)
    kb: np.ndarray
    reach_j: np.ndarray  # not leaving at s, the image gets to exit j

    @classmethod
    def build(cls, conf, t, s, j, grids, idx, onward) -> _Cells:
        cand_a = np.unique(np.concatenate([[t[s], np.inf], grids[s]]))
        ka = np.searchsorted(cand_a, conf[s, idx], side="right")
        if j is None:
            cand_b = np.array([np.inf])
            kb = np.zeros(idx.size, np.int64)
            reach_j = np.zeros(idx.size, bool)
        else:
            cand_b = np.unique(np.concatenate([[t[j], np.inf], grids[j]]))
            kb = np.searchsorted(cand_b, conf[j, idx], side="right")
            # None of s+1..j-1 takes them.
            reach_j = onward >= j
        return cls(cand_a, ka, cand_b, kb, reach_j)

    def table(self, stay, base, at_j) -> np.ndarray:
        """`value[k, l] = sum_{ka > k} stay + sum_{ka <= k} base + sum_{ka <= k, kb > l} at_j`
        for every pair of candidates `(cand_a[k], cand_b[l])`, by prefix sums."""
        ka, kb, reach_j = self.ka, self.kb, self.reach_j
        ga, gb = self.cand_a.size, self.cand_b.size
        stay_sums = np.bincount(ka, weights=stay, minlength=ga + 1)
        leave = stay_sums.sum() - np.cumsum(stay_sums)[:ga]
        go_on = np.cumsum(np.bincount(ka, weights=base, minlength=ga + 1))[:ga]
        h = np.zeros((ga + 1, gb + 1))
        np.add.at(h, (ka[reach_j], kb[reach_j]), at_j[reach_j])
        h = np.cumsum(h, axis=0)[:ga]
        above = np.cumsum(h[:, ::-1], axis=1)[:, ::-1]  # above[k, l] = sum_{u >= l}
        return leave[:, None] + go_on[:, None] + above[:, 1 : gb + 1]


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
    `_Cells`, and prefix sums over the cells give, for every pair, how many images are correct
    and the total cost. The current values are candidates and win ties, so `t` changes only
    for a strictly better policy (more images correct, or as many for less cost). Modifies `t`
    in place; returns whether it changed.
    """
    N = conf.shape[1]
    columns = np.arange(N)
    exits = first_exits(conf, t)
    gone = exits < s  # left before exit s: t[s] and t[j] do not matter to them
    fixed_correct = int(correct[exits[gone], columns[gone]].sum())
    fixed_cost = float(c[exits[gone]].sum())
    idx = np.nonzero(~gone)[0]
    # Where an image that does not leave at s goes, with the current later thresholds.
    t_skip = t.copy()
    t_skip[s] = np.inf
    if j is not None:
        t_skip[j] = np.inf
    onward = s + 1 + first_exits(conf[s + 1 :, idx], t_skip[s + 1 :])
    base_correct = correct[onward, idx].astype(np.float64)
    base_cost = c[onward]
    cells = _Cells.build(conf, t, s, j, grids, idx, onward)
    if j is None:
        j_correct = np.zeros(idx.size)
        j_cost = np.zeros(idx.size)
    else:
        j_correct = correct[j, idx] - base_correct
        j_cost = c[j] - base_cost
    stay_correct = correct[s, idx].astype(np.float64)
    n_correct = fixed_correct + cells.table(stay_correct, base_correct, j_correct)
    cost = fixed_cost + cells.table(np.full(idx.size, c[s]), base_cost, j_cost)
    n_correct = np.rint(n_correct).astype(np.int64)
    return _take_best(cells, t, s, j, n_correct, cost, cost / N <= budget)


def _take_best(cells: _Cells, t, s, j, n_correct, cost, feasible) -> bool:
    """Moves `t[s]`, `t[j]` to the most accurate feasible pair (the cheapest among equals)
    when it beats the current pair or the current pair is not feasible."""
    k_now = int(np.searchsorted(cells.cand_a, t[s]))
    l_now = 0 if j is None else int(np.searchsorted(cells.cand_b, t[j]))
    if not feasible.any():
        return False
    key = np.where(feasible, n_correct, -1).astype(np.float64)
    best_correct = key.max()
    ties = feasible & (n_correct == best_correct)
    best_cost = cost[ties].min()
    now_key = (int(n_correct[k_now, l_now]), -float(cost[k_now, l_now]))
    if not feasible[k_now, l_now] or (int(best_correct), -float(best_cost)) > now_key:
        k, k_b = (int(v[0]) for v in np.nonzero(ties & (cost == best_cost)))
        t[s] = cells.cand_a[k]
        if j is not None:
            t[j] = cells.cand_b[k_b]
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
    t = threshold_array(start.thresholds)
    for _ in range(_MAX_SWEEPS):
        changed = False
        for s, j in blocks:
            changed |= _block_move(conf, correct, c, t, s, j, grids, budget)
        if not changed:
            break
    thresholds = [None if math.isinf(v) else float(v) for v in t[:-1]] + [0.0]
    best = policy_outcome(exit_indices(conf, thresholds), correct, c, thresholds)
    if best[2] > budget or best[0] < start.accuracy:
        # Only floating-point edge cases could get here; the start point is within budget.
        return dataclasses.replace(start, method="greedy")
    return FitResult(*best, budget_macs=budget, method="greedy")


FITTERS = {"geometric": geometric_thresholds, "greedy": fit_thresholds}
