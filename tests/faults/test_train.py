"""The fault matrix of tools.train: each case ends with one stderr line naming the problem, the
expected exit code, and the workdir files it guards unchanged (tests/faults/harness.py).

Cases the tool refuses before importing TensorFlow (flags, workdir kind, lock, run config)
take about a second; the others need TensorFlow (a checkpoint, the data) and are marked slow,
except the diverging run, the only end-to-end cover of the NaN guard.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from enas4d_tf.space import SearchSpace
from enas4d_tf.train.config import TrainConfig
from tests.faults.harness import check_fault, run_program
from tests.helpers import REPO

# A run of 2 steps of the tiny preset, a checkpoint after each.
TINY = {
    "preset": "tiny",
    "dataset": "fashion_mnist",
    "epochs": 1,
    "batch_size": 32,
    "max_train_examples": 64,
    "steps_per_epoch": 2,
    "eval_every_epochs": 0,
    "checkpoint_every_steps": 1,
    "num_random_subnets": 0,
    "learning_rate": 0.05,
    "warmup_epochs": 0.0,
    "log_every_steps": 1,
}


def _args(workdir, **changes) -> list[str]:
    values = {**TINY, **changes}
    return [f"--workdir={workdir}"] + [f"--{k}={v}" for k, v in values.items()]


def _fake_workdir(path) -> str:
    """A workdir whose run config is the one TINY writes (no checkpoint): enough for the
    checks made before TensorFlow."""
    os.makedirs(path)
    config = TrainConfig(workdir=str(path), **TINY)
    run_config = {
        "space": SearchSpace.preset("tiny").to_dict(),
        "num_classes": 10,
        "dataset": "fashion_mnist",
        "data_dir": None,
        "train": config.to_dict(),
    }
    with open(os.path.join(path, "run_config.json"), "w") as f:
        json.dump(run_config, f)
    return str(path)


def _sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


# -- before TensorFlow -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, needle, code",
    [
        ({"epochs": 0}, "epochs", 2),
        ({"batch_size": -3}, "batch_size", 2),
        ({"label_smoothing": 1.5}, "label_smoothing", 2),
        ({"learning_rate": "nan"}, "learning_rate must be > 0, got nan", 1),
        ({"momentum": "nan"}, "momentum", 1),
        ({"kd_ratio": "inf"}, "kd_ratio", 1),
        ({"exit_weights": "1,2"}, "exit_weights needs 3 numbers", 1),
        ({"phase_starts": "a,b"}, "phase_starts", 1),
        ({"preset": "no_such_preset"}, "preset", 2),
    ],
)
def test_bad_flags(tmp_path, changes, needle, code):
    workdir = tmp_path / "run"
    check_fault("tools.train", _args(workdir, **changes), needle, code=code, guarded=[workdir])
    assert not workdir.exists()


def test_unknown_flag_and_stray_argument(tmp_path):
    check_fault("tools.train", ["--dry_run"], "dry_run", code=2)
    check_fault("tools.train", [*_args(tmp_path / "run"), "extra"], "unexpected", code=2)


def test_missing_workdir_flag():
    check_fault("tools.train", ["--preset=tiny"], "--workdir is required", code=1)


def test_workdir_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a folder")
    check_fault("tools.train", _args(path), "is a file", str(path), guarded=[path])
    check_fault("tools.train", _args(path / "run"), "cannot be created", guarded=[path])


def test_workdir_files_of_the_wrong_kind(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "checkpoints").write_text("x")
    check_fault("tools.train", _args(workdir), "checkpoints", "is a file", guarded=[workdir])
    (workdir / "checkpoints").unlink()
    (workdir / "train_log.jsonl").mkdir()
    check_fault("tools.train", _args(workdir), "train_log.jsonl", "folder", guarded=[workdir])


def test_workdir_in_use(tmp_path):
    workdir = _fake_workdir(tmp_path / "run")
    holder = _sleeper()
    try:
        with open(os.path.join(workdir, ".lock"), "w") as f:
            json.dump(
                {
                    "pid": holder.pid,
                    "host": socket.gethostname(),
                    "program": "search",
                    "started": "2026-11-30 18:00:00",
                },
                f,
            )
        check_fault(
            "tools.train",
            _args(workdir),
            "in use by search",
            f"pid {holder.pid}",
            guarded=[workdir],
        )
    finally:
        holder.kill()
        holder.wait()


def test_garbage_lock(tmp_path):
    workdir = _fake_workdir(tmp_path / "run")
    with open(os.path.join(workdir, ".lock"), "wb") as f:
        f.write(b"\xff\xfe garbage")
    check_fault("tools.train", _args(workdir), "lock", "unreadable", guarded=[workdir])


def test_other_settings_on_a_trained_workdir(tmp_path):
    workdir = _fake_workdir(tmp_path / "run")
    line = check_fault("tools.train", _args(workdir, learning_rate=0.01), guarded=[workdir])
    # Exactly one setting differs: the flags' defaults are TrainConfig's.
    assert "other settings (learning_rate 0.05 -> 0.01)" in line
    line = check_fault("tools.train", _args(workdir, preset="fashion_mnist"), guarded=[workdir])
    assert "space 'tiny' -> 'fashion_mnist'" in line


def test_malformed_run_config(tmp_path):
    workdir = _fake_workdir(tmp_path / "run")
    with open(os.path.join(workdir, "run_config.json"), "w") as f:
        f.write('{"space": ')
    check_fault("tools.train", _args(workdir), "run_config.json", "malformed", guarded=[workdir])


def test_refusals_before_tensorflow_do_not_import_it(tmp_path):
    # The cheap cases above must stay cheap: the tool refuses before importing TensorFlow.
    workdir = _fake_workdir(tmp_path / "run")
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['train'] + {_args(workdir, learning_rate=0.01)!r}\n"
        "try:\n"
        "    runpy.run_module('tools.train', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert e.code == 1, e.code\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "other settings" in proc.stderr


# Slow (a real training runs while the second starts); the held lock's one line is covered
# fast by test_workdir_in_use and tests/test_locking.py.
@pytest.mark.slow
def test_second_training_refused_while_the_first_runs(tmp_path):
    workdir = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "tools.train", *_args(workdir, epochs=50)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not (workdir / ".lock").exists() and time.time() < deadline:
            assert first.poll() is None, "the first training ended early"
            time.sleep(0.02)
        check_fault(
            "tools.train",
            _args(workdir, epochs=50),
            "in use by train",
            f"pid {first.pid}",
            guarded=[workdir / ".lock"],
        )
        assert first.poll() is None  # the first one goes on
        # Interrupted (Ctrl-C), the first one releases the lock on its way out.
        first.send_signal(signal.SIGINT)
        first.wait(timeout=120)
        assert not (workdir / ".lock").exists()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


# -- with TensorFlow -------------------------------------------------------------------------


# Slow (a real diverging training); the step's non-finite flags are covered fast in
# tests/train/test_step.py and the guard in tests/train/test_guard.py.
@pytest.mark.slow
def test_diverging_run_stops_and_keeps_a_finite_checkpoint(tmp_path):
    """A learning rate of 1e6 with strong weight decay multiplies the weights by about 1e6
    per step: the run must stop on the first NaN or Inf, and every kept checkpoint (the last
    one included) must be finite."""
    workdir = tmp_path / "run"
    args = _args(workdir, learning_rate=1e6, weight_decay=1.0, steps_per_epoch=12)
    line = check_fault("tools.train", args, "NaN or Inf", "training stopped", code=1)
    assert line.startswith("train: error: step ")
    assert "the newest checkpoint" in line and "is kept" in line

    from enas4d_tf.workdir import checkpoint_nonfinite, latest_checkpoint, load_supernet

    newest = latest_checkpoint(str(workdir))
    assert newest is not None and newest in line
    load_supernet(str(workdir))  # loads (it refuses non-finite weights)
    for name in os.listdir(workdir / "checkpoints"):
        if name.endswith(".index"):
            assert (
                checkpoint_nonfinite(str(workdir / "checkpoints" / name[: -len(".index")])) is None
            )
    # One record per step logged.
    steps = [r["step"] for r in map(json.loads, open(workdir / "train_log.jsonl"))]
    assert steps == sorted(set(steps))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished TINY run (2 steps, checkpoints ckpt-1 and ckpt-2)."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    proc = run_program("tools.train", _args(workdir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def _copy(trained, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    return workdir


def _checkpoint_file(workdir, step, kind):
    folder = workdir / "checkpoints"
    return folder / next(f for f in os.listdir(folder) if f.startswith(f"ckpt-{step}.{kind}"))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "zero_byte_index", "garbage"])
def test_damaged_checkpoint(trained, tmp_path, damage):
    workdir = _copy(trained, tmp_path)
    if damage == "truncated":
        with open(_checkpoint_file(workdir, 2, "data"), "r+b") as f:
            f.truncate(64)
    elif damage == "zero_byte_index":
        open(_checkpoint_file(workdir, 2, "index"), "wb").close()
    else:
        path = _checkpoint_file(workdir, 2, "data")
        size = os.path.getsize(path)
        path.write_bytes(np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes())
    check_fault("tools.train", _args(workdir), "ckpt-2", "corrupt", guarded=[workdir])


def _write_nan_checkpoint(workdir, step):
    """Rewrites checkpoint `step` with one model weight NaN, all else (the object graph
    too) as it was."""
    import tensorflow as tf

    prefix = str(workdir / "checkpoints" / f"ckpt-{step}")
    reader = tf.train.load_checkpoint(prefix)
    names = sorted(reader.get_variable_to_shape_map())
    tensors = [reader.get_tensor(n) for n in names]
    target = next(i for i, n in enumerate(names) if n.startswith("model/") and "kernel" in n)
    tensors[target] = np.full_like(tensors[target], np.nan)
    tf.raw_ops.SaveV2(
        prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors
    )
    return names[target]


@pytest.mark.slow
def test_non_finite_checkpoint_is_not_resumed(trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    bad = _write_nan_checkpoint(workdir, 2)
    check_fault(
        "tools.train", _args(workdir, epochs=2), "ckpt-2", "NaN or Inf", bad, guarded=[workdir]
    )


@pytest.mark.slow
def test_finished_run_with_other_epochs(trained, tmp_path):
    # More epochs continue the run (tested in tests/train); a finished run asked for fewer
    # would call "finished" a run its weights were not trained for.
    workdir = _copy(trained, tmp_path)
    (workdir / "run_config.json").write_text(
        (workdir / "run_config.json").read_text().replace('"epochs": 1', '"epochs": 3')
    )
    check_fault(
        "tools.train", _args(workdir), "finished training with epochs 3, not 1", guarded=[workdir]
    )


@pytest.mark.slow
def test_unknown_dataset_and_missing_data_dir(tmp_path):
    workdir = tmp_path / "run"
    check_fault("tools.train", _args(workdir, dataset="no_such_dataset_xyz"), "no_such_dataset_xyz")
    check_fault(
        "tools.train", _args(workdir, data_dir="/nonexistent/fmnist"), "/nonexistent/fmnist"
    )
    assert not workdir.exists()  # a refused fresh run leaves no empty workdir
