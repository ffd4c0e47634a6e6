"""Fault matrix of tools.train_baseline: each bad input ends with one line and harms no file.

The cheap cases are refused before TensorFlow is imported (under a second each); the cases
that need a checkpoint read or a training step are marked slow.
"""

import json
import os
import shutil
import socket
import time

import pytest

from enas4d_tf.baselines import config as config_lib
from enas4d_tf.baselines.config import BaselineConfig
from tests.faults.harness import check_fault

PROGRAM = "tools.train_baseline"
TINY = ["--preset=tiny", "--epochs=1", "--batch_size=32", "--max_train_examples=64"]


@pytest.fixture
def workdir(tmp_path):
    """A baseline workdir as a first session leaves its config (no checkpoint)."""
    root = tmp_path / "w"
    root.mkdir()
    config = BaselineConfig(
        workdir=str(root), preset="tiny", epochs=1, batch_size=32, max_train_examples=64
    )
    record = {"kind": config_lib.KIND, "version": 1, "train": config.to_dict()}
    (root / config_lib.CONFIG_FILE).write_text(json.dumps(record))
    return root


@pytest.mark.parametrize(
    "args, needles, code",
    [
        ([], ["--workdir is required"], 1),
        (["--depth=0"], ["depth of unit 1"], 1),
        (["--kernel=4"], ["kernel of unit 1"], 1),
        (["--width=1,1,1"], ["width needs 1 or 2 values"], 1),
        (["--depth=x"], ["--depth must be comma-separated numbers"], 1),
        (["--exit_weights=1,1,1"], ["exit_weights needs 2"], 1),
        (["--budgets=1000"], ["below exit 1's cost"], 1),
        (["--quantization=int8_qat"], ["--quantization", "int8_qat"], 1),
        (["--learning_rate=-1"], ["learning_rate"], 2),
        (["--epochs=2", "--warmup_epochs=3"], ["warmup_epochs"], 1),
        (["--no_such_flag=1"], ["no_such_flag"], 2),
    ],
)
def test_bad_flags(tmp_path, args, needles, code):
    root = tmp_path / "new"
    given = [*TINY, *args] if args else ["--preset=tiny"]
    if args:
        given.append(f"--workdir={root}")
    check_fault(PROGRAM, given, *needles, guarded=[str(tmp_path)], code=code)
    assert not root.exists()


def test_workdir_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a folder")
    check_fault(PROGRAM, [*TINY, f"--workdir={path}"], "is a file", guarded=[str(path)])


def test_other_settings_on_a_trained_workdir(workdir):
    check_fault(
        PROGRAM,
        [*TINY[:1], "--epochs=3", *TINY[2:], f"--workdir={workdir}"],
        "trains another configuration",
        "epochs: 1 -> 3",
        guarded=[str(workdir)],
    )


def test_a_workdir_of_another_kind(workdir):
    (workdir / config_lib.CONFIG_FILE).write_text(json.dumps({"space": {}}))
    check_fault(
        PROGRAM,
        [*TINY, f"--workdir={workdir}"],
        "not an early-exit baseline",
        guarded=[str(workdir)],
    )


def test_a_malformed_config_file(workdir):
    (workdir / config_lib.CONFIG_FILE).write_text("{not json")
    check_fault(PROGRAM, [*TINY, f"--workdir={workdir}"], "not JSON", guarded=[str(workdir)])


def test_a_workdir_in_use(workdir):
    holder = {
        "pid": os.getpid(),  # this test process: alive
        "host": socket.gethostname(),
        "program": "train_baseline",
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (workdir / ".lock").write_text(json.dumps(holder))
    check_fault(
        PROGRAM,
        [*TINY, f"--workdir={workdir}"],
        "in use by train_baseline",
        f"pid {os.getpid()}",
        guarded=[str(workdir)],
    )


def test_an_existing_export_folder(workdir, tmp_path):
    out = tmp_path / "out"
    (out / "early_exit_70K").mkdir(parents=True)
    (out / "early_exit_70K" / "manifest.json").write_text("{}")
    check_fault(
        PROGRAM,
        [*TINY, f"--workdir={workdir}", f"--out={out}", "--budgets=7e4"],
        "exists",
        "--overwrite",
        guarded=[str(workdir), str(out)],
    )


def test_an_unwritable_out(workdir, tmp_path):
    out = tmp_path / "out_file"
    out.write_text("a file")
    check_fault(
        PROGRAM,
        [*TINY, f"--workdir={workdir}", f"--out={out}"],
        "--out folder",
        "is a file",
        guarded=[str(workdir), str(out)],
    )


@pytest.mark.slow
def test_a_corrupt_checkpoint(workdir):
    checkpoints = workdir / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "checkpoint").write_text('model_checkpoint_path: "ckpt-3"\n')
    (checkpoints / "ckpt-3.index").write_bytes(b"garbage" * 10)
    (checkpoints / "ckpt-3.data-00000-of-00001").write_bytes(b"")
    check_fault(
        PROGRAM, [*TINY, f"--workdir={workdir}"], "checkpoint", "corrupt", guarded=[str(workdir)]
    )


@pytest.mark.slow
def test_divergence(tmp_path):
    root = tmp_path / "d"
    line = check_fault(
        PROGRAM,
        [*TINY[:3], "--max_train_examples=320", "--learning_rate=1e6", f"--workdir={root}"],
        "diverged",
        "lower --learning_rate",
    )
    assert "step" in line
    shutil.rmtree(root)
