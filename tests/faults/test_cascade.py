"""The fault matrix of tools.cascade: each case ends with one stderr line naming the problem,
the expected exit code, and the export folder and an existing --report unchanged
(tests/faults/harness.py).

The export folder is `fake_export`'s: the manifest schema the exporter writes, with stand-in
graph files whose sizes and SHA-256 it records. The cascade checks the schema and the hashes
before importing TensorFlow or LiteRT, so those cases take about a second (a malformed
per-quantisation block of thresholds, exit rates and costs among them); the last case,
a graph whose hash matches but which is no TFLite model, reaches LiteRT's loader (slow).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.export.test_android_kit import fake_export
from tests.faults.harness import check_fault


@pytest.fixture
def export(tmp_path):
    folder = str(tmp_path / "net0")
    manifest = fake_export(folder)
    report = tmp_path / "report.json"
    report.write_text('{"an": "earlier report"}')
    return {"dir": folder, "manifest": manifest, "report": str(report), "tmp": tmp_path}


def _write_manifest(export, manifest):
    with open(os.path.join(export["dir"], "manifest.json"), "w") as f:
        json.dump(manifest, f)


def _check(export, args, *needles, code=1):
    guarded = [export["dir"], export["report"]]
    args = [f"--export_dir={export['dir']}", f"--report={export['report']}", *args]
    return check_fault("tools.cascade", args, *needles, guarded=guarded, code=code)


def test_no_export_dir_flag(export):
    check_fault("tools.cascade", [], "--export_dir is required", code=2)


def test_missing_export_dir(export):
    missing = os.path.join(str(export["tmp"]), "gone")
    check_fault("tools.cascade", [f"--export_dir={missing}"], "gone", "does not exist")


def test_folder_without_manifest(export):
    os.remove(os.path.join(export["dir"], "manifest.json"))
    _check(export, [], "manifest.json not found", "not an export folder")


def test_manifest_not_json(export):
    with open(os.path.join(export["dir"], "manifest.json"), "w") as f:
        f.write('{"format_version": 2, "stages": [')
    _check(export, [], "manifest", "not JSON")


def test_manifest_without_preprocessing(export):
    manifest = dict(export["manifest"])
    del manifest["preprocessing"]
    _write_manifest(export, manifest)
    _check(export, [], "preprocessing is missing", "re-export")


@pytest.mark.parametrize("bad", ["high", float("nan"), 1.5, -0.1, True])
def test_bad_threshold(export, bad):
    manifest = dict(export["manifest"], thresholds=[bad, 0.45, 0.0])
    _write_manifest(export, manifest)
    _check(export, [], "thresholds[0]", "number in [0, 1] or null")


def per_quantization_block(**changes):
    """A well-formed per-quantisation record of the fake export's float32 graphs, changed."""
    record = {
        "thresholds": [0.6, 0.45, 0.0],
        "origin": "refit",
        "cost": "macs",
        "budget": 2000.0,
        "num_images": 100,
        "val_accuracy": 0.8,
        "exit_rates": [0.5, 0.3, 0.2],
        "avg_macs": 1700.0,
        "avg_ms": None,
    }
    record.update(changes)
    return {"float32": record}


def test_a_well_formed_per_quantization_block_passes_the_checks(export):
    # The fault cases below differ from this manifest in one value each: it gets as far as
    # the --quantization check, past the schema and the hashes.
    manifest = dict(export["manifest"], per_quantization=per_quantization_block())
    _write_manifest(export, manifest)
    _check(export, ["--quantization=int8"], "'int8' was not exported")


# Every way a per-quantisation block can be malformed; tests/export/test_policies.py checks
# each against the schema in-process, the tool runs a few of them here (a second each).
MALFORMED_PER_QUANTIZATION = [
    ("not an object", ("per_quantization", "not a JSON object")),
    ({}, ("per_quantization.float32", "is missing")),
    (
        dict(per_quantization_block(), int8=per_quantization_block()["float32"]),
        ("per_quantization.int8", "not exported"),
    ),
    (
        per_quantization_block(thresholds=[0.6, 0.0]),
        ("per_quantization.float32.thresholds", "list of 3"),
    ),
    (
        per_quantization_block(thresholds=[0.6, float("nan"), 0.0]),
        ("thresholds[1]", "number in [0, 1]"),
    ),
    (per_quantization_block(thresholds=[0.6, 0.45, 0.3]), ("thresholds", "must end in 0.0")),
    (per_quantization_block(exit_rates=[0.5, 0.3, 0.3]), ("exit_rates", "must sum to 1")),
    (per_quantization_block(exit_rates=[1.5, -0.3, -0.2]), ("exit_rates", "in [0, 1]")),
    (per_quantization_block(val_accuracy=1.2), ("val_accuracy", "in [0, 1]")),
    (per_quantization_block(origin="guessed"), ("origin", "must be one of")),
    (per_quantization_block(cost="joules"), ("cost", "'macs' or 'latency'")),
    (per_quantization_block(budget=-1.0), ("budget", "positive")),
    (per_quantization_block(num_images=0), ("num_images", "int >= 1")),
    (per_quantization_block(avg_macs="many"), ("avg_macs", "positive finite number")),
    (per_quantization_block(avg_ms=float("inf")), ("avg_ms", "positive finite number")),
]


@pytest.mark.parametrize("case", [0, 1, 4, 6])
def test_malformed_per_quantization_block(export, case):
    block, needles = MALFORMED_PER_QUANTIZATION[case]
    manifest = dict(export["manifest"], per_quantization=block)
    _write_manifest(export, manifest)
    _check(export, [], *needles, "re-export")


def test_per_quantization_record_without_thresholds(export):
    block = per_quantization_block()
    del block["float32"]["thresholds"]
    _write_manifest(export, dict(export["manifest"], per_quantization=block))
    _check(export, [], "per_quantization.float32.thresholds is missing")


def test_stage_graph_file_outside_the_folder(export):
    manifest = json.loads(json.dumps(export["manifest"]))
    manifest["stages"][1]["files"]["float32"]["file"] = "../stage2_float32.tflite"
    _write_manifest(export, manifest)
    _check(export, [], "stages[1].files.float32.file", "inside the export folder")


def _graph(export, n):
    return os.path.join(export["dir"], f"stage{n}_float32.tflite")


def test_truncated_graph(export):
    with open(_graph(export, 2), "rb") as f:
        data = f.read()
    with open(_graph(export, 2), "wb") as f:
        f.write(data[: len(data) // 2])
    _check(export, [], "stage2_float32.tflite", "does not match", "truncated")


def test_empty_graph(export):
    open(_graph(export, 3), "wb").close()
    _check(export, [], "stage3_float32.tflite", "0 bytes", "does not match")


def test_garbage_graph_of_the_same_size(export):
    size = os.path.getsize(_graph(export, 1))
    with open(_graph(export, 1), "wb") as f:
        f.write(b"\x00" * size)
    _check(export, [], "stage1_float32.tflite", "sha256 differs")


def test_swapped_graphs(export):
    a, b = _graph(export, 1), _graph(export, 2)
    tmp = a + ".swap"
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)
    _check(export, [], "stage1_float32.tflite", "does not match")


def test_missing_graph(export):
    os.remove(_graph(export, 3))
    _check(export, [], "stage3_float32.tflite", "is missing")


def test_quantization_not_exported(export):
    _check(export, ["--quantization=int8"], "'int8' was not exported", "available: float32")


def test_report_is_a_folder(export):
    folder = os.path.join(str(export["tmp"]), "reports")
    os.makedirs(folder)
    args = [f"--export_dir={export['dir']}", f"--report={folder}"]
    check_fault("tools.cascade", args, "--report", "is a folder", guarded=[export["dir"], folder])


@pytest.mark.slow  # imports TensorFlow and LiteRT: ~10-20 s here
def test_graph_litert_cannot_load_even_with_a_matching_hash(export):
    # The stand-in graphs match the manifest's hashes but are not TFLite models: the hash
    # check passes, LiteRT's loader refuses them, and that is one line too.
    _check(export, ["--max_images=2"], "stage1_float32.tflite", "cannot be loaded by LiteRT")
