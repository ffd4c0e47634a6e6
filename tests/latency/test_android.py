"""A phone's latency table: the kit folder, its commands, and the table from recorded
`benchmark_model` outputs, through the library, tools.latency_table --from_android and the
Android kit's --latency_kit with a stand-in `adb` (no phone, no TensorFlow).

Outputs are written in the layout of tests/export/data/benchmark_model_stage1.txt (the
"Inference timings in us" line) with times chosen so the fit is known: every part graph
takes 10 us more than the null graph (5 us), and each stage graph 0.9 x its parts + 50 us.
"""

import json
import os
import stat
import subprocess
import sys

import pytest

from enas4d_tf.errors import LatencyError
from enas4d_tf.export.android_kit import BenchmarkSettings
from enas4d_tf.latency import android
from enas4d_tf.latency.build import keys_of
from enas4d_tf.latency.model import LatencyModel
from enas4d_tf.latency.parts import stage_parts
from enas4d_tf.latency.table import LatencyTable
from enas4d_tf.space import SearchSpace
from tests.helpers import REPO

TINY = SearchSpace.preset("tiny")
ARCH = TINY.smallest()
NULL_US, PART_US = 5.0, 10.0


def _output(us: float) -> str:
    return (
        "INFO: STARTING!\nINFO: Graph: [/data/local/tmp/enas4d/latency_kit/graphs/x.tflite]\n"
        f"INFO: count=50 first=20 curr=12 min=11 max=30 avg={us} std=1\n"
        f"INFO: Inference timings in us: Init: 3512, First inference: 40, "
        f"Warmup (avg): 20.5, Inference (avg): {us}\n"
    )


def _stage_us(s: int) -> float:
    parts = stage_parts(TINY, ARCH, s, 10)
    return 0.9 * PART_US * len(parts) + 50.0


def _kit(folder) -> dict:
    keys = keys_of(TINY, [ARCH], 10)
    parts = {k: b"part graph " + k.encode() for k in keys}
    stages = {f"arch0_stage{s + 1}": (b"stage graph %d" % s, ARCH) for s in range(3)}
    header = {"preset": "tiny", "num_classes": 10, "quantization": "int8"}
    android.write_kit(str(folder), header, parts, b"null graph", stages)
    return android.read_kit(str(folder))


def _answers(kit) -> dict:
    """Each graph's benchmark_model output, by graph name."""
    out = {}
    for name, graph in kit["graphs"].items():
        if name == android.NULL_GRAPH:
            us = NULL_US
        elif "key" in graph:
            us = NULL_US + PART_US
        else:
            us = _stage_us(graph["stage"] - 1)
        out[name] = _output(us)
    return out


def _record(folder, kit, device="Pixel Test"):
    os.makedirs(os.path.join(folder, "outputs"), exist_ok=True)
    for name, text in _answers(kit).items():
        with open(android.output_path(str(folder), name), "w") as f:
            f.write(text)
    with open(os.path.join(folder, "outputs", android.RUN_FILE), "w") as f:
        json.dump({"num_threads": 1, "device": device}, f)


def _check_table(table: LatencyTable):
    assert table.target.kind == "android" and table.target.device == "Pixel Test"
    assert table.target.quantization == "int8" and table.target.threads == 1
    assert list(table.entries.values()) == pytest.approx([PART_US / 1e3] * len(table.entries))
    # invoke = 0.9 * parts + 0.05 ms: exact data, so the fit gives it back.
    assert table.fit["scale"] == pytest.approx(0.9)
    assert table.fit["fixed_ms"] == pytest.approx(0.05)
    assert table.fit["per_input_ms"] == table.fit["per_output_ms"] == 0.0
    model = LatencyModel(table, TINY, 10, quantization="int8")
    assert model.stage_ms(ARCH) == pytest.approx([_stage_us(s) / 1e3 for s in range(3)])


def test_table_from_recorded_phone_outputs(tmp_path):
    kit = _kit(tmp_path)
    _record(tmp_path, kit)
    _check_table(android.table_from_kit(str(tmp_path)))


def test_a_missing_output_is_named(tmp_path):
    kit = _kit(tmp_path)
    _record(tmp_path, kit)
    os.remove(android.output_path(str(tmp_path), "p00003"))
    with pytest.raises(LatencyError, match="p00003.txt"):
        android.table_from_kit(str(tmp_path))


def test_a_kit_is_never_written_over(tmp_path):
    _kit(tmp_path)
    with pytest.raises(LatencyError, match="already holds a latency kit"):
        android.check_new_kit_dir(str(tmp_path))
    os.remove(os.path.join(tmp_path, "graphs", "null.tflite"))
    with pytest.raises(LatencyError, match="graph null has no file"):
        android.read_kit(str(tmp_path))


def test_phone_commands_push_the_graphs_once_and_time_each(tmp_path):
    kit = _kit(tmp_path)
    settings = BenchmarkSettings(num_threads=2, num_runs=50, warmup_runs=5, serial="X1")
    commands, run = android.kit_commands(kit, str(tmp_path), settings)
    adb = ["adb", "-s", "X1"]
    assert commands[0] == (
        adb + ["shell", "mkdir", "-p", "/data/local/tmp/enas4d/latency_kit"],
        None,
    )
    assert commands[1][0] == adb + [
        "push",
        os.path.join(tmp_path, "graphs"),
        "/data/local/tmp/enas4d/latency_kit",
    ]
    timed = commands[2:]
    assert sorted(name for _, name in timed) == sorted(kit["graphs"])
    argv, name = timed[0]
    assert argv[:4] == adb + ["shell"]
    assert f"--graph=/data/local/tmp/enas4d/latency_kit/graphs/{name}.tflite" in argv[4]
    assert "--num_threads=2" in argv[4] and "--use_xnnpack=true" in argv[4]
    assert run["device_command"] == adb + ["shell", "getprop", "ro.product.model"]


def _fake_adb(bin_dir, answers_dir):
    """An `adb` that names the phone and answers each benchmark_model run with the recorded
    output of the graph in its --graph (answers_dir/<graph>.txt)."""
    os.makedirs(bin_dir, exist_ok=True)
    path = os.path.join(bin_dir, "adb")
    with open(path, "w") as f:
        f.write(
            "#!/bin/sh\n"
            'case "$*" in\n'
            "  *getprop*) echo 'Pixel Test';;\n"
            "  *benchmark_model*) g=$(echo \"$*\" | sed 's/.*graphs\\/\\([a-z0-9_]*\\)\\.tflite.*/\\1/');"
            f' echo "$g" >> "{answers_dir}/calls.log"; cat "{answers_dir}/$g.txt";;\n'
            "  *) exit 0;;\n"
            "esac\n"
        )
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


def _run(module, args, bin_dir=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if bin_dir:
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_kit_times_a_latency_kit_on_the_phone_and_writes_the_table(tmp_path):
    folder = tmp_path / "kit"
    kit = _kit(folder)
    answers = tmp_path / "answers"
    answers.mkdir()
    for name, text in _answers(kit).items():
        (answers / f"{name}.txt").write_text(text)
    _fake_adb(str(tmp_path / "bin"), str(answers))
    done = _run("export.android_benchmark", [f"--latency_kit={folder}"], str(tmp_path / "bin"))
    assert done.returncode == 0, done.stderr
    table = LatencyTable.load(str(folder / "table.json"))
    _check_table(table)
    # The outputs are kept: tools.latency_table --from_android writes the same table again.
    again = tmp_path / "again.json"
    done = _run("tools.latency_table", [f"--from_android={folder}", f"--out={again}"])
    assert done.returncode == 0, done.stderr
    assert LatencyTable.load(str(again)).entries == table.entries
    # A second run does not overwrite the table.
    before = (folder / "table.json").read_bytes()
    done = _run("export.android_benchmark", [f"--latency_kit={folder}"], str(tmp_path / "bin"))
    assert done.returncode == 1 and "exists" in done.stderr
    assert (folder / "table.json").read_bytes() == before


def test_a_stopped_phone_run_resumes_where_it_was(tmp_path):
    folder = tmp_path / "kit"
    kit = _kit(folder)
    answers = tmp_path / "answers"
    answers.mkdir()
    for name, text in _answers(kit).items():
        if name != "p00005":  # the phone fails on this graph the first time
            (answers / f"{name}.txt").write_text(text)
    _fake_adb(str(tmp_path / "bin"), str(answers))
    done = _run("export.android_benchmark", [f"--latency_kit={folder}"], str(tmp_path / "bin"))
    assert done.returncode == 1 and "failed" in done.stderr
    assert not (folder / "table.json").exists()
    (answers / "p00005.txt").write_text(_answers(kit)["p00005"])
    done = _run("export.android_benchmark", [f"--latency_kit={folder}"], str(tmp_path / "bin"))
    assert done.returncode == 0, done.stderr
    calls = (answers / "calls.log").read_text().split()
    # Graphs timed before the failure are not timed again; the failed one is.
    assert calls.count("null") == 1 and calls.count("p00005") == 2
    assert sorted(set(calls)) == sorted(kit["graphs"])
    _check_table(LatencyTable.load(str(folder / "table.json")))


def _host_run(folder, kit) -> dict:
    """The run record of a kit timed on this machine (`--host`), as kit_commands gives it."""
    settings = BenchmarkSettings(num_threads=1)
    _, run = android.kit_commands(kit, str(folder), settings, host_binary="/x/litert-benchmark")
    _record(folder, kit)
    with open(os.path.join(folder, "outputs", android.RUN_FILE), "w") as f:
        json.dump(run, f)
    return run


def test_a_kit_timed_on_this_host_makes_a_host_table_told_apart_by_its_runtime(tmp_path):
    from enas4d_tf.export.arch_files import _check_cost_target
    from enas4d_tf.latency.build import host_target

    kit = _kit(tmp_path)
    run = _host_run(tmp_path, kit)
    table = android.table_from_kit(str(tmp_path))
    target = table.target
    assert target.kind == "host" and target.device == run["device"]
    assert target.runtime.startswith("litert-benchmark") and "XNNPACK" in target.runtime
    # tools.latency_table's host tables time the Python interpreter: another runtime.
    assert target.runtime != host_target("int8", 1).runtime
    # The saved table, the latency model (the search's and the export's costs) and an
    # architecture file's cost_target all take it.
    table.save(str(tmp_path / "t.json"))
    loaded = LatencyTable.load(str(tmp_path / "t.json"))
    assert loaded.target == target
    model = LatencyModel(loaded, TINY, 10, quantization="int8", threads=1)
    assert model.stage_ms(ARCH) == pytest.approx([_stage_us(s) / 1e3 for s in range(3)])
    _check_cost_target(target.to_dict())
    # A phone's run stays an android table.
    _record(tmp_path, kit)
    assert android.table_from_kit(str(tmp_path)).target.kind == "android"


def test_the_host_target_without_litert_metadata_says_unknown(monkeypatch):
    import importlib.metadata

    from enas4d_tf.latency.build import host_target

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    target = host_target("float32", 2)
    assert target.runtime == "ai-edge-litert unknown interpreter, XNNPACK"
    assert target.kind == "host" and target.threads == 2


def _stage_graph(kit) -> str:
    return next(n for n, g in kit["graphs"].items() if "stage" in g)


def _bad_kits():
    """(name, edit of the kit's JSON, what the one-line error names)."""

    def drop(key):
        return lambda kit: kit.pop(key)

    def setter(key, value):
        return lambda kit: kit.__setitem__(key, value)

    def stage(edit):
        return lambda kit: edit(kit["graphs"][_stage_graph(kit)])

    return [
        ("no num_classes", drop("num_classes"), "num_classes"),
        ("text num_classes", setter("num_classes", "10"), "num_classes"),
        ("bool num_classes", setter("num_classes", True), "num_classes"),
        ("unknown preset", setter("preset", "huge"), "huge"),
        ("no arch", stage(lambda g: g.pop("arch")), "lacks 'arch' or 'stage'"),
        ("no stage", stage(lambda g: g.pop("stage")), "lacks 'arch' or 'stage'"),
        ("text stage", stage(lambda g: g.__setitem__("stage", "1")), "not an integer"),
        ("stage 4", stage(lambda g: g.__setitem__("stage", 4)), "not in 1..3"),
        ("bad arch", stage(lambda g: g.__setitem__("arch", {"depth": 1})), "arch not of"),
        ("part key", lambda k: k["graphs"]["p00001"].__setitem__("key", 7), "key is not"),
        ("part gone", lambda k: k["graphs"].pop("p00000"), "needs part"),
    ]


def write_bad_kit(folder, edit) -> None:
    """A recorded kit (tiny, int8) whose latency_kit.json `edit` spoils."""
    kit = _kit(folder)
    _record(folder, kit)
    with open(os.path.join(folder, android.KIT_FILE)) as f:
        record = json.load(f)
    edit(record)
    with open(os.path.join(folder, android.KIT_FILE), "w") as f:
        json.dump(record, f)


@pytest.mark.parametrize("name, edit, needle", _bad_kits(), ids=[c[0] for c in _bad_kits()])
def test_a_malformed_kit_is_one_latency_error(tmp_path, name, edit, needle):
    write_bad_kit(tmp_path, edit)
    for read in (android.read_kit, android.table_from_kit):
        with pytest.raises(LatencyError, match=needle) as caught:
            read(str(tmp_path))
        assert android.KIT_FILE in str(caught.value) and "\n" not in str(caught.value)
