"""tools/train.py and bench/train_benchmark.py as a user runs them (subprocesses, as modules)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers import REPO

SMOKE = os.path.join(REPO, "configs", "train_smoke.cfg")
# TensorFlow's C++ start-up lines, printed whatever TF_CPP_MIN_LOG_LEVEL says.
TF_NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} )")


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)


def _train(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "tools.train", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        cwd=REPO,
    )


def _own_stderr(stderr):
    return [line for line in stderr.splitlines() if line.strip() and not TF_NOISE.match(line)]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--dataset=no_such_dataset_xyz"], "no_such_dataset_xyz"),
        (["--data_dir=/nonexistent/fmnist"], "/nonexistent/fmnist"),
        (["--epochs=0"], "epochs"),
        (["--exit_weights=1,2"], "exit_weights"),
        (["--init_from=/nonexistent/teacher_run"], "/nonexistent/teacher_run"),
    ],
)
def test_bad_input_ends_with_one_line(tmp_path, args, expected):
    proc = _train(f"--flagfile={SMOKE}", f"--workdir={tmp_path / 'run'}", *args)
    lines = _own_stderr(proc.stderr)
    assert proc.returncode != 0
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0] and "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


# Slow, with the other tests that need the smoke training fixture.
@pytest.mark.slow
def test_corrupt_checkpoint_ends_with_one_line_and_is_left_alone(smoke_workdir, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(smoke_workdir[0], workdir)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    data_file = next(f for f in os.listdir(ckpt_dir) if f.startswith("ckpt-24.data"))
    with open(os.path.join(ckpt_dir, data_file), "r+b") as f:
        f.truncate(64)
    before = {f: os.path.getsize(os.path.join(ckpt_dir, f)) for f in os.listdir(ckpt_dir)}
    proc = _train(f"--flagfile={SMOKE}", f"--workdir={workdir}", "--epochs=3")
    lines = _own_stderr(proc.stderr)
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert "ckpt-24" in lines[0] and "corrupt" in lines[0]
    after = {f: os.path.getsize(os.path.join(ckpt_dir, f)) for f in os.listdir(ckpt_dir)}
    assert after == before


def _final_step(workdir):
    with open(os.path.join(workdir, "train_summary.json")) as f:
        return json.load(f)["step"]


@pytest.fixture(scope="module")
def smoke_workdir(tmp_path_factory):
    """One uninterrupted smoke run (2 epochs of 12 steps; about 40 s on an idle machine)."""
    workdir = str(tmp_path_factory.mktemp("smoke") / "run")
    proc = _train(f"--flagfile={SMOKE}", f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, proc.stdout


@pytest.mark.slow
def test_smoke_run_and_rerun_says_finished(smoke_workdir):
    workdir, stdout = smoke_workdir
    assert "step 24/24" in stdout and "validation accuracy" in stdout
    assert _final_step(workdir) == 24
    run_config = open(os.path.join(workdir, "run_config.json")).read()
    # Logging more often changes nothing the weights learn: the run is finished.
    again = _train(f"--flagfile={SMOKE}", f"--workdir={workdir}", "--log_every_steps=1")
    assert again.returncode == 0 and not _own_stderr(again.stderr), again.stderr[-3000:]
    assert "training already finished: step 24 of 24" in again.stdout
    # Another learning rate is another run: refused, and run_config.json is never rewritten.
    other = _train(f"--flagfile={SMOKE}", f"--workdir={workdir}", "--learning_rate=0.01")
    assert other.returncode == 1 and other.stderr.count("\n") == 1, other.stderr
    assert "other settings (learning_rate 0.05 -> 0.01)" in other.stderr
    assert open(os.path.join(workdir, "run_config.json")).read() == run_config
    assert not os.path.exists(os.path.join(workdir, ".lock"))  # released by both


# Slow (two smoke trainings, over 2 min on 2 idle cores); the fast suite keeps the resume of
# tests/train/test_trainer.py and the one-record-per-step check of tests/train/test_logs.py.
@pytest.mark.slow
def test_killed_run_resumes_and_finishes_like_an_uninterrupted_one(smoke_workdir, tmp_path):
    full_workdir, _ = smoke_workdir
    workdir = str(tmp_path / "run")
    args = [sys.executable, "-m", "tools.train", f"--flagfile={SMOKE}", f"--workdir={workdir}"]
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=REPO
    )
    index = os.path.join(workdir, "checkpoints", "checkpoint")
    deadline = time.time() + 600
    while not os.path.exists(index) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = int(open(index).read().split('"ckpt-')[1].split('"')[0])
    assert 0 < killed_at < 24

    resumed = _train(f"--flagfile={SMOKE}", f"--workdir={workdir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    match = re.search(r"resuming from step (\d+) of 24", resumed.stdout)
    assert match, resumed.stdout
    assert 0 < int(match.group(1)) < 24  # the step counter goes on
    assert f"step {24}/24" in resumed.stdout
    assert _final_step(workdir) == _final_step(full_workdir) == 24
    # One record per step logged: those after the checkpoint were dropped, then redone.
    steps = [json.loads(line)["step"] for line in open(os.path.join(workdir, "train_log.jsonl"))]
    full_steps = [
        json.loads(line)["step"] for line in open(os.path.join(full_workdir, "train_log.jsonl"))
    ]
    assert steps == full_steps
    # The schedule depends on the step only (data of each epoch seeded and skipped to the
    # step, architectures seeded by the step), so the weights end where the uninterrupted
    # run's did, up to float reduction order.
    full = _checkpoint_weights(full_workdir)
    mine = _checkpoint_weights(workdir)
    worst = max(float(np.max(np.abs(full[k] - mine[k]))) for k in full)
    assert worst < 1e-3


def _checkpoint_weights(workdir):
    import tensorflow as tf

    path = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name.startswith("model/weights")
    }


@pytest.mark.slow
def test_train_benchmark_reports_every_exit(smoke_workdir):
    workdir, _ = smoke_workdir
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.train_benchmark",
            f"--workdir={workdir}",
            "--num_calibration_images=300",
            "--max_test_examples=600",
            "--num_spread=3",
            "--num_sampled=1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(),
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[0])
    names = [n["name"] for n in report["networks"]]
    assert names == ["largest", "smallest", "spread_1", "spread_2", "spread_3", "sampled_1"]
    checks = report["spread_checks"]
    assert checks["num_spread"] == 3 and len(checks["spearman"]) == 3
    assert "Spearman (MACs to that exit vs accuracy)" in proc.stdout
    for n in report["networks"]:
        assert len(n["test_accuracy"]) == 3
        assert all(0.1 < a <= 1.0 for a in n["test_accuracy"])  # trained: above chance
    assert report["test_examples"] == 600
    assert report["training"]["images_per_s"] > 0
    assert "| largest |" in proc.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "bench.train_benchmark", "--workdir=/nope"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
        cwd=REPO,
    )
    assert missing.returncode == 1 and len(_own_stderr(missing.stderr)) == 1
