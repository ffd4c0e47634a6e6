"""A latency table for a phone: the kit folder of part graphs, and the table from its outputs.

`tools.latency_table --android_kit=DIR` writes the part graphs (and a few whole stage graphs
for the fit) under `DIR/graphs/` and lists them in `DIR/latency_kit.json`, written last so
its presence means the folder is complete. `python -m export.android_benchmark
--latency_kit=DIR` pushes them, runs TFLite's `benchmark_model` on each, keeps each output as
`DIR/outputs/<graph>.txt` with `DIR/outputs/run.json` (phone, threads) and writes the table
with `table_from_kit`, as `tools.latency_table --from_android=DIR` does again later. With
`--host` the kit is timed on this machine by litert-benchmark: a table of kind "host".

`benchmark_model` times invokes only, so a phone's table charges no per-tensor cost: its fit
is the ops' (`scale`, `fixed_ms`) from the stage graphs' invokes.

This module does not import TensorFlow.
"""

from __future__ import annotations

import os

from enas4d_tf.errors import LatencyError, SpaceError
from enas4d_tf.files import read_json, write_bytes_atomic, write_json_atomic
from enas4d_tf.latency.calibrate import fit_graph_costs
from enas4d_tf.latency.handoffs import stage_io
from enas4d_tf.latency.parts import stage_parts
from enas4d_tf.latency.table import QUANTIZATIONS, LatencyTable, Target
from enas4d_tf.space import Arch, SearchSpace

KIT_FORMAT = "enas4d_latency_kit/1"
KIT_FILE = "latency_kit.json"
RUN_FILE = "run.json"
NULL_GRAPH = "null"
# A kit timed on this machine (`--host`) records this runtime: its table's target is of kind
# "host", told apart from tools.latency_table's host tables (LiteRT's Python interpreter) by
# its runtime.
HOST_RUNTIME_PREFIX = "litert-benchmark"


def check_new_kit_dir(folder: str) -> None:
    """Refuses a folder that already holds a kit (a kit is never overwritten).

    Raises:
      LatencyError: `folder/latency_kit.json` exists.
    """
    if os.path.exists(os.path.join(folder, KIT_FILE)):
        raise LatencyError(f"{folder} already holds a latency kit; choose a new folder")


def write_kit(folder: str, header: dict, parts: dict, null: bytes, stages: dict) -> None:
    """Writes a kit folder.

    Args:
      folder: the kit folder (new or without a kit).
      header: `preset`, `num_classes`, `quantization`.
      parts: part key -> flatbuffer.
      null: the null graph's flatbuffer.
      stages: `arch{i}_stage{n}` -> `(flatbuffer, Arch)`, whole stage graphs for the fit.
    """
    graphs: dict = {}

    def put(name: str, data: bytes, **info) -> None:
        path = f"graphs/{name}.tflite"
        write_bytes_atomic(os.path.join(folder, path), data, LatencyError)
        graphs[name] = {"file": path, **info}

    put(NULL_GRAPH, null)
    for i, key in enumerate(sorted(parts)):
        put(f"p{i:05d}", parts[key], key=key)
    for name, (data, arch) in sorted(stages.items()):
        put(name, data, arch=arch.to_dict(), stage=int(name.rsplit("stage", 1)[1]))
    kit = {"format": KIT_FORMAT, **header, "graphs": graphs}
    write_json_atomic(os.path.join(folder, KIT_FILE), kit, sort_keys=False, error=LatencyError)


def read_kit(folder: str) -> dict:
    """Reads and checks `folder/latency_kit.json`: its header (format, a known preset and
    quantisation, `num_classes` an integer >= 1), every graph (a file that is there; the null
    graph, a part graph's `key`, or a stage graph's `arch` of the preset and `stage`), and
    that the kit holds every part its stage graphs are made of.

    Raises:
      LatencyError: missing, unreadable or malformed kit (one line naming the file and the
        first bad field), or a graph file missing.
    """
    path = os.path.join(folder, KIT_FILE)
    kit = read_json(path, LatencyError, "latency kit")
    ok = isinstance(kit, dict) and kit.get("format") == KIT_FORMAT
    ok = ok and isinstance(kit.get("graphs"), dict) and NULL_GRAPH in kit["graphs"]
    ok = ok and kit.get("quantization") in QUANTIZATIONS and isinstance(kit.get("preset"), str)
    if not ok:
        raise LatencyError(f"latency kit {path} is not a {KIT_FORMAT} file")
    n = kit.get("num_classes")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise LatencyError(f"latency kit {path}: num_classes must be an integer >= 1, got {n!r}")
    try:
        space = SearchSpace.preset(kit["preset"])
    except SpaceError as e:
        raise LatencyError(f"latency kit {path}: {e}") from None
    keys = set()
    for name, graph in kit["graphs"].items():
        file = graph.get("file") if isinstance(graph, dict) else None
        if not isinstance(file, str) or not os.path.isfile(os.path.join(folder, file)):
            raise LatencyError(f"latency kit {path}: graph {name} has no file in {folder}")
        if "key" in graph and not isinstance(graph["key"], str):
            raise LatencyError(f"latency kit {path}: graph {name}'s key is not a string")
        keys.add(graph.get("key"))
    for name, graph in kit["graphs"].items():
        if name != NULL_GRAPH and "key" not in graph:
            missing = _stage_graph_problem(space, n, graph, keys)
            if missing:
                raise LatencyError(f"latency kit {path}: stage graph {name} {missing}")
    return kit


def _stage_graph_problem(space: SearchSpace, num_classes: int, graph: dict, keys: set):
    """What is wrong with a kit's stage graph entry (None: nothing): its `arch` must be of
    the space, its `stage` an exit number, and each of its parts a part graph of the kit."""
    if "arch" not in graph or "stage" not in graph:
        return "lacks 'arch' or 'stage' (a part graph has a 'key')"
    stage = graph["stage"]
    if not isinstance(stage, int) or isinstance(stage, bool):
        return f"has stage {stage!r}, not an integer"
    if not 1 <= stage <= space.num_stages:
        return f"has stage {stage}, not in 1..{space.num_stages}"
    try:
        arch = Arch.from_dict(graph["arch"])
        space.validate(arch)
    except SpaceError as e:
        return f"has an arch not of search space {space.name!r}: {e}"
    lacking = sorted(set(stage_parts(space, arch, stage - 1, num_classes)) - keys)
    if lacking:
        return f"needs part {lacking[0]!r}, which the kit has no graph of"
    return None


def output_path(folder: str, graph: str, suffix: str = ".txt") -> str:
    """Where the kit keeps `benchmark_model`'s output for one graph (`.json`: the result
    `litert-benchmark` writes when the kit runs on this host)."""
    return os.path.join(folder, "outputs", f"{graph}{suffix}")


def kit_commands(kit: dict, folder: str, settings, host_binary: str | None = None):
    """The commands that time every graph of a kit, and the run record to keep with them.

    Args:
      kit: `read_kit(folder)`.
      folder: the kit folder on this machine.
      settings: `enas4d_tf.export.android_kit.BenchmarkSettings` (threads, runs, adb).
      host_binary: litert-benchmark's path to time on this machine; None: on the phone.

    Returns:
      `(commands, run)`: `commands` is a list of `(argv, graph name or None)`; on a phone
      first `adb shell mkdir` and one `adb push` of the graphs folder (name None), then one
      `benchmark_model` per graph; on the host one `litert-benchmark` per graph writing its
      JSON result where `table_from_kit` reads it. `run` is the run record (`RUN_FILE`);
      for a phone it holds `device_command`, the `adb shell getprop` that names the phone.
    """
    names = sorted(kit["graphs"])
    run = {"num_threads": settings.num_threads}
    if host_binary is not None:
        from enas4d_tf.latency.build import host_target, litert_version

        target = host_target(kit["quantization"], settings.num_threads)
        runtime = f"{HOST_RUNTIME_PREFIX} (ai-edge-litert {litert_version()}, median), XNNPACK"
        run.update(device=target.device, runtime=runtime)
        commands = [
            (
                [
                    host_binary,
                    f"--model={os.path.join(folder, kit['graphs'][n]['file'])}",
                    f"--num_threads={settings.num_threads}",
                    f"--num_runs={settings.num_runs}",
                    f"--warmup_runs={settings.warmup_runs}",
                    f"--result_json={output_path(folder, n, '.json')}",
                ],
                n,
            )
            for n in names
        ]
        return commands, run
    adb = ["adb"] + (["-s", settings.serial] if settings.serial else [])
    remote = f"{settings.device_dir}/latency_kit"
    run.update(runtime="benchmark_model (Inference avg), XNNPACK")
    run["device_command"] = adb + ["shell", "getprop", "ro.product.model"]
    commands = [
        (adb + ["shell", "mkdir", "-p", remote], None),
        (adb + ["push", os.path.join(folder, "graphs"), remote], None),
    ]
    for n in names:
        bench = [
            settings.binary,
            f"--graph={remote}/{kit['graphs'][n]['file']}",
            f"--num_threads={settings.num_threads}",
            f"--num_runs={settings.num_runs}",
            f"--warmup_runs={settings.warmup_runs}",
            "--use_xnnpack=true",
        ]
        commands.append((adb + ["shell", " ".join(bench)], n))
    return commands, run


def record_run(folder: str, run: dict) -> None:
    """Writes the run record (`RUN_FILE`: the phone or host, the threads) into the outputs.

    Raises:
      LatencyError: a record of another phone, runtime or thread count is there already
        (its outputs would mix with this run's), or the file cannot be written.
    """
    path = os.path.join(folder, "outputs", RUN_FILE)
    record = {k: v for k, v in run.items() if k != "device_command"}
    if os.path.exists(path):
        earlier = read_json(path, LatencyError, "kit run record")
        if earlier != record:
            raise LatencyError(
                f"{path} records another run ({earlier}); time this kit in a new folder"
            )
        return
    write_json_atomic(path, record, error=LatencyError)


def has_output(folder: str, graph: str) -> bool:
    """Whether a graph's output is recorded (a resumed run skips it)."""
    return any(os.path.exists(output_path(folder, graph, x)) for x in (".txt", ".json"))


def record_output(folder: str, graph: str | None, text: str) -> None:
    """Keeps a graph's `benchmark_model` output (`output_path`); nothing for the adb
    commands that time no graph (`graph` None) or a result litert-benchmark wrote itself."""
    if graph is not None and not os.path.exists(output_path(folder, graph, ".json")):
        write_bytes_atomic(output_path(folder, graph), text.encode(), LatencyError)


def _parse(folder: str, name: str) -> float:
    """A graph's time: its litert-benchmark JSON result (host) or benchmark_model output."""
    from enas4d_tf.export.android_kit import parse_benchmark_output, parse_host_result

    json_path = output_path(folder, name, ".json")
    if os.path.exists(json_path):
        try:
            # Part graphs under litert-benchmark's 0.01 ms resolution read as 0.
            result = read_json(json_path, LatencyError, "result")
            return parse_host_result(result, allow_zero=True)[0]
        except ValueError as e:
            raise LatencyError(f"{json_path}: {e}") from None
    path = output_path(folder, name)
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise LatencyError(
            f"no recorded output {path} (run python -m export.android_benchmark "
            f"--latency_kit={folder})"
        ) from None
    try:
        return parse_benchmark_output(text)
    except ValueError as e:
        raise LatencyError(f"{path}: {e}") from None


def table_from_kit(folder: str) -> LatencyTable:
    """The table of a kit whose graphs the phone (or this machine, `--host`) has timed
    (outputs recorded). The target is of kind "android", or "host" for a kit timed here,
    with the runtime `litert-benchmark ...`.

    Raises:
      LatencyError: a bad kit, a missing or unreadable output (named), a bad run.json.
    """
    kit = read_kit(folder)
    run = read_json(os.path.join(folder, "outputs", RUN_FILE), LatencyError, "kit run record")
    if not isinstance(run, dict) or not isinstance(run.get("num_threads"), int):
        raise LatencyError(f"{folder}/outputs/{RUN_FILE} lacks num_threads")
    times = {name: _parse(folder, name) for name in kit["graphs"]}
    null = times[NULL_GRAPH]
    entries = {
        g["key"]: max(0.0, times[name] - null) for name, g in kit["graphs"].items() if "key" in g
    }
    space = SearchSpace.preset(kit["preset"])
    rows = []
    for name, g in kit["graphs"].items():
        if "stage" not in g:
            continue
        arch, s = Arch.from_dict(g["arch"]), g["stage"] - 1
        parts = stage_parts(space, arch, s, kit["num_classes"])
        io = stage_io(space, arch, kit["num_classes"])[s]
        # Invokes only: the runner's terms are 0 (runner time = invoke time).
        total = sum(entries[k] for k in parts)
        rows.append((total, *io.counts, times[name], times[name]))
    runtime = str(run.get("runtime", "benchmark_model, XNNPACK"))
    host = runtime.startswith(HOST_RUNTIME_PREFIX)
    target = Target(
        kind="host" if host else "android",
        device=str(run.get("device", "this machine" if host else "unknown phone")),
        runtime=runtime,
        threads=run["num_threads"],
        quantization=kit["quantization"],
    )
    meta = {"kit": os.path.abspath(folder), "null_graph_ms": null, "calibration_rows": rows}
    return LatencyTable(
        target=target,
        preset=kit["preset"],
        num_classes=int(kit["num_classes"]),
        entries=entries,
        fit=fit_graph_costs(rows),
        meta=meta,
    )
