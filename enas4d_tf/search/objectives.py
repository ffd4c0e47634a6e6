"""What the search optimises: dynamic multi-exit or static networks, and budgets.

An `Objective` (see `enas4d_tf.search.evolution`) says which architectures are candidates for
a MACs budget, how a measured candidate scores there, and what the accuracy predictor sees:

* `DynamicObjective`: multi-exit networks. Thresholds are fitted for the budget; the score a
  candidate is ranked by is cross-fitted (`Measurement.cross_fit`: fitted on one half of the
  validation images, scored on the other, both ways), and its held-out average MACs must
  meet the budget. The chosen network's thresholds are then refitted on all of them.
* `StaticObjective`: static networks over every exit. A static network is an architecture
  cut at exit `s` (its groups `<= s`, exit `s`'s head; cost
  `enas4d_tf.model.macs.truncated_macs`), scored by exit `s`'s accuracy on every validation
  image. A measured candidate gives `S` static networks; at a budget it scores as the most
  accurate of those within it.

Neither score is fitted on the images it is measured on, so the two compare without bias.
"""

from __future__ import annotations

import math

import numpy as np

from enas4d_tf.errors import SearchError
from enas4d_tf.exit_policy import PolicyResult, static_thresholds
from enas4d_tf.model.macs import stage_macs, truncated_macs
from enas4d_tf.search.evolution import Objective, format_macs
from enas4d_tf.space import Arch, SearchSpace


class CostModel:
    """Cumulative stage MACs and truncated-network MACs per architecture, memoised (repair
    asks for them often).

    Args:
      space: the search space.
      num_classes: classes of the network's heads.

    Attributes:
      smallest, largest: the cumulative stage MACs of the space's smallest and largest
        networks.
    """

    def __init__(self, space: SearchSpace, num_classes: int):
        self.space = space
        self.num_classes = num_classes
        self._cache: dict = {}
        self._truncated: dict = {}
        self.smallest = self(space.smallest())
        self.largest = self(space.largest())

    def __call__(self, arch: Arch) -> list:
        key = arch.to_json()
        if key not in self._cache:
            self._cache[key] = stage_macs(self.space, arch, num_classes=self.num_classes)
        return self._cache[key]

    def truncated(self, arch: Arch) -> list:
        """MACs of `arch` cut at each exit, exit 1 first: `truncated_macs(..., s)`, `s = 1..S`
        (exit 1's equals `C_1`; a later one is `C_s` less the unused earlier classifiers)."""
        key = arch.to_json()
        if key not in self._truncated:
            self._truncated[key] = [
                truncated_macs(self.space, arch, s, num_classes=self.num_classes)
                for s in range(1, self.space.num_stages + 1)
            ]
        return self._truncated[key]

    def within_search_range(self, arch: Arch, budget: float, max_cost_ratio: float) -> bool:
        """The candidates of both objectives at `budget`: exit 1 within the budget, and the
        last exit at most `max_cost_ratio * budget` (or the smallest network's), so the
        search does not spend measurements on networks it could use only at exit 1."""
        c = self(arch)
        ceiling = max(max_cost_ratio * budget, self.smallest[-1])
        return c[0] <= budget and c[-1] <= ceiling


class DynamicObjective(Objective):
    """Multi-exit networks, ranked by their cross-fitted validation accuracy at the budget.

    Args:
      space: the search space.
      costs: the cost model.
      max_cost_ratio: see `CostModel.within_search_range`.
      seed: fixes the two halves of the validation images the cross-fit uses.
    """

    name = "dynamic"

    def __init__(
        self, space: SearchSpace, costs: CostModel, max_cost_ratio: float = 3.0, seed: int = 0
    ):
        self.space = space
        self.costs = costs
        self.max_cost_ratio = float(max_cost_ratio)
        self.seed = int(seed)
        self._reference = float(costs.largest[-1])

    def check_budget(self, budget: float) -> None:
        floor = self.costs.smallest[0]
        if budget < floor:
            raise SearchError(
                f"budget {format_macs(budget)} MACs is impossible: the first exit of the "
                f"smallest network already costs {format_macs(floor)} ({floor} MACs)"
            )

    def fits(self, arch: Arch, budget: float) -> bool:
        return self.costs.within_search_range(arch, budget, self.max_cost_ratio)

    def score(self, record, budget: float):
        """Held-out `(accuracy, average MACs)` of the cross-fit, or None when exit 1 costs
        more than `budget` or the held-out average MACs exceed it."""
        result = record.measurement.cross_fit(budget, self.seed)
        if result is None or not result.meets_budget:
            return None
        return (result.accuracy, result.avg_macs)

    def features(self, arch: Arch, budget: float) -> np.ndarray:
        """Predictor input: the architecture's encoding, its exits' costs relative to the
        budget and the budget relative to the largest network."""
        c = np.asarray(self.costs(arch), np.float64)
        extra = np.concatenate([np.log(c / budget), [np.log(budget / self._reference)]])
        return np.concatenate([self.space.encode(arch), extra.astype(np.float32)])

    def predictor_rows(self, record, budgets) -> list:
        """One row per budget the record scores at: its cross-fitted accuracy there."""
        rows = []
        for b in budgets:
            score = self.score(record, b)
            if score is not None:
                rows.append((self.features(record.arch, b), score[0]))
        return rows

    def predict(self, predictor, archs, budget: float):
        return predictor.predict(np.stack([self.features(a, budget) for a in archs]))


class StaticObjective(Objective):
    """Static networks over every exit: at a budget, a candidate scores as the most accurate
    of its truncated networks within it (ties: the cheaper).

    The predictor learns the accuracy of (architecture, exit) pairs: its features are the
    architecture's encoding, the exit (one-hot) and the truncated network's cost.

    Args:
      space: the search space.
      costs: the cost model.
      max_cost_ratio: see `CostModel.within_search_range`.
    """

    name = "static"

    def __init__(self, space: SearchSpace, costs: CostModel, max_cost_ratio: float = 3.0):
        self.space = space
        self.costs = costs
        self.max_cost_ratio = float(max_cost_ratio)
        self._reference = float(costs.largest[-1])

    def check_budget(self, budget: float) -> None:
        floor = self.costs.truncated(self.space.smallest())[0]
        if budget < floor:
            raise SearchError(
                f"budget {format_macs(budget)} MACs is impossible for a static network: the "
                f"smallest network cut at exit 1 costs {format_macs(floor)} ({floor} MACs)"
            )

    def fits(self, arch: Arch, budget: float) -> bool:
        return self.costs.within_search_range(arch, budget, self.max_cost_ratio)

    def best_exit(self, record, budget: float) -> int | None:
        """The exit (numbered from 1) of the record's best static network within `budget`,
        or None when even exit 1 costs more."""
        costs = self.costs.truncated(record.arch)
        accuracy = record.measurement.exit_accuracy
        feasible = [s for s in range(len(costs)) if costs[s] <= budget]
        if not feasible:
            return None
        return 1 + min(feasible, key=lambda s: (-accuracy[s], costs[s]))

    def score(self, record, budget: float):
        s = self.best_exit(record, budget)
        if s is None:
            return None
        cost = self.costs.truncated(record.arch)[s - 1]
        return (record.measurement.exit_accuracy[s - 1], float(cost))

    def exit_features(self, arch: Arch, exit: int) -> np.ndarray:
        """Predictor input of `arch` cut at `exit` (numbered from 1)."""
        one_hot = np.zeros(self.space.num_stages, np.float32)
        one_hot[exit - 1] = 1.0
        cost = np.log(self.costs.truncated(arch)[exit - 1] / self._reference)
        return np.concatenate([self.space.encode(arch), one_hot, np.array([cost], np.float32)])

    def predictor_rows(self, record, budgets) -> list:
        """One row per exit: the static network cut there and its measured accuracy."""
        del budgets  # a static network's accuracy does not depend on them
        accuracy = record.measurement.exit_accuracy
        return [(self.exit_features(record.arch, s + 1), accuracy[s]) for s in range(len(accuracy))]

    def predict(self, predictor, archs, budget: float):
        """Per architecture, the best predicted accuracy among its exits within `budget`."""
        out = np.full(len(archs), -np.inf)
        for i, arch in enumerate(archs):
            exits = [s + 1 for s, c in enumerate(self.costs.truncated(arch)) if c <= budget]
            if exits:
                rows = np.stack([self.exit_features(arch, s) for s in exits])
                out[i] = float(np.max(predictor.predict(rows)))
        return out

    def result(self, record, exit: int) -> PolicyResult:
        """The static network of `record` cut at `exit`: every image leaves there (exit rates
        and thresholds over its `exit` exits), at its truncated cost."""
        return PolicyResult(
            accuracy=record.measurement.exit_accuracy[exit - 1],
            exit_rates=[0.0] * (exit - 1) + [1.0],
            avg_macs=float(self.costs.truncated(record.arch)[exit - 1]),
            thresholds=static_thresholds(exit),
        )


def make_objectives(costs: CostModel, max_cost_ratio: float, seed: int = 0) -> dict[str, Objective]:
    """`{"dynamic": DynamicObjective, "static": StaticObjective}` over `costs`; `seed` fixes
    the dynamic cross-fit's halves."""
    return {
        "dynamic": DynamicObjective(costs.space, costs, max_cost_ratio, seed),
        "static": StaticObjective(costs.space, costs, max_cost_ratio),
    }


def pareto_budgets(costs: CostModel, points: int) -> list[float]:
    """A geometric grid of budgets, the same for dynamic and static networks (so each budget
    has one network of each kind to compare).

    From the geometric mean of the smallest network's first-exit and full cost (below it
    only the first exit of a tiny network fits) to the largest network's full cost. Budgets
    are rounded to 3 significant digits, inward so they stay feasible.
    """
    hi = float(costs.largest[-1])
    lo = math.sqrt(costs.smallest[0] * costs.smallest[-1])
    grid = np.geomspace(lo, hi, points)
    out = []
    for i, b in enumerate(grid):
        scale = 10 ** (math.floor(math.log10(b)) - 2)
        r = (math.ceil if i == 0 else math.floor)(b / scale) * scale
        out.append(float(f"{r:.3g}"))
    return sorted(set(out))


def budgets_per_mode(config, objectives: dict, costs: CostModel) -> dict[str, list]:
    """The budgets each mode of `config` searches: its `--pareto` grid, or the given budgets
    (sorted, without repeats; dynamic and static networks can meet the same ones, since a
    static network may be cut at exit 1).

    Raises:
      SearchError: a given budget no network of a searched mode can meet.
    """
    out = {}
    for mode in config.modes:
        if config.pareto:
            out[mode] = pareto_budgets(costs, config.pareto_points)
            continue
        for b in config.budgets:
            objectives[mode].check_budget(b)
        out[mode] = sorted({float(b) for b in config.budgets})
    return out
