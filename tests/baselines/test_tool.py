"""tools.train_baseline end to end: train, fit, export, and tools.cascade on the export."""

import json

import pytest

from tests.faults.harness import run_program


@pytest.mark.slow
def test_train_fit_export_and_cascade(tmp_path):
    workdir, out = tmp_path / "w", tmp_path / "out"
    args = [
        "--preset=tiny",
        "--epochs=1",
        "--batch_size=32",
        "--max_train_examples=320",
        "--max_eval_examples=200",
        "--num_val_images=300",
        "--pareto_points=3",
        f"--workdir={workdir}",
        f"--out={out}",
    ]
    first = run_program("tools.train_baseline", args)
    assert first.returncode == 0, first.stderr
    front = json.loads((workdir / "front.json").read_text())
    assert front["num_val_images"] == 300 and len(front["points"]) == 3
    exported = sorted(p.name for p in out.iterdir())
    assert exported == sorted(p["name"] for p in front["points"] if p["on_front"])
    point = next(p for p in front["points"] if p["name"] == exported[-1])
    report = run_program(
        "tools.cascade",
        [f"--export_dir={out / exported[-1]}", "--split=validation", "--max_images=300"],
    )
    assert report.returncode == 0, report.stderr
    measured = json.loads(report.stdout)
    # The same 300 validation images through the float32 graphs: the fitted policy's numbers
    # (a threshold tie may send one image the other way).
    assert measured["accuracy"] == pytest.approx(point["val_accuracy"], abs=1 / 300 + 1e-9)
    assert measured["exit_rates"] == pytest.approx(point["exit_rates"], abs=1 / 300 + 1e-9)
    # A second run trains nothing, and refuses to replace the exports without --overwrite.
    again = run_program("tools.train_baseline", args)
    assert again.returncode == 1 and "training already finished" in again.stdout
    assert len(again.stderr.splitlines()) == 1, again.stderr
    assert again.stderr.strip().endswith("(pass --overwrite to replace it)")
