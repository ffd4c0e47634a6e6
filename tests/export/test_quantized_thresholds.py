"""Thresholds per quantisation end to end (slow): a `tiny` dynamic network exported in
float32 and int8 by tools.export gets int8 thresholds refitted on its int8 graphs, and
tools.cascade --quantization=int8 runs with them.

One module fixture exports one network (random BN statistics recalibrated on real
Fashion-MNIST images, as tests/export/test_export.py does) with `--threshold_images=N`; the
tests recompute everything from the graphs' own logits on the same N validation images,
through `Cascade.all_exits` and numpy, not through `enas4d_tf.export.policies`.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import enas4d_tf as e4
from enas4d_tf import exit_policy, thresholds
from enas4d_tf.data import FASHION_MNIST_DIR, load_arrays
from enas4d_tf.export import formats
from enas4d_tf.export.cascade import Cascade, preprocess
from tests.export.test_export import run_tool
from tests.faults.test_export import latency_table
from tests.helpers import make_tiny_workdir

pytestmark = pytest.mark.slow  # one export with int8 calibration: about a minute here

N = 300
SEARCH_THRESHOLDS = [0.6, 0.45, 0.0]


def _graph_outputs(export_dir, quantization, images, labels, resolution):
    """`(confidence float64 (3, n), correct (3, n))` from the graphs' logits."""
    cascade = Cascade(export_dir, quantization)
    x = preprocess(images, resolution)
    logits = np.stack([np.stack(cascade.all_exits(x[i : i + 1])) for i in range(len(x))], 1)
    z = logits.astype(np.float64) - logits.max(axis=2, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=2, keepdims=True)
    return probs.max(axis=2), logits.argmax(axis=2) == labels[None, :]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("quantized")
    workdir = str(base / "work")
    space, _ = make_tiny_workdir(
        workdir, "tiny", bn_seed=1, transform_seed=2, data_dir=FASHION_MNIST_DIR
    )
    arch = space.sample(seed=5)
    macs = e4.stage_macs(space, arch, 10)
    budget = macs[0] + 0.4 * (macs[2] - macs[0])
    result = exit_policy.PolicyResult(0.5, [0.5, 0.3, 0.2], 1.0, SEARCH_THRESHOLDS)
    arch_file = os.path.join(workdir, "search", "archs", "net0.json")
    record = formats.arch_file_record("net0", "dynamic", arch, result, macs, budget)
    formats.write_arch_file(arch_file, record)
    out = str(base / "out")
    done = run_tool(
        [
            f"--workdir={workdir}",
            f"--arch={arch_file}",
            f"--out={out}",
            "--quantization=float32,int8",
            f"--threshold_images={N}",
            "--num_calibration_images=300",
        ]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    export_dir = os.path.join(out, "net0")
    manifest = formats.read_manifest(export_dir)
    images, labels = load_arrays("fashion_mnist", "validation", max_examples=N)
    outputs = {
        q: _graph_outputs(export_dir, q, images, labels, arch.resolution)
        for q in ("float32", "int8")
    }
    return {
        "workdir": workdir,
        "arch_file": arch_file,
        "arch": arch,
        "space": space,
        "dir": export_dir,
        "manifest": manifest,
        "macs": macs,
        "budget": budget,
        "outputs": outputs,
        "stdout": done.stdout,
    }


def _exits(outputs, t):
    return exit_policy.exit_indices(outputs[0], t)


def test_int8_thresholds_differ_from_float32_where_confidences_differ(exported):
    per_q, macs, budget = (
        exported["manifest"]["per_quantization"],
        exported["macs"],
        exported["budget"],
    )
    float_out, int8_out = exported["outputs"]["float32"], exported["outputs"]["int8"]
    # The int8 graphs' confidences differ from the float32 graphs' ones.
    assert float(np.abs(int8_out[0] - float_out[0]).max()) > 1e-3
    # float32 keeps the search's thresholds (the search's fit of the same function).
    assert per_q["float32"]["origin"] == "search"
    assert per_q["float32"]["thresholds"] == SEARCH_THRESHOLDS
    int8 = per_q["int8"]
    assert int8["origin"] == "refit" and int8["budget"] == pytest.approx(budget)
    assert int8["num_images"] == N and int8["cost"] == "macs"
    # The fitter on the int8 graphs' outputs: the int8 thresholds do what its fit does ...
    fit = thresholds.fit_thresholds(
        exit_policy.ValidationSplit.from_confidences(*int8_out), macs, budget
    )
    exits = _exits(int8_out, int8["thresholds"])
    counts = np.bincount(exits, minlength=3)
    assert list(counts / N) == pytest.approx(fit.exit_rates)
    assert float(int8_out[1][exits, np.arange(N)].mean()) == pytest.approx(fit.accuracy)
    # ... and differ from the same fit on the float32 graphs' outputs.
    float_fit = thresholds.fit_thresholds(
        exit_policy.ValidationSplit.from_confidences(*float_out), macs, budget
    )
    assert int8["thresholds"][:2] != pytest.approx(float_fit.thresholds[:2], abs=1e-4)
    # The int8 graphs' average MACs on validation stay within the budget.
    avg = float(np.dot(counts, macs) / N)
    assert avg <= budget
    assert int8["avg_macs"] == pytest.approx(avg) and int8["exit_rates"] == list(counts / N)
    assert "int8: thresholds [" in exported["stdout"] and "(refit)" in exported["stdout"]


def test_cascade_tool_runs_the_int8_graphs_with_the_int8_thresholds(exported, tmp_path):
    report_path = str(tmp_path / "int8.json")
    done = run_tool(
        [
            f"--export_dir={exported['dir']}",
            "--quantization=int8",
            "--split=validation",
            f"--max_images={N}",
            f"--report={report_path}",
        ],
        module="tools.cascade",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with open(report_path) as f:
        report = json.load(f)
    int8 = exported["manifest"]["per_quantization"]["int8"]
    assert report["thresholds"] == int8["thresholds"]
    # Exit counts recomputed from the int8 graphs' outputs with the int8 thresholds: exact
    # (the same images, the same float64 confidences).
    int8_out = exported["outputs"]["int8"]
    counts = np.bincount(_exits(int8_out, int8["thresholds"]), minlength=3)
    assert report["exit_counts"] == counts.tolist()
    assert report["exit_rates"] == pytest.approx(int8["exit_rates"])
    assert (
        report["avg_macs"] == pytest.approx(int8["avg_macs"])
        and report["avg_macs"] <= exported["budget"]
    )
    # With the float thresholds the int8 graphs would exit elsewhere: the choice mattered.
    with_float = np.bincount(_exits(int8_out, SEARCH_THRESHOLDS), minlength=3)
    assert with_float.tolist() != counts.tolist()


def test_a_manifest_without_per_quantization_runs_int8_with_the_float_thresholds(
    exported, tmp_path
):
    old = str(tmp_path / "net0")
    shutil.copytree(exported["dir"], old)
    manifest = dict(exported["manifest"])
    del manifest["per_quantization"]
    formats.write_manifest(old, manifest)
    assert Cascade(old, "int8").thresholds == SEARCH_THRESHOLDS
    assert (
        Cascade(exported["dir"], "int8").thresholds
        == (exported["manifest"]["per_quantization"]["int8"]["thresholds"])
    )


def test_latency_cost_refits_float32_to_the_search_policys_average_latency(exported, tmp_path):
    from enas4d_tf.latency.model import LatencyModel
    from enas4d_tf.latency.table import LatencyTable

    table = latency_table(tmp_path / "host_float32.json")
    out = str(tmp_path / "out")
    done = run_tool(
        [
            f"--workdir={exported['workdir']}",
            f"--arch={exported['arch_file']}",
            f"--out={out}",
            "--cost=latency",
            f"--latency_table={table}",
            f"--threshold_images={N}",
            "--num_calibration_images=300",
        ]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    export_dir = os.path.join(out, "net0")
    record = formats.read_manifest(export_dir)["per_quantization"]["float32"]
    model = LatencyModel(LatencyTable.load(table), exported["space"], 10)
    ms = model.cumulative(exported["arch"])
    # The file records a MACs budget only: the latency budget is what the search's policy
    # (exit rates .5/.3/.2) spends on average by the table.
    budget = float(np.dot([0.5, 0.3, 0.2], ms))
    assert (record["origin"], record["cost"]) == ("refit", "latency")
    assert record["budget"] == pytest.approx(budget)
    images, labels = load_arrays("fashion_mnist", "validation", max_examples=N)
    outputs = _graph_outputs(export_dir, "float32", images, labels, exported["arch"].resolution)
    counts = np.bincount(_exits(outputs, record["thresholds"]), minlength=3)
    avg_ms = float(np.dot(counts, ms) / N)
    assert avg_ms <= budget and record["avg_ms"] == pytest.approx(avg_ms)
    assert record["exit_rates"] == list(counts / N)
    fit = thresholds.fit_thresholds(
        exit_policy.ValidationSplit.from_confidences(*outputs), ms, budget
    )
    assert record["val_accuracy"] == pytest.approx(fit.accuracy)
