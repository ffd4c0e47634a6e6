"""Times exported stage graphs on an Android phone and combines them with the exit rates.

Run from the repository root, as a module (this folder is not installed):

  python -m export.android_benchmark --export_dir=runs/demo/export/net0 \
      --quantization=int8 --num_threads=1 --cascade_report=cascade_int8.json
  python -m export.android_benchmark --export_dir=... --dry_run   # print commands only

Needs `adb` on the PATH, a phone with USB debugging, and TFLite's `benchmark_model` binary
for the phone's ABI pushed to --binary (see export/README.md). Prints a JSON report:
per-stage times, cumulative times to each exit and the expected average latency.
Bad input ends with one line on stderr and exit 1.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess

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

FLAGS = flags.FLAGS


def _run_all(commands: list[list[str]]) -> list[str]:
    """Runs the adb commands in turn; returns each one's output (stdout + stderr)."""
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


def _prepare() -> tuple[dict, list, list, str]:
    """Checks everything before any adb command: the manifest's schema, the graphs' sizes
    and SHA-256, the cascade report's exit rates, the --report location.

    Returns:
      `(manifest, commands, exit rates, where the rates come from)`.
    """
    try:
        manifest = read_manifest(FLAGS.export_dir)
        check_graph_files(FLAGS.export_dir, manifest, FLAGS.quantization)
        commands = android_kit.benchmark_commands(
            manifest,
            FLAGS.quantization,
            export_dir=FLAGS.export_dir,
            settings=config_from_flags(android_kit.BenchmarkSettings),
        )
        report_in = None
        if FLAGS.cascade_report:
            report_in = read_json(FLAGS.cascade_report, ExportDirError, "cascade report")
        rates, source = android_kit.exit_rates_from(manifest, report_in)
        if FLAGS.report:
            check_writable_file(FLAGS.report, "--report", ExportDirError)
    except ValueError as e:  # every Enas4dError is a ValueError
        fail(PROGRAM, str(e))
    return manifest, commands, rates, source


def main(argv) -> None:
    if not FLAGS.export_dir:
        fail(PROGRAM, "--export_dir is required", code=2)
    manifest, commands, rates, source = _prepare()
    if FLAGS.dry_run:
        for command in commands:
            print(shlex.join(command))
        return
    outputs = _run_all(commands)
    try:
        num_stages = len(manifest["stages"])  # the benchmark_model runs come last
        stage_ms = [android_kit.parse_benchmark_output(t) for t in outputs[-num_stages:]]
        combined = android_kit.expected_latency(stage_ms, rates)
    except ValueError as e:
        fail(PROGRAM, str(e))
    report = {
        "export_dir": FLAGS.export_dir,
        "quantization": FLAGS.quantization,
        "num_threads": FLAGS.num_threads,
        "exits": [stage["exit"] for stage in manifest["stages"]],
        "stage_ms": stage_ms,
        "exit_rates": rates,
        "exit_rates_source": source,
        **combined,
    }
    # Printed first: if the report file cannot be written, the timings are not lost.
    print(json.dumps(report, indent=2), flush=True)
    if FLAGS.report:
        try:
            write_json_atomic(FLAGS.report, report, sort_keys=False)
        except Enas4dError as e:
            fail(PROGRAM, f"{e} (the report was printed on stdout)")


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser(PROGRAM))
