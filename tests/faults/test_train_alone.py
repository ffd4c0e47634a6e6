"""The fault matrix of `tools.train --arch_file` (one architecture alone) and of its time
budget: each case ends with one stderr line naming the problem, the expected exit code, and
the workdir files it guards unchanged (tests/faults/harness.py).

Every case is refused before TensorFlow is imported (about a second each).
"""

from __future__ import annotations

import json
import os

import pytest

from enas4d_tf.space import SearchSpace
from enas4d_tf.train.config import TrainConfig
from tests.faults.harness import check_fault

TINY_SPACE = SearchSpace.preset("tiny")
ARCH = TINY_SPACE.sample(seed=5)
RUN = {
    "preset": "tiny",
    "epochs": 1,
    "batch_size": 32,
    "max_train_examples": 64,
    "eval_every_epochs": 0,
}


def _args(workdir, arch_file, **changes) -> list[str]:
    values = {**RUN, **changes}
    flags = [f"--workdir={workdir}", f"--arch_file={arch_file}"]
    return flags + [f"--{k}={v}" for k, v in values.items()]


def _write(path, data) -> str:
    with open(path, "w") as f:
        f.write(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def _trained_workdir(path, fixed_arch: dict | None, arch_file: str) -> str:
    """A workdir whose run config says it trained `fixed_arch` (None: a supernet)."""
    os.makedirs(path)
    config = TrainConfig(workdir=str(path), arch_file=arch_file if fixed_arch else None, **RUN)
    run_config = {
        "space": TINY_SPACE.to_dict(),
        "num_classes": 10,
        "dataset": "fashion_mnist",
        "data_dir": None,
        "train": config.to_dict(),
    }
    if fixed_arch is not None:
        run_config["fixed_arch"] = fixed_arch
    _write(os.path.join(path, "run_config.json"), run_config)
    return str(path)


_BAD_ARCH_FILES = {
    # name: (file content, or None for no file; needles of the error line)
    "missing": (None, ("does not exist",)),
    "not_json": ("{not json", ("not JSON",)),
    "not_an_arch": ({"depth": [[1]]}, ("missing gene",)),
    "other_space": (SearchSpace.preset("fashion_mnist").largest().to_dict(), ("preset 'tiny'",)),
    "exit_0": ({**ARCH.to_dict(), "exit": 0}, ("exit 0", "1..3")),
    "exit_4": ({**ARCH.to_dict(), "exit": 4}, ("exit 4", "1..3")),
    "exit_not_int": ({**ARCH.to_dict(), "exit": 1.5}, ("exit must be an int",)),
    "old_search_file": (
        {"format_version": 1, "name": "x", "arch": ARCH.to_dict(), "thresholds": [0.0] * 3},
        ("format 1",),
    ),
}


@pytest.mark.parametrize("case", sorted(_BAD_ARCH_FILES))
def test_a_bad_architecture_file_is_refused_before_anything_is_written(tmp_path, case):
    content, needles = _BAD_ARCH_FILES[case]
    arch_file = str(tmp_path / "arch.json")
    if content is not None:
        _write(arch_file, content)
    workdir = tmp_path / "run"
    check_fault(
        "tools.train",
        _args(workdir, arch_file),
        "architecture file",
        *needles,
        guarded=[workdir, arch_file],
        code=1,
    )
    assert not workdir.exists()


def test_a_workdir_that_trained_another_architecture_is_refused(tmp_path):
    arch_file = _write(tmp_path / "arch.json", {**ARCH.to_dict(), "exit": 1})
    other = {"arch": TINY_SPACE.largest().to_dict(), "exit": 1, "source": "/somewhere/a.json"}
    workdir = _trained_workdir(tmp_path / "run", other, arch_file)
    check_fault(
        "tools.train",
        _args(workdir, arch_file),
        "trained another architecture",
        "/somewhere/a.json",
        guarded=[workdir],
        code=1,
    )


def test_the_same_architecture_cut_at_another_exit_is_another_network(tmp_path):
    arch_file = _write(tmp_path / "arch.json", {**ARCH.to_dict(), "exit": 2})
    trained = {"arch": ARCH.to_dict(), "exit": 1, "source": arch_file}
    workdir = _trained_workdir(tmp_path / "run", trained, arch_file)
    check_fault(
        "tools.train",
        _args(workdir, arch_file),
        "cut at exit 1",
        "cut at exit 2",
        guarded=[workdir],
        code=1,
    )


def test_a_supernet_workdir_is_not_resumed_as_one_architecture(tmp_path):
    arch_file = _write(tmp_path / "arch.json", ARCH.to_dict())
    workdir = _trained_workdir(tmp_path / "run", None, arch_file)
    check_fault(
        "tools.train",
        _args(workdir, arch_file),
        "trained a supernet",
        guarded=[workdir],
        code=1,
    )


@pytest.mark.parametrize(
    "changes, needles, code",
    [
        ({"schedule": "progressive"}, ("schedule", "sandwich"), 1),
        ({"max_train_minutes": 0}, ("max_train_minutes",), 2),
        ({"fit_epochs_to_budget": "true"}, ("needs max_train_minutes",), 1),
        (
            {"max_train_minutes": 5, "strategy": "multi_worker"},
            ("max_train_minutes", "multi_worker"),
            1,
        ),
    ],
)
def test_settings_a_fixed_architecture_or_a_budget_cannot_take(tmp_path, changes, needles, code):
    arch_file = _write(tmp_path / "arch.json", ARCH.to_dict())
    workdir = tmp_path / "run"
    check_fault(
        "tools.train",
        _args(workdir, arch_file, **changes),
        *needles,
        guarded=[workdir, arch_file],
        code=code,
    )
    assert not workdir.exists()
