"""Fault matrix of `python -m tools.search`: each bad input or fault ends with one line on
stderr and a non-zero exit, and the workdir is left exactly as it was (tests/faults/harness.py).

Cases that the tool checks before importing TensorFlow (flags, the workdir, its lock, the
output locations, the search state, the budgets) take about a second each and need no real
checkpoint; the cases that read the checkpoint take a TensorFlow start-up each (all but one
run with the slow tests).
"""

import json
import os
import shutil
import socket

import numpy as np
import pytest

from tests.faults.harness import check_fault
from tests.helpers import make_tiny_workdir

SEARCH = "tools.search"
# A budget every tiny network's first exit meets; the cases fail before any search runs.
OK = ["--budgets=1e6", "--population=2", "--generations=1", "--num_val_images=20"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A workdir as the checks before TensorFlow see it: a run config and a checkpoint index
    file (the cases refused before the checkpoint is read need no real one)."""
    from enas4d_tf.space import SearchSpace

    path = tmp_path_factory.mktemp("search_faults") / "wd"
    os.makedirs(path / "checkpoints")
    run_config = {
        "space": SearchSpace.preset("tiny").to_dict(),
        "num_classes": 10,
        "dataset": "fashion_mnist",
        "data_dir": None,
    }
    (path / "run_config.json").write_text(json.dumps(run_config))
    (path / "checkpoints" / "ckpt-1.index").write_bytes(b"")
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny workdir with a real checkpoint (for the cases that read it)."""
    path = str(tmp_path_factory.mktemp("search_faults_trained") / "wd")
    make_tiny_workdir(path, bn_seed=0)
    return path


@pytest.fixture
def workdir(base, tmp_path):
    path = str(tmp_path / "wd")
    shutil.copytree(base, path)
    return path


@pytest.fixture
def trained_workdir(trained, tmp_path):
    path = str(tmp_path / "wd")
    shutil.copytree(trained, path)
    return path


def search_folder(workdir, *parts):
    return os.path.join(workdir, "search", *parts)


def test_missing_workdir_flag(tmp_path):
    check_fault(SEARCH, OK, "--workdir is required", code=2)


def test_workdir_that_does_not_exist(tmp_path):
    missing = str(tmp_path / "nowhere")
    check_fault(SEARCH, [f"--workdir={missing}", *OK], "does not exist", missing, code=1)
    assert not os.path.exists(missing)


def test_malformed_run_config(workdir):
    with open(os.path.join(workdir, "run_config.json"), "w") as f:
        f.write('{"space": ')
    check_fault(SEARCH, [f"--workdir={workdir}", *OK], "run_config.json", guarded=[workdir])


def test_workdir_without_checkpoint(workdir):
    shutil.rmtree(os.path.join(workdir, "checkpoints"))
    check_fault(SEARCH, [f"--workdir={workdir}", *OK], "no checkpoint", guarded=[workdir])


def test_search_folder_is_a_file(workdir):
    with open(search_folder(workdir), "w") as f:
        f.write("not a folder")
    check_fault(SEARCH, [f"--workdir={workdir}", *OK], "is a file, not a folder", guarded=[workdir])


def test_archs_folder_is_a_file(workdir):
    os.makedirs(search_folder(workdir))
    with open(search_folder(workdir, "archs"), "w") as f:
        f.write("not a folder")
    check_fault(SEARCH, [f"--workdir={workdir}", *OK], "archs", "not a folder", guarded=[workdir])


def test_state_file_is_a_folder(workdir):
    os.makedirs(search_folder(workdir, "state.json"))
    check_fault(
        SEARCH, [f"--workdir={workdir}", *OK], "state.json", "is a folder", guarded=[workdir]
    )


def test_malformed_search_state_is_refused_and_kept(workdir):
    os.makedirs(search_folder(workdir))
    with open(search_folder(workdir, "state.json"), "w") as f:
        json.dump({"version": 99, "candidates": {}}, f)
    check_fault(SEARCH, [f"--workdir={workdir}", *OK], "not a search state", guarded=[workdir])


def test_budget_below_every_network(workdir):
    args = [f"--workdir={workdir}", "--budgets=10", "--num_val_images=20"]
    check_fault(SEARCH, args, "budget 10", "impossible", guarded=[workdir])


def test_budget_that_is_not_a_number(workdir):
    args = [f"--workdir={workdir}", "--budgets=2e6,lots"]
    check_fault(SEARCH, args, "'lots' is not a number", guarded=[workdir])


@pytest.mark.parametrize(
    "flag, needle",
    [
        ("--batch_size=100000", "batch_size"),  # would exhaust memory: refused
        ("--num_val_images=1", "num_val_images"),  # the cross-fit needs two halves
        ("--mode=fast", "mode"),
        ("--population=0", "population"),
        ("--predictor=svm", "predictor"),
        ("--min_predictor_tau=2", "min_predictor_tau"),
        ("--inner_generations=-1", "inner_generations"),
        ("--cost=flops", "cost"),
    ],
)
def test_flag_out_of_range(workdir, flag, needle):
    check_fault(SEARCH, [f"--workdir={workdir}", *OK, flag], needle, guarded=[workdir], code=2)


def test_workdir_held_by_another_program(workdir):
    # This test's own process is alive: its lock is not stale.
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "program": "train",
        "started": "2026-11-30 12:00:00",
    }
    with open(os.path.join(workdir, ".lock"), "w") as f:
        json.dump(holder, f)
    line = check_fault(SEARCH, [f"--workdir={workdir}", *OK], "in use by train", guarded=[workdir])
    assert f"pid {os.getpid()}" in line


def test_checkpoint_of_another_space_gives_one_line_and_no_warnings(trained_workdir):
    # The run config says fashion_mnist; the checkpoint holds a tiny supernet. TensorFlow
    # would follow the error with a warning per unrestored variable (issue 19, finding 7).
    from enas4d_tf.space import SearchSpace

    path = os.path.join(trained_workdir, "run_config.json")
    with open(path) as f:
        run_config = json.load(f)
    run_config["space"] = SearchSpace.preset("fashion_mnist").to_dict()
    with open(path, "w") as f:
        json.dump(run_config, f)
    args = [f"--workdir={trained_workdir}", *OK]
    check_fault(SEARCH, args, "does not match", guarded=[trained_workdir])


@pytest.mark.slow
def test_non_finite_weights_are_refused(trained_workdir):
    import tensorflow as tf

    from enas4d_tf.workdir import load_supernet

    net, _ = load_supernet(trained_workdir)
    gamma = net.batch_norms()[0].gamma
    gamma.assign(np.full(gamma.shape, np.nan, np.float32))
    folder = os.path.join(trained_workdir, "checkpoints")
    tf.train.CheckpointManager(tf.train.Checkpoint(model=net), folder, max_to_keep=1).save()
    args = [f"--workdir={trained_workdir}", *OK]
    check_fault(SEARCH, args, "non-finite", guarded=[trained_workdir])


@pytest.mark.slow
def test_corrupt_checkpoint(trained_workdir):
    folder = os.path.join(trained_workdir, "checkpoints")
    (data,) = [n for n in os.listdir(folder) if n.startswith("ckpt-1.data")]
    with open(os.path.join(folder, data), "r+b") as f:
        f.truncate(100)
    args = [f"--workdir={trained_workdir}", *OK]
    check_fault(SEARCH, args, "checkpoint", guarded=[trained_workdir])


# --cost=latency: the table is read and checked before TensorFlow (each case ~1 s).
LATENCY = ["--population=2", "--generations=1", "--num_val_images=20", "--cost=latency"]


def latency_case(workdir, tmp_path, budgets="0.3", **table):
    from tests.search.fakes import write_fake_table

    path = write_fake_table(tmp_path / "table.json", **table)
    return [f"--workdir={workdir}", *LATENCY, f"--budgets={budgets}", f"--latency_table={path}"]


def test_latency_cost_without_a_table(workdir):
    args = [f"--workdir={workdir}", *LATENCY, "--budgets=0.3"]
    check_fault(SEARCH, args, "--cost=latency needs --latency_table", guarded=[workdir])


def test_latency_table_without_latency_cost(workdir, tmp_path):
    args = [f"--workdir={workdir}", *OK, f"--latency_table={tmp_path / 'table.json'}"]
    check_fault(SEARCH, args, "only with --cost=latency", guarded=[workdir])


def test_latency_table_that_does_not_exist(workdir, tmp_path):
    missing = str(tmp_path / "none.json")
    args = [f"--workdir={workdir}", *LATENCY, "--budgets=0.3", f"--latency_table={missing}"]
    check_fault(SEARCH, args, missing, "not found", guarded=[workdir])


def test_corrupt_latency_table(workdir, tmp_path):
    args = latency_case(workdir, tmp_path)
    path = args[-1].split("=", 1)[1]
    with open(path, "r+") as f:
        f.truncate(200)
    check_fault(SEARCH, args, path, guarded=[workdir, path])


def test_latency_table_of_another_space(workdir, tmp_path):
    args = latency_case(workdir, tmp_path, preset="fashion_mnist")
    check_fault(SEARCH, args, "search space 'fashion_mnist'", "not 'tiny'", guarded=[workdir])


def test_latency_table_lacking_a_part(workdir, tmp_path):
    args = latency_case(workdir, tmp_path, drop=1)
    check_fault(SEARCH, args, "lacks 1 part", "tools.latency_table", guarded=[workdir])


def test_latency_budget_given_in_macs(workdir, tmp_path):
    args = latency_case(workdir, tmp_path, budgets="1e6")
    check_fault(SEARCH, args, "budgets are in ms, not MACs", guarded=[workdir])


def test_latency_budget_below_every_network(workdir, tmp_path):
    args = latency_case(workdir, tmp_path, budgets="0.01")
    check_fault(SEARCH, args, "budget 0.01 ms is impossible", guarded=[workdir])
