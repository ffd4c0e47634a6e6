"""What a search writes besides its state: the chosen networks, both fronts, plot and table.

Under `<workdir>/search/`:

  archs/<mode>_<budget>.json  one architecture file per chosen network (the schema is
                              `enas4d_tf.export.formats`'s; `tools/export.py` reads them)
  pareto.json                 the chosen networks, the dynamic and static accuracy-vs-cost
                              fronts (MACs, or ms with `--cost=latency`), the largest and
                              smallest networks, run statistics
  pareto.png                  the fronts plotted

Every entry of pareto.json is an architecture-file record (`formats.arch_file_record`; a
static network has `"exit": s`, the exit it is cut at) plus the search's `key` of the
candidate and `ranking_accuracy` / `ranking_avg_cost`, the score it was ranked by and the
fronts are drawn on: for a dynamic network the cross-fitted (held-out) validation accuracy
and average cost, for a static one its validation accuracy and truncated cost (nothing
fitted). `ranking_avg_cost` is in the search's cost unit (`cost_report`: MACs, or ms of the
latency table with `--cost=latency`); `ranking_avg_macs` is the same policy's average MACs
whatever the cost. Its `val_accuracy` and `avg_macs` (and with latency `avg_ms`) are those
of the thresholds it carries, refitted on every validation image.

With `--cost=latency` a record also has `cost_target`: the latency table's target (`kind`,
`device`, `runtime`, `threads`, `quantization`) its milliseconds are of, so an exporter can
check it is given the same table. The search has no quantisation of its own: its costs are
those of the table's graphs, whatever quantisations the networks are later exported as.
"""

from __future__ import annotations

import dataclasses
import os

from enas4d_tf.exit_policy import PolicyResult, pareto_front, static_thresholds
from enas4d_tf.export import formats
from enas4d_tf.files import write_json_atomic
from enas4d_tf.search.config import SearchConfig
from enas4d_tf.search.display import plot_fronts
from enas4d_tf.search.scoring import best_records
from enas4d_tf.search.store import Candidate
from enas4d_tf.workdir import Workdir

REPORT_VERSION = 2


@dataclasses.dataclass
class SearchOutcome:
    """Everything pareto.json reports.

    Attributes:
      chosen: one record per (mode, budget) some candidate meets (`choose`).
      fronts: `{mode: [records, cheapest first]}` (`fronts`).
      references: `{"smallest": record, "largest": record}` (`reference_entries`).
      budgets: `{mode: [budgets]}` searched.
      settings: what made the measurements comparable (the store's settings).
      config: the search settings.
      stats: run statistics (wall time, candidates measured, ...).
      cost: what budgets and costs count (`cost_report`).
      generations: per generation, how candidates were chosen and the predictor's quality
        (`GenerationLog.summary()`).
    """

    chosen: list
    fronts: dict
    references: dict
    budgets: dict
    settings: dict
    config: SearchConfig
    stats: dict
    cost: dict = dataclasses.field(default_factory=dict)
    generations: list = dataclasses.field(default_factory=list)


def generations_report(generations: list) -> list:
    """The per-generation summaries as pareto.json keeps them: without their CPU times, so
    a rerun of the same search (which measures nothing twice) writes the same report
    outside `stats` (`generation_seconds` puts the times there)."""
    out = []
    for g in generations:
        g = {k: v for k, v in g.items() if k != "inner_cpu_seconds"}
        if g.get("predictor"):
            g["predictor"] = {k: v for k, v in g["predictor"].items() if k != "seconds"}
        out.append(g)
    return out


def generation_seconds(generations: list) -> dict:
    """Run statistics of the generations: CPU seconds of the inner evolutions and wall
    seconds of choosing the predictors, in all."""
    return {
        "inner_cpu_seconds": round(sum(g["inner_cpu_seconds"] for g in generations), 2),
        "predictor_seconds": round(
            sum((g["predictor"] or {}).get("seconds", 0.0) for g in generations), 2
        ),
    }


def cost_report(costs) -> dict:
    """`{"kind", "unit"}` of a CostModel and, for latency, the table's target (device,
    runtime, threads, quantisation) and the smallest and largest networks' costs."""
    out = {"kind": costs.kind, "unit": costs.unit}
    if costs.latency is not None:
        out["target"] = costs.target()
        out["smallest_ms"] = [float(c) for c in costs.smallest]
        out["largest_ms"] = [float(c) for c in costs.largest]
    return out


def _record(name: str, mode: str, candidate: Candidate, result, budget, costs, exit=None) -> dict:
    """The architecture-file record of `result` (whose `avg_macs` is in `costs.unit`).

    With MACs costs it is `formats.arch_file_record`'s. With latency costs the record's
    `avg_macs` is the network's average MACs on the same images (exit rates times stage
    MACs) and `budget_macs` is null; the budget, the average and the stage costs in ms are
    `budget_ms`, `avg_ms` and `stage_ms`, and `cost_target` is the table's target they are
    of. `cost` says which ("macs" or "latency"), as `enas4d_tf.export.arch_files` reads it.
    """
    latency = costs.kind == "latency"
    record = formats.arch_file_record(
        name,
        mode,
        candidate.arch,
        result,
        candidate.stage_macs,
        None if latency else budget,
        exit=exit,
    )
    record["key"] = candidate.key
    record["cost"] = costs.kind
    if latency:
        record["avg_ms"] = float(result.avg_macs)
        record["budget_ms"] = None if budget is None else float(budget)
        record["stage_ms"] = [float(c) for c in costs(candidate.arch)]
        record["cost_target"] = costs.target()
        record["avg_macs"] = _average_macs(candidate, result.exit_rates, exit, costs)
    return record


def _average_macs(candidate: Candidate, exit_rates, exit, costs) -> float:
    """Average MACs of exit rates: the truncated network's MACs when cut at `exit`."""
    if exit is not None:
        return float(costs.truncated_macs(candidate.arch)[exit - 1])
    return float(sum(r * c for r, c in zip(exit_rates, candidate.stage_macs, strict=True)))


def _ranking(record: dict, accuracy: float, avg_cost: float, avg_macs: float) -> dict:
    """Adds the score a record was ranked by: `ranking_accuracy`, `ranking_avg_cost` (MACs,
    or ms with `"cost": "latency"`: what fronts and the plot use) and `ranking_avg_macs`."""
    record["ranking_accuracy"] = float(accuracy)
    record["ranking_avg_cost"] = float(avg_cost)
    record["ranking_avg_macs"] = float(avg_macs)
    return record


def _static_record(name: str, static, candidate: Candidate, exit: int, budget) -> dict:
    """A truncated static network's record; its ranking score is its validation accuracy
    (nothing is fitted)."""
    result = static.result(candidate, exit)
    record = _record(name, "static", candidate, result, budget, static.costs, exit=exit)
    return _ranking(record, record["val_accuracy"], result.avg_macs, record["avg_macs"])


def _dynamic_record(name: str, candidate: Candidate, budget: float, ranking, costs) -> dict:
    """A dynamic network's record: thresholds refitted for `budget` on every validation
    image, and the cross-fitted (held-out) score `ranking` it was ranked by."""
    fit = candidate.measurement.fit(budget)
    record = _record(name, "dynamic", candidate, fit, budget, costs)
    macs = _average_macs(candidate, ranking.exit_rates, None, costs)
    return _ranking(record, ranking.accuracy, ranking.avg_macs, macs)


def choose(objectives: dict, budgets: dict, records: list) -> list:
    """For each mode and budget, the record of the best candidate by its ranking score.

    Dynamic (`dynamic_<budget>`): ranked by the cross-fitted score, then refitted on every
    validation image; the record also carries the geometric fitter's accuracy and thresholds
    for the same budget, for comparison. Static (`static_<budget>_exit<s>`): the most
    accurate truncated network within the budget, `"exit": s`.
    """
    chosen = []
    for mode, mode_budgets in budgets.items():
        objective = objectives[mode]
        for b in mode_budgets:
            top = best_records(objective, records, b, 1)
            if not top:
                continue
            candidate = top[0]
            if mode == "static":
                s = objective.best_exit(candidate, b)
                name = f"static_{objective.costs.format(b)}_exit{s}"
                chosen.append(_static_record(name, objective, candidate, s, b))
                continue
            ranking = candidate.measurement.cross_fit(b, objective.seed)
            name = f"dynamic_{objective.costs.format(b)}"
            entry = _dynamic_record(name, candidate, b, ranking, objective.costs)
            geometric = candidate.measurement.fit(b, method="geometric")
            entry["geometric_val_accuracy"] = geometric.accuracy
            entry["geometric_thresholds"] = geometric.thresholds
            chosen.append(entry)
    return chosen


def _front(points: list, make) -> list:
    """The records of the Pareto-optimal `points` `(cost, accuracy, *args)`, cheapest first,
    each made by `make(index_on_front, *args)`."""
    index = pareto_front([(p[0], p[1]) for p in points])
    return [make(n, *points[i][2:]) for n, i in enumerate(index)]


def fronts(objectives: dict, budgets: dict, records: list) -> dict:
    """The accuracy-vs-average-cost Pareto front of each searched mode, cheapest first, on
    the scores candidates are ranked by (`ranking_accuracy`, `ranking_avg_cost`: MACs, or
    ms with a latency cost).

    Static points: every candidate cut at every exit. Dynamic points: every candidate's
    cross-fitted policy for each dynamic budget, and its policy without early exits (every
    image to the last exit, at `C_S`; nothing fitted).
    """
    out = {}
    static = objectives["static"]
    if "static" in budgets:
        points = []
        for r in records:
            for s, (cost, acc) in enumerate(
                zip(static.costs.truncated(r.arch), r.measurement.exit_accuracy, strict=True)
            ):
                points.append((cost, acc, r, s + 1))
        out["static"] = _front(
            points, lambda n, r, s: _static_record(f"static_front_{n}", static, r, s, None)
        )
    if "dynamic" in budgets:
        dynamic = objectives["dynamic"]
        points = []
        for r in records:
            last = r.measurement.exit_accuracy[-1]
            points.append((float(dynamic.costs(r.arch)[-1]), last, r, None, None))
            for b in budgets["dynamic"]:
                ranking = r.measurement.cross_fit(b, dynamic.seed)
                if ranking is not None:
                    points.append((ranking.avg_macs, ranking.accuracy, r, b, ranking))
        out["dynamic"] = _front(
            points, lambda n, *args: _dynamic_front_record(n, *args, dynamic.costs)
        )
    return out


def _dynamic_front_record(n: int, candidate: Candidate, budget, ranking, costs) -> dict:
    name = f"dynamic_front_{n}"
    if budget is not None:
        return _dynamic_record(name, candidate, budget, ranking, costs)
    # No early exit: every image runs to the last exit.
    m = candidate.measurement
    num_stages = len(m.stage_macs)
    result = PolicyResult(
        m.exit_accuracy[-1],
        [0.0] * (num_stages - 1) + [1.0],
        float(costs(candidate.arch)[-1]),
        static_thresholds(num_stages),
    )
    record = _record(name, "dynamic", candidate, result, None, costs)
    return _ranking(record, record["val_accuracy"], result.avg_macs, record["avg_macs"])


def reference_entries(static, smallest: Candidate, largest: Candidate) -> dict:
    """Records of the space's smallest and largest networks as static networks at their last
    exit, with each exit's validation accuracy and the network cut at each exit's MACs
    (`truncated_macs`) and, with a latency cost, milliseconds (`truncated_ms`), as records
    carry `stage_macs` and `stage_ms`."""
    out = {}
    costs = static.costs
    for label, candidate in (("smallest", smallest), ("largest", largest)):
        s = len(candidate.stage_macs)
        entry = _static_record(label, static, candidate, s, None)
        entry["exit_accuracy"] = candidate.measurement.exit_accuracy
        entry["truncated_macs"] = [int(c) for c in costs.truncated_macs(candidate.arch)]
        if costs.kind == "latency":
            entry["truncated_ms"] = [float(c) for c in costs.truncated(candidate.arch)]
        out[label] = entry
    return out


def write_outputs(paths: Workdir, outcome: SearchOutcome) -> dict:
    """Writes the architecture files, pareto.png and, last, pareto.json.

    Returns:
      `{"pareto_json": path, "pareto_png": path, "archs": folder}`.
    """
    names = set()
    for entry in outcome.chosen:
        formats.write_arch_file(paths.arch_file(entry["name"]), entry)
        names.add(os.path.basename(paths.arch_file(entry["name"])))
    # Files of earlier runs of these modes with other budgets would read as choices of this
    # one; another mode's files stay (a static run does not undo a dynamic one).
    searched = tuple(f"{mode}_" for mode in outcome.budgets)
    os.makedirs(paths.search_archs, exist_ok=True)
    for f in os.listdir(paths.search_archs):
        if f.endswith(".json") and f not in names and f.startswith(searched):
            os.remove(os.path.join(paths.search_archs, f))
    plot_fronts(outcome.fronts, outcome.chosen, outcome.references, paths.pareto_png)
    settings = outcome.settings
    report = {
        "version": REPORT_VERSION,
        "config": {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(outcome.config).items()
        },
        "settings": {k: v for k, v in settings.items() if k != "space"},
        "space": settings["space"]["name"],
        "budgets": outcome.budgets,
        "chosen": outcome.chosen,
        "fronts": outcome.fronts,
        "references": outcome.references,
        "stats": outcome.stats,
        "cost": outcome.cost,
        "generations": outcome.generations,
    }
    # Last: a complete pareto.json means a complete run.
    write_json_atomic(paths.pareto_json, report)
    return {
        "pareto_json": paths.pareto_json,
        "pareto_png": paths.pareto_png,
        "archs": paths.search_archs,
    }
