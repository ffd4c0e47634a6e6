"""Training one architecture alone (TrainConfig.arch_file): the architecture it reads, the
time budget, the forward pass cut at an exit, and what a run trains."""

import json

import numpy as np
import pytest

from enas4d_tf.errors import TrainError
from enas4d_tf.space import SearchSpace
from enas4d_tf.train import budget
from enas4d_tf.train.fixed_arch import FixedArch, read_fixed_arch

TINY = SearchSpace.preset("tiny")


def _write(path, data):
    path.write_text(json.dumps(data))
    return str(path)


def _search_file(arch, exit=None):
    """An architecture file as the search writes it (format 2)."""
    num_exits = TINY.num_stages if exit is None else exit
    record = {
        "format_version": 2,
        "name": "static_x",
        "mode": "static",
        "arch": arch.to_dict(),
        "thresholds": [None] * (num_exits - 1) + [0.0],
        "stage_macs": [1, 2, 3],
        "avg_macs": 3.0,
        "val_accuracy": 0.5,
        "exit_rates": [0.0] * (num_exits - 1) + [1.0],
        "budget_macs": None,
    }
    if exit is not None:
        record["exit"] = exit
    return record


def test_reads_a_bare_architecture_with_or_without_an_exit(tmp_path):
    arch = TINY.sample(seed=1)
    fixed = read_fixed_arch(_write(tmp_path / "a.json", arch.to_dict()), TINY)
    assert (fixed.arch, fixed.exit) == (arch, None)
    assert fixed.num_stages(TINY) == 3 and fixed.exits(TINY) == [1, 2, 3]
    assert fixed.source == str(tmp_path / "a.json")
    cut = read_fixed_arch(_write(tmp_path / "b.json", {**arch.to_dict(), "exit": 2}), TINY)
    assert (cut.arch, cut.exit) == (arch, 2)
    assert cut.num_stages(TINY) == 2 and cut.exits(TINY) == [2]


def test_reads_an_architecture_file_of_the_search_with_its_exit(tmp_path):
    arch = TINY.sample(seed=2)
    fixed = read_fixed_arch(_write(tmp_path / "s.json", _search_file(arch, exit=1)), TINY)
    assert (fixed.arch, fixed.exit) == (arch, 1)
    multi = read_fixed_arch(_write(tmp_path / "m.json", _search_file(arch)), TINY)
    assert (multi.arch, multi.exit) == (arch, None)


_ARCH = TINY.sample(seed=0).to_dict()
_BAD_FILES = {
    # name: (file content, None for no file; a str is written as it is), needle
    "missing": (None, "does not exist"),
    "not_json": ("{not json", "not JSON"),
    "a_list": ([1, 2], "architecture must be a JSON object"),
    "no_genes": ({"depth": 1}, "missing gene"),
    "exit_0": ({**_ARCH, "exit": 0}, "outside 1..3"),
    "exit_4": ({**_ARCH, "exit": 4}, "outside 1..3"),
    "exit_str": ({**_ARCH, "exit": "1"}, "exit must be an int"),
    "exit_bool": ({**_ARCH, "exit": True}, "exit must be an int"),
    "other_space": (SearchSpace.preset("fashion_mnist").largest().to_dict(), "preset 'tiny'"),
}


@pytest.mark.parametrize("case", sorted(_BAD_FILES))
def test_a_bad_architecture_file_is_one_train_error_naming_the_file(tmp_path, case):
    content, needle = _BAD_FILES[case]
    path = tmp_path / "bad.json"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        _write(path, content)
    with pytest.raises(TrainError) as e:
        read_fixed_arch(str(path), TINY)
    message = str(e.value)
    assert needle in message and str(path) in message and "\n" not in message


def test_a_cut_network_learns_from_its_exit_alone():
    recipe = np.array([0.2, 0.2, 0.6], np.float32)
    arch = TINY.largest()
    assert FixedArch(arch, None, "f").exit_weights(recipe).tolist() == recipe.tolist()
    assert FixedArch(arch, 2, "f").exit_weights(recipe).tolist() == [0.0, 1.0]
    assert FixedArch(arch, 1, "f").exit_weights(recipe).tolist() == [1.0]


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_time_budget_counts_every_session_and_stops_once_reached():
    clock = _Clock()
    b = budget.TimeBudget(1.0, seconds_before=45.0, clock=clock)  # 60 s, 45 s spent before
    assert not b.spent and b.elapsed() == 45.0
    b.start()
    clock.now += 10.0
    assert not b.check() and b.elapsed() == 55.0
    assert b.record(7) == {"kind": "budget", "step": 7, "train_seconds": 55.0}
    clock.now += 5.0
    assert b.check() and b.stopped
    clock.now -= 100.0  # a check after stopping keeps it stopped
    assert b.check()
    summary = b.summary(step=30, steps_per_epoch=12)
    assert summary["stopped_by_budget"] and summary["epochs_done"] == 2.5
    assert summary["max_train_minutes"] == 1.0
    assert budget.TimeBudget(1.0, seconds_before=60.0).spent
    unlimited = budget.TimeBudget(None, clock=clock)
    unlimited.start()
    clock.now += 1e6
    assert not unlimited.check() and unlimited.record(3) is None


def test_a_resumed_session_takes_the_time_of_the_checkpoint_it_resumes_from():
    records = [
        {"kind": "train", "step": 4},
        {"kind": "budget", "step": 5, "train_seconds": 12.0},
        {"kind": "budget", "step": 10, "train_seconds": 30.0},
        {"kind": "budget", "step": 12, "train_seconds": 33.0},
    ]
    assert budget.seconds_before(records, 0) == 0.0
    assert budget.seconds_before(records, 10) == 30.0
    assert budget.seconds_before(records, 11) == 30.0  # checkpoint 11 has no record of its own
    assert budget.seconds_before(records, 99) == 33.0


def test_epochs_that_fit_the_budget():
    # 10 minutes, 5 s to set up, 100 steps of 0.5 s an epoch: (600 - 5) / 50 = 11.9 -> 11.
    assert budget.epochs_that_fit(10.0, 20, 100, 0.5, 5.0) == 11
    assert budget.epochs_that_fit(10.0, 8, 100, 0.5, 5.0) == 8  # at most the config's
    assert budget.epochs_that_fit(0.1, 8, 100, 0.5, 5.0) == 1  # at least one
