"""The main job end to end in its reduced mode, and the README's fine-tuning example."""

import json
import os
import re
import subprocess
import sys

import keras
import pytest

from tests.helpers import REPO as ROOT


def _readme_python_blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_demo_smoke_run_writes_what_it_promises(tmp_path):
    workdir = tmp_path / "runs" / "demo"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--smoke", f"--workdir={workdir}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "| network | mode |" in out and "demo finished" in out

    pareto = json.loads((workdir / "search" / "pareto.json").read_text())
    assert (workdir / "search" / "pareto.png").stat().st_size > 1000
    names = [e["name"] for e in pareto["chosen"]]
    assert any(n.startswith("dynamic_") for n in names)
    assert any(n.startswith("static_") for n in names)
    assert "Dynamic vs static (cut at any exit)" in out
    for entry in pareto["chosen"]:
        name = entry["name"]
        folder = workdir / "export" / name
        model = keras.models.load_model(folder / "subnet.keras")
        # A static network is cut at one exit and keeps only that one.
        assert len(model.outputs) == (3 if entry["mode"] == "dynamic" else 1)
        report = json.loads((workdir / "cascade" / f"{name}_float32.json").read_text())
        assert report["num_images"] == 300
        assert abs(sum(report["exit_rates"]) - 1.0) < 1e-6
        assert f"| {name} |" in out

    # The README's fine-tuning example runs as written next to the demo's runs/ folder.
    (snippet,) = [b for b in _readme_python_blocks() if "load_model" in b]
    script = tmp_path / "finetune_example.py"
    script.write_text(snippet)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_demo_table_compares_dynamic_with_static_networks_cut_at_any_exit():
    from tools.demo import _table

    def report(accuracy, avg_macs, thresholds, rates, macs, exits):
        return {
            "accuracy": accuracy,
            "avg_macs": avg_macs,
            "thresholds": thresholds,
            "exit_rates": rates,
            "stage_macs": macs,
            "exits": exits,
        }

    pareto = {
        "chosen": [
            {
                "name": "dynamic_2M",
                "mode": "dynamic",
                "budget_macs": 2e6,
                "avg_macs": 1.9e6,
                "val_accuracy": 0.81,
                "ranking_accuracy": 0.79,
                "thresholds": [0.9, 0.8, 0.0],
            },
            {
                "name": "static_2M_exit2",
                "mode": "static",
                "budget_macs": 2e6,
                "exit": 2,
                "avg_macs": 1.5e6,
                "val_accuracy": 0.77,
                "ranking_accuracy": 0.77,
                "thresholds": [None, 0.0],
            },
        ]
    }
    reports = {
        "dynamic_2M": report(
            0.8, 1.8e6, [0.9, 0.8, 0.0], [0.5, 0.3, 0.2], [1e6, 2e6, 3e6], [1, 2, 3]
        ),
        # A network cut at exit 2 runs one graph, whose exit is exit 2 (as the cascade says).
        "static_2M_exit2": report(0.76, 1.5e6, [0.0], [1.0], [1.5e6], [2]),
    }
    table = _table(pareto, reports, "float32")
    assert (
        "| static_2M_exit2 | static | 2 only | 2.00M | 76.00% | 1.50M | 77.00% | 77.00% |" in table
    )
    assert "| 76.00% | 1.50M | 77.00% | 77.00% | 2: 0.000, 100.0%, 1.50M |" in table
    assert "| dynamic_2M | dynamic | 1-3 | 2.00M | 80.00% | 1.80M | 81.00% | 79.00% |" in table
    assert "| 1: 0.900, 50.0%, 1.00M; 2: 0.800, 30.0%, 2.00M; 3: 0.000, 20.0%, 3.00M |" in table
    assert "budget 2.00M: dynamic 80.00% at 1.80M, static (exit 2) 76.00% at 1.50M" in table


@pytest.mark.slow
def test_readme_api_example_runs(tmp_path):
    (snippet,) = [b for b in _readme_python_blocks() if "e4.SearchSpace.preset" in b]
    script = tmp_path / "api_example.py"
    script.write_text(snippet + "\nprint(macs, [tuple(z.shape) for z in logits])\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(8, 10), (8, 10), (8, 10)" in result.stdout


@pytest.mark.slow
def test_demo_stands_on_a_released_supernet(tmp_path):
    from enas4d_tf import pretrained
    from tests.helpers import make_tiny_workdir

    trained = str(tmp_path / "trained")
    make_tiny_workdir(trained, bn_seed=5)
    releases = tmp_path / "released"
    releases.mkdir()
    pretrained.make_release(trained, str(releases / "tiny_demo"), {"command": "test", "step": 3})
    workdir = tmp_path / "demo"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", ENAS4D_RELEASES_DIR=str(releases))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.demo",
            "--smoke",
            "--pretrained=tiny_demo",
            f"--workdir={workdir}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The search stood on the released weights, copied into the workdir; the train tool ran
    # on a run of its own beside them.
    assert (workdir / "train_watch" / "train_summary.json").exists()
    assert json.loads((workdir / "release.json").read_text())["command"] == "test"
    assert (workdir / "search" / "pareto.json").exists()
    released = releases / "tiny_demo" / "checkpoints"
    assert sorted(os.listdir(workdir / "checkpoints")) == sorted(os.listdir(released))
    assert "Dynamic vs static (cut at any exit)" in result.stdout
    # Again, on the workdir that holds this release's copy: it is recognised (by its sha256
    # sums) and the run goes on from what exists.
    again = subprocess.run(
        result.args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "holds" not in again.stderr
