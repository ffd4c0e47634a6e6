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
    for name in names:
        folder = workdir / "export" / name
        manifest = json.loads((folder / "manifest.json").read_text())
        model = keras.models.load_model(folder / "subnet.keras")
        assert len(model.outputs) == len(manifest["stage_macs"]) == 3
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
