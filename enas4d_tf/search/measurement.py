"""A measured candidate and the scores the search ranks it by (numpy only, no TensorFlow).

`Measurement` holds what a candidate's exits do on the validation split (each exit's
confidence and correctness per image). From it, without running the network again:

* a static network truncated at exit `s` scores exit `s`'s accuracy on every validation
  image (nothing is fitted, so the score is unbiased);
* a dynamic network's thresholds are fitted for a MACs budget (`Measurement.fit`, on all
  validation images: what a chosen network reports and exports), and its ranking score is
  cross-fitted (`Measurement.cross_fit`): thresholds fitted on one half of the images are
  scored on the other half and the other way round. A score measured on the images the
  thresholds were fitted on is biased upward against static networks; a cross-fitted one
  is not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from enas4d_tf import thresholds
from enas4d_tf.exit_policy import (
    FitResult,
    PolicyResult,
    ValidationSplit,
    check_stage_macs,
    exit_indices,
    policy_outcome,
)
from enas4d_tf.space import Arch


@dataclasses.dataclass(frozen=True)
class CrossFitResult:
    """Thresholds fitted on one half of the validation images and scored on the other.

    Attributes:
      accuracy: mean of the two held-out accuracies.
      avg_macs: mean of the two held-out average MACs.
      exit_rates: mean of the two held-out exit rates.
      budget_macs: the budget each half's thresholds were fitted for.
      fits: per half, the FitResult on the images it was fitted on.
      held_out: per half, the PolicyResult of those thresholds on the other half.
    """

    accuracy: float
    avg_macs: float
    exit_rates: list
    budget_macs: float
    fits: tuple
    held_out: tuple

    @property
    def meets_budget(self) -> bool:
        """Whether the held-out average MACs are within the budget."""
        return self.avg_macs <= self.budget_macs

    @property
    def in_sample_accuracy(self) -> float:
        """Mean accuracy of each half's thresholds on the images they were fitted on."""
        return float(np.mean([f.accuracy for f in self.fits]))


def cross_fit_folds(num_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of `range(num_images)` (sorted indices), a random split fixed by
    `seed`, so every candidate of a search is scored on the same halves.

    Raises:
      ValueError: fewer than 2 images.
    """
    if num_images < 2:
        raise ValueError(f"a cross-fit needs at least 2 validation images, got {num_images}")
    order = np.random.default_rng(seed).permutation(num_images)
    half = num_images // 2
    return np.sort(order[:half]), np.sort(order[half:])


def cross_fit(
    split: ValidationSplit,
    stage_macs: Sequence[float],
    budget: float,
    seed: int = 0,
    method: str = "greedy",
) -> CrossFitResult:
    """2-fold cross-fit: thresholds fitted for `budget` on each half, scored on the other.

    Args:
      split: the validation predictions.
      stage_macs: `S` cumulative MACs.
      budget: average MACs each half's thresholds may spend on that half.
      seed: fixes the halves (`cross_fit_folds`).
      method: the fitter (`thresholds.FITTERS`).

    Returns:
      The CrossFitResult (its held-out average MACs may exceed the budget: `meets_budget`).

    Raises:
      ValueError: fewer than 2 images, or a budget below the first exit's cost.
    """
    c = check_stage_macs(stage_macs, split.num_stages)
    halves = cross_fit_folds(split.num_images, seed)
    fits, held_out = [], []
    for fit_on, score_on in (halves, halves[::-1]):
        part = ValidationSplit.from_confidences(
            split.confidence[:, fit_on], split.correct[:, fit_on]
        )
        fit = thresholds.FITTERS[method](part, c, budget)
        exits = exit_indices(split.confidence[:, score_on], fit.thresholds)
        outcome = policy_outcome(exits, split.correct[:, score_on], c, fit.thresholds)
        fits.append(fit)
        held_out.append(PolicyResult(*outcome))
    return CrossFitResult(
        accuracy=float(np.mean([r.accuracy for r in held_out])),
        avg_macs=float(np.mean([r.avg_macs for r in held_out])),
        exit_rates=[float(r) for r in np.mean([r.exit_rates for r in held_out], axis=0)],
        budget_macs=float(budget),
        fits=tuple(fits),
        held_out=tuple(held_out),
    )


@dataclasses.dataclass(eq=False)
class Measurement:
    """One measured candidate: what its exits do on the validation split.

    Attributes:
      arch: the architecture.
      stage_macs: `S` cumulative MACs.
      split: the validation confidences and correctness.
      seconds: wall time of the measurement (0 for one loaded from a saved state).
      stage_costs: `S` cumulative costs thresholds are fitted to when the search's cost is
        not MACs (milliseconds of a latency model, `enas4d_tf.search.objectives.CostModel`);
        None: `stage_macs`. Budgets and average costs of `fit` and `cross_fit` are in its
        unit (their results' `avg_macs` and `budget_macs` fields then hold milliseconds).
    """

    arch: Arch
    stage_macs: list
    split: ValidationSplit
    seconds: float = 0.0
    stage_costs: list | None = None
    _fits: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def costs(self) -> list:
        """The cumulative costs thresholds are fitted to: `stage_costs`, else `stage_macs`."""
        return self.stage_macs if self.stage_costs is None else self.stage_costs

    def use_costs(self, stage_costs: list | None) -> None:
        """Fits to `stage_costs` from now on (None: MACs); fits made with others are dropped."""
        if stage_costs != self.stage_costs:
            self.stage_costs = None if stage_costs is None else [float(c) for c in stage_costs]
            self._fits.clear()

    @property
    def exit_accuracy(self) -> list:
        """Validation accuracy of each exit on its own (exit 1 first), on every image."""
        return [float(v) for v in self.split.correct.mean(axis=1)]

    @property
    def fits(self) -> dict:
        """`{(budget, method): FitResult, CrossFitResult or None}` of every fit computed so
        far (method "crossfit/<seed>" for `cross_fit`)."""
        return dict(self._fits)

    def fit(self, budget: float, method: str = "greedy") -> FitResult | None:
        """Thresholds for `budget` (in the unit of `costs`) on all validation images; None
        when `C_1 > budget`."""
        key = (float(budget), method)
        if key not in self._fits:
            if self.costs[0] > budget:
                self._fits[key] = None
            else:
                fitter = thresholds.FITTERS[method]
                self._fits[key] = fitter(self.split, self.costs, float(budget))
        return self._fits[key]

    def cross_fit(self, budget: float, seed: int = 0) -> CrossFitResult | None:
        """The cross-fitted score for `budget` (`cross_fit` with the greedy fitter, halves
        fixed by `seed`); None when `C_1 > budget`."""
        key = (float(budget), f"crossfit/{seed}")
        if key not in self._fits:
            if self.costs[0] > budget:
                self._fits[key] = None
            else:
                self._fits[key] = cross_fit(self.split, self.costs, float(budget), seed)
        return self._fits[key]
