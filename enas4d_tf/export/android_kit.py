"""Android benchmark kit logic: `benchmark_model` commands per stage graph and their parsing.

`python -m export.android_benchmark` is the command line; this module holds what tests reach.
Each stage graph is pushed with `adb push` and timed with TFLite's `benchmark_model`
(`--graph`, `--num_threads`, `--use_xnnpack`, and for every input `--input_layer` /
`--input_layer_shape`, the signature's names and shapes). The average stage times are
combined with the exit rates (a cascade report, or the manifest's search result) into the
expected average latency: `sum_s p_s * (t_1 + ... + t_s)`.

With no phone, the same report comes from this host: `host_commands` times each stage graph
with ai-edge-litert's `litert-benchmark` (`parse_host_result` reads its JSON results).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shlex
from collections.abc import Sequence

from enas4d_tf.export.formats import manifest_thresholds

DEVICE_DIR = "/data/local/tmp/enas4d"
DEVICE_BINARY = "/data/local/tmp/benchmark_model"


def stage_files(manifest: dict, quantization: str) -> list[str]:
    """File names of the stage graphs of one quantisation, stage 1 first.

    Raises:
      ValueError: the quantisation was not exported.
    """
    if quantization not in manifest.get("quantization", []):
        raise ValueError(
            f"quantisation {quantization!r} was not exported; "
            f"available: {', '.join(manifest.get('quantization', []))}"
        )
    return [stage["files"][quantization]["file"] for stage in manifest["stages"]]


def input_flags(stage: dict, quantization: str) -> list[str]:
    """`--input_layer` and `--input_layer_shape` for a stage's signature inputs.

    Names are comma-separated, shapes colon-separated, in the same order (benchmark_model's
    convention); the order is the signature's (sorted by name).
    """
    inputs = stage["files"][quantization]["signature"]["inputs"]
    names = sorted(inputs)
    shapes = [",".join(str(int(d)) for d in inputs[n]["shape"]) for n in names]
    return [f"--input_layer={','.join(names)}", f"--input_layer_shape={':'.join(shapes)}"]


@dataclasses.dataclass(frozen=True)
class BenchmarkSettings:
    """How `benchmark_model` runs on the phone (what `export.android_benchmark`'s flags set).

    Attributes:
      num_threads: `--num_threads`.
      num_runs: `--num_runs` per stage graph.
      warmup_runs: `--warmup_runs`.
      binary: `benchmark_model`'s path on the phone.
      device_dir: where the graphs are pushed on the phone.
      serial: `adb -s` serial of the phone, when several are attached; None = the only one.
    """

    num_threads: int = 1
    num_runs: int = 200
    warmup_runs: int = 20
    binary: str = DEVICE_BINARY
    device_dir: str = DEVICE_DIR
    serial: str | None = None


def benchmark_commands(
    manifest: dict,
    quantization: str,
    export_dir: str = ".",
    settings: BenchmarkSettings = BenchmarkSettings(),
) -> list[list[str]]:
    """The host commands that push and time every stage graph (argv lists).

    Args:
      manifest: the export's manifest (`formats.read_manifest`).
      quantization: which stage graphs.
      export_dir: the export folder on the host (the files pushed are in it).
      settings: how benchmark_model runs.

    Returns:
      `adb shell mkdir`, one `adb push` per stage file, then one
      `adb shell benchmark_model ...` per stage, stage 1 first.

    Raises:
      ValueError: the quantisation was not exported.
    """
    adb = ["adb"] + (["-s", settings.serial] if settings.serial else [])
    device_dir = settings.device_dir
    files = stage_files(manifest, quantization)
    commands = [adb + ["shell", "mkdir", "-p", device_dir]]
    for name in files:
        commands.append(adb + ["push", f"{export_dir.rstrip('/')}/{name}", f"{device_dir}/{name}"])
    for stage, name in zip(manifest["stages"], files, strict=True):
        bench = [
            settings.binary,
            f"--graph={device_dir}/{name}",
            f"--num_threads={settings.num_threads}",
            f"--num_runs={settings.num_runs}",
            f"--warmup_runs={settings.warmup_runs}",
            "--use_xnnpack=true",
            *input_flags(stage, quantization),
        ]
        commands.append(adb + ["shell", " ".join(shlex.quote(a) for a in bench)])
    return commands


# TFLite's benchmark_model (tensorflow/lite/tools/benchmark) logs one statistics line per
# phase (warm-up, then the timed runs), `count=N first=.. curr=.. min=.. max=.. avg=X std=..`
# (newer builds add p5/median/p95), and ends with one line, all in microseconds:
#   Inference timings in us: Init: 3512, First inference: 912, Warmup (avg): 640.2,
#   Inference (avg): 611.417
# Lines may carry a log prefix ("INFO: ", or logcat's "I tflite  : "); large values are
# printed in C++ stream notation (2.95034e+06). tests/export/data/ holds recorded outputs.
_AVG = re.compile(r"Inference \(avg\):\s*([0-9.eE+-]+)")
_AVG_STATS = re.compile(r"count=\d+.*?\bavg=([0-9.eE+-]+)")


def parse_benchmark_output(text: str) -> float:
    """The average inference time in ms from `benchmark_model`'s output.

    Reads the "Inference timings in us: ... Inference (avg): X" line; falls back to the
    last "count=... avg=X" statistics line (microseconds as well).

    Raises:
      ValueError: no timing found.
    """
    for pattern in (_AVG, _AVG_STATS):
        found = pattern.findall(text)
        if found:
            try:
                us = float(found[-1])
            except ValueError:
                us = math.nan
            if not math.isfinite(us) or us <= 0:
                raise ValueError(f"benchmark_model reported an average time of {found[-1]!r} us")
            return us / 1e3
    raise ValueError("no 'Inference (avg)' timing in benchmark_model output")


def expected_latency(stage_ms: Sequence[float], exit_rates: Sequence[float]) -> dict:
    """Combines per-stage times with exit rates.

    Args:
      stage_ms: time of each stage graph alone (stage s computes only its own group).
      exit_rates: fraction of images leaving at each exit (sums to 1).

    Returns:
      `{"cumulative_ms": [t_1, t_1 + t_2, ...], "expected_avg_ms": sum p_s * cum_s,
      "full_network_ms": cum_S}`.

    Raises:
      ValueError: lengths differ or rates do not sum to 1.
    """
    if len(stage_ms) != len(exit_rates):
        raise ValueError(f"{len(stage_ms)} stage times but {len(exit_rates)} exit rates")
    if abs(sum(exit_rates) - 1.0) > 1e-6:
        raise ValueError(f"exit rates sum to {sum(exit_rates)}, not 1")
    cumulative, total = [], 0.0
    for t in stage_ms:
        total += float(t)
        cumulative.append(total)
    expected = sum(float(p) * c for p, c in zip(exit_rates, cumulative, strict=True))
    return {
        "cumulative_ms": cumulative,
        "expected_avg_ms": expected,
        "full_network_ms": cumulative[-1],
    }


def exit_rates_from(
    manifest: dict, cascade_report: dict | None = None, quantization: str | None = None
) -> tuple[list, str]:
    """Exit rates for the combination: a cascade report's, else those the manifest records
    for `quantization`'s graphs with their own thresholds (`per_quantization`), else the
    search result's (a manifest written before thresholds were refitted per quantisation,
    or no `quantization` given).

    Returns:
      `(rates, source)`.

    Raises:
      ValueError: neither has exit rates, or the cascade report ran another quantisation.
    """
    num_stages = len(manifest["stages"])
    if cascade_report is not None:
        if not isinstance(cascade_report, dict) or "exit_rates" not in cascade_report:
            raise ValueError("the cascade report has no exit_rates (tools/cascade.py writes it)")
        ran = cascade_report.get("quantization")
        if quantization is not None and ran is not None and ran != quantization:
            raise ValueError(
                f"the cascade report ran the {ran} graphs, not the {quantization} graphs timed "
                f"here: their thresholds and exit rates differ (run tools/cascade.py "
                f"--quantization={quantization})"
            )
        return check_rates(cascade_report["exit_rates"], num_stages), "cascade report"
    if manifest.get("exit") is not None:
        return [1.0], f"truncated network (every image leaves at exit {manifest['exit']})"
    record = (manifest.get("per_quantization") or {}).get(quantization)
    if record:
        where = f"{record['num_images']} validation images"
        return check_rates(record["exit_rates"], num_stages), f"manifest ({quantization}, {where})"
    rates = (manifest.get("search") or {}).get("exit_rates")
    if rates:
        return check_rates(rates, num_stages), "manifest (validation split, search)"
    thresholds = (
        manifest["thresholds"]
        if quantization is None
        else manifest_thresholds(manifest, quantization)
    )
    if manifest.get("mode") == "static" or all(t is None for t in thresholds[:-1]):
        return [0.0] * (num_stages - 1) + [1.0], "static network"
    raise ValueError("no exit rates: pass --cascade_report (tools/cascade.py's JSON output)")


def check_rates(rates, num_stages: int) -> list[float]:
    """Exit rates as floats after checking there is one finite rate in [0, 1] per stage graph
    and that they sum to 1.

    Raises:
      ValueError: anything else.
    """
    ok = isinstance(rates, list) and len(rates) == num_stages
    ok = ok and all(
        isinstance(r, (int, float)) and not isinstance(r, bool) and 0.0 <= r <= 1.0 for r in rates
    )
    if not ok or abs(sum(rates) - 1.0) > 1e-6:
        raise ValueError(
            f"exit rates must be {num_stages} numbers in [0, 1] summing to 1 (one per stage "
            f"graph), got {rates!r}"[:300]
        )
    return [float(r) for r in rates]


# -- the same kit on this host: ai-edge-litert's `litert-benchmark` ---------------------------

HOST_BINARY = "litert-benchmark"


def host_binary(name: str = HOST_BINARY) -> str | None:
    """The path of `litert-benchmark`: beside this Python (a virtual environment's console
    scripts are not always on the PATH), else on the PATH; None when there is none."""
    import shutil
    import sys

    if os.sep not in name:
        beside = os.path.join(os.path.dirname(sys.executable), name)
        if os.path.isfile(beside) and os.access(beside, os.X_OK):
            return beside
    return shutil.which(name)


def host_commands(
    manifest: dict,
    quantization: str,
    export_dir: str,
    result_dir: str,
    binary: str,
    settings: BenchmarkSettings = BenchmarkSettings(),
) -> list[list[str]]:
    """One `litert-benchmark` command per stage graph (stage 1 first), each writing its
    results to `result_dir/stage{k}.json` (k counts the graphs from 1).

    `litert-benchmark` runs the graph's serving signature with LiteRT's CompiledModel API on
    the CPU accelerator (XNNPACK), inputs from the graph's own shapes: no input flags.

    Raises:
      ValueError: the quantisation was not exported.
    """
    commands = []
    for k, name in enumerate(stage_files(manifest, quantization), start=1):
        commands.append(
            [
                binary,
                f"--model={os.path.join(export_dir, name)}",
                f"--num_threads={settings.num_threads}",
                f"--num_runs={settings.num_runs}",
                f"--warmup_runs={settings.warmup_runs}",
                f"--result_json={os.path.join(result_dir, f'stage{k}.json')}",
            ]
        )
    return commands


def parse_host_result(result, allow_zero: bool = False) -> tuple[float, bool | None]:
    """`(median ms, fully accelerated)` from a `litert-benchmark --result_json` file's content.

    The median, not the average: on a shared host a few runs slowed by other processes
    move the average (its JSON also gives avg_ms, min_ms, p95_ms). Times are printed in
    ms with two decimals, so graphs under ~0.1 ms are timed coarsely.

    Args:
      result: the JSON content.
      allow_zero: a median and average of 0.00 (a graph under the printed resolution, such
        as a latency kit's smallest part graphs) read as 0.0 instead of being refused.

    Raises:
      ValueError: no positive latency in it (or a negative or missing one with `allow_zero`).
    """
    latency = result.get("latency") if isinstance(result, dict) else None
    ms = latency.get("median_ms") if isinstance(latency, dict) else None
    if isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms == 0:
        ms = latency.get("avg_ms")  # below the printed resolution
    number = isinstance(ms, (int, float)) and not isinstance(ms, bool) and math.isfinite(ms)
    if not number or ms < 0 or (ms == 0 and not allow_zero):
        raise ValueError("litert-benchmark's result has no positive latency.median_ms")
    accelerated = result.get("fully_accelerated")
    return float(ms), accelerated if isinstance(accelerated, bool) else None
