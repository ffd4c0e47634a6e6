"""What a search writes besides its state: the chosen networks, both fronts, plot and table.

Under `<workdir>/search/`:

  archs/<mode>_<budget>.json  one architecture file per chosen network (the schema is
                              `enas4d_tf.export.formats`'s; `tools/export.py` reads them)
  pareto.json                 the chosen networks, the dynamic and static accuracy-vs-MACs
                              fronts, the largest and smallest networks, run statistics
  pareto.png                  the fronts plotted

Every entry of pareto.json is an architecture-file record (`formats.arch_file_record`) plus
the search's `key` of the candidate.
"""

from __future__ import annotations

import dataclasses
import io
import os

from enas4d_tf.exit_policy import pareto_front
from enas4d_tf.export import formats
from enas4d_tf.files import write_bytes_atomic, write_json_atomic
from enas4d_tf.search.config import SearchConfig
from enas4d_tf.search.evolution import best_records, format_macs
from enas4d_tf.search.store import Candidate
from enas4d_tf.workdir import Workdir

REPORT_VERSION = 1


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
    """

    chosen: list
    fronts: dict
    references: dict
    budgets: dict
    settings: dict
    config: SearchConfig
    stats: dict


def _record(name: str, mode: str, candidate: Candidate, result, budget) -> dict:
    record = formats.arch_file_record(
        name, mode, candidate.arch, result, candidate.stage_macs, budget
    )
    record["key"] = candidate.key
    return record


def choose(objectives: dict, budgets: dict, records: list) -> list:
    """For each mode and budget, the record of the best candidate (`<mode>_<budget>`).

    A dynamic record also carries the geometric fitter's accuracy and thresholds for the
    same budget, for comparison.
    """
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
            entry = _record(f"{mode}_{format_macs(b)}", mode, candidate, result, b)
            if mode == "dynamic":
                geometric = m.fit(b, method="geometric")
                entry["geometric_val_accuracy"] = geometric.accuracy
                entry["geometric_thresholds"] = geometric.thresholds
            chosen.append(entry)
    return chosen


def fronts(budgets: dict, records: list) -> dict:
    """The accuracy-vs-average-MACs Pareto front of each searched mode, cheapest first.

    Static points: every candidate's single-exit network. Dynamic points: those too (a
    static policy is also a dynamic one) and every candidate's fit for each dynamic budget.
    """
    out = {}
    static_points = [(r, r.measurement.static_result(), None) for r in records]
    dynamic_points = list(static_points)
    for b in budgets.get("dynamic", []):
        for r in records:
            fit = r.measurement.fit(b)
            if fit is not None:
                dynamic_points.append((r, fit, b))
    for mode, points in (("dynamic", dynamic_points), ("static", static_points)):
        if mode not in budgets:
            continue
        index = pareto_front([(p[1].avg_macs, p[1].accuracy) for p in points])
        front = []
        for i in index:
            r, result, b = points[i]
            front.append(_record(f"{mode}_front_{len(front)}", mode, r, result, b))
        out[mode] = front
    return out


def reference_entries(smallest: Candidate, largest: Candidate) -> dict:
    """Records of the space's smallest and largest networks as static networks, with the
    accuracy of each of their exits."""
    out = {}
    for label, candidate in (("smallest", smallest), ("largest", largest)):
        result = candidate.measurement.static_result()
        entry = formats.arch_file_record(
            label, "static", candidate.arch, result, candidate.stage_macs, None
        )
        entry["exit_accuracy"] = candidate.measurement.exit_accuracy
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
    }
    # Last: a complete pareto.json means a complete run.
    write_json_atomic(paths.pareto_json, report)
    return {
        "pareto_json": paths.pareto_json,
        "pareto_png": paths.pareto_png,
        "archs": paths.search_archs,
    }


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
        ax.scatter(
            [entry["avg_macs"]],
            [100 * entry["val_accuracy"]],
            s=110,
            facecolors="none",
            edgecolors=styles[entry["mode"]][0],
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
    write_bytes_atomic(path, buffer.getvalue())


def log_table(chosen: list, log) -> None:
    """Logs one line per chosen network: budget, average MACs, validation accuracy (also
    with the geometric fitter's thresholds) and the rate of each exit, exit 1 first."""
    header = (
        f"{'name':<18} {'budget':>8} {'avg MACs':>9} {'val acc':>8} {'geometric':>9}  "
        "exit rates (1/2/...)"
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
