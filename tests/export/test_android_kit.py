"""The Android kit: parsing benchmark_model's output and combining stage times with exit rates,
against recorded output, and the command line end to end with a stand-in `adb`.

tests/export/data/benchmark_model_stage{1,2,3}.txt are outputs in the format of TFLite's
`benchmark_model` (tensorflow/lite/tools/benchmark: benchmark_model.cc prints a statistics
line `count=.. first=.. curr=.. min=.. max=.. avg=.. std=..` per phase and ends with
"Inference timings in us: Init: .., First inference: .., Warmup (avg): .., Inference (avg):
.."; benchmark_tflite_model.cc prints the parameter lines). Stages 1 and 2 are laid out as
recent Android builds print them ("INFO: " prefix, p5/median/p95 on the statistics lines);
stage 3 as older builds do (no prefix, C++ stream notation 1.1723e+03 for large averages).
The timings are of the size a mid-range phone gives for these graphs; no phone was attached
here, so they were not measured on one. benchmark_model_failed.txt is a run that could not
open its graph. litert_benchmark_stage2.json is ai-edge-litert 2.3.0's `litert-benchmark
--result_json` of a tiny export's stage 2 graph, recorded on this host (the `--host` mode).
"""

import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest

from enas4d_tf.export import android_kit, formats
from tests.helpers import REPO

DATA = os.path.join(os.path.dirname(__file__), "data")
STAGE_US = [611.417, 718.6, 1172.3]  # the "Inference (avg)" of each recorded output


def _read(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()


def fake_export(folder, exits=(1, 2, 3), thresholds=None, exit=None, search=None):
    """An export folder with the manifest schema `formats.build_manifest` writes and stand-in
    graph files whose sizes and hashes the manifest records (the kit never loads them)."""
    os.makedirs(folder, exist_ok=True)
    thresholds = thresholds or ([0.6, 0.45, 0.0] if len(exits) == 3 else [0.0])
    stages = []
    for i, e in enumerate(exits):
        name = f"stage{e}_float32.tflite"
        data = f"graph of exit {e}".encode() * 50
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
        inputs = {"image": {"shape": [1, 24, 24, 1], "dtype": "float32"}}
        if i:
            inputs["g1_stem"] = {"shape": [1, 12, 12, 4], "dtype": "float32"}
        signature = {
            "inputs": inputs,
            "outputs": {"logits": {"shape": [1, 10], "dtype": "float32"}},
        }
        record = {
            "file": name,
            "bytes": len(data),
            "signature": signature,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        stages.append(formats.stage_record(e, {"float32": record}, 1000 * (i + 1), thresholds[i]))
    manifest = {
        "format_version": formats.MANIFEST_VERSION,
        "name": os.path.basename(folder),
        "mode": "static" if exit else "dynamic",
        "exit": exit,
        "num_classes": 10,
        "num_stages": len(stages),
        "thresholds": thresholds,
        "stage_macs": [s["cumulative_macs"] for s in stages],
        "quantization": ["float32"],
        "preprocessing": formats.preprocessing_record("fashion_mnist", 28, 24, [0.28], [0.35]),
        "stages": stages,
        "search": search or {},
    }
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return manifest


def test_recorded_outputs_parse_to_their_average_in_ms():
    for s, us in enumerate(STAGE_US):
        assert android_kit.parse_benchmark_output(_read(f"benchmark_model_stage{s + 1}.txt")) == (
            pytest.approx(us / 1e3, rel=1e-9)
        )


def test_without_the_summary_line_the_timed_phase_is_read_not_the_warmup():
    text = _read("benchmark_model_stage3.txt")
    cut = text[: text.index("Inference timings")]
    # The last statistics line is the timed runs (avg=1.1723e+03), not the warm-up (1.2466e+03).
    assert android_kit.parse_benchmark_output(cut) == pytest.approx(1.1723)


@pytest.mark.parametrize(
    "text, needle",
    [
        (_read("benchmark_model_failed.txt"), "no 'Inference (avg)'"),
        ("Inference timings in us: Init: 1, Inference (avg): 0", "average time of '0'"),
        ("", "no 'Inference (avg)'"),
    ],
)
def test_outputs_without_a_usable_timing_are_refused(text, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        android_kit.parse_benchmark_output(text)


def test_expected_latency_of_the_recorded_stage_times():
    ms = [
        android_kit.parse_benchmark_output(_read(f"benchmark_model_stage{s}.txt"))
        for s in (1, 2, 3)
    ]
    out = android_kit.expected_latency(ms, [0.5, 0.3, 0.2])
    # Worked by hand: cumulative 0.611417, 1.330017, 2.502317 ms;
    # 0.5 * 0.611417 + 0.3 * 1.330017 + 0.2 * 2.502317 = 1.2051770 ms.
    assert out["cumulative_ms"] == pytest.approx([0.611417, 1.330017, 2.502317])
    assert out["expected_avg_ms"] == pytest.approx(1.205177)
    assert out["full_network_ms"] == pytest.approx(2.502317)
    with pytest.raises(ValueError, match="sum"):
        android_kit.expected_latency(ms, [0.5, 0.3, 0.3])


def _fake_adb(bin_dir):
    """An `adb` that accepts mkdir and push and answers each benchmark_model run with the
    recorded output of its stage (the stage number is read from --graph=.../stage<n>_)."""
    os.makedirs(bin_dir, exist_ok=True)
    path = os.path.join(bin_dir, "adb")
    with open(path, "w") as f:
        f.write(
            "#!/bin/sh\n"
            'case "$*" in\n'
            f"  *benchmark_model*) n=$(echo \"$*\" | sed 's/.*stage\\([0-9]*\\)_.*/\\1/');"
            f' cat "{DATA}/benchmark_model_stage$n.txt";;\n'
            "  *) exit 0;;\n"
            "esac\n"
        )
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


def _run_kit(args, bin_dir):
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, "-m", "export.android_benchmark", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_kit_times_every_stage_and_combines_them_with_the_cascade_rates(tmp_path):
    folder = str(tmp_path / "net")
    fake_export(folder)
    _fake_adb(str(tmp_path / "bin"))
    rates = tmp_path / "cascade.json"
    rates.write_text(json.dumps({"exit_rates": [0.5, 0.3, 0.2]}))
    report_path = tmp_path / "kit.json"
    done = _run_kit(
        [f"--export_dir={folder}", f"--cascade_report={rates}", f"--report={report_path}"],
        str(tmp_path / "bin"),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert json.loads(done.stdout) == report
    assert report["stage_ms"] == pytest.approx([us / 1e3 for us in STAGE_US])
    assert report["expected_avg_ms"] == pytest.approx(1.205177)
    assert report["exit_rates_source"] == "cascade report" and report["exits"] == [1, 2, 3]


def test_a_truncated_network_is_one_graph_every_image_leaves_at_its_exit(tmp_path):
    folder = str(tmp_path / "t")
    fake_export(folder, exits=(2,), exit=2, search={"exit_rates": [0.0, 1.0, 0.0]})
    _fake_adb(str(tmp_path / "bin"))
    done = _run_kit([f"--export_dir={folder}"], str(tmp_path / "bin"))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # stage2_float32.tflite is the whole truncated network: its recorded time is the latency.
    assert report["exits"] == [2] and report["exit_rates"] == [1.0]
    assert report["expected_avg_ms"] == pytest.approx(0.7186)
    assert "truncated" in report["exit_rates_source"]


# -- --host: the same kit on this machine, timed by litert-benchmark --------------------------


def test_recorded_litert_benchmark_result_parses_to_its_median():
    with open(os.path.join(DATA, "litert_benchmark_stage2.json")) as f:
        result = json.load(f)
    # Its latency block: avg 0.07, median 0.04 ms (a few slow runs on a shared machine).
    assert android_kit.parse_host_result(result) == (0.04, True)
    for bad in ({}, {"latency": {"median_ms": -1}}, {"latency": {"median_ms": "fast"}}):
        with pytest.raises(ValueError, match="median_ms"):
            android_kit.parse_host_result(bad)
    # Under the printed resolution (0.00 ms) the average stands in.
    assert android_kit.parse_host_result({"latency": {"median_ms": 0.0, "avg_ms": 0.01}})[0] == 0.01
    zero = {"latency": {"median_ms": 0.0, "avg_ms": 0.0}}
    with pytest.raises(ValueError, match="median_ms"):
        android_kit.parse_host_result(zero)
    assert android_kit.parse_host_result(zero, allow_zero=True)[0] == 0.0


def test_host_commands_time_each_stage_file_into_its_own_result(tmp_path):
    folder = str(tmp_path / "net")
    manifest = fake_export(folder)
    settings = android_kit.BenchmarkSettings(num_threads=2, num_runs=30, warmup_runs=3)
    commands = android_kit.host_commands(manifest, "float32", folder, "/r", "lb", settings)
    assert commands == [
        [
            "lb",
            f"--model={folder}/stage{s}_float32.tflite",
            "--num_threads=2",
            "--num_runs=30",
            "--warmup_runs=3",
            f"--result_json=/r/stage{s}.json",
        ]
        for s in (1, 2, 3)
    ]


def _fake_litert_benchmark(bin_dir, medians):
    """A `litert-benchmark` that writes a result with the median given for the stage number
    in its --model (stage<n>_...)."""
    os.makedirs(bin_dir, exist_ok=True)
    path = os.path.join(bin_dir, "fake-litert-benchmark")
    with open(path, "w") as f:
        f.write(
            f"#!{sys.executable}\n"
            "import json, re, sys\n"
            "args = dict(a[2:].split('=', 1) for a in sys.argv[1:])\n"
            "n = int(re.search(r'stage(\\d+)_', args['model']).group(1))\n"
            f"medians = {medians!r}\n"
            "result = {'fully_accelerated': n != 3, 'latency': {'median_ms': medians[n - 1]}}\n"
            "json.dump(result, open(args['result_json'], 'w'))\n"
        )
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def test_host_mode_reports_the_timed_stage_graphs(tmp_path):
    folder = str(tmp_path / "net")
    fake_export(folder)
    binary = _fake_litert_benchmark(str(tmp_path / "bin"), [0.25, 0.5, 1.0])
    rates = tmp_path / "cascade.json"
    rates.write_text(json.dumps({"exit_rates": [0.5, 0.3, 0.2]}))
    done = _run_kit(
        [
            f"--export_dir={folder}",
            "--host",
            f"--host_binary={binary}",
            f"--cascade_report={rates}",
        ],
        str(tmp_path / "bin"),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["stage_ms"] == [0.25, 0.5, 1.0]
    # 0.5 * 0.25 + 0.3 * 0.75 + 0.2 * 1.75 = 0.7 ms.
    assert report["expected_avg_ms"] == pytest.approx(0.7)
    assert report["fully_accelerated"] == [True, True, False]
    assert report["stage_files"] == [f"stage{s}_float32.tflite" for s in (1, 2, 3)]
    assert report["target"].startswith("host")


def test_host_mode_without_litert_benchmark_is_one_line(tmp_path):
    folder = str(tmp_path / "net")
    fake_export(folder, search={"exit_rates": [0.5, 0.3, 0.2]})
    done = _run_kit(
        [f"--export_dir={folder}", "--host", "--host_binary=no-such-benchmark"], str(tmp_path)
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "android_benchmark: error: no-such-benchmark not found (it comes with pip install ai-edge-litert)"
    ]


@pytest.mark.slow
def test_host_mode_end_to_end_on_a_tiny_export_agrees_with_the_host_cascade(tmp_path):
    """A real tiny export (untrained supernet), timed by the kit with the host's
    litert-benchmark and run by tools.cascade. Each stage row must be the timing of that
    stage's graph (the export's graphs, in order, each into its own result), combined with
    the manifest's float32 exit rates (those of the float32 graphs' own thresholds) exactly.
    The kit times invokes (median), the cascade each call of its Python signature runner
    (mean over images, tens of microseconds more per stage): a kit stage's time is below
    the cascade's for it, with room for a shared machine."""
    import shlex

    import enas4d_tf as e4
    from enas4d_tf import exit_policy
    from tests.export.test_export import make_workdir, run_tool

    workdir = str(tmp_path / "work")
    space, _ = make_workdir(workdir)
    arch = space.sample(seed=5)
    record = formats.arch_file_record(
        "net0",
        "dynamic",
        arch,
        exit_policy.PolicyResult(0.5, [0.5, 0.3, 0.2], 1.0, [0.6, 0.45, 0.0]),
        e4.stage_macs(space, arch, 10),
    )
    arch_file = os.path.join(workdir, "net0.json")
    formats.write_arch_file(arch_file, record)
    out = str(tmp_path / "out")
    done = run_tool(
        [f"--workdir={workdir}", f"--arch={arch_file}", f"--out={out}", "--threshold_images=100"]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    export_dir = os.path.join(out, "net0")
    with open(os.path.join(export_dir, "manifest.json")) as f:
        manifest = json.load(f)
    graphs = [stage["files"]["float32"] for stage in manifest["stages"]]
    assert [g["file"] for g in graphs] == [f"stage{e}_float32.tflite" for e in (1, 2, 3)]
    for g in graphs:  # the graphs the kit times are the export's own
        with open(os.path.join(export_dir, g["file"]), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == g["sha256"]
    # Row k's result is written by the run of stage k's graph.
    done = _run_kit([f"--export_dir={export_dir}", "--host", "--dry_run"], str(tmp_path))
    assert done.returncode == 0, done.stderr
    runs = [shlex.split(line) for line in done.stdout.splitlines()]
    assert [(r[1], r[-1]) for r in runs] == [
        (f"--model={os.path.join(export_dir, g['file'])}", f"--result_json=RESULTS/stage{k}.json")
        for k, g in enumerate(graphs, start=1)
    ]
    cascade_json = tmp_path / "cascade.json"
    done = run_tool(
        [f"--export_dir={export_dir}", "--max_images=200", f"--report={cascade_json}"],
        "tools.cascade",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    cascade = json.loads(cascade_json.read_text())
    done = _run_kit([f"--export_dir={export_dir}", "--host"], str(tmp_path))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["fully_accelerated"] == [True, True, True]
    assert report["stage_files"] == [g["file"] for g in graphs]
    # The float32 graphs' own exit rates (per_quantization), not the search's [0.5, 0.3, 0.2].
    rates = manifest["per_quantization"]["float32"]["exit_rates"]
    assert report["exit_rates"] == rates and rates != [0.5, 0.3, 0.2]
    assert report["exit_rates_source"].startswith("manifest (float32")
    ms = report["stage_ms"]
    assert len(ms) == 3 and all(t > 0 for t in ms)
    cumulative = [ms[0], ms[0] + ms[1], ms[0] + ms[1] + ms[2]]
    assert report["cumulative_ms"] == pytest.approx(cumulative, rel=1e-12)
    assert report["full_network_ms"] == pytest.approx(cumulative[-1], rel=1e-12)
    expected = sum(p * c for p, c in zip(rates, cumulative, strict=True))
    assert report["expected_avg_ms"] == pytest.approx(expected, rel=1e-12)
    assert len(cascade["stage_latency_ms"]) == 3
    for kit_ms, cascade_ms in zip(ms, cascade["stage_latency_ms"], strict=True):
        if cascade_ms is not None:  # None: no image reached the stage
            assert kit_ms <= 2.0 * cascade_ms
