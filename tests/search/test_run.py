"""End-to-end tests of the search (enas4d_tf/search_lib.py, tools/search.py) on a tiny workdir.

The tool runs in subprocesses (its absl flags live in the global FLAGS, which other tools'
tests also use) through a small launcher that first replaces the data loader with one that
records every split asked for and fails on "test".
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import enas4d_tf as e4
from enas4d_tf import exit_policy as dynamic
from enas4d_tf.model.macs import stage_macs
from enas4d_tf.search import run as search_lib
from enas4d_tf.space.search_space import Arch
from tests.helpers import REPO, make_tiny_workdir

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
ARCH_FILE_KEYS = {
    "name",
    "mode",
    "arch",
    "thresholds",
    "stage_macs",
    "avg_macs",
    "val_accuracy",
    "exit_rates",
    "budget_macs",
}

LAUNCHER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from enas4d_tf import data

    real_load_arrays = data.load_arrays
    have_data = os.path.isdir(%(fashion)r)

    def guarded(name="fashion_mnist", split="validation", data_dir=None, max_examples=None):
        with open(os.environ["SPLIT_LOG"], "a") as f:
            f.write(split + "\\n")
        if split == "test":
            raise RuntimeError("the search opened the test split")
        if have_data:
            return real_load_arrays(name, split, data_dir, max_examples)
        # No Fashion-MNIST here: injected images, a different fixed set per split.
        rng = np.random.default_rng({"train": 1, "validation": 2}[split])
        n = max_examples or 1000
        return rng.normal(size=(n, 28, 28, 1)).astype("float32"), rng.integers(0, 10, n)

    def refuse(*args, **kwargs):
        raise RuntimeError("the search must load arrays, not tf.data pipelines")

    data.load_arrays = guarded
    data.make_dataset = refuse
    from absl import app
    from tools import search
    from tools._cli import flags_parser

    if "CASES" not in os.environ:
        sys.argv = ["search", *sys.argv[1:]]
        app.run(search.main, flags_parser=flags_parser("search"))
    else:
        # Several command lines in one process (one TensorFlow start-up), each as app.run
        # would run it: parse the flags, call main, record the exit code and stderr.
        import contextlib, io, json
        from absl import flags
        from absl.testing import flagsaver

        results = []
        for argv in json.loads(os.environ["CASES"]):
            err = io.StringIO()
            code = 0
            with flagsaver.flagsaver(), contextlib.redirect_stderr(err):
                flags.FLAGS.unparse_flags()
                try:
                    search.main(flags_parser("search")(["search", *argv]))
                except SystemExit as e:
                    code = e.code
            results.append({"code": code, "stderr": err.getvalue()})
        print("RESULTS " + json.dumps(results))
    """
) % {"fashion": FASHION_DIR}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A workdir of an untrained tiny supernet (BN statistics randomised so exits differ)."""
    path = str(tmp_path_factory.mktemp("workdir"))
    make_tiny_workdir(path, bn_seed=0)
    return path


def run_tool(args, tmp_path, cases=None):
    launcher = tmp_path / "launch_search.py"
    launcher.write_text(LAUNCHER)
    split_log = tmp_path / "splits.txt"
    env = dict(os.environ, SPLIT_LOG=str(split_log), TF_CPP_MIN_LOG_LEVEL="3")
    if cases is not None:
        env["CASES"] = json.dumps(cases)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, str(launcher), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    splits = split_log.read_text().split() if split_log.exists() else []
    return proc, splits


def tiny_costs():
    space = e4.SearchSpace.preset("tiny")
    return stage_macs(space, space.smallest()), stage_macs(space, space.largest())


SEARCH_ARGS = [
    "--population=4",
    "--generations=2",
    "--num_val_images=300",
    "--num_calib_images=150",
    "--batch_size=150",
    "--seed=3",
]


def test_search_tool_end_to_end_never_opens_the_test_split_and_continues(workdir, tmp_path):
    smallest, largest = tiny_costs()
    # One budget below every static network (dynamic only), one in the middle of the space.
    low = (smallest[0] + smallest[-1]) // 2
    mid = (smallest[-1] + largest[-1]) // 3
    args = [f"--workdir={workdir}", f"--budgets={low},{mid}", *SEARCH_ARGS]
    proc, splits = run_tool(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test" not in splits and set(splits) == {"validation", "train"}
    assert "[dynamic] generation 2/2" in proc.stdout
    assert "[static] generation 2/2" in proc.stdout
    assert "static skips it" in proc.stdout  # the low budget is below every static network

    folder = os.path.join(workdir, "search")
    with open(os.path.join(folder, "pareto.json")) as f:
        report = json.load(f)
    assert report["stats"]["measured_this_run"] > 0
    with open(os.path.join(folder, "pareto.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    space = e4.SearchSpace.preset("tiny")
    names = sorted(os.listdir(os.path.join(folder, "archs")))
    assert names == sorted(f"{e['name']}.json" for e in report["chosen"])
    assert {"dynamic_" + e4_format(low) + ".json", "dynamic_" + e4_format(mid) + ".json"} <= set(
        names
    )
    assert "static_" + e4_format(mid) + ".json" in names
    for name in names:
        with open(os.path.join(folder, "archs", name)) as f:
            entry = json.load(f)
        assert set(entry) == ARCH_FILE_KEYS
        arch = Arch.from_dict(entry["arch"])
        space.validate(arch)
        assert entry["stage_macs"] == stage_macs(space, arch, num_classes=10)
        assert entry["thresholds"][-1] == 0.0 and len(entry["thresholds"]) == 3
        assert entry["avg_macs"] <= entry["budget_macs"]
        assert sum(entry["exit_rates"]) == pytest.approx(1.0)
        assert entry["avg_macs"] == pytest.approx(
            dynamic.average_macs(entry["exit_rates"], entry["stage_macs"])
        )
        if entry["mode"] == "static":
            assert entry["thresholds"] == [None, None, 0.0]
            assert entry["exit_rates"] == [0.0, 0.0, 1.0]
    for mode in ("dynamic", "static"):
        front = report["fronts"][mode]
        costs = [p["avg_macs"] for p in front]
        accuracies = [p["val_accuracy"] for p in front]
        assert costs == sorted(costs) and accuracies == sorted(accuracies)

    with open(os.path.join(folder, "state.json")) as f:
        state = json.load(f)
    measured = len(state["candidates"])

    # The same command again: continues from the state and measures nothing.
    proc2, splits2 = run_tool(args, tmp_path)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    assert "test" not in splits2
    assert "0 candidates measured this run" in proc2.stdout
    with open(os.path.join(folder, "pareto.json")) as f:
        report2 = json.load(f)
    assert report2["stats"]["measured_this_run"] == 0
    assert report2["chosen"] == report["chosen"]
    assert report2["fronts"] == report["fronts"]
    with open(os.path.join(folder, "state.json")) as f:
        assert len(json.load(f)["candidates"]) == measured

    # A longer dynamic search with the same seed replays its first two generations from the
    # state and measures only (at most) the third: 2 budgets x ceil(4 / 2) candidates.
    proc3, _ = run_tool([*args, "--generations=3", "--mode=dynamic"], tmp_path)
    assert proc3.returncode == 0, proc3.stderr[-3000:]
    with open(os.path.join(folder, "pareto.json")) as f:
        report3 = json.load(f)
    assert 0 < report3["stats"]["measured_this_run"] <= 4
    assert report3["stats"]["known_candidates"] == measured + report3["stats"]["measured_this_run"]


def e4_format(macs):
    from enas4d_tf.search.evolution import format_macs

    return format_macs(macs)


def test_recorded_metrics_match_a_fresh_measurement(workdir):
    """The chosen network's validation metrics are what a fresh BN-recalibrated run gives."""
    from enas4d_tf.evaluation import CandidateEvaluator
    from enas4d_tf.workdir import load_supernet

    net, _ = load_supernet(workdir)
    space = net.space
    rng = np.random.default_rng(0)
    images = rng.normal(size=(240, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 10, 240)
    calib = rng.normal(size=(120, 28, 28, 1)).astype(np.float32)
    evaluator = CandidateEvaluator(net, images, labels, calib, num_calib_images=120)
    arch = space.sample(seed=5)
    first = evaluator.measure(arch)
    evaluator.measure(space.largest())  # other statistics in between
    again = evaluator.measure(arch)
    np.testing.assert_allclose(first.split.confidence, again.split.confidence, rtol=1e-5)
    budget = (first.stage_macs[0] + first.stage_macs[-1]) / 2
    fit = first.fit(budget)
    assert fit.avg_macs <= budget
    replay = dynamic.evaluate_confidences(
        again.split.confidence, again.split.correct, again.stage_macs, fit.thresholds
    )
    assert replay.accuracy == pytest.approx(fit.accuracy, abs=1 / 240 + 1e-9)
    assert first.fit(first.stage_macs[0] - 1) is None


BAD_INPUTS = [
    (["--budgets=1e6"], 2, "--workdir is required"),
    (["--workdir=/nonexistent/dir", "--budgets=1e6"], 1, "does not exist"),
    (["--workdir={wd}", "--budgets=abc"], 1, "budget 'abc' is not a number"),
    (["--workdir={wd}", "--budgets=10"], 1, "is impossible"),
    (["--workdir={wd}", "--budgets={static_gap}", "--mode=static"], 1, "static network"),
    (["--workdir={wd}"], 1, "--budgets"),
    (["--workdir={wd}", "--budgets=1e6", "--pareto"], 1, "not both"),
    (["--workdir={wd}", "--budgets=1e6", "--population=0"], 2, "population"),
    (["--workdir={wd}", "--budgets=1e6", "--mutation_prob=2"], 2, "mutation_prob"),
    (["--workdir={wd}", "--budgets=1e6", "--mode=fast"], 2, "mode"),
    (["--workdir={no_ckpt}", "--budgets=1e5"], 1, "no checkpoint"),
]


def test_search_tool_bad_input_ends_with_one_line(workdir, tmp_path):
    smallest, _ = tiny_costs()
    static_gap = (smallest[0] + smallest[-1]) // 2  # dynamic can, static cannot
    no_ckpt = tmp_path / "no_ckpt"
    no_ckpt.mkdir()
    space = e4.SearchSpace.preset("tiny")
    (no_ckpt / "run_config.json").write_text(
        json.dumps({"space": space.to_dict(), "num_classes": 10, "dataset": "fashion_mnist"})
    )
    before = set(os.listdir(workdir))
    fill = {"wd": workdir, "static_gap": static_gap, "no_ckpt": no_ckpt}
    cases = [[a.format(**fill) for a in args] for args, _, _ in BAD_INPUTS]
    proc, splits = run_tool([], tmp_path, cases=cases)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULTS ")][-1]
    results = json.loads(line[len("RESULTS ") :])
    for (args, code, message), result in zip(BAD_INPUTS, results, strict=True):
        lines = result["stderr"].splitlines()
        assert result["code"] == code, (args, result)
        assert len(lines) == 1 and lines[0].startswith("search: error: "), (args, result)
        assert message in lines[0], (args, result)
    assert splits == []  # every case was refused before any data was loaded
    assert set(os.listdir(workdir)) - before == set()  # and wrote nothing


def test_search_config_and_budget_parsing():
    assert search_lib.parse_budgets(["2e6", "4000000"]) == (2e6, 4e6)
    for bad in (["x"], ["-1"], ["nan"], ["inf"]):
        with pytest.raises(search_lib.SearchError):
            search_lib.parse_budgets(bad)
    with pytest.raises(search_lib.SearchError, match="num_val_images"):
        search_lib.SearchConfig(budgets=(1e6,), num_val_images=0).validate()
    search_lib.SearchConfig(pareto=True).validate()


def test_pareto_budgets_span_the_space_and_are_feasible():
    space = e4.SearchSpace.preset("fashion_mnist")
    costs = search_lib._CostModel(space, 10)
    for mode, objective in (
        ("dynamic", search_lib.DynamicObjective(space, costs)),
        ("static", search_lib.StaticObjective(space, costs)),
    ):
        grid = search_lib.pareto_budgets(costs, mode, 6)
        assert len(grid) == 6 and grid == sorted(grid)
        for b in grid:
            objective.check_budget(b)  # raises when infeasible
        assert grid[-1] <= costs.largest[-1]
        assert grid[-1] > 0.9 * costs.largest[-1]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason="needs Fashion-MNIST's test split")
def test_search_benchmark_runs_on_a_tiny_workdir(workdir):
    smallest, largest = tiny_costs()
    budgets = f"{(smallest[0] + smallest[-1]) // 2},{(smallest[-1] + largest[-1]) // 3}"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [
            sys.executable,
            "bench/search_benchmark.py",
            f"--workdir={workdir}",
            f"--budgets={budgets}",
            *SEARCH_ARGS,
            "--num_test_images=300",
            "--budget_points=3",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(workdir, "search", "benchmark.json")) as f:
        results = json.load(f)
    assert results["num_test_images"] == 300
    reference = results["static_reference"]
    # The reference is the static front's most accurate network on validation.
    assert reference in results["static_front"]
    assert reference["val_accuracy"] == max(r["val_accuracy"] for r in results["static_front"])
    for method in ("greedy", "geometric"):
        ratio = results[method]["test_curve_ratio"]
        point = results[method]["test_curve"]
        if point is not None:
            assert point["test_accuracy"] >= reference["test_accuracy"]
            assert ratio == pytest.approx(point["test_avg_macs"] / reference["macs"])
    assert "## Static front" in proc.stdout
