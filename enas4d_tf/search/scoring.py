"""The `Objective` interface of the search, the ranking of measured records, and how costs
read (numpy only).

An `Objective` (`enas4d_tf.search.objectives`: dynamic or static networks) says which
architectures are candidates for a budget, how a measured record scores there, and what the
accuracy predictor sees. `best_records` ranks measured records by that score;
`format_macs` / `format_cost` write costs and budgets as names and logs show them.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np

from enas4d_tf.space import Arch


class Objective(abc.ABC):
    """What the search optimises for one kind of network (dynamic or static)."""

    name: str = ""

    @abc.abstractmethod
    def check_budget(self, budget: float) -> None:
        """Raises ValueError when no architecture can meet `budget`."""

    @abc.abstractmethod
    def fits(self, arch: Arch, budget: float) -> bool:
        """Whether `arch` is a candidate for `budget` (cheap: from its MACs alone)."""

    @abc.abstractmethod
    def score(self, record: Any, budget: float) -> tuple[float, float] | None:
        """`(accuracy, cost)` of a measured record within `budget`, or None if it cannot."""

    @abc.abstractmethod
    def predictor_rows(self, record: Any, budgets: Sequence[float]) -> list:
        """`[(features, target accuracy)]` a measured record teaches the accuracy predictor
        (features: a 1-D float array of a fixed length)."""

    @abc.abstractmethod
    def query_rows(self, archs: Sequence[Arch], budget: float) -> tuple[np.ndarray, np.ndarray]:
        """The predictor rows that score `archs` at `budget`: `(x (m, d), owner (m,))`,
        `owner[i]` the index in `archs` of row `i`. An architecture scores as the best
        prediction among its rows (-inf with none: nothing of it fits the budget)."""

    # What a predictor row's group is (`predictor_groups`): "budget", "exit", or "" when
    # the rows form one group.
    predictor_group: str = ""

    def predictor_groups(self, x: np.ndarray) -> np.ndarray:
        """The group of each predictor row `x` `(n, d)` (`(n,)`, hashable values): rows of
        one group are scored against each other (a budget's candidates), so the predictor
        may fit a model per group (`enas4d_tf.search.predictor.GroupedPredictor`). One group
        unless an objective says otherwise."""
        return np.zeros(len(x))

    def summary_columns(self) -> np.ndarray | None:
        """Columns of a predictor row without the one-hot gene encoding (a summary of the
        architecture, and costs), or None when its rows have no such part. A model "on
        summary" (`enas4d_tf.search.selection`) sees only these: a few dozen ordered inputs
        instead of ~200 one-hot ones, which suits a hundred measured networks."""
        return None

    def plain_columns(self) -> np.ndarray | None:
        """Columns of a predictor row that every other model sees: all but the summary
        (`summary_columns`), so that models fitted before the summary existed see what they
        saw then; None: every column."""
        return None

    def predict(self, predictor, archs: Sequence[Arch], budget: float) -> np.ndarray:
        """Predicted scores `(len(archs),)` of unmeasured `archs` at `budget` (the highest
        is measured first); `predictor` has `.predict(x)`."""
        x, owner = self.query_rows(archs, budget)
        return best_per_owner(predictor.predict(x) if len(x) else np.zeros(0), owner, len(archs))


def best_per_owner(values, owner, count: int) -> np.ndarray:
    """`out[j]` = the largest `values[i]` with `owner[i] == j`, -inf where there is none."""
    out = np.full(count, -np.inf)
    if len(values):
        np.maximum.at(out, np.asarray(owner, np.int64), np.asarray(values, np.float64))
    return out


def _rank_key(objective: Objective, record: Any, budget: float):
    score = objective.score(record, budget)
    if score is None:
        return None
    return (-score[0], score[1], record.key)


def best_records(
    objective: Objective, records: Sequence[Any], budget: float, count: int
) -> list[Any]:
    """The `count` records most accurate within `budget` (ties: cheaper, then by key)."""
    ranked = []
    for r in records:
        key = _rank_key(objective, r, budget)
        if key is not None:
            ranked.append((key, r))
    ranked.sort(key=lambda kr: kr[0])
    return [r for _, r in ranked[:count]]


def format_macs(macs: float) -> str:
    """`2.5e6 -> '2.5M'`, `800000 -> '800K'`, `1.2e9 -> '1.2G'` (3 significant digits)."""
    macs = float(macs)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(macs) >= scale:
            return f"{macs / scale:.3g}{unit}"
    return f"{macs:.3g}"


def format_cost(value: float, unit: str = "MACs") -> str:
    """A cost or budget as names and tables show it: `format_macs` for MACs, else 3
    significant digits and the unit (`3.1ms`)."""
    if unit == "MACs":
        return format_macs(value)
    return f"{float(value):.3g}{unit}"
