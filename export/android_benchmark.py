"""Times exported stage graphs on an Android phone and combines them with the exit rates.

Run from the repository root, as a module (this folder is not installed):

  python -m export.android_benchmark --export_dir=runs/demo/export/net0 \
      --quantization=int8 --num_threads=1 --cascade_report=cascade_int8.json
  python -m export.android_benchmark --export_dir=... --dry_run   # print commands only
  python -m export.android_benchmark --export_dir=... --host      # no phone: this machine
  python -m export.android_benchmark --latency_kit=DIR            # a phone's latency table

Needs `adb` on the PATH, a phone with USB debugging, and TFLite's `benchmark_model` binary
for the phone's ABI pushed to --binary (see export/README.md). Prints a JSON report:
per-stage times, cumulative times to each exit and the expected average latency.
With `--host`, the same report comes from this machine: each stage graph is timed by
ai-edge-litert's `litert-benchmark` (no adb, no phone).
With `--latency_kit=DIR` (a folder `tools.latency_table --android_kit=DIR` wrote), it times
every part graph of the kit instead and writes the latency table (`--latency_table`,
default DIR/table.json) that `tools.search --cost=latency` reads.
Bad input ends with one line on stderr and exit 1.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from tools._cli import config_from_flags, fail, flags_parser, quiet_stderr  # noqa: E402

# None of these imports TensorFlow or LiteRT: the kit checks its input in a fraction of a second.
with quiet_stderr():
    from enas4d_tf.errors import Enas4dError, ExportDirError
    from enas4d_tf.export import android_kit
    from enas4d_tf.export.formats import read_manifest
    from enas4d_tf.export.integrity import check_graph_files
    from enas4d_tf.files import check_writable_file, read_json, write_json_atomic
    from enas4d_tf.latency import android as latency_android

PROGRAM = "android_benchmark"

flags.DEFINE_string("export_dir", None, "An export folder written by tools/export.py.")
flags.DEFINE_string("quantization", "float32", "Which exported stage graphs to time.")
flags.DEFINE_integer("num_threads", 1, "benchmark_model --num_threads.", lower_bound=1)
flags.DEFINE_integer("num_runs", 200, "benchmark_model --num_runs per stage.", lower_bound=1)
flags.DEFINE_integer("warmup_runs", 20, "benchmark_model --warmup_runs.", lower_bound=0)
flags.DEFINE_string("binary", android_kit.DEVICE_BINARY, "benchmark_model's path on the phone.")
flags.DEFINE_string("device_dir", android_kit.DEVICE_DIR, "Where the graphs go on the phone.")
flags.DEFINE_string("serial", None, "adb -s serial of the phone, when several are attached.")
flags.DEFINE_string(
    "cascade_report",
    None,
    "A tools/cascade.py JSON report whose exit rates to use (default: the manifest's "
    "search result; a static network exits last).",
)
flags.DEFINE_bool("dry_run", False, "Print the commands instead of running them (no adb).")
flags.DEFINE_string("report", None, "Also write the JSON report to this file.")
flags.DEFINE_bool(
    "host",
    False,
    "Time the graphs on this machine with ai-edge-litert's litert-benchmark instead of a phone.",
)
flags.DEFINE_string(
    "host_binary", android_kit.HOST_BINARY, "The litert-benchmark program (with --host)."
)
flags.DEFINE_string(
    "latency_kit",
    None,
    "A folder written by tools.latency_table --android_kit: time its part graphs and write "
    "the latency table (instead of --export_dir).",
)
flags.DEFINE_string(
    "latency_table", None, "Where --latency_kit writes the table (default DIR/table.json)."
)

FLAGS = flags.FLAGS


def _run_all(commands: list[list[str]]) -> list[str]:
    """Runs the commands in turn; returns each one's output (stdout + stderr)."""
    outputs = []
    for command in commands:
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            fail(PROGRAM, "adb not found on the PATH (install Android platform-tools)")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()
            fail(PROGRAM, f"{shlex.join(command)} failed: {tail[-1] if tail else done.returncode}")
        outputs.append(done.stdout + done.stderr)
    return outputs


def _host_binary() -> str:
    """litert-benchmark's path, or a one-line refusal."""
    binary = android_kit.host_binary(FLAGS.host_binary)
    if binary is None:
        fail(PROGRAM, f"{FLAGS.host_binary} not found (it comes with pip install ai-edge-litert)")
    return binary


def _settings() -> android_kit.BenchmarkSettings:
    return config_from_flags(android_kit.BenchmarkSettings)


def _prepare() -> tuple[dict, list, str]:
    """Checks everything before any command runs: the manifest's schema, the graphs' sizes
    and SHA-256, the cascade report's exit rates, the --report location.

    Returns:
      `(manifest, exit rates, where the rates come from)`.
    """
    try:
        manifest = read_manifest(FLAGS.export_dir)
        check_graph_files(FLAGS.export_dir, manifest, FLAGS.quantization)
        android_kit.stage_files(manifest, FLAGS.quantization)
        report_in = None
        if FLAGS.cascade_report:
            report_in = read_json(FLAGS.cascade_report, ExportDirError, "cascade report")
        rates, source = android_kit.exit_rates_from(manifest, report_in, FLAGS.quantization)
        if FLAGS.report:
            check_writable_file(FLAGS.report, "--report", ExportDirError)
    except ValueError as e:  # every Enas4dError is a ValueError
        fail(PROGRAM, str(e))
    return manifest, rates, source


def _time_on_phone(manifest: dict) -> tuple[list, None]:
    commands = android_kit.benchmark_commands(
        manifest, FLAGS.quantization, export_dir=FLAGS.export_dir, settings=_settings()
    )
    if FLAGS.dry_run:
        for command in commands:
            print(shlex.join(command))
        return [], None
    outputs = _run_all(commands)
    num_stages = len(manifest["stages"])  # the benchmark_model runs come last
    try:
        return [android_kit.parse_benchmark_output(t) for t in outputs[-num_stages:]], None
    except ValueError as e:
        fail(PROGRAM, str(e))


def _time_on_host(manifest: dict) -> tuple[list, list]:
    binary = _host_binary()
    results = "RESULTS" if FLAGS.dry_run else tempfile.mkdtemp(prefix="enas4d_host_bench_")
    commands = android_kit.host_commands(
        manifest, FLAGS.quantization, FLAGS.export_dir, results, binary, _settings()
    )
    if FLAGS.dry_run:
        for command in commands:
            print(shlex.join(command))
        return [], []
    try:
        _run_all(commands)
        timed = []
        for k in range(1, len(commands) + 1):
            result = read_json(os.path.join(results, f"stage{k}.json"), ExportDirError, "result")
            timed.append(android_kit.parse_host_result(result))
    except ValueError as e:
        fail(PROGRAM, f"litert-benchmark: {e}")
    finally:
        shutil.rmtree(results, ignore_errors=True)
    return [ms for ms, _ in timed], [accelerated for _, accelerated in timed]


def _latency_kit() -> None:
    """Times every graph of a latency kit (phone or --host) and writes its table."""
    folder = FLAGS.latency_kit
    out = FLAGS.latency_table or os.path.join(folder, "table.json")
    try:
        kit = latency_android.read_kit(folder)
        if os.path.exists(out):
            raise ExportDirError(f"--latency_table {out} exists; choose another file")
        check_writable_file(out, "--latency_table", ExportDirError)
    except ValueError as e:
        fail(PROGRAM, str(e))
    binary = _host_binary() if FLAGS.host else None
    commands, run = latency_android.kit_commands(kit, folder, _settings(), binary)
    if FLAGS.dry_run:
        for command, _ in commands:
            print(shlex.join(command))
        return
    if not FLAGS.host:
        model = _run_all([run.pop("device_command")])[0].strip()
        run["device"] = model or "unknown phone"
    try:
        latency_android.record_run(folder, run)
        for command, name in commands:
            # Each output is kept as it comes: a run stopped midway resumes where it was.
            if name is None or not latency_android.has_output(folder, name):
                latency_android.record_output(folder, name, _run_all([command])[0])
        table = latency_android.table_from_kit(folder)
        table.save(out)
    except ValueError as e:
        fail(PROGRAM, str(e))
    print(f"{PROGRAM}: {len(table.entries)} entries, fit {table.fit} -> {out}")


def main(argv) -> None:
    if FLAGS.latency_kit:
        _latency_kit()
        return
    if not FLAGS.export_dir:
        fail(PROGRAM, "--export_dir is required (or --latency_kit for a latency table)", code=2)
    manifest, rates, source = _prepare()
    if FLAGS.host:
        stage_ms, accelerated = _time_on_host(manifest)
    else:
        stage_ms, accelerated = _time_on_phone(manifest)
    if FLAGS.dry_run:
        return
    try:
        combined = android_kit.expected_latency(stage_ms, rates)
    except ValueError as e:
        fail(PROGRAM, str(e))
    report = {
        "export_dir": FLAGS.export_dir,
        "target": "host, litert-benchmark (median)" if FLAGS.host else "android, benchmark_model",
        "quantization": FLAGS.quantization,
        "num_threads": FLAGS.num_threads,
        "exits": [stage["exit"] for stage in manifest["stages"]],
        "stage_files": android_kit.stage_files(manifest, FLAGS.quantization),
        "stage_ms": stage_ms,
        "exit_rates": rates,
        "exit_rates_source": source,
        **combined,
    }
    if accelerated is not None:
        report["fully_accelerated"] = accelerated
    # Printed first: if the report file cannot be written, the timings are not lost.
    print(json.dumps(report, indent=2), flush=True)
    if FLAGS.report:
        try:
            write_json_atomic(FLAGS.report, report, sort_keys=False)
        except Enas4dError as e:
            fail(PROGRAM, f"{e} (the report was printed on stdout)")


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser(PROGRAM))
