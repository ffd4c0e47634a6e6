"""bench/gene_probe.py: one gene kind changed at a time around the smallest and the largest."""

import json
import subprocess
import sys

from bench import gene_probe
from enas4d_tf.space import SearchSpace
from tests.faults.harness import run_program
from tests.helpers import make_tiny_workdir


def _leaves(x):
    if isinstance(x, tuple):
        for y in x:
            yield from _leaves(y)
    else:
        yield x


def test_probe_archs_change_one_gene_kind_everywhere():
    space = SearchSpace.preset("fashion_mnist")
    rows = gene_probe.probe_archs(space)
    names = [name for name, _, _ in rows]
    assert names[:2] == ["smallest", "largest"] and len(set(names)) == len(names)
    # Each gene kind's other values, around each anchor: 2 anchors x 5 kinds x 2 values.
    assert len(rows) == 2 + 2 * 5 * 2
    smallest, largest = space.smallest(), space.largest()
    for name, anchor, arch in rows[2:]:
        base = smallest if anchor == "smallest" else largest
        gene, value = name.split(" ")[1].split("=")
        changed = [g for g in gene_probe.GENES if getattr(arch, g) != getattr(base, g)]
        assert changed == [gene], name
        leaves = [arch.resolution] if gene == "resolution" else list(_leaves(getattr(arch, gene)))
        assert {float(v) for v in leaves} == {float(value)}, name
    assert ("smallest kernel=5", "smallest") in [(n, a) for n, a, _ in rows]
    assert ("largest resolution=24", "largest") in [(n, a) for n, a, _ in rows]
    assert not any(n == "smallest kernel=3" or n == "largest kernel=7" for n in names)


def test_below_anchor_marks_variants_of_the_smallest_per_exit():
    rows = [
        {"name": "smallest", "anchor": "smallest", "accuracy": [0.80, 0.85, 0.90]},
        {"name": "largest", "anchor": "largest", "accuracy": [0.70, 0.80, 0.85]},
        {"name": "smallest kernel=5", "anchor": "smallest", "accuracy": [0.81, 0.84, 0.90]},
        {"name": "largest kernel=3", "anchor": "largest", "accuracy": [0.60, 0.60, 0.60]},
    ]
    gene_probe.below_anchor(rows)
    assert rows[2]["below_smallest"] == [False, True, False]  # equal is not below
    assert "below_smallest" not in rows[1] and "below_smallest" not in rows[3]
    for r in rows:
        r["stage_macs"] = [1e6, 2e6, 3e6]
    md = gene_probe.markdown(
        {"networks": rows, "val_images": 5, "dataset": "d", "calibration_images": 2}
    )
    assert "| smallest kernel=5 | 1.00/2.00/3.00 | 81.00 | **84.00** | 90.00 |" in md


def test_gene_probe_end_to_end_on_tiny(tmp_path):
    workdir = str(tmp_path / "w")
    make_tiny_workdir(workdir, bn_seed=1)
    out = tmp_path / "probe"
    args = [f"--workdir={workdir}", f"--out={out}", "--num_val_images=64"]
    result = run_program("bench.gene_probe", [*args, "--num_calibration_images=32"])
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "probe.json").read_text())
    space = SearchSpace.preset("tiny")
    assert [r["name"] for r in report["networks"]] == [
        n for n, _, _ in gene_probe.probe_archs(space)
    ]
    assert report["split"] == "validation" and report["val_images"] == 64
    for r in report["networks"]:
        assert len(r["accuracy"]) == len(r["stage_macs"]) == 3
        assert all(0.0 <= a <= 1.0 for a in r["accuracy"])
    small = {r["name"]: r["stage_macs"][-1] for r in report["networks"]}
    # A variant of the smallest computes more than it; one of the largest, less.
    assert all(small[n] > small["smallest"] for n in small if n.startswith("smallest "))
    assert all(small[n] < small["largest"] for n in small if n.startswith("largest "))
    assert (tmp_path / "probe.md").read_text().startswith("| network |")
    # Bad input: one line, non-zero exit, nothing written.
    bad = run_program("bench.gene_probe", [f"--workdir={tmp_path}/none", f"--out={out}2"])
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == [
        f"gene_probe: error: workdir {tmp_path}/none does not exist"
    ]
    assert not (tmp_path / "probe2.json").exists()


def test_importing_bench_programs_beside_a_tool_defines_no_duplicate_flags():
    # pytest imports bench programs and tools into one process: a program that defines its
    # flags on import (rather than when it runs) breaks whichever test imports second.
    code = (
        "import tools.demo\n"
        "from bench import gene_probe, latency_model, predictor_ceiling, recipe_screen\n"
        "from bench import search_efficiency\n"
        "gene_probe.define_flags()\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    # gene_probe's own flags clash with tools.demo's once defined, which is why they wait.
    assert "DuplicateFlagError" in result.stderr
    assert "ok" not in result.stdout
    code = code.replace("gene_probe.define_flags()\n", "")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
