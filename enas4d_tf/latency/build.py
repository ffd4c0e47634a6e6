"""Measuring a latency table on this host (imports TensorFlow and LiteRT when called).

`measure_table` converts one graph per part key (`part_graphs`), times them all with the
LiteRT interpreter (`timing`, invokes only, less the invoke of a null graph), then times the
stage graphs of a few architectures as the host cascade does and fits how whole graphs
relate to their parts (`calibrate`). `tools/latency_table.py` is its command line.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
import statistics
from collections.abc import Callable, Sequence

from enas4d_tf.latency.calibrate import calibration_rows, fit_graph_costs
from enas4d_tf.latency.coverage import space_keys
from enas4d_tf.latency.parts import stage_parts, truncated_parts
from enas4d_tf.latency.table import IDENTITY_FIT, LatencyTable, Target, graph_ms
from enas4d_tf.latency.timing import TimingSettings, time_invokes, time_stage_graphs
from enas4d_tf.space import Arch, SearchSpace


def _row(r: dict) -> tuple:
    """A calibration row as `fit_graph_costs` reads it."""
    return (r["parts_ms"], *_io(r), r["measured_ms"], r["invoke_ms"])


def _io(r: dict) -> tuple:
    return (r["inputs"], r["outputs"], r["kib_in"], r["kib_out"])


# Part graphs loaded at once while timing (each interpreter holds its packed weights).
BATCH = 256


@dataclasses.dataclass(frozen=True)
class TableRequest:
    """What to measure.

    Attributes:
      space: the search space.
      num_classes: classifier outputs.
      quantization: which graphs (one of the export's quantisations).
      timing: threads, rounds and runs.
      key_archs: None: every key of the space (`coverage.space_keys`); else only the keys
        these architectures need (smoke runs and tests).
      calibration_archs: architectures whose stage graphs fit the table's `fit`; none: the
        identity fit.
    """

    space: SearchSpace
    num_classes: int
    quantization: str = "float32"
    timing: TimingSettings = TimingSettings()
    key_archs: Sequence[Arch] | None = None
    calibration_archs: Sequence[Arch] = ()


def keys_of(space: SearchSpace, archs: Sequence[Arch], num_classes: int) -> set[str]:
    """Every part key the stage graphs and truncated graphs of `archs` need."""
    keys: set[str] = set()
    for arch in archs:
        for s in range(space.num_stages):
            keys.update(stage_parts(space, arch, s, num_classes))
            keys.update(truncated_parts(space, arch, s + 1, num_classes))
    return keys


def host_target(quantization: str, num_threads: int) -> Target:
    """This machine as a table target (CPU model from /proc/cpuinfo where there is one)."""
    device = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            device = f"{names[0]} ({len(names)} logical CPUs)"
    except OSError:
        pass
    runtime = f"ai-edge-litert {litert_version()} interpreter, XNNPACK"
    return Target("host", device, runtime, int(num_threads), quantization)


def litert_version() -> str:
    """The installed ai-edge-litert's version, "unknown" where its metadata is missing (a
    table's runtime names it; a missing package is no reason to refuse)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return "unknown"


def convert_parts(
    keys: Sequence[str], quantization: str, progress: Callable[[str], None] = lambda _: None
) -> dict[str, bytes]:
    """Every part graph (and the null graph, `part_graphs.NULL_KEY`) as flatbuffers."""
    from enas4d_tf.latency.part_graphs import NULL_KEY, convert_part

    graphs = {NULL_KEY: convert_part(NULL_KEY, quantization)}
    for i, key in enumerate(sorted(keys), start=1):
        graphs[key] = convert_part(key, quantization)
        if i % BATCH == 0 or i == len(keys):
            progress(f"converted {i}/{len(keys)} part graphs")
    return graphs


def _time_pass(parts: dict, stages: dict, timing: TimingSettings) -> tuple[dict, float, dict]:
    """One pass: the part graphs batch by batch (each batch with the null graph, whose
    time is taken off its parts'), then the stage graphs. Returns `(entries, the null
    graph's fastest ms, stage name -> (runner ms, invoke ms))`."""
    from enas4d_tf.latency.part_graphs import NULL_KEY

    keys = sorted(k for k in parts if k != NULL_KEY)
    entries, nulls = {}, []
    for start in range(0, len(keys), BATCH):
        batch = {k: parts[k] for k in keys[start : start + BATCH]}
        times = time_invokes({NULL_KEY: parts[NULL_KEY], **batch}, timing)
        null = times.pop(NULL_KEY)
        nulls.append(null)
        entries.update({k: max(0.0, t - null) for k, t in times.items()})
    # Few graphs, and the fit rests on them: three times the rounds of the parts.
    stage_timing = dataclasses.replace(timing, rounds=3 * timing.rounds)
    measured = time_stage_graphs(stages, stage_timing) if stages else {}
    return entries, min(nulls, default=0.0), measured


def measure_table(
    request: TableRequest, progress: Callable[[str], None] = lambda _: None
) -> LatencyTable:
    """Measures a latency table on this host (see the module docstring).

    The part graphs and the calibration stage graphs are timed together in
    `timing.passes` passes, spread over the run, and each graph keeps its fastest pass: a
    machine whose load changes over minutes slows some passes, and the parts and the graphs
    the fit compares them with are timed under the same conditions. A calibration graph also
    keeps the median of its passes' median rounds (`median_ms`, for the latency margin).

    Returns:
      The table; its `meta` records the settings, the null graph's time and, per
      calibration stage graph, the measured and predicted times.
    """
    space, n = request.space, request.num_classes
    if request.key_archs is None:
        keys = space_keys(space, n)
    else:
        keys = keys_of(space, [*request.key_archs, *request.calibration_archs], n)
    progress(f"{len(keys)} part keys to measure")
    parts = convert_parts(keys, request.quantization, progress)
    archs = list(request.calibration_archs)
    stages = {}
    if archs:
        from enas4d_tf.latency.calibrate import stage_graphs

        stages = stage_graphs(space, archs, n, request.quantization)
    passes = [_time_pass(parts, stages, request.timing) for _ in range(request.timing.passes)]
    progress(f"timed {len(keys)} part graphs and {len(stages)} stage graphs, {len(passes)} passes")
    entries = {k: min(p[0][k] for p in passes) for k in passes[0][0]}
    null_ms = min(p[1] for p in passes)
    fit, rows = dict(IDENTITY_FIT), []
    if archs:
        # The fastest pass's times, and the median of the passes' median rounds.
        measured = {
            g: (
                min(p[2][g][0] for p in passes),
                min(p[2][g][1] for p in passes),
                float(statistics.median(p[2][g][2] for p in passes)),
            )
            for g in stages
        }
        rows = calibration_rows(space, archs, n, entries, measured)
        fit = fit_graph_costs([_row(r) for r in rows])
        for r in rows:
            r["predicted_ms"] = graph_ms(fit, r["parts_ms"], _io(r))
    meta = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "timing": dataclasses.asdict(request.timing),
        "keys": "space" if request.key_archs is None else "of given architectures",
        "null_graph_ms": null_ms,
        "calibration": rows,
    }
    return LatencyTable(
        target=host_target(request.quantization, request.timing.num_threads),
        preset=space.name,
        num_classes=n,
        entries=entries,
        fit=fit,
        meta=meta,
    )


def write_android_kit(
    request: TableRequest, folder: str, progress: Callable[[str], None] = lambda _: None
) -> None:
    """Converts the part graphs (and the calibration networks' stage graphs) of `request`
    and writes them as a kit folder for a phone (`enas4d_tf.latency.android`)."""
    from enas4d_tf.latency import android
    from enas4d_tf.latency.calibrate import stage_graphs
    from enas4d_tf.latency.part_graphs import NULL_KEY

    space, n = request.space, request.num_classes
    android.check_new_kit_dir(folder)
    if request.key_archs is None:
        keys = space_keys(space, n)
    else:
        keys = keys_of(space, [*request.key_archs, *request.calibration_archs], n)
    parts = convert_parts(keys, request.quantization, progress)
    null = parts.pop(NULL_KEY)
    archs = list(request.calibration_archs)
    graphs = stage_graphs(space, archs, n, request.quantization) if archs else {}
    stages = {name: (data, archs[int(name[4:].split("_")[0])]) for name, data in graphs.items()}
    header = {"preset": space.name, "num_classes": n, "quantization": request.quantization}
    android.write_kit(folder, header, parts, null, stages)
