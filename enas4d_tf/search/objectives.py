"""What the search optimises: dynamic multi-exit or static single-exit networks, and budgets.

An `Objective` (see `enas4d_tf.search.evolution`) says which architectures are candidates for
a MACs budget, how a measured candidate scores there, and what the accuracy predictor sees:

* `DynamicObjective`: multi-exit networks, scored by their validation accuracy with exit
  thresholds fitted for the budget (average cost `sum_s p_s * C_s`);
* `StaticObjective`: single-exit networks, the last exit alone at its full cost `C_S`.
"""

from __future__ import annotations

import math

import numpy as np

from enas4d_tf.errors import SearchError
from enas4d_tf.model.macs import stage_macs
from enas4d_tf.search.evolution import Objective, format_macs
from enas4d_tf.space import Arch, SearchSpace


class CostModel:
    """Cumulative stage MACs per architecture, memoised (repair asks for them often).

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
        self.smallest = self(space.smallest())
        self.largest = self(space.largest())

    def __call__(self, arch: Arch) -> list:
        key = arch.to_json()
        if key not in self._cache:
            self._cache[key] = stage_macs(self.space, arch, num_classes=self.num_classes)
        return self._cache[key]


class DynamicObjective(Objective):
    """Multi-exit networks: accuracy with thresholds fitted for the budget on validation."""

    name = "dynamic"

    def __init__(self, space: SearchSpace, costs: CostModel, max_cost_ratio: float = 3.0):
        self.space = space
        self.costs = costs
        self.max_cost_ratio = float(max_cost_ratio)
        self._reference = float(costs.largest[-1])

    def check_budget(self, budget: float) -> None:
        floor = self.costs.smallest[0]
        if budget < floor:
            raise SearchError(
                f"budget {format_macs(budget)} MACs is impossible: the first exit of the "
                f"smallest network already costs {format_macs(floor)} ({floor} MACs)"
            )

    def fits(self, arch: Arch, budget: float) -> bool:
        c = self.costs(arch)
        ceiling = max(self.max_cost_ratio * budget, self.costs.smallest[-1])
        return c[0] <= budget and c[-1] <= ceiling

    def score(self, record, budget: float):
        fit = record.measurement.fit(budget)
        return None if fit is None else (fit.accuracy, fit.avg_macs)

    def features(self, arch: Arch, budget: float) -> np.ndarray:
        c = np.asarray(self.costs(arch), np.float64)
        extra = np.concatenate([np.log(c / budget), [np.log(budget / self._reference)]])
        return np.concatenate([self.space.encode(arch), extra.astype(np.float32)])


class StaticObjective(Objective):
    """Single-exit networks: the last exit's accuracy at the full cost `C_S`."""

    name = "static"

    def __init__(self, space: SearchSpace, costs: CostModel):
        self.space = space
        self.costs = costs
        self._reference = float(costs.largest[-1])

    def check_budget(self, budget: float) -> None:
        floor = self.costs.smallest[-1]
        if budget < floor:
            raise SearchError(
                f"budget {format_macs(budget)} MACs is impossible for a static network: the "
                f"smallest network costs {format_macs(floor)} ({floor} MACs)"
            )

    def fits(self, arch: Arch, budget: float) -> bool:
        return self.costs(arch)[-1] <= budget

    def score(self, record, budget: float):
        cost = record.stage_macs[-1]
        if cost > budget:
            return None
        return (record.measurement.exit_accuracy[-1], float(cost))

    def features(self, arch: Arch, budget: float) -> np.ndarray:
        del budget  # a static network's accuracy does not depend on it
        extra = np.array([np.log(self.costs(arch)[-1] / self._reference)], np.float32)
        return np.concatenate([self.space.encode(arch), extra])


def make_objectives(costs: CostModel, max_cost_ratio: float) -> dict[str, Objective]:
    """`{"dynamic": DynamicObjective, "static": StaticObjective}` over `costs`."""
    return {
        "dynamic": DynamicObjective(costs.space, costs, max_cost_ratio),
        "static": StaticObjective(costs.space, costs),
    }


def pareto_budgets(costs: CostModel, mode: str, points: int) -> list[float]:
    """A geometric grid of budgets spanning what `mode`'s networks can cost.

    Static: from the smallest to the largest network's full cost. Dynamic: from the
    geometric mean of the smallest network's first-exit and full cost (below it every image
    would leave at the first exit of a tiny network) to the largest network's full cost.
    Budgets are rounded to 3 significant digits, inward so they stay feasible.
    """
    hi = float(costs.largest[-1])
    lo = float(costs.smallest[-1])
    if mode == "dynamic":
        lo = math.sqrt(costs.smallest[0] * costs.smallest[-1])
    grid = np.geomspace(lo, hi, points)
    out = []
    for i, b in enumerate(grid):
        scale = 10 ** (math.floor(math.log10(b)) - 2)
        r = (math.ceil if i == 0 else math.floor)(b / scale) * scale
        out.append(float(f"{r:.3g}"))
    return sorted(set(out))


def budgets_per_mode(config, objectives: dict, costs: CostModel, log) -> dict[str, list]:
    """The budgets each mode of `config` searches: its `--pareto` grid, or the given budgets
    that mode's networks can meet (sorted, without repeats).

    Raises:
      SearchError: a given budget no network of a searched mode can meet (with
        `--mode=both`, a budget only dynamic networks can meet is skipped by static, with a
        log line).
    """
    modes = config.modes
    out = {}
    for mode in modes:
        objective = objectives[mode]
        if config.pareto:
            out[mode] = pareto_budgets(costs, mode, config.pareto_points)
            continue
        feasible = []
        for b in config.budgets:
            try:
                objective.check_budget(b)
                feasible.append(float(b))
            except SearchError:
                # With --mode=both a budget only a dynamic network can meet is still useful.
                if len(modes) == 1 or mode == "dynamic":
                    raise
                log(f"budget {format_macs(b)} is below every static network; static skips it")
        out[mode] = sorted(set(feasible))
    return out
