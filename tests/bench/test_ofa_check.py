"""bench/ofa_check.py end to end on the tiny space: trains the picked architectures alone and
compares every exit with the supernet's cut-outs."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

SMOKE = os.path.join(REPO, "configs", "train_smoke.cfg")


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )


@pytest.mark.slow
def test_ofa_check_trains_alone_and_compares_every_exit(tmp_path):
    workdir = tmp_path / "supernet"
    train = _run("tools.train", f"--flagfile={SMOKE}", f"--workdir={workdir}", "--epochs=1")
    assert train.returncode == 0, train.stderr[-2000:]
    out = tmp_path / "ofa"
    args = [
        "bench.ofa_check",
        f"--workdir={workdir}",
        f"--out={out}",
        f"--train_config={SMOKE}",
        "--num_spread=3",
        "--picks=1,3",
        "--max_test_examples=200",
        "--num_calibration_images=100",
    ]
    result = _run(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "ofa.json").read_text())
    assert report["epochs"] == 1 and report["test_examples"] == 200
    assert [r["name"] for r in report["rows"]] == ["spread_1", "spread_3"]
    for row in report["rows"]:
        assert len(row["alone"]) == len(row["cut_out"]) == 3
        # Each picked network was trained alone, in its own workdir, for the supernet's epochs.
        run_config = json.loads(
            (workdir / "ofa_check" / row["name"] / "run_config.json").read_text()
        )
        assert run_config["train"]["epochs"] == 1
        assert run_config["fixed_arch"]["arch"] == row["arch"]
    # MACs rise with the pick, and the table has one row per network and a verdict.
    assert report["rows"][0]["stage_macs"][-1] < report["rows"][1]["stage_macs"][-1]
    md = (tmp_path / "ofa.md").read_text()
    assert "| spread_1 |" in md and "| spread_3 |" in md and "Goal:" in md
    bad = _run("bench.ofa_check", f"--workdir={workdir}", f"--out={out}", "--picks=11")
    assert bad.returncode == 2 and "--picks must be in 1..10" in bad.stderr
    (tmp_path / "blocker").write_text("a file, not a folder")
    bad = _run("bench.ofa_check", f"--workdir={workdir}", f"--out={tmp_path}/blocker/ofa")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
