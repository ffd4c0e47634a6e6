"""Exit thresholds per quantisation, refitted on each quantisation's own stage graphs.

Float16, int8 and QAT graphs compute other confidences than the float network the search
fitted its thresholds on (with the float thresholds, int8 exit rates moved from .97/.01 to
.97/.00 on the benchmark network). So at export every quantisation's stage graphs run on
validation images through LiteRT, the interpreter the cascade uses (`graph_outputs`), and
`policy_record` gives that quantisation its thresholds and what they do on those images:

* a static or truncated network has nothing to fit (origin "static");
* float32 under `--cost=macs`, for a network searched with MACs, keeps its file's
  thresholds (origin "search"; "arch_file" when the file records no budget): the search
  fitted them with the same fitter, for the same budget, on the same network (BN
  recalibrated on the same training images) over the validation split, and the float32
  graphs reproduce that network's outputs to ~1e-5; a refit would repeat the search's fit,
  on fewer images when `--threshold_images` is smaller, and only move the thresholds by
  sampling noise away from what the search reported;
* a dynamic network with neither a budget nor the search's exit rates (a file written by
  hand) keeps its file's thresholds in every quantisation (origin "arch_file");
* everything else is refitted (origin "refit") with the search's fitter
  (`thresholds.fit_thresholds`) for the network's budget in the export's cost: under
  `--cost=latency` float32 too, since the latency table is the export's and need not be the
  one the search used.

The budget in a cost's unit is the architecture file's (`budget_macs`, or `budget_ms` for a
search run with `--cost=latency`); without one there, it is what the search's policy spends
on average in that unit (its exit rates times this quantisation's cumulative costs), so the
refitted policy spends no more than the one the search chose.

Refitted thresholds are snapped to the confidences the cascade computes (float64 softmax;
the fitter compares float32 ones), so the exit rates recorded here are exactly what the
cascade does on these images.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from enas4d_tf import thresholds as fitters
from enas4d_tf.errors import ExportError
from enas4d_tf.exit_policy import ValidationSplit, exit_indices, policy_outcome
from enas4d_tf.export.formats import ArchSpec

COSTS = ("macs", "latency")
# Validation images the stage graphs of each quantisation run on: the search's default.
DEFAULT_THRESHOLD_IMAGES = 5000


@dataclasses.dataclass(frozen=True)
class GraphCosts:
    """Cumulative cost of each stage graph's exit for one quantisation's graphs.

    Attributes:
      macs: cumulative MACs (the same for every quantisation).
      ms: cumulative milliseconds by the quantisation's latency model, or None under
        `--cost=macs`.
    """

    macs: tuple
    ms: tuple | None = None

    def of(self, cost: str) -> np.ndarray:
        """The cumulative costs in `cost`'s unit."""
        values = self.macs if cost == "macs" else self.ms
        if values is None:
            raise ValueError("latency costs were not given")
        return np.asarray(values, np.float64)


def confidence_of(logits: np.ndarray) -> float:
    """Max softmax probability of one logits vector, in float64 (what the cascade compares
    with a threshold)."""
    z = np.asarray(logits, np.float64).reshape(-1)
    p = np.exp(z - z.max())
    return float(p.max() / p.sum())


def graph_outputs(paths: Sequence[str], images, labels, num_threads: int = 1) -> tuple:
    """Runs every stage graph on every image, one at a time, hand-offs passed on.

    Args:
      paths: the stage graphs of one quantisation, stage 1 first.
      images: `(N, r, r, C)` images at the network's resolution.
      labels: `(N,)` int labels.
      num_threads: LiteRT interpreter threads.

    Returns:
      `(confidence, correct)`: `(S, N)` float64 max-softmax confidences and `(S, N)` bool.
    """
    from enas4d_tf.export.litert import StageRunner

    runners = [StageRunner(path, num_threads=num_threads) for path in paths]
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    confidence = np.zeros((len(runners), len(images)), np.float64)
    correct = np.zeros((len(runners), len(images)), bool)
    for i in range(len(images)):
        handoffs = {"image": images[i : i + 1]}
        for s, runner in enumerate(runners):
            out = runner(handoffs)
            logits = np.asarray(out["logits"][0])
            confidence[s, i] = confidence_of(logits)
            correct[s, i] = int(np.argmax(logits)) == int(labels[i])
            handoffs.update((k, v) for k, v in out.items() if k != "logits")
    return confidence, correct


def snap_thresholds(thresholds: Sequence, confidence: np.ndarray) -> list:
    """Thresholds fitted on float32 confidences, moved to the float64 ones they stand for.

    Rounding to float32 keeps order, so the images whose float32 confidence at exit `s`
    reaches `t` are exactly those whose float64 confidence reaches the smallest float64
    confidence among them; that value replaces `t` (a threshold no image reaches is moved
    just above every float64 confidence). None and the last threshold are kept.
    """
    snapped = []
    for s, t in enumerate(thresholds[:-1]):
        if t is None:
            snapped.append(None)
            continue
        leaving = confidence[s][confidence[s].astype(np.float32) >= t]
        if leaving.size:
            snapped.append(float(leaving.min()))
        else:
            snapped.append(float(max(t, np.nextafter(confidence[s].max(), math.inf))))
    return snapped + [thresholds[-1]]


def latency_models(paths: Sequence[str], quantizations: Sequence[str], space, num_classes: int):
    """`{quantization: LatencyModel}` for every exported quantisation, each from the table
    measured for its graphs (`enas4d_tf.latency`; reads JSON, no TensorFlow). int8_qat
    graphs use an int8 table when none is of int8_qat: they run the same int8 kernels.

    Raises:
      LatencyError: no table given, a table missing or corrupt, two tables of one
        quantisation, none for an exported quantisation, or one of another space or class
        count (one line naming the file).
    """
    from enas4d_tf.errors import LatencyError
    from enas4d_tf.latency.calibrate import calibration_margin
    from enas4d_tf.latency.model import LatencyModel
    from enas4d_tf.latency.table import LatencyTable

    if not paths:
        raise LatencyError(
            "--cost=latency needs --latency_table=PATH[,PATH...]: one table per "
            "exported quantisation (python -m tools.latency_table writes them)"
        )
    tables: dict = {}
    for path in paths:
        table = LatencyTable.load(path)
        q = table.target.quantization
        if q in tables:
            raise LatencyError(f"latency tables {tables[q][0]} and {path} are both of {q} graphs")
        tables[q] = (path, table)
    models = {}
    for q in quantizations:
        found = tables.get(q) or (tables.get("int8") if q == "int8_qat" else None)
        if found is None:
            raise LatencyError(
                f"no latency table of {q} graphs among --latency_table (tables of: "
                f"{', '.join(sorted(tables))}); measure one with python -m tools.latency_table "
                f"--quantization={q}"
            )
        path, table = found
        try:
            models[q] = LatencyModel(
                table,
                space,
                num_classes,
                table.target.quantization,
                margin=calibration_margin(table),
            )
        except LatencyError as e:
            raise LatencyError(f"latency table {path}: {e}") from None
    return models


def graph_ms(model, spec: ArchSpec) -> tuple:
    """Cumulative predicted ms to the exit of each stage graph of `spec`'s export: the
    model's `cumulative`, or for a network truncated at exit `s` its one graph's time.

    Raises:
      LatencyError: the model's table lacks a part the network needs (named).
    """
    if spec.exit is None:
        return tuple(model.cumulative(spec.arch))
    return (model.truncated(spec.arch)[spec.exit - 1],)


def is_dynamic(spec: ArchSpec) -> bool:
    """Whether the network has thresholds to fit: multi-exit and chosen as dynamic."""
    return spec.exit is None and spec.mode == "dynamic"


def searched_cost(spec: ArchSpec) -> str:
    """The cost the search fitted the file's thresholds for: its `cost`, else "latency"
    when it records costs in ms (`budget_ms`, `stage_ms`), else "macs"."""
    if spec.search.get("cost") is not None:
        return spec.search["cost"]
    in_ms = any(spec.search.get(k) is not None for k in ("budget_ms", "stage_ms"))
    return "latency" if in_ms else "macs"


def budget_of(spec: ArchSpec, cost: str, costs: GraphCosts) -> float | None:
    """The network's average-cost budget in `cost`'s unit (see the module docstring), or
    None when its file records neither a budget nor exit rates."""
    recorded = spec.search.get("budget_macs" if cost == "macs" else "budget_ms")
    if recorded is not None:
        return float(recorded)
    rates = spec.search.get("exit_rates")
    if not rates or len(rates) != len(costs.macs):
        return None
    return float(np.dot(np.asarray(rates, np.float64), costs.of(cost)))


def _choose(spec: ArchSpec, quantization: str, cost: str, outputs: tuple, costs: GraphCosts):
    """`(thresholds, origin, budget)` for one quantisation."""
    if not is_dynamic(spec):
        return (list(spec.thresholds) if spec.exit is None else [0.0]), "static", None
    budget = budget_of(spec, cost, costs)
    keep = quantization == "float32" and cost == "macs" and searched_cost(spec) == "macs"
    if budget is None or keep:
        searched = keep and spec.search.get("budget_macs") is not None
        return list(spec.thresholds), "search" if searched else "arch_file", budget
    c = costs.of(cost)
    if budget < c[0]:
        unit = "MACs" if cost == "macs" else "ms"
        raise ExportError(
            f"network {spec.name}: exit 1 of its {quantization} graphs costs {c[0]:.4g} "
            f"{unit}, above its budget of {budget:.4g} {unit}: no thresholds can meet it"
            + ("; is the latency table the one the search used?" if cost == "latency" else "")
        )
    confidence, correct = outputs
    split = ValidationSplit.from_confidences(confidence, correct)
    fit = fitters.fit_thresholds(split, c, budget)
    return snap_thresholds(fit.thresholds, confidence), "refit", budget


def policy_record(
    spec: ArchSpec, quantization: str, cost: str, outputs: tuple, costs: GraphCosts
) -> dict:
    """The manifest's `per_quantization[quantization]` record (JSON-safe).

    Args:
      spec: the network.
      quantization: whose graphs gave `outputs`.
      cost: "macs" or "latency": the unit of the budget the thresholds are fitted for.
      outputs: `graph_outputs(...)` of this quantisation's graphs on validation images.
      costs: cumulative costs of the stage graphs' exits.

    Returns:
      `{"thresholds", "origin", "cost", "budget", "num_images", "val_accuracy",
      "exit_rates", "avg_macs", "avg_ms"}`: exit rates, accuracy and average MACs of the
      thresholds on those images (exactly what the cascade does on them); `avg_ms` is the
      latency model's average (None under `--cost=macs`); `budget` is in `cost`'s unit
      (None when nothing was fitted).

    Raises:
      ExportError: the budget is below the first exit's cost in this quantisation.
    """
    confidence, correct = outputs
    chosen, origin, budget = _choose(spec, quantization, cost, outputs, costs)
    exits = exit_indices(confidence, chosen)
    accuracy, rates, avg_macs, _ = policy_outcome(exits, correct, costs.of("macs"), chosen)
    avg_ms = None
    if costs.ms is not None:  # as the fitter sums it: total over images / N
        counts = np.bincount(exits, minlength=len(chosen))
        avg_ms = float(np.dot(counts, costs.of("latency")) / len(exits))
    return {
        "thresholds": chosen,
        "origin": origin,
        "cost": cost,
        "budget": budget,
        "num_images": int(confidence.shape[1]),
        "val_accuracy": accuracy,
        "exit_rates": rates,
        "avg_macs": avg_macs,
        "avg_ms": avg_ms,
    }
