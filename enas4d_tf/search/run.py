"""The architecture search behind `tools/search.py` (DESIGN.md §5).

`run_search(workdir, config)` loads the trained supernet of a workdir, the "validation" split
(candidates are scored on it) and the "train" split (BN recalibration images), and runs the
evolutionary search for dynamic multi-exit networks, static single-exit
networks, or both, sharing every measurement between them. It never loads the test split.

Everything lands under `<workdir>/search/`:

  state.json         every measured candidate with its metrics (a second run with the same
                     arguments continues from it and measures nothing twice)
  predictions/*.npz  per candidate, each exit's validation confidence and correctness, from
                     which thresholds for any budget are refitted without running the network
  archs/<name>.json  one per chosen network (the format `tools/export.py` reads)
  pareto.json        the chosen networks, both accuracy-vs-MACs fronts, run statistics
  pareto.png         the fronts plotted

The search is a pure function of its arguments and the measurements: a run that was stopped
and started again with the same arguments replays the evolution, takes every measurement it
already has from the state, and goes on measuring where it stopped.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from enas4d_tf import exit_policy as dynamic
from enas4d_tf.errors import SearchError
from enas4d_tf.evaluation import CandidateEvaluator, Measurement
from enas4d_tf.files import write_bytes_atomic as _atomic_write_bytes
from enas4d_tf.files import write_json_atomic
from enas4d_tf.model.macs import stage_macs
from enas4d_tf.search.evolution import (
    EvolutionConfig,
    Objective,
    arch_key,
    best_records,
    evolve,
    format_macs,
)
from enas4d_tf.space.search_space import Arch, SearchSpace
from enas4d_tf.workdir import WorkdirError, latest_checkpoint, load_supernet

SEARCH_DIR = "search"
STATE_FILE = "state.json"
PREDICTIONS_DIR = "predictions"
ARCHS_DIR = "archs"
PARETO_JSON = "pareto.json"
PARETO_PNG = "pareto.png"
STATE_VERSION = 1
MODES = ("dynamic", "static", "both")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Settings of one search run.

    Attributes:
      mode: "dynamic" (multi-exit networks with fitted thresholds), "static" (single-exit
        networks: only the last exit, full cost `C_S`) or "both".
      budgets: average-MACs budgets; empty when `pareto` is set.
      pareto: search a grid of `pareto_points` budgets spanning the space instead.
      pareto_points: budgets of that grid.
      population: candidates measured per generation (shared among the budgets).
      generations: generations in all, the random first one included.
      mutation_prob: probability that a gene of a child changes.
      crossover_prob: probability that a child comes from two parents.
      max_cost_ratio: a dynamic candidate for budget `B` has `C_S <= max_cost_ratio * B`
        (and `C_1 <= B`), so the search does not spend measurements on networks whose images
        would nearly all have to leave at the first exit.
      num_val_images: validation images each candidate is scored on (at most the split).
      num_calib_images: training images for each candidate's BN recalibration.
      batch_size: images per forward pass.
      data_dir: overrides the workdir's data directory when not empty.
      seed: seeds the search.
    """

    mode: str = "both"
    budgets: tuple = ()
    pareto: bool = False
    pareto_points: int = 6
    population: int = 16
    generations: int = 8
    mutation_prob: float = 0.1
    crossover_prob: float = 0.5
    max_cost_ratio: float = 3.0
    num_val_images: int = 5000
    num_calib_images: int = 2000
    batch_size: int = 500
    data_dir: str = ""
    seed: int = 0

    def evolution_config(self) -> EvolutionConfig:
        return EvolutionConfig(
            population=self.population,
            generations=self.generations,
            mutation_prob=self.mutation_prob,
            crossover_prob=self.crossover_prob,
            seed=self.seed,
        )

    def validate(self) -> None:
        """Raises SearchError naming the first setting out of range."""
        if self.mode not in MODES:
            raise SearchError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.pareto and self.budgets:
            raise SearchError("give either budgets or pareto, not both")
        if not self.pareto and not self.budgets:
            raise SearchError("give MACs budgets (e.g. --budgets=2e6,4e6) or --pareto")
        for b in self.budgets:
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b):
                raise SearchError(f"budget {b!r} is not a number")
            if b <= 0:
                raise SearchError(f"budget {b:g} must be positive")
        checks = [
            ("pareto_points", self.pareto_points >= 2, "must be >= 2"),
            ("max_cost_ratio", self.max_cost_ratio >= 1.0, "must be >= 1"),
            ("num_val_images", self.num_val_images >= 1, "must be >= 1"),
            ("num_calib_images", self.num_calib_images >= 1, "must be >= 1"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise SearchError(f"{name} = {getattr(self, name)} {rule}")
        try:
            self.evolution_config().validate()
        except ValueError as e:
            raise SearchError(str(e)) from None


def parse_budgets(values: Sequence[str]) -> tuple:
    """Parses budget strings such as "2e6" or "4000000".

    Raises:
      SearchError: a value is not a positive finite number.
    """
    out = []
    for v in values:
        try:
            b = float(v)
        except (TypeError, ValueError):
            raise SearchError(f"budget {v!r} is not a number") from None
        if not math.isfinite(b) or b <= 0:
            raise SearchError(f"budget {v!r} must be a positive number of MACs")
        out.append(b)
    return tuple(out)


# ------------------------------------------------------------------------------------------
# Candidates and objectives.


@dataclasses.dataclass(eq=False)
class Candidate:
    """A measured architecture, keyed by `evolution.arch_key`."""

    key: str
    measurement: Measurement

    @property
    def arch(self) -> Arch:
        return self.measurement.arch

    @property
    def stage_macs(self) -> list:
        return self.measurement.stage_macs


class _CostModel:
    """Cumulative stage MACs per architecture, memoised (repair asks for them often)."""

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

    def __init__(self, space: SearchSpace, costs: _CostModel, max_cost_ratio: float = 3.0):
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

    def score(self, record: Candidate, budget: float):
        fit = record.measurement.fit(budget)
        return None if fit is None else (fit.accuracy, fit.avg_macs)

    def features(self, arch: Arch, budget: float) -> np.ndarray:
        c = np.asarray(self.costs(arch), np.float64)
        extra = np.concatenate([np.log(c / budget), [np.log(budget / self._reference)]])
        return np.concatenate([self.space.encode(arch), extra.astype(np.float32)])


class StaticObjective(Objective):
    """Single-exit networks: the last exit's accuracy at the full cost `C_S`."""

    name = "static"

    def __init__(self, space: SearchSpace, costs: _CostModel):
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

    def score(self, record: Candidate, budget: float):
        cost = record.stage_macs[-1]
        if cost > budget:
            return None
        return (record.measurement.exit_accuracy[-1], float(cost))

    def features(self, arch: Arch, budget: float) -> np.ndarray:
        del budget  # a static network's accuracy does not depend on it
        extra = np.array([np.log(self.costs(arch)[-1] / self._reference)], np.float32)
        return np.concatenate([self.space.encode(arch), extra])


def pareto_budgets(costs: _CostModel, mode: str, points: int) -> list[float]:
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


# ------------------------------------------------------------------------------------------
# Persistent state.


class SearchStore:
    """Measured candidates in `<workdir>/search/`, saved after every measurement.

    A state measured with other settings (checkpoint, dataset, image counts) is not
    comparable and is discarded, with a log line.

    Args:
      folder: `<workdir>/search`.
      settings: what makes measurements comparable (checkpoint, data, image counts).
      space: the search space.
      log: progress messages.

    Raises:
      WorkdirError: `state.json` exists but is not a search state.
    """

    def __init__(self, folder: str, settings: dict, space: SearchSpace, log=print):
        self.folder = folder
        self.settings = settings
        self.space = space
        self.path = os.path.join(folder, STATE_FILE)
        self._entries: dict = {}
        self._loaded: dict = {}
        self.measured_this_run = 0
        self.measure_seconds = 0.0
        if os.path.exists(self.path):
            try:
                with open(self.path) as f:
                    state = json.load(f)
                if state.get("version") != STATE_VERSION or not isinstance(
                    state.get("candidates"), dict
                ):
                    raise ValueError("not a search state of this version")
            except (OSError, ValueError, AttributeError) as e:
                raise WorkdirError(
                    f"{self.path} is unreadable or malformed ({' '.join(str(e).split())}); "
                    "delete it to start the search over"
                ) from None
            if state.get("settings") == settings:
                self._entries = state["candidates"]
            else:
                log(
                    f"{self.path} was measured with other settings (checkpoint, data or image "
                    "counts); starting the search over"
                )

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Candidate | None:
        """The stored candidate, or None (also when its predictions file is missing)."""
        if key in self._loaded:
            return self._loaded[key]
        entry = self._entries.get(key)
        if entry is None:
            return None
        try:
            arch = Arch.from_dict(entry["arch"])
            self.space.validate(arch)
            with np.load(os.path.join(self.folder, entry["predictions"])) as z:
                confidence = np.asarray(z["confidence"], np.float32)
                correct = np.asarray(z["correct"], bool)
            split = dynamic.ValidationSplit.from_confidences(confidence, correct)
            measurement = Measurement(arch, list(entry["stage_macs"]), split, 0.0)
        except (OSError, KeyError, ValueError, TypeError):
            return None  # measured again
        candidate = Candidate(key, measurement)
        self._loaded[key] = candidate
        return candidate

    def add(self, candidate: Candidate) -> None:
        """Saves a freshly measured candidate (predictions first, then the state)."""
        m = candidate.measurement
        name = f"{PREDICTIONS_DIR}/{candidate.key}.npz"
        buffer = io.BytesIO()
        np.savez_compressed(buffer, confidence=m.split.confidence, correct=m.split.correct)
        _atomic_write_bytes(os.path.join(self.folder, name), buffer.getvalue())
        self._entries[candidate.key] = {
            "arch": m.arch.to_dict(),
            "stage_macs": [int(c) for c in m.stage_macs],
            "exit_accuracy": m.exit_accuracy,
            "seconds": round(m.seconds, 4),
            "predictions": name,
        }
        self._loaded[candidate.key] = candidate
        self.measured_this_run += 1
        self.measure_seconds += m.seconds
        self.save()

    def save(self) -> None:
        """Writes `state.json`, with the threshold fits computed so far for each candidate."""
        for key, candidate in self._loaded.items():
            fits = {}
            for (budget, method), fit in sorted(candidate.measurement._fits.items()):
                if fit is not None:
                    fits[f"{method}@{budget:g}"] = {
                        "accuracy": fit.accuracy,
                        "avg_macs": fit.avg_macs,
                        "exit_rates": fit.exit_rates,
                        "thresholds": fit.thresholds,
                    }
            if key in self._entries:
                self._entries[key]["fits"] = fits
        state = {"version": STATE_VERSION, "settings": self.settings, "candidates": self._entries}
        write_json_atomic(self.path, state)


# ------------------------------------------------------------------------------------------
# The search.


@dataclasses.dataclass
class SearchResult:
    """What `run_search` chose and wrote.

    Attributes:
      chosen: the arch-file dicts of the chosen networks (`archs/<name>.json`).
      fronts: `{"dynamic": [...], "static": [...]}` front points, cheapest first.
      measured_this_run: candidates measured by this run (not taken from the state).
      known: candidates in the state after the run.
      wall_seconds: wall time of the run.
      paths: the files written.
    """

    chosen: list
    fronts: dict
    measured_this_run: int
    known: int
    wall_seconds: float
    paths: dict


def _load_data(dataset: str, data_dir: str | None, config: SearchConfig):
    from enas4d_tf import data as data_lib  # looked up at call time: tests replace it

    # Only these two splits are ever loaded here: the test split is never used to choose.
    val = data_lib.load_arrays(dataset, "validation", data_dir, config.num_val_images)
    calib = data_lib.load_arrays(dataset, "train", data_dir, config.num_calib_images)
    return val, calib


def run_search(
    workdir: str, config: SearchConfig, log: Callable[[str], None] = print
) -> SearchResult:
    """Searches the supernet of `workdir` and writes `<workdir>/search/`.

    Args:
      workdir: a training workdir (run_config.json and a checkpoint).
      config: the search settings.
      log: receives progress lines.

    Returns:
      The SearchResult.

    Raises:
      SearchError: bad settings or a budget no network can meet (checked before any data
        is loaded or network run).
      WorkdirError: no workdir, config or checkpoint, or a malformed search state.
      enas4d_tf.data.DataError: the data cannot be read.
    """
    start = time.perf_counter()
    config.validate()
    net, run_config = load_supernet(workdir)
    space = net.space
    costs = _CostModel(space, net.num_classes)
    modes = ["dynamic", "static"] if config.mode == "both" else [config.mode]
    objectives = {
        "dynamic": DynamicObjective(space, costs, config.max_cost_ratio),
        "static": StaticObjective(space, costs),
    }
    budgets = _budgets_per_mode(config, modes, objectives, costs, log)

    dataset = run_config.get("dataset", "fashion_mnist")
    data_dir = config.data_dir or run_config.get("data_dir") or None
    (val_images, val_labels), (calib_images, _) = _load_data(dataset, data_dir, config)
    log(
        f"search of {workdir}: {len(val_labels)} validation images, "
        f"{len(calib_images)} calibration images, modes {', '.join(modes)}"
    )
    evaluator = CandidateEvaluator(
        net, val_images, val_labels, calib_images, config.num_calib_images, config.batch_size
    )
    folder = os.path.join(workdir, SEARCH_DIR)
    settings = {
        "checkpoint": os.path.basename(latest_checkpoint(workdir) or ""),
        "dataset": dataset,
        "data_dir": data_dir,
        "num_val_images": evaluator.num_val_images,
        "num_calib_images": evaluator.num_calib_images,
        "batch_size": config.batch_size,
        "num_classes": net.num_classes,
        "space": space.to_dict(),
    }
    store = SearchStore(folder, settings, space, log)
    if len(store):
        log(f"continuing from {store.path}: {len(store)} candidates measured before")

    def measure(archs: list[Arch]) -> list[Candidate]:
        out = []
        for arch in archs:
            key = arch_key(space, arch)
            candidate = store.get(key)
            if candidate is None:
                candidate = Candidate(key, evaluator.measure(arch))
                store.add(candidate)
            out.append(candidate)
        return out

    references = measure([space.smallest(), space.largest()])
    records = list(references)
    for mode in modes:
        if not budgets[mode]:
            continue
        result = evolve(
            space,
            objectives[mode],
            budgets[mode],
            config.evolution_config(),
            measure,
            records=records,
            log=lambda line: log(
                f"{line}; measured {store.measured_this_run} this run, {len(store)} in the state"
            ),
        )
        records = result.records
    chosen = _choose(objectives, budgets, records, space)
    fronts = _fronts(objectives, budgets, records)
    store.save()
    wall = time.perf_counter() - start
    stats = {
        "wall_seconds": round(wall, 2),
        "measured_this_run": store.measured_this_run,
        "measure_seconds": round(store.measure_seconds, 2),
        "candidates_per_second": (
            round(store.measured_this_run / store.measure_seconds, 4)
            if store.measure_seconds > 0
            else None
        ),
        "known_candidates": len(store),
    }
    paths = _write_outputs(
        folder, chosen, fronts, references, budgets, settings, config, stats, log
    )
    _log_table(chosen, log)
    log(
        f"done in {wall:.1f}s: {store.measured_this_run} candidates measured this run, "
        f"{len(store)} in the state; wrote {paths['pareto_json']}"
    )
    return SearchResult(chosen, fronts, store.measured_this_run, len(store), wall, paths)


def _budgets_per_mode(config, modes, objectives, costs, log) -> dict:
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


def _arch_file(name, mode, candidate: Candidate, result, budget) -> dict:
    return {
        "name": name,
        "mode": mode,
        "arch": candidate.arch.to_dict(),
        "thresholds": list(result.thresholds),
        "stage_macs": [int(c) for c in candidate.stage_macs],
        "avg_macs": float(result.avg_macs),
        "val_accuracy": float(result.accuracy),
        "exit_rates": list(result.exit_rates),
        "budget_macs": None if budget is None else float(budget),
    }


def _choose(objectives, budgets, records, space) -> list:
    chosen = []
    for mode, mode_budgets in budgets.items():
        objective = objectives[mode]
        for b in mode_budgets:
            top = best_records(objective, records, b, 1)
            if not top:
                continue
            candidate = top[0]
            m = candidate.measurement
            result = m.fit(b) if mode == "dynamic" else m.static_result()
            entry = _arch_file(f"{mode}_{format_macs(b)}", mode, candidate, result, b)
            entry["key"] = candidate.key
            if mode == "dynamic":
                geometric = m.fit(b, method="geometric")
                entry["geometric_val_accuracy"] = geometric.accuracy
                entry["geometric_thresholds"] = geometric.thresholds
            chosen.append(entry)
    return chosen


def _fronts(objectives, budgets, records) -> dict:
    fronts = {}
    # Static points: every candidate's single-exit network.
    static_points = []
    for r in records:
        static_points.append((r, r.measurement.static_result(), None))
    dynamic_points = list(static_points)  # a static policy is also a dynamic one
    for b in budgets.get("dynamic", []):
        for r in records:
            fit = r.measurement.fit(b)
            if fit is not None:
                dynamic_points.append((r, fit, b))
    for mode, points in (("dynamic", dynamic_points), ("static", static_points)):
        if mode not in budgets:
            continue
        index = dynamic.pareto_front([(p[1].avg_macs, p[1].accuracy) for p in points])
        front = []
        for i in index:
            r, result, b = points[i]
            entry = _arch_file(f"{mode}_front_{len(front)}", mode, r, result, b)
            entry["key"] = r.key
            front.append(entry)
        fronts[mode] = front
    return fronts


def _reference_entry(candidate: Candidate, label: str) -> dict:
    result = candidate.measurement.static_result()
    entry = _arch_file(label, "static", candidate, result, None)
    entry["exit_accuracy"] = candidate.measurement.exit_accuracy
    return entry


def _write_outputs(folder, chosen, fronts, references, budgets, settings, config, stats, log):
    archs_dir = os.path.join(folder, ARCHS_DIR)
    os.makedirs(archs_dir, exist_ok=True)
    names = set()
    for entry in chosen:
        public = {k: entry[k] for k in _ARCH_FILE_KEYS}
        write_json_atomic(os.path.join(archs_dir, f"{entry['name']}.json"), public)
        names.add(f"{entry['name']}.json")
    # Files of earlier runs of these modes with other budgets would read as choices of this
    # one; another mode's files stay (a static run does not undo a dynamic one).
    searched = tuple(f"{mode}_" for mode in budgets)
    for f in os.listdir(archs_dir):
        if f.endswith(".json") and f not in names and f.startswith(searched):
            os.remove(os.path.join(archs_dir, f))
    refs = {
        "smallest": _reference_entry(references[0], "smallest"),
        "largest": _reference_entry(references[1], "largest"),
    }
    png = os.path.join(folder, PARETO_PNG)
    plot_fronts(fronts, chosen, refs, png)
    report = {
        "version": 1,
        "config": {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(config).items()
        },
        "settings": {k: v for k, v in settings.items() if k != "space"},
        "space": settings["space"]["name"],
        "budgets": budgets,
        "chosen": chosen,
        "fronts": fronts,
        "references": refs,
        "stats": stats,
    }
    path = os.path.join(folder, PARETO_JSON)
    write_json_atomic(path, report)  # last: a complete pareto.json means a complete run
    return {"pareto_json": path, "pareto_png": png, "archs": archs_dir}


_ARCH_FILE_KEYS = (
    "name",
    "mode",
    "arch",
    "thresholds",
    "stage_macs",
    "avg_macs",
    "val_accuracy",
    "exit_rates",
    "budget_macs",
)


def plot_fronts(fronts: dict, chosen: list, references: dict, path: str) -> None:
    """Plots validation accuracy vs average MACs: both fronts, choices, largest, smallest.

    Written to a temporary file and renamed, so `path` is never a partial image.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    styles = {"dynamic": ("tab:blue", "o", "-"), "static": ("tab:orange", "s", "--")}
    for mode, front in fronts.items():
        color, marker, line = styles[mode]
        xs = [p["avg_macs"] for p in front]
        ys = [100 * p["val_accuracy"] for p in front]
        ax.plot(xs, ys, linestyle=line, marker=marker, color=color, label=f"{mode} front")
    for entry in chosen:
        color = styles[entry["mode"]][0]
        ax.scatter(
            [entry["avg_macs"]],
            [100 * entry["val_accuracy"]],
            s=110,
            facecolors="none",
            edgecolors=color,
            linewidths=1.5,
        )
    for label, marker in (("largest", "*"), ("smallest", "v")):
        ref = references[label]
        ax.scatter(
            [ref["avg_macs"]],
            [100 * ref["val_accuracy"]],
            marker=marker,
            s=140,
            color="black",
            label=f"{label} network",
            zorder=5,
        )
    ax.set_xscale("log")
    ax.set_xlabel("average MACs per image")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Accuracy vs average MACs (circles: chosen networks)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    _atomic_write_bytes(path, buffer.getvalue())


def _log_table(chosen: list, log) -> None:
    header = (
        f"{'name':<18} {'budget':>8} {'avg MACs':>9} {'val acc':>8} {'geometric':>9}  exit rates"
    )
    log(header)
    log("-" * len(header))
    for e in chosen:
        geometric = e.get("geometric_val_accuracy")
        log(
            f"{e['name']:<18} {format_macs(e['budget_macs']):>8} "
            f"{format_macs(e['avg_macs']):>9} {e['val_accuracy']:>8.4f} "
            f"{'' if geometric is None else f'{geometric:.4f}':>9}  "
            + "/".join(f"{r:.2f}" for r in e["exit_rates"])
        )
