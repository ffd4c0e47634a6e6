"""End-to-end tests of the search (enas4d_tf/search/, tools/search.py) on a tiny workdir.

The library is run in this process on images handed to `run_search(data=...)`, or through
its own loader with the data loader replaced by one that records every split asked for and
fails on "test". The command line runs in subprocesses (its absl flags live in the global
FLAGS, which other tools' tests also use).
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import enas4d_tf as e4
from enas4d_tf import data as data_lib
from enas4d_tf import exit_policy
from enas4d_tf.data.info import DatasetInfo
from enas4d_tf.errors import SearchError
from enas4d_tf.export import formats
from enas4d_tf.model.macs import stage_macs, truncated_macs
from enas4d_tf.search import objectives
from enas4d_tf.search.config import SearchConfig, parse_budgets
from enas4d_tf.search.evolution import format_macs
from enas4d_tf.search.run import SearchData, run_search
from enas4d_tf.space import Arch
from enas4d_tf.workdir import Workdir
from tests.helpers import REPO, make_tiny_workdir

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
ARCH_FILE_KEYS = {
    "format_version",
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

# Runs several command lines of tools/search.py in one process (one TensorFlow start-up),
# each as app.run would run it, with a data loader that records the splits asked for.
LAUNCHER = textwrap.dedent(
    """
    import contextlib, io, json, os
    from absl import flags
    from absl.testing import flagsaver
    from enas4d_tf import data

    def guarded(name="fashion_mnist", split="validation", data_dir=None, max_examples=None):
        with open(os.environ["SPLIT_LOG"], "a") as f:
            f.write(split + "\\n")
        raise RuntimeError("the search loaded data for a command line it should refuse")

    data.load_arrays = guarded
    from tools import search
    from tools._cli import flags_parser

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
)


def synthetic_arrays(split: str, max_examples=None):
    """A fixed set of noise images and labels per split (no dataset needed)."""
    rng = np.random.default_rng({"train": 1, "validation": 2}[split])
    n = max_examples or 1000
    return rng.normal(size=(n, 28, 28, 1)).astype("float32"), rng.integers(0, 10, n)


def synthetic_data(config) -> SearchData:
    val_images, val_labels = synthetic_arrays("validation", config.num_val_images)
    calibration, _ = synthetic_arrays("train", config.num_calibration_images)
    return SearchData(val_images, val_labels, calibration)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A workdir of an untrained tiny supernet (BN statistics randomised so exits differ)."""
    path = str(tmp_path_factory.mktemp("workdir"))
    make_tiny_workdir(path, bn_seed=0)
    return path


def run_cases(cases, tmp_path):
    """Runs each argument list through tools/search.py's main in one subprocess."""
    launcher = tmp_path / "launch_search.py"
    launcher.write_text(LAUNCHER)
    split_log = tmp_path / "splits.txt"
    env = dict(os.environ, SPLIT_LOG=str(split_log), TF_CPP_MIN_LOG_LEVEL="3")
    env["CASES"] = json.dumps(cases)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, str(launcher)],
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


def small_config(**changes) -> SearchConfig:
    values = dict(
        population=4,
        generations=2,
        num_val_images=300,
        num_calibration_images=150,
        batch_size=150,
        seed=3,
        inner_population=16,
        inner_generations=4,
    )
    values.update(changes)
    return SearchConfig(**values)


SEARCH_ARGS = [
    "--population=4",
    "--generations=2",
    "--num_val_images=300",
    "--num_calibration_images=150",
    "--batch_size=150",
    "--seed=3",
    "--inner_population=16",
    "--inner_generations=4",
]


def read_json(path):
    with open(path) as f:
        return json.load(f)


def check_outputs(folder: str, report: dict, low: float, mid: float) -> None:
    """The architecture files are the chosen networks, readable by the exporter's reader."""
    space = e4.SearchSpace.preset("tiny")
    names = sorted(os.listdir(os.path.join(folder, "archs")))
    assert names == sorted(f"{e['name']}.json" for e in report["chosen"])
    expected = {f"dynamic_{format_macs(low)}.json", f"dynamic_{format_macs(mid)}.json"}
    assert expected <= set(names)
    # Static networks are named after the exit they are cut at.
    for budget in (low, mid):
        assert any(n.startswith(f"static_{format_macs(budget)}_exit") for n in names)
    for name in names:
        path = os.path.join(folder, "archs", name)
        entry = read_json(path)
        static = entry["mode"] == "static"
        assert entry["cost"] == "macs"
        assert set(entry) == ARCH_FILE_KEYS | {"cost"} | ({"exit"} if static else set())
        assert entry["format_version"] == formats.ARCH_FILE_VERSION
        spec = formats.read_arch_file(path, space)
        assert spec.name == entry["name"] and list(spec.thresholds) == entry["thresholds"]
        arch = Arch.from_dict(entry["arch"])
        space.validate(arch)
        assert entry["stage_macs"] == stage_macs(space, arch, num_classes=10)
        assert entry["thresholds"][-1] == 0.0
        assert entry["avg_macs"] <= entry["budget_macs"]
        assert sum(entry["exit_rates"]) == pytest.approx(1.0)
        if static:
            s = entry["exit"]
            assert (
                spec.exit == s
                and name == f"{entry['name']}.json"
                and name.endswith(f"_exit{s}.json")
            )
            assert entry["thresholds"] == [None] * (s - 1) + [0.0]
            assert entry["exit_rates"] == [0.0] * (s - 1) + [1.0] + [0.0] * (3 - s)
            assert entry["avg_macs"] == truncated_macs(space, arch, s, 10)
        else:
            assert len(entry["thresholds"]) == 3
            assert entry["avg_macs"] == pytest.approx(
                exit_policy.average_macs(entry["exit_rates"], entry["stage_macs"])
            )
    for mode in ("dynamic", "static"):
        front = report["fronts"][mode]
        costs = [p["ranking_avg_macs"] for p in front]
        accuracies = [p["ranking_accuracy"] for p in front]
        assert costs == sorted(costs) and accuracies == sorted(accuracies)
    with open(os.path.join(folder, "pareto.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_search_end_to_end_never_opens_the_test_split_and_continues(workdir, monkeypatch):
    smallest, largest = tiny_costs()
    # One budget below every static network (dynamic only), one in the middle of the space.
    low = (smallest[0] + smallest[-1]) // 2
    mid = (smallest[-1] + largest[-1]) // 3
    config = small_config(budgets=(float(low), float(mid)))
    paths = Workdir(workdir)

    # First run: through the search's own loader, which may ask for validation and train only.
    splits = []

    def guarded(name="fashion_mnist", split="validation", data_dir=None, max_examples=None):
        splits.append(split)
        if split == "test":
            raise RuntimeError("the search opened the test split")
        return synthetic_arrays(split, max_examples)

    def refuse(*args, **kwargs):
        raise RuntimeError("the search must load arrays, not tf.data pipelines")

    def info(name="fashion_mnist", data_dir=None):
        # The splits as this test's loader has them: 1000 validation, 150 training images.
        return DatasetInfo(name, 10, 1, 28, (0.5,), (0.5,), 150, 1000, 0)

    with monkeypatch.context() as patch:
        patch.setattr(data_lib, "load_arrays", guarded)
        patch.setattr(data_lib, "make_dataset", refuse)
        patch.setattr(data_lib, "dataset_info", info)
        lines = []
        # More calibration images than the train split holds: clamped, with a log line.
        asked = dataclasses.replace(config, num_calibration_images=10**9)
        first = run_search(workdir, asked, log=lines.append)
    assert sorted(splits) == ["train", "validation"]
    text = "\n".join(lines)
    assert "num_calibration_images = 1000000000 is more than the train split holds" in text
    assert "[dynamic] generation 2/2" in text and "[static] generation 2/2" in text
    report = read_json(paths.pareto_json)
    assert report["stats"]["measured_this_run"] == first.measured_this_run > 0
    assert report["config"]["num_calibration_images"] == 10**9  # as asked
    assert report["settings"]["num_calibration_images"] == 150  # as used
    check_outputs(paths.search, report, low, mid)
    measured = len(read_json(paths.search_state)["candidates"])

    # The same search on the same images handed in: continues, measures nothing.
    data = synthetic_data(config)
    lines = []
    second = run_search(workdir, config, log=lines.append, data=data)
    assert second.measured_this_run == 0
    assert "0 candidates measured this run" in lines[-1]
    report2 = read_json(paths.pareto_json)
    assert report2["chosen"] == report["chosen"]
    assert report2["fronts"] == report["fronts"]
    assert len(read_json(paths.search_state)["candidates"]) == measured

    # A longer dynamic search with the same seed replays its first two generations from the
    # state and measures only (at most) the third: 2 budgets x ceil(4 / 2) candidates.
    longer = dataclasses.replace(config, generations=3, mode="dynamic")
    run_search(workdir, longer, log=lambda line: None, data=data)
    report3 = read_json(paths.pareto_json)
    assert 0 < report3["stats"]["measured_this_run"] <= 4
    assert report3["stats"]["known_candidates"] == measured + report3["stats"]["measured_this_run"]

    # A state written before the flag was renamed (version 1, "num_calib_images") resumes:
    # nothing is measured again.
    state = read_json(paths.search_state)
    state["version"] = 1
    state["settings"]["num_calib_images"] = state["settings"].pop("num_calibration_images")
    with open(paths.search_state, "w") as f:
        json.dump(state, f)
    lines = []
    again = run_search(workdir, longer, log=lines.append, data=data)
    assert again.measured_this_run == 0
    assert not any("starting the search over" in line for line in lines)
    assert read_json(paths.pareto_json)["fronts"] == report3["fronts"]
    assert read_json(paths.search_state)["version"] == 2

    # Other settings: the state and its predictions are moved aside (named in the log), not
    # replaced, and the search starts over.
    before = read_json(paths.search_state)
    lines = []
    fewer = dataclasses.replace(config, num_val_images=200, mode="static", generations=1)
    run_search(workdir, fewer, log=lines.append, data=data)
    (moved,) = [line for line in lines if "measured with other settings" in line]
    assert "(num_val_images)" in moved
    folder = moved.split(" to ")[1].split(" and starting")[0]
    assert os.path.dirname(folder) == os.path.join(paths.search, "previous")
    assert read_json(os.path.join(folder, "state.json")) == before
    kept = os.listdir(os.path.join(folder, "predictions"))
    assert len(kept) == len(before["candidates"])
    assert read_json(paths.search_state)["settings"]["num_val_images"] == 200


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason="needs Fashion-MNIST")
def test_search_tool_runs_as_a_user_runs_it(tmp_path):
    folder = str(tmp_path / "workdir")
    make_tiny_workdir(folder, bn_seed=0)
    smallest, largest = tiny_costs()
    mid = (smallest[-1] + largest[-1]) // 3
    args = [
        f"--workdir={folder}",
        f"--budgets={mid}",
        "--mode=static",
        "--population=2",
        "--generations=1",
        "--num_val_images=200",
        "--num_calibration_images=100",
        "--batch_size=100",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-m", "tools.search", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "200 validation images, 100 calibration images" in proc.stdout
    assert "[static] generation 1/1" in proc.stdout
    paths = Workdir(folder)
    assert read_json(paths.pareto_json)["settings"]["num_calibration_images"] == 100
    assert not os.path.exists(paths.lock)  # the workdir lock was held and released
    archs = os.listdir(paths.search_archs)
    assert any(n.startswith(f"static_{format_macs(mid)}_exit") for n in archs), archs


def test_recorded_metrics_match_a_fresh_measurement(workdir, tmp_path):
    """What the search wrote for its chosen network (thresholds, validation accuracy, average
    MACs, exit rates) is what a fresh, independent measurement of that architecture gives."""
    import shutil

    from enas4d_tf.evaluation import CandidateEvaluator
    from enas4d_tf.workdir import load_supernet

    folder = str(tmp_path / "w")
    shutil.copytree(workdir, folder, ignore=shutil.ignore_patterns("search"))
    smallest, largest = tiny_costs()
    budget = float((smallest[-1] + largest[-1]) // 3)
    config = small_config(budgets=(budget,), mode="dynamic")
    data = synthetic_data(config)
    run_search(folder, config, log=lambda line: None, data=data)
    paths = Workdir(folder)
    (name,) = [n for n in os.listdir(paths.search_archs) if n.startswith("dynamic_")]
    with open(os.path.join(paths.search_archs, name)) as f:
        recorded = json.load(f)

    net, _ = load_supernet(folder)
    evaluator = CandidateEvaluator(
        net,
        data.val_images,
        data.val_labels,
        data.calibration_images,
        num_calibration_images=config.num_calibration_images,
        batch_size=config.batch_size,
    )
    evaluator.measure(
        net.space.largest()
    )  # other BN statistics first: recalibration must undo them
    fresh = evaluator.measure(Arch.from_dict(recorded["arch"]))
    fit = fresh.fit(budget)
    assert fit is not None and fit.avg_macs <= budget
    assert recorded["thresholds"] == pytest.approx(list(fit.thresholds), abs=1e-6)
    assert recorded["val_accuracy"] == pytest.approx(fit.accuracy, abs=1e-9)
    assert recorded["avg_macs"] == pytest.approx(fit.avg_macs, rel=1e-9)
    assert recorded["exit_rates"] == pytest.approx(list(fit.exit_rates), abs=1e-9)
    assert recorded["stage_macs"] == list(fresh.stage_macs)
    # The replayed policy on the fresh confidences gives the recorded accuracy again.
    replay = exit_policy.evaluate_confidences(
        fresh.split.confidence, fresh.split.correct, fresh.stage_macs, recorded["thresholds"]
    )
    assert replay.accuracy == pytest.approx(recorded["val_accuracy"], abs=1e-9)
    assert fresh.fit(fresh.stage_macs[0] - 1) is None


BAD_INPUTS = [
    (["--budgets=1e6"], 2, "--workdir is required"),
    (["--workdir=/nonexistent/dir", "--budgets=1e6"], 1, "does not exist"),
    (["--workdir={wd}", "--budgets=abc"], 1, "budget 'abc' is not a number"),
    (["--workdir={wd}", "--budgets=10"], 1, "is impossible"),
    (["--workdir={wd}", "--budgets=10", "--mode=static"], 1, "impossible for a static network"),
    (["--workdir={wd}", "--budgets=1e6", "--batch_size=100000"], 2, "batch_size"),
    (["--workdir={wd}"], 1, "--budgets"),
    (["--workdir={wd}", "--budgets=1e6", "--pareto"], 1, "not both"),
    (["--workdir={wd}", "--budgets=1e6", "--population=0"], 2, "population"),
    (["--workdir={wd}", "--budgets=1e6", "--mutation_prob=2"], 2, "mutation_prob"),
    (["--workdir={wd}", "--budgets=1e6", "--mode=fast"], 2, "mode"),
    (["--workdir={no_ckpt}", "--budgets=1e5"], 1, "no checkpoint"),
    # The flag's name before it was renamed --num_calibration_images.
    (["--workdir={wd}", "--budgets=1e6", "--num_calib_images=5"], 2, "num_calib_images"),
]


def test_search_tool_bad_input_ends_with_one_line(workdir, tmp_path):
    no_ckpt = tmp_path / "no_ckpt"
    no_ckpt.mkdir()
    space = e4.SearchSpace.preset("tiny")
    (no_ckpt / "run_config.json").write_text(
        json.dumps({"space": space.to_dict(), "num_classes": 10, "dataset": "fashion_mnist"})
    )
    before = set(os.listdir(workdir))
    fill = {"wd": workdir, "no_ckpt": no_ckpt}
    cases = [[a.format(**fill) for a in args] for args, _, _ in BAD_INPUTS]
    proc, splits = run_cases(cases, tmp_path)
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
    assert parse_budgets(["2e6", "4000000"]) == (2e6, 4e6)
    for bad in (["x"], ["-1"], ["nan"], ["inf"]):
        with pytest.raises(SearchError):
            parse_budgets(bad)
    with pytest.raises(SearchError, match="num_val_images"):
        SearchConfig(budgets=(1e6,), num_val_images=1).validate()  # a cross-fit needs 2
    with pytest.raises(SearchError, match="batch_size"):
        SearchConfig(budgets=(1e6,), batch_size=10**5).validate()
    with pytest.raises(SearchError, match="num_calibration_images"):
        SearchConfig(budgets=(1e6,), num_calibration_images=0).validate()
    SearchConfig(pareto=True).validate()


def test_images_per_pass_bound_the_memory_of_a_forward_pass_in_every_space():
    from enas4d_tf.search.run import MAX_PIXELS_PER_PASS, images_per_pass

    lines = []
    fashion = e4.SearchSpace.preset("fashion_mnist")
    assert images_per_pass(fashion, 500, lines.append) == 500 and lines == []
    assert images_per_pass(fashion, 4096, lines.append) == 4096  # 32x32: the measured bound
    imagenet = e4.SearchSpace.preset("imagenet_mbv3")
    # 224x224 images: 4096 * 32 * 32 / (224 * 224) = 83.6 images at most.
    assert images_per_pass(imagenet, 500, lines.append) == 83
    assert 83 * 224 * 224 <= MAX_PIXELS_PER_PASS < 84 * 224 * 224
    assert lines == [
        "batch_size = 500 images of 224x224 would exhaust memory; using 83 images per forward pass"
    ]


def test_pareto_budgets_span_the_space_and_are_feasible():
    space = e4.SearchSpace.preset("fashion_mnist")
    costs = objectives.CostModel(space, 10)
    grid = objectives.pareto_budgets(costs, 6)
    assert len(grid) == 6 and grid == sorted(grid)
    for objective in objectives.make_objectives(costs, 3.0).values():
        for b in grid:
            objective.check_budget(b)  # raises when infeasible
    assert grid[0] >= (costs.smallest[0] * costs.smallest[-1]) ** 0.5
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
            "-m",
            "bench.search_benchmark",
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


def test_latency_search_keeps_average_latency_on_validation_within_budget(workdir, tmp_path):
    from enas4d_tf.latency.model import LatencyModel
    from tests.search.fakes import fake_table, write_fake_table

    space = e4.SearchSpace.preset("tiny")
    model = LatencyModel(fake_table(), space, 10)
    folder = str(tmp_path / "wd")
    shutil.copytree(workdir, folder, ignore=shutil.ignore_patterns("search"))
    table = write_fake_table(tmp_path / "table.json")
    smallest, largest = model.cumulative(space.smallest()), model.cumulative(space.largest())
    low, mid = round(smallest[-1] / 2, 3), round((smallest[-1] + largest[-1]) / 3, 3)
    config = small_config(cost="latency", latency_table=table, budgets=(low, mid))
    lines = []
    run_search(folder, config, log=lines.append, data=synthetic_data(config))
    paths = Workdir(folder)
    report, state = read_json(paths.pareto_json), read_json(paths.search_state)
    assert report["cost"]["kind"] == "latency" and report["cost"]["unit"] == "ms"
    assert report["cost"]["target"]["device"] == "fake"
    assert any("costs in ms" in line for line in lines)
    val_labels = synthetic_data(config).val_labels[:300]
    names = set()
    for entry in report["chosen"]:
        arch, budget = Arch.from_dict(entry["arch"]), entry["budget_ms"]
        names.add(entry["name"])
        assert entry["cost"] == "latency" and entry["budget_macs"] is None
        assert entry["name"].startswith(f"{entry['mode']}_{budget:.3g}ms")
        assert entry["stage_ms"] == pytest.approx(model.cumulative(arch))
        spec = formats.read_arch_file(paths.arch_file(entry["name"]), space)
        assert spec.search["cost"] == "latency" and spec.search["budget_ms"] == budget
        # Which table's ms these are, for the exporter to check.
        assert spec.search["cost_target"] == fake_table().target.to_dict()
        if entry["mode"] == "static":
            s = entry["exit"]
            assert entry["avg_ms"] == pytest.approx(model.truncated(arch)[s - 1])
            assert entry["avg_ms"] <= budget
            assert entry["avg_macs"] == truncated_macs(space, arch, s, 10)
            continue
        # The thresholds on the validation images, from the saved predictions (not the
        # search's bookkeeping): average latency from the table within the budget.
        saved = state["candidates"][entry["key"]]
        with np.load(os.path.join(paths.search, saved["predictions"])) as z:
            confidence, correct = z["confidence"], z["correct"]
        assert correct.shape == (3, len(val_labels))
        exits = exit_policy.exit_indices(confidence, entry["thresholds"])
        rates = np.bincount(exits, minlength=3) / len(val_labels)
        assert rates == pytest.approx(entry["exit_rates"])
        assert model.average(arch, rates) == pytest.approx(entry["avg_ms"])
        assert entry["avg_ms"] <= budget
        assert entry["avg_macs"] == pytest.approx(float(rates @ np.array(entry["stage_macs"])))
    assert {f"dynamic_{low:.3g}ms", f"dynamic_{mid:.3g}ms"} <= names
    for ref in report["references"].values():  # MACs and ms under their own keys
        arch = Arch.from_dict(ref["arch"])
        assert ref["truncated_macs"] == [truncated_macs(space, arch, s, 10) for s in (1, 2, 3)]
        assert ref["truncated_ms"] == pytest.approx(model.truncated(arch))
    # The predictor's quality per generation, in the report and the state: 2 modes x 2.
    # (The report leaves their CPU times to `stats`: a rerun rewrites the same report.)
    generations = report["generations"]
    assert len(generations) == len(state["generations"]) == 4
    for g, saved in zip(generations, state["generations"], strict=True):
        assert g["generation"] in (1, 2) and g["objective"] in ("dynamic", "static")
        assert "inner_cpu_seconds" not in g and "inner_cpu_seconds" in saved
        assert g["prospective_tau"] == saved["prospective_tau"]
        if g["generation"] == 2:
            assert g["predictor"]["model"] == saved["predictor"]["model"]
            assert g["predictor"]["held_out_tau"] == saved["predictor"]["held_out_tau"]
            assert "seconds" not in g["predictor"]
    assert report["stats"]["inner_cpu_seconds"] >= 0 and "predictor_seconds" in report["stats"]


def test_a_latency_margin_tightens_costs_but_not_the_pareto_grid():
    from enas4d_tf.latency.model import LatencyModel
    from tests.search.fakes import fake_table

    space = e4.SearchSpace.preset("tiny")
    plain = objectives.CostModel(space, 10, LatencyModel(fake_table(), space, 10))
    safe = objectives.CostModel(space, 10, LatencyModel(fake_table(), space, 10, margin=0.1))
    arch = space.sample(seed=3)
    assert safe(arch) == pytest.approx([1.1 * c for c in plain(arch)])
    assert safe.margin == pytest.approx(0.1) and plain.margin == 0.0
    assert "predictions x 1.100" in safe.origin()
    grid, tight = objectives.pareto_budgets(plain, 4), objectives.pareto_budgets(safe, 4)
    assert tight == pytest.approx(grid, rel=0.01)
    for objective in objectives.make_objectives(safe, 3.0).values():
        for b in tight:
            objective.check_budget(b)  # still feasible with the margin
