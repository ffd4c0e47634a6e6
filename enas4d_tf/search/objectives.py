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

import functools
import math

import numpy as np

from enas4d_tf.errors import SearchError
from enas4d_tf.exit_policy import PolicyResult, static_thresholds
from enas4d_tf.model.macs import classifier_macs, group_macs
from enas4d_tf.search.scoring import Objective, format_cost, format_macs
from enas4d_tf.space import Arch, SearchSpace, ops

# Memoised costs kept at most (the inner evolution asks for tens of thousands per budget).
_MAX_CACHED = 200_000


class CostModel:
    """Cumulative stage costs and truncated-network costs per architecture, memoised (repair
    asks for them often): MACs, or milliseconds of a latency model.

    Args:
      space: the search space.
      num_classes: classes of the network's heads.
      latency: None for MACs, or an `enas4d_tf.latency.model.LatencyModel` (its
        `cumulative` and `truncated` milliseconds are the costs; MACs stay available from
        `macs` and `truncated_macs`).

    Attributes:
      kind: "macs" or "latency".
      unit: "MACs" or the latency model's unit ("ms").
      smallest, largest: the cumulative stage costs of the space's smallest and largest
        networks.
    """

    def __init__(self, space: SearchSpace, num_classes: int, latency=None):
        self.space = space
        self.num_classes = num_classes
        self.latency = latency
        self.kind = "macs" if latency is None else "latency"
        self.unit = "MACs" if latency is None else str(latency.unit)
        self._caches: dict = {name: {} for name in ("cost", "truncated", "macs")}
        self.smallest = self(space.smallest())
        self.largest = self(space.largest())

    def _memo(self, name: str, arch: Arch, compute) -> list:
        cache = self._caches[name]
        key = arch.to_json()
        if key not in cache:
            if len(cache) >= _MAX_CACHED:
                cache.clear()
            cache[key] = [float(c) if self.latency is not None else c for c in compute(arch)]
        return cache[key]

    def __call__(self, arch: Arch) -> list:
        """The `S` cumulative costs of `arch` (exit `s`: an image that leaves there)."""
        if self.latency is None:
            return self.macs(arch)
        return self._memo("cost", arch, self.latency.cumulative)

    def truncated(self, arch: Arch) -> list:
        """Costs of `arch` cut at each exit, exit 1 first. MACs: `truncated_macs(..., s)`,
        `s = 1..S` (exit 1's equals `C_1`; a later one is `C_s` less the unused earlier
        classifiers); latency: the model's `truncated` (one graph per cut)."""
        if self.latency is None:
            return self.truncated_macs(arch)
        return self._memo("truncated", arch, self.latency.truncated)

    def macs(self, arch: Arch) -> list:
        """The `S` cumulative stage MACs of `arch` (`stage_macs`), whatever the cost."""
        return self._both_macs(arch)[0]

    def truncated_macs(self, arch: Arch) -> list:
        """MACs of `arch` cut at each exit, exit 1 first (`truncated_macs(..., s)`,
        `s = 1..S`), whatever the cost."""
        return self._both_macs(arch)[1]

    def _both_macs(self, arch: Arch) -> tuple[list, list]:
        # Both from one `space.sizes` (most of the time of a MACs count): the truncated
        # network at exit s is C_s less the classifiers of exits < s (`truncated_macs`).
        key = arch.to_json()
        cache = self._caches["macs"]
        if key not in cache:
            if len(cache) >= _MAX_CACHED:
                cache.clear()
            sizes = self.space.sizes(arch)
            per_stage = group_macs(self.space, sizes, self.num_classes)
            classifiers = classifier_macs(self.space, sizes, self.num_classes)
            cumulative = [int(c) for c in np.cumsum(per_stage)]
            unused = np.concatenate([[0], np.cumsum(classifiers)[:-1]])
            cache[key] = (cumulative, [int(c - u) for c, u in zip(cumulative, unused, strict=True)])
        return cache[key]

    def target(self) -> dict | None:
        """The latency table's target (`kind`, `device`, `runtime`, `threads`,
        `quantization`) the costs are of, or None for MACs. A search has no quantisation of
        its own: the costs are those of the table's graphs."""
        return None if self.latency is None else self.latency.table.target.to_dict()

    def origin(self) -> str:
        """Where the costs come from, for the log: `MACs` or `ms of <quantization> graphs on
        <device> (<kind>, <runtime>, <threads> thread(s))`."""
        if (t := self.target()) is None:
            return self.unit
        where = f"{t['kind']}, {t['runtime']}, {t['threads']} thread(s)"
        out = f"{self.unit} of {t['quantization']} graphs on {t['device']} ({where})"
        if self.margin:
            out += (
                f", predictions x {1 + self.margin:.3f} (the table's largest under-prediction "
                "of its calibration graphs)"
            )
        return out

    @property
    def margin(self) -> float:
        """The latency model's margin (`LatencyModel.margin`): costs are its predictions
        times `1 + margin`; 0 for MACs."""
        return 0.0 if self.latency is None else self.latency.margin

    def format(self, value: float) -> str:
        """A cost or budget as names and tables show it: `2.5M` (MACs) or `3.1ms`."""
        return format_cost(value, self.unit)

    def describe(self, value: float) -> str:
        """A cost with its unit for messages: `2.5M MACs` or `3.1 ms`."""
        if self.unit == "MACs":
            return f"{format_macs(value)} MACs"
        return f"{float(value):.4g} {self.unit}"

    def exact(self, value: float) -> str:
        """`describe(value)` and, for MACs, the exact count: `2.5M (2500000 MACs)`."""
        if self.unit == "MACs":
            return f"{format_macs(value)} ({value} MACs)"
        return self.describe(value)

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
                f"budget {self.costs.describe(budget)} is impossible: the first exit of the "
                f"smallest network already costs {self.costs.exact(floor)}"
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

    predictor_group = "budget"

    def predictor_groups(self, x: np.ndarray) -> np.ndarray:
        """A row's budget: its last feature, `log(budget / largest network's cost)`."""
        return np.round(np.asarray(x, np.float64)[:, -1], 6)

    def features(self, arch: Arch, budget: float) -> np.ndarray:
        """Predictor input: the architecture's encoding and summary (`SearchSpace.summarize`),
        its exits' costs relative to the budget and the budget relative to the largest
        network (the last feature)."""
        c = np.asarray(self.costs(arch), np.float64)
        extra = np.concatenate([np.log(c / budget), [np.log(budget / self._reference)]])
        parts = [self.space.encode(arch), self.space.summarize(arch), extra.astype(np.float32)]
        return np.concatenate(parts)

    def summary_columns(self) -> np.ndarray:
        """Every column after the one-hot encoding: the summary and the costs."""
        return _after_encoding(self.space, self.space.num_stages + 1)

    def plain_columns(self) -> np.ndarray:
        """The one-hot encoding and the costs."""
        return _without_summary(self.space, self.space.num_stages + 1)

    def predictor_rows(self, record, budgets) -> list:
        """One row per budget the record scores at: its cross-fitted accuracy there."""
        rows = []
        for b in budgets:
            score = self.score(record, b)
            if score is not None:
                rows.append((self.features(record.arch, b), score[0]))
        return rows

    def query_rows(self, archs, budget: float):
        """One row per architecture: `features(arch, budget)`."""
        if not archs:
            return np.zeros((0, 0)), np.zeros(0, np.int64)
        x = np.stack([self.features(a, budget) for a in archs])
        return x, np.arange(len(archs))


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
                f"budget {self.costs.describe(budget)} is impossible for a static network: "
                f"the smallest network cut at exit 1 costs {self.costs.exact(floor)}"
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

    predictor_group = "exit"

    def predictor_groups(self, x: np.ndarray) -> np.ndarray:
        """A row's exit (from 1), read from its one-hot (`exit_features`)."""
        num_stages = self.space.num_stages
        one_hot = np.asarray(x)[:, -1 - num_stages : -1]
        return 1 + np.argmax(one_hot, axis=1)

    def exit_features(self, arch: Arch, exit: int) -> np.ndarray:
        """Predictor input of `arch` cut at `exit` (numbered from 1): its encoding and
        summary, the exit (one-hot) and the cut network's cost."""
        one_hot = np.zeros(self.space.num_stages, np.float32)
        one_hot[exit - 1] = 1.0
        cost = np.log(self.costs.truncated(arch)[exit - 1] / self._reference)
        parts = [self.space.encode(arch), self.space.summarize(arch), one_hot]
        return np.concatenate([*parts, np.array([cost], np.float32)])

    def summary_columns(self) -> np.ndarray:
        """Every column after the one-hot encoding: the summary, the exit and the cost."""
        return _after_encoding(self.space, self.space.num_stages + 1)

    def plain_columns(self) -> np.ndarray:
        """The one-hot encoding, the exit and the cost."""
        return _without_summary(self.space, self.space.num_stages + 1)

    def predictor_rows(self, record, budgets) -> list:
        """One row per exit: the static network cut there and its measured accuracy."""
        del budgets  # a static network's accuracy does not depend on them
        accuracy = record.measurement.exit_accuracy
        return [(self.exit_features(record.arch, s + 1), accuracy[s]) for s in range(len(accuracy))]

    def query_rows(self, archs, budget: float):
        """One row per exit within `budget` of each architecture (it scores as the best
        predicted accuracy among them)."""
        rows, owner = [], []
        for i, arch in enumerate(archs):
            for s, c in enumerate(self.costs.truncated(arch)):
                if c <= budget:
                    rows.append(self.exit_features(arch, s + 1))
                    owner.append(i)
        if not rows:
            return np.zeros((0, 0)), np.zeros(0, np.int64)
        return np.stack(rows), np.asarray(owner, np.int64)

    def result(self, record, exit: int) -> PolicyResult:
        """The static network of `record` cut at `exit`: every image leaves there, at its
        truncated cost. Thresholds over its `exit` exits; exit rates over the architecture's
        `S` exits, as its stage MACs are (architecture files read them so)."""
        num_stages = self.space.num_stages
        return PolicyResult(
            accuracy=record.measurement.exit_accuracy[exit - 1],
            exit_rates=[0.0] * (exit - 1) + [1.0] + [0.0] * (num_stages - exit),
            avg_macs=float(self.costs.truncated(record.arch)[exit - 1]),
            thresholds=static_thresholds(exit),
        )


def _after_encoding(space: SearchSpace, tail: int) -> np.ndarray:
    """Column indices of a predictor row after the one-hot encoding: the summary and `tail`
    more columns."""
    start = space.encoding_size
    return np.arange(start, start + ops.summary_size(space) + tail)


def _without_summary(space: SearchSpace, tail: int) -> np.ndarray:
    """Column indices of a predictor row without the summary: the one-hot encoding and the
    `tail` columns after the summary."""
    start, size = space.encoding_size, ops.summary_size(space)
    return np.concatenate([np.arange(start), np.arange(start + size, start + size + tail)])


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
    are rounded to 3 significant digits, inward so they stay feasible. With a latency
    model's margin, the grid is of its predictions without the margin (a margin tightens
    what meets a budget; it does not move the budgets).
    """
    raw = 1.0 + costs.margin
    hi = float(costs.largest[-1]) / raw
    lo = math.sqrt(costs.smallest[0] * costs.smallest[-1]) / raw
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
            _check_unit(costs, b)
        out[mode] = sorted({float(b) for b in config.budgets})
    return out


# A latency budget this many times the largest network's latency was meant in MACs.
_UNIT_SLIP = 1000.0


def _check_unit(costs: CostModel, budget: float) -> None:
    """Refuses a latency budget that can only be a MACs count given by mistake."""
    if costs.kind == "latency" and budget > _UNIT_SLIP * costs.largest[-1]:
        raise SearchError(
            f"budget {budget:g} {costs.unit} is over {_UNIT_SLIP:g}x the largest network's "
            f"latency ({costs.describe(costs.largest[-1])}): with --cost=latency, budgets "
            f"are in {costs.unit}, not MACs"
        )


def make_cost_model(space: SearchSpace, num_classes: int, config) -> CostModel:
    """The cost model `config.cost` asks for: MACs, or the latency model of
    `config.latency_table` (loaded and checked to cover every part the space can need, so
    a missing entry is refused before any measurement rather than midway).

    The table's target is taken as it is: its quantisation, device and threads are what
    the costs are of (`CostModel.target`, recorded in every architecture file). A float32
    table for networks that will be exported as int8 is the user's choice, not refused.

    Raises:
      LatencyError: the table is missing, corrupt, of another format, space or class
        count, or lacks a part the space needs (one line naming the first).
    """
    if config.cost != "latency":
        return CostModel(space, num_classes)
    from enas4d_tf.errors import LatencyError
    from enas4d_tf.latency.calibrate import calibration_margin
    from enas4d_tf.latency.model import LatencyModel
    from enas4d_tf.latency.table import LatencyTable

    path = config.latency_table
    table = LatencyTable.load(path)
    try:
        model = LatencyModel(table, space, num_classes, margin=calibration_margin(table))
    except LatencyError as e:
        raise LatencyError(f"latency table {path}: {e}") from None
    missing = sorted(_space_keys(space, num_classes) - set(table.entries))
    if missing:
        raise LatencyError(
            f"latency table {path} lacks {len(missing)} part(s) search space {space.name!r} "
            f"needs, e.g. {missing[0]!r} (measure it for this space: python -m "
            f"tools.latency_table --preset={space.name})"
        )
    return CostModel(space, num_classes, model)


@functools.lru_cache(maxsize=4)
def _space_keys(space: SearchSpace, num_classes: int) -> frozenset:
    """Every latency-table key the space needs (about 1.6 s for `fashion_mnist`; the tool's
    check and the search's both ask)."""
    from enas4d_tf.latency.coverage import space_keys

    return frozenset(space_keys(space, num_classes))
