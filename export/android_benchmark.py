"""Times exported stage graphs on an Android phone and combines them with the exit rates.

Run from the repository root (this folder is not installed):

  python export/android_benchmark.py --export_dir=runs/demo/export/net0 \
      --quantization=int8 --num_threads=1 --cascade_report=cascade_int8.json
  python export/android_benchmark.py --export_dir=... --dry_run   # print commands only

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
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from enas4d_tf.export import android_kit  # noqa: E402
from tools._cli import fail, flags_parser  # noqa: E402

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


def _load_json(path: str, what: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail("android_benchmark", f"cannot read {what} {path}: {e}")


def main(argv) -> None:
    if len(argv) > 1:
        fail("android_benchmark", f"unexpected arguments: {' '.join(argv[1:])}", code=2)
    if not FLAGS.export_dir:
        fail("android_benchmark", "--export_dir is required", code=2)
    manifest = _load_json(os.path.join(FLAGS.export_dir, "manifest.json"), "manifest")
    try:
        commands = android_kit.benchmark_commands(
            manifest,
            FLAGS.quantization,
            num_threads=FLAGS.num_threads,
            num_runs=FLAGS.num_runs,
            warmup_runs=FLAGS.warmup_runs,
            binary=FLAGS.binary,
            device_dir=FLAGS.device_dir,
            serial=FLAGS.serial,
            export_dir=FLAGS.export_dir,
        )
        report_in = (
            _load_json(FLAGS.cascade_report, "cascade report") if FLAGS.cascade_report else None
        )
        rates, source = android_kit.exit_rates_from(manifest, report_in)
    except (ValueError, KeyError) as e:
        fail("android_benchmark", str(e))
    if FLAGS.dry_run:
        for command in commands:
            print(shlex.join(command))
        return
    num_stages = len(manifest["stages"])
    outputs = []
    for command in commands:
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            fail("android_benchmark", "adb not found on the PATH (install Android platform-tools)")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()
            fail(
                "android_benchmark",
                f"{shlex.join(command)} failed: {tail[-1] if tail else done.returncode}",
            )
        outputs.append(done.stdout + done.stderr)
    try:
        stage_ms = [android_kit.parse_benchmark_output(t) for t in outputs[-num_stages:]]
        combined = android_kit.expected_latency(stage_ms, rates)
    except ValueError as e:
        fail("android_benchmark", str(e))
    report = {
        "export_dir": FLAGS.export_dir,
        "quantization": FLAGS.quantization,
        "num_threads": FLAGS.num_threads,
        "stage_ms": stage_ms,
        "exit_rates": rates,
        "exit_rates_source": source,
        **combined,
    }
    if FLAGS.report:
        with open(FLAGS.report + ".tmp", "w") as f:
            json.dump(report, f, indent=2)
        os.replace(FLAGS.report + ".tmp", FLAGS.report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("android_benchmark"))
