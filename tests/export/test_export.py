"""tools/export.py end to end on a tiny workdir: stage graphs, manifest, subnet.keras, kit,
--from_search, and a truncated static network (one graph, one exit, `truncated_macs`).

One module fixture trains nothing: it saves a `tiny` supernet with random BN statistics as a
workdir checkpoint and runs the export tool once (float32, --from_search, two networks of one
architecture: multi-exit and truncated at exit 2). The tool recalibrates BN on real
Fashion-MNIST training images, so the compared logits are far from zero; both networks are
recalibrated on the same images, so the truncated network's logits must be the multi-exit
network's exit 2 logits.
"""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import enas4d_tf as e4
from enas4d_tf import exit_policy
from enas4d_tf.data import FASHION_MNIST_DIR, dataset_info, load_arrays
from enas4d_tf.errors import ExportDirError
from enas4d_tf.export import formats
from enas4d_tf.export.cascade import Cascade, preprocess
from enas4d_tf.finetune import compile_for_finetuning
from enas4d_tf.model.macs import keras_model_macs, truncated_macs
from tests.export.test_plan import _dead_pid, _killed_export
from tests.helpers import REPO as ROOT
from tests.helpers import make_tiny_workdir

THRESHOLDS = [0.6, 0.45, 0.0]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}


def make_workdir(folder, space_name="tiny", checkpoint=True):
    return make_tiny_workdir(
        folder,
        space_name,
        bn_seed=1,
        transform_seed=2,
        data_dir=FASHION_MNIST_DIR,
        checkpoint=checkpoint,
    )


def run_tool(args, module="tools.export"):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=600,
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One tool run, --from_search, exports two networks of one architecture: `net0`
    (dynamic, three exits) and `static_t2` (truncated at exit 2). Its --out holds what a
    killed export left, which the run must clean."""
    base = tmp_path_factory.mktemp("export")
    workdir = str(base / "work")
    space, _ = make_workdir(workdir)
    arch = space.sample(seed=5)
    arch_file = os.path.join(workdir, "search", "archs", "net0.json")
    macs = e4.stage_macs(space, arch, 10)
    result = exit_policy.PolicyResult(
        accuracy=0.5, exit_rates=[0.5, 0.3, 0.2], avg_macs=1.0, thresholds=THRESHOLDS
    )
    formats.write_arch_file(
        arch_file, formats.arch_file_record("net0", "dynamic", arch, result, macs)
    )
    static = exit_policy.PolicyResult(0.4, [0.0, 1.0, 0.0], float(macs[1]), [None, 0.0, None])
    formats.write_arch_file(
        os.path.join(workdir, "search", "archs", "static_t2.json"),
        formats.arch_file_record("static_t2", "static", arch, static, macs, exit=2),
    )
    out = str(base / "out")
    _killed_export(base / "out", "net0", _dead_pid())
    done = run_tool(
        [
            f"--workdir={workdir}",
            "--from_search",
            f"--out={out}",
            "--num_calibration_images=500",
            "--threshold_images=100",
        ]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    export_dir = os.path.join(out, "net0")
    with open(os.path.join(export_dir, "manifest.json")) as f:
        manifest = json.load(f)
    images, labels = load_arrays("fashion_mnist", "test", max_examples=300)
    subnet = keras.models.load_model(os.path.join(export_dir, "subnet.keras"))
    return {
        "space": space,
        "arch": arch,
        "workdir": workdir,
        "arch_file": arch_file,
        "out": out,
        "dir": export_dir,
        "truncated": os.path.join(out, "static_t2"),
        "stdout": done.stdout,
        "manifest": manifest,
        "images": images,
        "labels": labels,
        "subnet": subnet,
    }


def test_export_folder_holds_exactly_the_promised_files(exported):
    names = sorted(os.listdir(exported["dir"]))
    assert names == sorted(
        ["manifest.json", "subnet.keras"] + [f"stage{n}_float32.tflite" for n in (1, 2, 3)]
    )
    # No temporary folder is left beside it, and the killed export's folder was removed.
    assert sorted(os.listdir(exported["out"])) == ["net0", "static_t2"]
    assert "removed 1 temporary folder" in exported["stdout"]
    # The workdir lock was released.
    assert not os.path.exists(os.path.join(exported["workdir"], ".lock"))


def test_float32_stage_graphs_match_the_keras_subnet_per_exit(exported):
    cascade = Cascade(exported["dir"], "float32")
    x = preprocess(exported["images"][:40], exported["arch"].resolution)
    keras_logits = [np.asarray(z) for z in exported["subnet"](x)]
    worst = 0.0
    for i in range(len(x)):
        # all_exits runs stage s+1 on the tensors stages <= s handed on; the subnet computes
        # every exit in one piece.
        lite = cascade.all_exits(x[i : i + 1])
        for s in range(3):
            worst = max(worst, float(np.abs(lite[s] - keras_logits[s][i]).max()))
    assert worst <= 1e-3
    # Recalibrated BN on real images: logits are large enough for the bound to mean something.
    assert min(float(np.std(z)) for z in keras_logits) > 0.05


def test_manifest_records_macs_tensors_preprocessing_and_hashes(exported):
    m, space, arch = exported["manifest"], exported["space"], exported["arch"]
    assert m["stage_macs"] == e4.stage_macs(space, arch, 10)
    assert m["thresholds"] == THRESHOLDS
    assert m["num_classes"] == 10 and m["num_stages"] == 3
    assert e4.Arch.from_dict(m["arch"]) == arch
    info = dataset_info("fashion_mnist")
    pre = m["preprocessing"]
    assert pre["resolution"] == arch.resolution and pre["layout"] == "NHWC"
    assert pre["mean"] == pytest.approx(list(info.mean))
    assert pre["std"] == pytest.approx(list(info.std))
    assert m["format_version"] == formats.MANIFEST_VERSION
    assert m["search"]["exit_rates"] == [0.5, 0.3, 0.2] and "format_version" not in m["search"]
    # float32 graphs keep the search's thresholds; no budget recorded, so the budget they are
    # held to is the search policy's average MACs. Their outcome is measured on 100
    # validation images.
    float32 = m["per_quantization"]["float32"]
    assert float32["thresholds"] == THRESHOLDS and float32["origin"] == "arch_file"
    assert float32["budget"] == pytest.approx(float(np.dot([0.5, 0.3, 0.2], m["stage_macs"])))
    assert float32["num_images"] == 100 and sum(float32["exit_rates"]) == pytest.approx(1.0)
    assert m["subnet"]["sha256"] == formats.sha256(os.path.join(exported["dir"], "subnet.keras"))
    handed_on = set()
    for s, stage in enumerate(m["stages"]):
        # Exits are numbered from 1 wherever a user reads them.
        assert stage["exit"] == s + 1
        f = stage["files"]["float32"]
        assert f["file"] == f"stage{s + 1}_float32.tflite"
        path = os.path.join(exported["dir"], f["file"])
        assert f["sha256"] == formats.sha256(path) and f["bytes"] == os.path.getsize(path)
        assert all(not op.startswith("Flex") and op != "CUSTOM" for op in f["ops"])
        assert f["xnnpack_fully_accelerated"] is True
        # Every hand-off a stage reads was handed on by an earlier stage, with its shape.
        assert set(stage["reads"]) <= handed_on
        inputs = {t["name"]: t for t in stage["inputs"]}
        assert set(inputs) == {"image", *stage["reads"]}
        assert inputs["image"]["shape"] == [1, arch.resolution, arch.resolution, 1]
        outputs = {t["name"] for t in stage["outputs"]}
        assert outputs == {"logits", *stage["hands_on"]}
        handed_on |= set(stage["hands_on"])
        assert all(t["dtype"] == "float32" for t in stage["inputs"] + stage["outputs"])
    assert m["stages"][-1]["hands_on"] == []


def test_cascade_follows_the_exit_policy_of_the_keras_logits(exported):
    n = 300
    report = Cascade(exported["dir"], "float32").evaluate(
        exported["images"], exported["labels"], max_images=n
    )
    x = preprocess(exported["images"][:n], exported["arch"].resolution)
    logits = np.stack([np.asarray(z) for z in exported["subnet"](x)])
    probs = tf.nn.softmax(logits).numpy()
    expected = exit_policy.evaluate_policy(
        probs, exported["labels"][:n], exported["manifest"]["stage_macs"], THRESHOLDS
    )
    assert report["num_images"] == n
    assert report["exit_rates"] == pytest.approx(list(expected.exit_rates), abs=2.5 / n)
    assert report["accuracy"] == pytest.approx(expected.accuracy, abs=2.5 / n)
    assert report["avg_macs"] == pytest.approx(
        float(np.dot(report["exit_rates"], report["stage_macs"]))
    )
    assert sum(report["exit_counts"]) == n
    assert all(t > 0 for t in report["stage_latency_ms"] if t is not None)


def test_subnet_keras_loads_and_fine_tunes(exported):
    model = keras.models.load_model(os.path.join(exported["dir"], "subnet.keras"))
    compile_for_finetuning(model, learning_rate=3e-3)
    images, labels = load_arrays("fashion_mnist", "train", max_examples=128)
    x = preprocess(images, exported["arch"].resolution)
    y = [labels] * 3
    before = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    after = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert after < before - 0.05, (before, after)


@pytest.mark.slow
def test_finetune_tool_trains_and_writes_a_loadable_model(exported, tmp_path):
    out = str(tmp_path / "ft.keras")
    done = run_tool(
        [
            f"--model={exported['dir']}/subnet.keras",
            "--epochs=1",
            "--steps_per_epoch=3",
            "--batch_size=32",
            "--learning_rate=3e-3",
            f"--out={out}",
        ],
        module="tools.finetune",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["out"] == out and "val_loss" in summary["final"]
    assert os.listdir(tmp_path) == ["ft.keras"]  # no temporary file left beside it
    tuned = keras.models.load_model(out)
    original = exported["subnet"]
    assert len(tuned.outputs) == len(original.outputs) == 3
    moved = [
        float(np.max(np.abs(a - b)))
        for a, b in zip(tuned.get_weights(), original.get_weights(), strict=True)
    ]
    assert max(moved) > 1e-4  # the weights were trained, not copied


def test_finetune_tool_rejects_a_corrupt_model_with_one_line(tmp_path):
    bad = tmp_path / "subnet.keras"
    bad.write_bytes(b"not a zip archive")
    out = tmp_path / "ft.keras"
    done = run_tool([f"--model={bad}", f"--out={out}"], module="tools.finetune")
    _assert_one_line_failure(done, "cannot load", str(bad))
    assert not out.exists()


def test_android_dry_run_prints_push_and_benchmark_commands(exported):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "export.android_benchmark",
            f"--export_dir={exported['dir']}",
            "--num_threads=2",
            "--dry_run",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    d = "/data/local/tmp/enas4d"
    assert lines[0] == f"adb shell mkdir -p {d}"
    for s in range(3):
        name = f"stage{s + 1}_float32.tflite"
        assert lines[1 + s] == f"adb push {exported['dir']}/{name} {d}/{name}"
    for s, stage in enumerate(exported["manifest"]["stages"]):
        line = lines[4 + s]
        names = sorted(t["name"] for t in stage["inputs"])
        shapes = ":".join(
            ",".join(map(str, next(t["shape"] for t in stage["inputs"] if t["name"] == n)))
            for n in names
        )
        assert line.startswith("adb shell '/data/local/tmp/benchmark_model ")
        assert f"--graph={d}/stage{s + 1}_float32.tflite" in line
        assert "--num_threads=2" in line
        assert f"--input_layer={','.join(names)}" in line
        assert f"--input_layer_shape={shapes}" in line
    assert len(lines) == 7


def test_cascade_tool_reports_the_numbers_of_the_keras_network(exported, tmp_path):
    n = 60
    # Confidences of the Keras subnet's exits, computed here without the package's policy code.
    x = preprocess(exported["images"][:n], exported["arch"].resolution)
    logits = np.stack([np.asarray(z) for z in exported["subnet"](x)])  # (3, n, 10)
    z = logits - logits.max(axis=2, keepdims=True)
    top = np.exp(z).max(axis=2) / np.exp(z).sum(axis=2)  # (3, n)
    # The untrained network is rarely confident: thresholds at the medians of exits 1 and 2
    # send images to every exit. A copy of the export gets them in its manifest.
    thresholds = [float(np.median(top[0])), float(np.median(top[1])), 0.0]
    folder = str(tmp_path / "net0")
    shutil.copytree(exported["dir"], folder)
    manifest = dict(exported["manifest"], thresholds=thresholds)
    float32 = dict(manifest["per_quantization"]["float32"], thresholds=thresholds)
    manifest["per_quantization"] = {"float32": float32}
    stages = zip(manifest["stages"], thresholds, strict=True)
    manifest["stages"] = [dict(stage, threshold=t) for stage, t in stages]
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    report_path = str(tmp_path / "r.json")
    done = run_tool(
        [f"--export_dir={folder}", f"--max_images={n}", f"--report={report_path}"],
        module="tools.cascade",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with open(report_path) as f:
        report = json.load(f)
    assert json.loads(done.stdout) == report  # printed and written: the same report
    assert report["num_images"] == n and report["split"] == "test"
    # The first exit whose top probability reaches its threshold; the last takes the rest.
    exits = np.array(
        [next(s for s in range(3) if s == 2 or top[s, i] >= thresholds[s]) for i in range(n)]
    )
    predicted = logits[exits, np.arange(n)].argmax(axis=1)
    counts = np.bincount(exits, minlength=3)
    assert counts.min() > 0, counts  # every exit is used: the policy is exercised
    # float32 LiteRT and Keras differ by ~1e-5: an image within that of a threshold may
    # leave one exit earlier or later (the median image sits on it), so allow two.
    assert np.abs(np.array(report["exit_counts"]) - counts).max() <= 2, (report, counts)
    accuracy = float(np.mean(predicted == exported["labels"][:n]))
    assert report["accuracy"] == pytest.approx(accuracy, abs=2.5 / n)
    macs = exported["manifest"]["stage_macs"]
    assert report["stage_macs"] == macs and report["thresholds"] == pytest.approx(thresholds)
    assert report["avg_macs"] == pytest.approx(np.dot(report["exit_counts"], macs) / n)
    assert report["exit_rates"] == pytest.approx([c / n for c in report["exit_counts"]])


# -- bad input: one line, non-zero exit, nothing written ------------------------------------


def _snapshot(folder):
    return sorted(
        os.path.relpath(os.path.join(r, n), folder) for r, _, ns in os.walk(folder) for n in ns
    )


def _assert_one_line_failure(done, *needles):
    assert done.returncode != 0
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_missing_arch_file_fails_with_one_line(exported, tmp_path):
    out = str(tmp_path / "out")
    done = run_tool(
        [f"--workdir={exported['workdir']}", f"--arch={tmp_path}/nope.json", f"--out={out}"]
    )
    _assert_one_line_failure(done, "nope.json", "does not exist")
    assert not os.path.exists(out)


@pytest.mark.parametrize(
    "content, needle",
    [
        ("{not json", "not JSON"),
        (json.dumps({"format_version": 2, "name": "x", "arch": {"depth": [[1]]}}), "missing gene"),
    ],
)
def test_invalid_arch_file_fails_with_one_line(exported, tmp_path, content, needle):
    path = tmp_path / "bad.json"
    path.write_text(content)
    out = str(tmp_path / "out")
    done = run_tool([f"--workdir={exported['workdir']}", f"--arch={path}", f"--out={out}"])
    _assert_one_line_failure(done, "bad.json", needle)
    assert not os.path.exists(out)


def test_arch_outside_the_space_fails_with_one_line(exported, tmp_path):
    d = exported["arch"].to_dict()
    d["kernel"][0][0][0] = 9
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    done = run_tool([f"--workdir={exported['workdir']}", f"--arch={path}", f"--out={tmp_path}/out"])
    _assert_one_line_failure(done, "kernel[0][0][0]")


def test_workdir_without_checkpoint_fails_with_one_line(exported, tmp_path):
    workdir = str(tmp_path / "work")
    make_workdir(workdir, checkpoint=False)
    out = str(tmp_path / "out")
    done = run_tool([f"--workdir={workdir}", f"--arch={exported['arch_file']}", f"--out={out}"])
    _assert_one_line_failure(done, "no checkpoint")
    assert not os.path.exists(out)


def test_existing_output_folder_is_left_alone(exported):
    before = _snapshot(exported["out"])
    hashes = formats.sha256(os.path.join(exported["dir"], "manifest.json"))
    done = run_tool(
        [
            f"--workdir={exported['workdir']}",
            f"--arch={exported['arch_file']}",
            f"--out={exported['out']}",
        ]
    )
    _assert_one_line_failure(done, "net0", "exists", "--overwrite")
    assert _snapshot(exported["out"]) == before
    assert formats.sha256(os.path.join(exported["dir"], "manifest.json")) == hashes


# -- older formats: refused with one line that says how to write them again ------------------


def test_arch_file_of_an_older_format_is_refused_with_one_line(exported, tmp_path):
    with open(exported["arch_file"]) as f:
        data = json.load(f)
    del data["format_version"]  # format 1 had none
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    out = str(tmp_path / "out")
    done = run_tool([f"--workdir={exported['workdir']}", f"--arch={path}", f"--out={out}"])
    _assert_one_line_failure(done, "old.json", "format 1", "python -m tools.search")
    assert not os.path.exists(out)


def test_manifest_of_an_older_format_is_refused_with_one_line(exported, tmp_path):
    old = tmp_path / "net0"
    shutil.copytree(exported["dir"], old)
    manifest = dict(exported["manifest"], format_version=1)
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportDirError, match="format 1"):
        Cascade(str(old), "float32")
    done = run_tool([f"--export_dir={old}", "--max_images=5"], module="tools.cascade")
    _assert_one_line_failure(
        done, "format 1", "re-export", "python -m tools.export", exported["arch_file"]
    )


def test_arch_file_round_trips_through_formats(exported, tmp_path):
    spec = formats.read_arch_file(exported["arch_file"], exported["space"])
    assert spec.name == "net0" and spec.mode == "dynamic" and spec.arch == exported["arch"]
    assert list(spec.thresholds) == THRESHOLDS
    assert spec.source == os.path.abspath(exported["arch_file"])
    assert spec.search["exit_rates"] == [0.5, 0.3, 0.2]
    with open(exported["arch_file"]) as f:
        data = json.load(f)
    assert set(data) == {"format_version", *formats.ARCH_FILE_KEYS}
    # A bare architecture is a static network named after its file.
    bare = tmp_path / "plain.json"
    bare.write_text(json.dumps(exported["arch"].to_dict()))
    spec = formats.read_arch_file(str(bare), exported["space"])
    assert (spec.name, spec.mode, spec.search) == ("plain", "static", {})
    assert list(spec.thresholds) == [None, None, 0.0]


# -- a truncated static network ----------------------------------------------------------


def _only_output(out) -> np.ndarray:
    """The logits of a one-output model (a loaded model may give them bare or in a list)."""
    if isinstance(out, (list, tuple)):
        (out,) = out
    return np.asarray(out)


def test_truncated_export_is_one_graph_with_one_exit_and_its_macs(exported):
    space, arch = exported["space"], exported["arch"]
    folder = exported["truncated"]
    assert sorted(os.listdir(folder)) == sorted(
        ["manifest.json", "subnet.keras", "stage2_float32.tflite"]
    )
    with open(os.path.join(folder, "manifest.json")) as f:
        m = json.load(f)
    expected = truncated_macs(space, arch, 2, 10)
    assert (m["mode"], m["exit"], m["num_stages"]) == ("static", 2, 1)
    assert m["thresholds"] == [0.0] and m["stage_macs"] == [expected]
    # Nothing to fit: every image leaves at its one exit, at its cost.
    float32 = m["per_quantization"]["float32"]
    assert (float32["origin"], float32["thresholds"], float32["exit_rates"]) == (
        "static",
        [0.0],
        [1.0],
    )
    assert float32["avg_macs"] == expected and float32["budget"] is None
    assert expected < e4.stage_macs(space, arch, 10)[1]  # exit 1's classifier is not in it
    (stage,) = m["stages"]
    assert stage["exit"] == 2 and stage["reads"] == [] and stage["hands_on"] == []
    assert [t["name"] for t in stage["inputs"]] == ["image"]
    assert [t["name"] for t in stage["outputs"]] == ["logits"]
    subnet = keras.models.load_model(os.path.join(folder, "subnet.keras"))
    assert len(subnet.outputs) == 1
    assert {x.name for x in subnet.layers if x.name.startswith("exit")} == {"exit2"}
    assert keras_model_macs(subnet, 2)[-1] == expected


def test_truncated_logits_are_exit_2_of_the_multi_exit_network(exported):
    x = preprocess(exported["images"][:40], exported["arch"].resolution)
    full = keras.models.load_model(os.path.join(exported["dir"], "subnet.keras"))
    cut = keras.models.load_model(os.path.join(exported["truncated"], "subnet.keras"))
    exit2 = np.asarray(full(x)[1])
    np.testing.assert_allclose(_only_output(cut(x)), exit2, atol=1e-4)
    assert float(np.std(exit2)) > 0.05  # recalibrated BN on real images: not all near zero
    cascade = Cascade(exported["truncated"], "float32")
    lite = np.stack([cascade.all_exits(x[i : i + 1])[0] for i in range(len(x))])
    assert float(np.abs(lite - exit2).max()) <= 1e-3


def test_cascade_tool_runs_the_truncated_network(exported, tmp_path):
    n = 60
    report_path = str(tmp_path / "r.json")
    done = run_tool(
        [
            f"--export_dir={exported['truncated']}",
            "--quantization=float32",
            f"--max_images={n}",
            f"--report={report_path}",
        ],
        module="tools.cascade",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with open(report_path) as f:
        report = json.load(f)
    expected_macs = truncated_macs(exported["space"], exported["arch"], 2, 10)
    assert report["exits"] == [2] and report["exit_counts"] == [n]
    assert report["avg_macs"] == expected_macs
    # Accuracy recomputed from the Keras model: argmax of the truncated subnet's logits.
    cut = keras.models.load_model(os.path.join(exported["truncated"], "subnet.keras"))
    x = preprocess(exported["images"][:n], exported["arch"].resolution)
    logits = _only_output(cut(x))
    keras_accuracy = float(np.mean(np.argmax(logits, axis=1) == exported["labels"][:n]))
    assert report["accuracy"] == pytest.approx(keras_accuracy, abs=1.5 / n)
