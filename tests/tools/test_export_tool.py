"""Every quantisation, float16 included, through tools.export and tools.cascade (slow).

The fast end-to-end tests of the export tool (--from_search, a truncated network, the
cleaning of a killed export, the cascade tool's numbers) share one export in
tests/export/test_export.py.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import enas4d_tf as e4
from enas4d_tf import exit_policy
from enas4d_tf.data import FASHION_MNIST_DIR, load_arrays
from enas4d_tf.export import formats
from enas4d_tf.export.cascade import Cascade, preprocess
from tests.helpers import REPO, make_tiny_workdir

THRESHOLDS = [0.6, 0.45, 0.0]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO}


def run_tool(module, args):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ENV,
        timeout=1800,
    )


def _write_archs(workdir, space, arch):
    archs = os.path.join(workdir, "search", "archs")
    macs = e4.stage_macs(space, arch, 10)
    dynamic = exit_policy.PolicyResult(0.5, [0.5, 0.3, 0.2], 1.0, THRESHOLDS)
    formats.write_arch_file(
        os.path.join(archs, "dynamic_net.json"),
        formats.arch_file_record("dynamic_net", "dynamic", arch, dynamic, macs),
    )
    static = exit_policy.PolicyResult(0.4, [0.0, 1.0, 0.0], float(macs[1]), [None, 0.0, None])
    formats.write_arch_file(
        os.path.join(archs, "static_t2.json"),
        formats.arch_file_record("static_t2", "static", arch, static, macs, exit=2),
    )
    return archs


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny workdir (untrained, random BN statistics) with the search's architecture files."""
    base = tmp_path_factory.mktemp("export_tool")
    folder = str(base / "work")
    space, _ = make_tiny_workdir(folder, bn_seed=1, transform_seed=2, data_dir=FASHION_MNIST_DIR)
    archs = _write_archs(folder, space, space.sample(seed=5))
    return {"workdir": folder, "archs": archs}


@pytest.mark.slow  # int8 calibration and tfmot's QAT graphs: several minutes on 2 cores
def test_every_quantization_exports_and_runs_through_the_tools(workdir, tmp_path):
    out = str(tmp_path / "out")
    arch_file = os.path.join(workdir["archs"], "dynamic_net.json")
    done = run_tool(
        "tools.export",
        [
            f"--workdir={workdir['workdir']}",
            f"--arch={arch_file}",
            f"--out={out}",
            "--quantization=float32,float16,int8,int8_qat",
            "--qat_steps=30",
            "--num_calibration_images=600",
            "--threshold_images=200",
        ],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    folder = os.path.join(out, "dynamic_net")
    with open(os.path.join(folder, "manifest.json")) as f:
        m = json.load(f)
    assert m["quantization"] == ["float32", "float16", "int8", "int8_qat"]
    # Every quantisation but float32 gets thresholds refitted on its own graphs, within the
    # budget (the file records none: the search policy's average MACs).
    per_q = m["per_quantization"]
    budget = float(np.dot([0.5, 0.3, 0.2], m["stage_macs"]))
    assert per_q["float32"]["thresholds"] == THRESHOLDS
    for q in ("float16", "int8", "int8_qat"):
        assert per_q[q]["origin"] == "refit" and per_q[q]["budget"] == pytest.approx(budget)
        assert per_q[q]["avg_macs"] <= budget and per_q[q]["num_images"] == 200
    n = 100
    reports = {}
    for q in m["quantization"]:
        done = run_tool(
            "tools.cascade", [f"--export_dir={folder}", f"--quantization={q}", f"--max_images={n}"]
        )
        assert done.returncode == 0, (q, done.stderr[-2000:])
        reports[q] = json.loads(done.stdout)
        assert sum(reports[q]["exit_counts"]) == n and reports[q]["quantization"] == q
        assert reports[q]["thresholds"] == per_q[q]["thresholds"]
        int8 = m["stages"][0]["files"][q]["tensor_dtypes"].get("int8", 0)
        assert (int8 > 10) == q.startswith("int8"), (q, int8)
    # What each quantisation computes, against the float32 graphs, per exit (the workdir's
    # network is untrained, so its accuracy says little: agreement of top-1 does).
    images, labels = load_arrays("fashion_mnist", "test", max_examples=n)
    x = preprocess(images, m["preprocessing"]["resolution"])
    logits = {}
    for q in m["quantization"]:
        cascade = Cascade(folder, q)
        logits[q] = np.array([cascade.all_exits(x[i : i + 1]) for i in range(n)])  # (n, 3, 10)
    top1 = {q: v.argmax(axis=2) for q, v in logits.items()}
    agreement = {q: (top1[q] == top1["float32"]).mean(axis=0) for q in logits}
    accuracy = {q: (top1[q] == labels[:n, None]).mean(axis=0) for q in logits}
    context = f"agreement {agreement}, accuracy {accuracy}"
    assert agreement["float16"].min() >= 0.97, context
    assert agreement["int8"].min() >= 0.7, context
    # QAT fine-tunes on training labels (30 steps): it may move predictions away from the
    # untrained float network, but not make them worse.
    assert accuracy["int8_qat"].mean() >= accuracy["float32"].mean() - 0.05, context
