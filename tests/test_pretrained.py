"""Released supernets: made from a workdir, checked by sha256, copied, loaded by name."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from enas4d_tf import pretrained
from enas4d_tf.errors import WorkdirError
from enas4d_tf.workdir import load_supernet
from tests.helpers import REPO, make_tiny_workdir


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    workdir = str(tmp_path_factory.mktemp("run"))
    _, net = make_tiny_workdir(workdir, bn_seed=3)
    info = pretrained.make_release(
        workdir, str(root / "tiny_demo"), {"command": "made by a test", "step": 7}
    )
    return str(root), net, info


def test_a_release_holds_the_weights_and_no_optimizer_state(release):
    root, net, info = release
    assert info["command"] == "made by a test"
    assert set(info["sha256"]) == {
        "run_config.json",
        "checkpoints/checkpoint",
        "checkpoints/ckpt-7.index",
        "checkpoints/ckpt-7.data-00000-of-00001",
    }
    assert pretrained.release_names(root) == ["tiny_demo"]
    loaded, config = pretrained.load_pretrained("tiny_demo", root)
    for a, b in zip(net.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(WorkdirError, match="never overwritten"):
        pretrained.make_release("unused", os.path.join(root, "tiny_demo"), {})


def test_pretrained_names_load_where_a_workdir_is_read(release, monkeypatch):
    root, net, _ = release
    monkeypatch.setattr(pretrained, "RELEASES_DIR", root)
    loaded, _ = load_supernet("pretrained:tiny_demo")
    np.testing.assert_array_equal(net.get_weights()[0], loaded.get_weights()[0])
    with pytest.raises(WorkdirError, match="no released supernet named 'other'; released: tiny"):
        load_supernet("pretrained:other")


def test_a_changed_release_file_is_refused(release, tmp_path):
    root, _, _ = release
    import shutil

    copy_root = tmp_path / "released"
    shutil.copytree(root, copy_root)
    data = copy_root / "tiny_demo" / "checkpoints" / "ckpt-7.data-00000-of-00001"
    good = data.read_bytes()
    raw = bytearray(good)
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(WorkdirError, match="does not match its sha256"):
        pretrained.release_dir("tiny_demo", str(copy_root))
    data.write_bytes(good)
    (copy_root / "tiny_demo" / "run_config.json").unlink()
    with pytest.raises(WorkdirError, match="lacks run_config.json"):
        pretrained.release_dir("tiny_demo", str(copy_root))


def test_copy_into_a_workdir_then_load_it_as_any_workdir(release, tmp_path):
    root, net, _ = release
    workdir = pretrained.copy_release("tiny_demo", str(tmp_path / "fm"), root)
    loaded, _ = load_supernet(workdir)
    np.testing.assert_array_equal(net.get_weights()[-1], loaded.get_weights()[-1])
    # A workdir with anything in it is never written.
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(WorkdirError, match="not an empty folder"):
        pretrained.copy_release("tiny_demo", str(busy), root)
    assert os.listdir(busy) == ["notes.txt"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp_release_")]


def test_tool_refuses_an_unknown_release_in_one_line(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "tools.pretrained", "--name=nope", f"--workdir={tmp_path}/w"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert (
        run.stderr.strip().splitlines() == [run.stderr.strip()]
        and "no released supernet named 'nope'" in run.stderr
    )
    assert not os.path.exists(tmp_path / "w")


def test_copy_into_a_path_under_a_file_is_one_error(release, tmp_path):
    root, _, _ = release
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(WorkdirError, match="cannot copy the release into"):
        pretrained.copy_release("tiny_demo", str(blocker / "wd"), root)
    assert blocker.read_text() == "x"


def test_demo_refuses_a_missing_release_before_training(tmp_path):
    env = dict(os.environ, ENAS4D_RELEASES_DIR=str(tmp_path / "none"))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.demo",
            "--pretrained=fashion_mnist",
            f"--workdir={tmp_path}/d",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert "demo: error: no released supernet named 'fashion_mnist'" in run.stderr
    assert not os.path.exists(tmp_path / "d")  # nothing trained


def test_the_demo_does_not_take_a_trained_workdir_for_the_release(tmp_path):
    # The default demo stands on the committed release; a workdir the demo trained before
    # (no release.json) is refused before anything runs, and left as it was.
    workdir = tmp_path / "demo"
    workdir.mkdir()
    (workdir / "run_config.json").write_text("{}")
    run = subprocess.run(
        [sys.executable, "-m", "tools.demo", f"--workdir={workdir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert "holds a supernet the demo trained, not the release 'fashion_mnist_v2'" in run.stderr
    assert "Traceback" not in run.stderr
    assert sorted(os.listdir(workdir)) == ["run_config.json"]


def _make(workdir, releases, *extra):
    env = dict(os.environ, ENAS4D_RELEASES_DIR=str(releases))
    args = ["--name=fm", f"--make_from={workdir}", "--command=python -m tools.train ...", *extra]
    return subprocess.run(
        [sys.executable, "-m", "tools.pretrained", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )


def test_make_from_a_finished_workdir_records_how_it_was_made(tmp_path):
    import json

    from enas4d_tf.workdir import latest_checkpoint

    workdir = tmp_path / "run"
    make_tiny_workdir(str(workdir))
    releases = tmp_path / "released"
    summary = {"finished": False, "step": 5, "train_seconds": 600.0, "epochs_done": 1.0}
    (workdir / "train_summary.json").write_text(json.dumps(summary))
    run = _make(workdir, releases)
    assert run.returncode == 1 and "training has not finished" in run.stderr
    assert not releases.exists()  # nothing written
    evaluation = {"kind": "eval", "largest": {"accuracy": [0.5, 0.6]}}
    summary.update(finished=True, evaluations=[evaluation])
    (workdir / "train_summary.json").write_text(json.dumps(summary))
    benchmark = tmp_path / "bench.json"
    report = {
        "workdir": str(tmp_path / "other"),
        "checkpoint": latest_checkpoint(str(workdir)),
        "networks": [
            {"name": n, "test_accuracy": [0.7, a], "stage_macs": [1, 2]}
            for n, a in (("largest", 0.9321), ("smallest", 0.8812))
        ],
    }
    benchmark.write_text(json.dumps(report))
    run = _make(workdir, releases, f"--benchmark={benchmark}")  # of another workdir
    assert run.returncode == 1 and "measures" in run.stderr and not releases.exists()
    report["workdir"] = str(workdir)
    benchmark.write_text(json.dumps(report))
    run = _make(workdir, releases, f"--benchmark={benchmark}")
    assert run.returncode == 0, run.stderr
    info = pretrained.release_info("fm", str(releases))
    assert info["command"] == "python -m tools.train ..." and info["step"] == 5
    assert info["validation"] == evaluation and info["training"]["train_seconds"] == 600.0
    assert info["test"]["largest"]["accuracy"] == [0.7, 0.9321]
    assert "10 min of training" in info["summary"] and "largest 93.21%" in info["summary"]
    assert re.fullmatch(r"[0-9a-f]{40}(\+changes)?", info["commit"]), info["commit"]
    pretrained.release_dir("fm", str(releases))  # its sha256 sums check
    run = _make(workdir, releases, f"--benchmark={benchmark}")  # never overwritten
    assert run.returncode == 1 and "never overwritten" in run.stderr


def test_provenance_refuses_a_malformed_summary_or_benchmark(tmp_path):
    import json

    (tmp_path / "train_summary.json").write_text(
        json.dumps({"finished": True, "step": 4, "train_seconds": 60.0})
    )
    info = pretrained.workdir_provenance(str(tmp_path), "cmd")
    assert info["test"] is None and info["step"] == 4 and "1 min" in info["summary"]
    for bad in ({"networks": [{"name": "largest"}]}, {"networks": None}, {"other": 1}):
        with pytest.raises(WorkdirError, match="not bench.train_benchmark's"):
            pretrained.workdir_provenance(str(tmp_path), "cmd", bad)
    (tmp_path / "train_summary.json").write_text(json.dumps({"finished": True, "step": "x"}))
    with pytest.raises(WorkdirError, match="not a number"):
        pretrained.workdir_provenance(str(tmp_path), "cmd")


def test_a_copied_release_is_a_finished_training_workdir(tmp_path):
    """The copy carries the training run's summary, so `tools.train` finds it finished and
    the claim benchmark reads its training wall time, T, from it."""
    from bench.claim_choices import supernet_seconds
    from enas4d_tf.files import read_json

    info = pretrained.release_info("fashion_mnist")
    workdir = pretrained.copy_release("fashion_mnist", str(tmp_path / "fm"))
    summary = read_json(os.path.join(workdir, "train_summary.json"), WorkdirError, "summary")
    assert summary["finished"] is True and summary["released_as"] == "fashion_mnist"
    assert summary["step"] == info["step"] == summary["total_steps"]
    run_config = read_json(os.path.join(workdir, "run_config.json"), WorkdirError, "config")
    t = supernet_seconds(run_config, summary, [])
    assert t["seconds"] == round(info["training"]["train_seconds"], 1) > 3600


def test_weights_only_checkpoints_are_told_from_training_ones(release, tmp_path):
    import tensorflow as tf

    from enas4d_tf.train.guard import weights_only_step

    root, _, _ = release
    released = os.path.join(root, "tiny_demo", "checkpoints", "ckpt-7")
    assert weights_only_step(released) == 7
    step = tf.Variable(3, dtype=tf.int64)
    path = tf.train.Checkpoint(step=step, w=tf.Variable([1.0])).save(str(tmp_path / "t" / "ckpt"))
    assert weights_only_step(path) is None
    with pytest.raises(WorkdirError, match="corrupt or cannot be resumed"):
        weights_only_step(str(tmp_path / "missing" / "ckpt-1"))


def _train(workdir: str, config: str, *more: str) -> subprocess.CompletedProcess:
    """`tools.train --flagfile=configs/<config> --workdir=<workdir> <more>`, captured."""
    command = [sys.executable, "-m", "tools.train", f"--flagfile=configs/{config}"]
    command += [f"--workdir={workdir}", *more]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_train_on_a_copied_release_says_it_has_finished(tmp_path):
    """A release has no optimiser state; `tools.train` with the release's own config finds
    the run finished instead of failing to resume it."""
    workdir = pretrained.copy_release("fashion_mnist", str(tmp_path / "fm"))
    run = _train(workdir, "train_benchmark.cfg")
    assert run.returncode == 0, run.stderr[-2000:]
    step = pretrained.release_info("fashion_mnist")["step"]
    assert f"training already finished: step {step} of {step}" in run.stdout
    # Longer than the release was trained: there is no optimiser state to go on from.
    longer = _train(workdir, "train_benchmark.cfg", "--epochs=7")
    lines = [line for line in longer.stderr.strip().splitlines() if line.startswith("train:")]
    assert longer.returncode == 1 and len(lines) == 1, longer.stderr[-2000:]
    assert "holds weights only" in lines[0] and "cannot be resumed" in lines[0]
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == sorted(
        os.listdir(os.path.join(pretrained.release_dir("fashion_mnist"), "checkpoints"))
    )


def test_the_demo_does_not_search_another_release_as_its_default(tmp_path):
    # A runs/demo made when the default was `fashion_mnist` holds that supernet, its search
    # state and exports: the demo on `fashion_mnist_v2` refuses it in one line, untouched.
    workdir = pretrained.copy_release("fashion_mnist", str(tmp_path / "demo"))
    before = sorted(os.listdir(workdir))
    run = subprocess.run(
        [sys.executable, "-m", "tools.demo", f"--workdir={workdir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    lines = [line for line in run.stderr.strip().splitlines() if line.startswith("demo:")]
    assert run.returncode == 1 and len(lines) == 1, run.stderr[-2000:]
    assert "holds the release 'fashion_mnist', not 'fashion_mnist_v2'" in lines[0]
    assert "--pretrained=fashion_mnist to search it" in lines[0]
    assert sorted(os.listdir(workdir)) == before
    assert not os.path.exists(os.path.join(workdir, "train_watch"))


def test_a_workdir_names_the_release_it_holds_a_copy_of(tmp_path):
    """`held_release` (what the demo checks before it searches a workdir): each copy is
    told by its sha256 sums; a changed copy, a trained workdir and an empty folder hold
    none."""
    for name in ("fashion_mnist", "fashion_mnist_v2"):
        workdir = pretrained.copy_release(name, str(tmp_path / name))
        assert pretrained.held_release(workdir) == name
    info = json.loads((tmp_path / "fashion_mnist_v2" / "release.json").read_text())
    info["sha256"]["run_config.json"] = "0" * 64  # as a re-made release would differ
    (tmp_path / "fashion_mnist_v2" / "release.json").write_text(json.dumps(info))
    assert pretrained.held_release(str(tmp_path / "fashion_mnist_v2")) is None
    assert pretrained.held_release(str(tmp_path / "nothing")) is None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "release.json").write_text("{not json")
    assert pretrained.held_release(str(tmp_path / "broken")) is None


def test_v2_config_is_the_benchmark_config_with_a_90_minute_budget():
    """configs/train_benchmark_90min.cfg names fashion_mnist_v2's recipe: the benchmark
    config's flags (epochs aside), and the budget that fitted its 13 epochs."""
    from bench.claim_choices import parse_flagfile

    base = parse_flagfile(os.path.join(REPO, "configs", "train_benchmark.cfg"))
    v2 = parse_flagfile(os.path.join(REPO, "configs", "train_benchmark_90min.cfg"))
    budget = {"max_train_minutes": "90", "fit_epochs_to_budget": "true", "epochs": "200"}
    assert v2 == {**{k: v for k, v in base.items() if k != "epochs"}, **budget}
    with open(os.path.join(pretrained.release_dir("fashion_mnist_v2"), "run_config.json")) as f:
        train = json.load(f)["train"]
    assert train["max_train_minutes"] == 90.0 and train["fit_epochs_to_budget"] is True


def test_v2_is_finished_under_its_own_config_and_refused_under_another(tmp_path):
    """The claim benchmark runs `tools.train` on its supernet first: on a copy of
    fashion_mnist_v2 with the v2 config it has finished; with the 6-epoch config (no
    budget) it is refused in one line naming the settings that differ."""
    workdir = pretrained.copy_release("fashion_mnist_v2", str(tmp_path / "v2"))
    run = _train(workdir, "train_benchmark_90min.cfg")
    assert run.returncode == 0, run.stderr[-2000:]
    step = pretrained.release_info("fashion_mnist_v2")["step"]
    assert f"training already finished: step {step} of {step}" in run.stdout
    other = _train(workdir, "train_benchmark.cfg")
    lines = [line for line in other.stderr.strip().splitlines() if line.startswith("train:")]
    assert other.returncode == 1 and len(lines) == 1, other.stderr[-2000:]
    assert "max_train_minutes" in lines[0] and "fit_epochs_to_budget" in lines[0]
