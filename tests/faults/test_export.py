"""The fault matrix of tools.export: each case ends with one stderr line naming the problem,
the expected exit code, and the files it guards unchanged (tests/faults/harness.py): the
workdir (checkpoint, run config, search files) and any export folder already there.

Every case but one is refused before TensorFlow is imported (flags, workdir, lock,
architecture files, output locations, --cost=latency's tables) and takes about a second. The non-finite supernet
needs its checkpoint read (TensorFlow, a few seconds); it is the only end-to-end cover of
the export's NaN guard, so it stays in the fast suite.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import enas4d_tf as e4
from enas4d_tf import exit_policy
from enas4d_tf.export import formats
from tests.faults.harness import check_fault
from tests.helpers import make_tiny_workdir

ARCH_SEED = 5


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny workdir with one search architecture file, and a copy whose weights are NaN."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("export_faults")
    workdir = str(root / "work")
    space, net = make_tiny_workdir(workdir, bn_seed=1)
    arch = space.sample(seed=ARCH_SEED)
    result = exit_policy.PolicyResult(0.5, [0.5, 0.3, 0.2], 1.0, [0.6, 0.45, 0.0])
    record = formats.arch_file_record("net0", "dynamic", arch, result, e4.stage_macs(space, arch))
    formats.write_arch_file(os.path.join(workdir, "search", "archs", "net0.json"), record)
    # A diverged run: one variable NaN, the rest as trained.
    nan_workdir = str(root / "nan")
    os.makedirs(nan_workdir)
    shutil.copy(os.path.join(workdir, "run_config.json"), nan_workdir)
    variable = net.weights[0]
    variable.assign(np.full(variable.shape, np.nan, np.float32))
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=net), os.path.join(nan_workdir, "checkpoints"), max_to_keep=1
    )
    manager.save()
    return {"root": root, "workdir": workdir, "nan": nan_workdir, "space": space, "arch": arch}


@pytest.fixture
def work(base, tmp_path):
    """A fresh copy of the workdir, and an --out folder holding a finished export to guard."""
    workdir = str(tmp_path / "work")
    shutil.copytree(base["workdir"], workdir)
    out = tmp_path / "out"
    (out / "net0").mkdir(parents=True)
    (out / "net0" / "manifest.json").write_text('{"an": "earlier export"}')
    return {"workdir": workdir, "out": str(out), "tmp": tmp_path}


def _arch_file(work, name, data):
    path = os.path.join(str(work["tmp"]), name)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def _net0(work):
    return os.path.join(work["workdir"], "search", "archs", "net0.json")


def _check(work, args, *needles, code=1):
    guarded = [work["workdir"], work["out"]]
    return check_fault("tools.export", args, *needles, guarded=guarded, code=code)


def test_no_workdir_flag(work):
    _check(work, [f"--arch={_net0(work)}"], "--workdir is required", code=2)


def test_both_arch_and_from_search(work):
    args = [f"--workdir={work['workdir']}", f"--arch={_net0(work)}", "--from_search"]
    _check(work, args, "exactly one of", code=2)


def test_unknown_quantization(work):
    args = [f"--workdir={work['workdir']}", "--from_search", "--quantization=float32,int4"]
    _check(work, args, "unknown quantisation", "int4", code=2)


def test_missing_workdir(work):
    missing = os.path.join(str(work["tmp"]), "nowhere")
    _check(work, [f"--workdir={missing}", f"--arch={_net0(work)}"], "nowhere", "does not exist")


def test_malformed_run_config(work):
    with open(os.path.join(work["workdir"], "run_config.json"), "w") as f:
        f.write('{"space": ')
    args = [f"--workdir={work['workdir']}", f"--arch={_net0(work)}", f"--out={work['out']}"]
    _check(work, args, "run_config.json", "malformed")


def test_missing_arch_file(work):
    args = [f"--workdir={work['workdir']}", "--arch=/nonexistent/a.json", f"--out={work['out']}"]
    _check(work, args, "/nonexistent/a.json", "does not exist")


def test_arch_of_another_space_is_one_line_without_checkpoint_warnings(work):
    other = e4.SearchSpace.preset("fashion_mnist").sample(seed=1).to_dict()
    path = _arch_file(work, "other.json", other)
    args = [f"--workdir={work['workdir']}", f"--arch={path}", f"--out={work['out']}"]
    _check(work, args, "other.json", "depth[0]")


def test_truncated_exit_out_of_range(work, base):
    with open(_net0(work)) as f:
        data = json.load(f)
    data.update(name="t", mode="static", exit=4, thresholds=[None, None, None, 0.0])
    path = _arch_file(work, "t.json", data)
    args = [f"--workdir={work['workdir']}", f"--arch={path}", f"--out={work['out']}"]
    _check(work, args, "t.json", "exit 4 is outside 1..3")


def test_nan_threshold_in_arch_file(work):
    with open(_net0(work)) as f:
        data = json.load(f)
    data["thresholds"] = [float("nan"), 0.45, 0.0]
    path = _arch_file(work, "nan.json", data)
    args = [f"--workdir={work['workdir']}", f"--arch={path}", f"--out={work['out']}"]
    _check(work, args, "nan.json", "threshold of exit 1")


def test_from_search_without_architecture_files(work):
    shutil.rmtree(os.path.join(work["workdir"], "search"))
    args = [f"--workdir={work['workdir']}", "--from_search", f"--out={work['out']}"]
    _check(work, args, "no architecture files", "tools/search.py")


def test_two_files_name_one_export(work):
    shutil.copy(_net0(work), os.path.join(work["workdir"], "search", "archs", "copy.json"))
    args = [f"--workdir={work['workdir']}", "--from_search", f"--out={work['out']}"]
    _check(work, args, "two architecture files", "net0")


def test_existing_export_folder_without_overwrite(work):
    args = [f"--workdir={work['workdir']}", f"--arch={_net0(work)}", f"--out={work['out']}"]
    _check(work, args, "net0 exists", "--overwrite")


def test_out_is_a_file(work):
    path = _arch_file(work, "a_file", {})
    args = [f"--workdir={work['workdir']}", f"--arch={_net0(work)}", f"--out={path}"]
    _check(work, args, "--out folder", "is a file")


def test_out_below_a_file(work):
    path = _arch_file(work, "a_file", {})
    out = os.path.join(path, "exports")
    args = [f"--workdir={work['workdir']}", f"--arch={_net0(work)}", f"--out={out}"]
    _check(work, args, "cannot be created", "is a file")


def test_export_target_is_a_file_even_with_overwrite(work):
    os.remove(os.path.join(work["out"], "net0", "manifest.json"))
    os.rmdir(os.path.join(work["out"], "net0"))
    with open(os.path.join(work["out"], "net0"), "w") as f:
        f.write("the user's file")
    args = [
        f"--workdir={work['workdir']}",
        f"--arch={_net0(work)}",
        f"--out={work['out']}",
        "--overwrite",
    ]
    _check(work, args, "net0", "not a folder")


def test_workdir_in_use(work):
    # A live process holds the lock: this test's own pid.
    lock = {"pid": os.getpid(), "host": os.uname().nodename, "program": "train", "started": "x"}
    with open(os.path.join(work["workdir"], ".lock"), "w") as f:
        json.dump(lock, f)
    out = os.path.join(work["out"], "new")
    args = [f"--workdir={work['workdir']}", f"--arch={_net0(work)}", f"--out={out}"]
    _check(work, args, "in use by train", f"pid {os.getpid()}")
    assert not os.path.exists(out)


# -- --cost=latency: the latency tables are read and checked before TensorFlow -------------


def latency_table(path, quantization="float32", preset="tiny", drop=None):
    """Writes a latency table of every part the `tiny` space needs (made-up times, in ms,
    that grow with the key's numbers), without the part `drop` when given."""
    from enas4d_tf.latency.coverage import space_keys
    from enas4d_tf.latency.table import LatencyTable, Target

    keys = sorted(space_keys(e4.SearchSpace.preset("tiny"), 10))
    entries = {k: 1e-3 * (1 + sum(map(ord, k)) % 7) for k in keys if k != drop}
    target = Target("host", "test", "made up", 1, quantization)
    LatencyTable(target, preset, 10, entries).save(str(path))
    return str(path)


def _latency(work, *tables, quantization="float32"):
    return [
        f"--workdir={work['workdir']}",
        f"--arch={_net0(work)}",
        f"--out={work['out']}/new",
        f"--quantization={quantization}",
        "--cost=latency",
        *([f"--latency_table={','.join(tables)}"] if tables else []),
    ]


def test_latency_table_without_latency_cost(work):
    table = latency_table(work["tmp"] / "t.json")
    args = [f"--workdir={work['workdir']}", f"--arch={_net0(work)}", f"--latency_table={table}"]
    _check(work, args, "--latency_table is read only with --cost=latency", code=2)


def test_latency_cost_without_a_table(work):
    _check(work, _latency(work), "--cost=latency needs --latency_table")


def test_missing_latency_table(work):
    _check(work, _latency(work, "/nonexistent/t.json"), "/nonexistent/t.json", "not found")


def test_latency_table_not_json(work):
    path = work["tmp"] / "t.json"
    path.write_text('{"format": ')
    _check(work, _latency(work, str(path)), "t.json", "JSON")


def test_no_latency_table_of_an_exported_quantization(work):
    table = latency_table(work["tmp"] / "t.json")
    args = _latency(work, table, quantization="float32,int8")
    _check(work, args, "no latency table of int8 graphs", "tables of: float32")


def test_two_latency_tables_of_one_quantization(work):
    a = latency_table(work["tmp"] / "a.json")
    b = latency_table(work["tmp"] / "b.json")
    _check(work, _latency(work, a, b), "a.json", "b.json", "both of float32")


def test_latency_table_of_another_space(work):
    table = latency_table(work["tmp"] / "t.json", preset="fashion_mnist")
    _check(work, _latency(work, table), "t.json", "search space 'fashion_mnist'")


def test_latency_table_lacking_a_part_the_network_needs(work, base):
    from enas4d_tf.latency.parts import stage_parts

    needed = stage_parts(base["space"], base["arch"], 1, 10)[0]
    table = latency_table(work["tmp"] / "t.json", drop=needed)
    _check(work, _latency(work, table), "network net0, float32 graphs", needed)


def test_non_finite_supernet_is_refused(base, work):
    workdir = os.path.join(str(work["tmp"]), "nan")
    shutil.copytree(base["nan"], workdir)
    args = [f"--workdir={workdir}", f"--arch={_net0(work)}", f"--out={work['out']}/new"]
    check_fault(
        "tools.export",
        args,
        "non-finite weights",
        guarded=[workdir, work["out"]],
        code=1,
    )


def test_latency_table_of_another_target_than_the_search_used(work):
    # The file's ms budget was measured on a phone; the table given is this host's.
    with open(_net0(work)) as f:
        record = json.load(f)
    record.update(
        cost="latency",
        budget_ms=1.0,
        cost_target={
            "kind": "android",
            "device": "Pixel 7",
            "runtime": "benchmark_model",
            "threads": 1,
            "quantization": "float32",
        },
    )
    arch = work["tmp"] / "phone.json"
    arch.write_text(json.dumps(record))
    table = latency_table(work["tmp"] / "t.json")
    args = _latency(work, table)
    args[1] = f"--arch={arch}"
    _check(work, args, "searched with the latencies of android 'Pixel 7'", "host 'test'")
