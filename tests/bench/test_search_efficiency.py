"""Tests of bench/search_efficiency.py: the hypervolume, the goal, fronts scored on the
validation half no search saw, bad flags and outputs refused in one line before any work,
and (slow) one whole `--smoke` run on a tiny workdir."""

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from bench import search_efficiency as eff
from enas4d_tf.exit_policy import ValidationSplit
from enas4d_tf.search.measurement import Measurement
from enas4d_tf.search.store import SearchStore
from enas4d_tf.space import SearchSpace
from enas4d_tf.workdir import Workdir
from tests.faults.harness import check_fault, run_program
from tests.helpers import make_tiny_workdir

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def test_hypervolume_by_hand():
    c_min, c_max = 1e3, 1e7  # u = log10(c_max / cost) / 4
    assert eff.hypervolume([(c_max, 0.9)], c_min, c_max) == 0.0  # at the reference cost
    assert eff.hypervolume([(c_min, 0.5)], c_min, c_max) == pytest.approx(0.5)
    assert eff.hypervolume([(10.0, 0.5)], c_min, c_max) == pytest.approx(0.5)  # clipped
    assert eff.hypervolume([(1e9, 0.9)], c_min, c_max) == 0.0  # costlier than c_max
    # (u=1, 0.4) and (u=0.5, 0.8): 0.5 * 0.4 + 0.5 * 0.8; a dominated point adds nothing.
    points = [(c_min, 0.4), (1e5, 0.8)]
    assert eff.hypervolume(points, c_min, c_max) == pytest.approx(0.6)
    assert eff.hypervolume([*points, (1e6, 0.7)], c_min, c_max) == pytest.approx(0.6)
    assert eff.hypervolume([], c_min, c_max) == 0.0


def test_hypervolume_batch_equals_hypervolume_row_by_row():
    rng = np.random.default_rng(3)
    c_min, c_max = 1e3, 1e7
    cost = 10 ** rng.uniform(2.5, 7.5, size=(6, 9))  # some clipped at either end
    accuracy = rng.uniform(0.5, 1.0, size=(6, 9))
    batch = eff.hypervolume_batch(cost, accuracy, c_min, c_max)
    for row in range(6):
        points = list(zip(cost[row], accuracy[row], strict=True))
        assert batch[row] == pytest.approx(eff.hypervolume(points, c_min, c_max))


def _bootstrap_bench(correct_by_key, costs_by_key, n_images=50, estimated_by_key=None):
    """A Bench stand-in: each key has per-image (cost, correct) rows of its points on half
    B and, optionally, their (cost, accuracy) estimates on half A."""

    class FakeBench:
        costs = SimpleNamespace(smallest=[100.0], largest=[1000.0])
        half_b = np.arange(n_images)

        def scored_images(self, key, budgets):
            del budgets
            return costs_by_key[key], correct_by_key[key]

        def scored(self, key, budgets):
            cost, correct = self.scored_images(key, budgets)
            return list(zip(cost.mean(1), correct.mean(1), strict=True))

        def estimated(self, key, budgets, seed):
            del budgets, seed
            return estimated_by_key[key]

    return FakeBench()


def test_a_front_chosen_on_the_search_half_is_scored_by_what_the_search_chose():
    """Two candidates at the same cost: A rates `a_best` higher, B rates `b_best` higher.
    A search returns `a_best`; choosing the front on B would score `b_best` instead, and a
    strategy that measured more such candidates would gain from B's noise alone."""
    n = 100
    costs = {k: np.full((1, n), 500.0) for k in ("a_best", "b_best")}
    correct = {"a_best": np.arange(n)[None] < 70, "b_best": np.arange(n)[None] < 90}
    estimated = {"a_best": [(500.0, 0.9)], "b_best": [(500.0, 0.8)]}
    bench = _bootstrap_bench(correct, costs, n, estimated)
    order = {"random": ["a_best", "b_best"], "old": ["b_best"], "new": ["a_best"]}
    on_a = eff.curves(bench, order, [1.0], step=1, chosen_on="search half")
    on_b = eff.curves(bench, order, [1.0], step=1, chosen_on="scoring half")
    u = np.log(1000.0 / 500.0) / np.log(1000.0 / 100.0)
    # Random measured both: chosen on A it keeps a_best (0.7 on B), chosen on B, b_best (0.9).
    assert on_a["random"][-1][1] == pytest.approx(u * 0.7)
    assert on_b["random"][-1][1] == pytest.approx(u * 0.9)
    # A strategy that measured only a_best scores the same as random on A's reading.
    assert on_a["new"][-1][1] == pytest.approx(on_a["random"][-1][1])
    assert on_b["new"][-1][1] < on_b["random"][-1][1]
    with pytest.raises(ValueError, match="chosen_on"):
        eff.chosen_rows([(1.0, 0.5)], [(1.0, 0.5)], "test half")
    # The bootstrap keeps A's choice in every resample: random's front is a_best's alone,
    # which the new search measured first. Two dominated candidates fill the counts.
    for k in ("c", "d"):
        costs[k] = np.full((1, n), 900.0)
        correct[k] = np.arange(n)[None] < 10
        estimated[k] = [(900.0, 0.1)]
    orders = {
        "random": ["b_best", "c", "a_best", "d"],
        "old": ["c", "d", "b_best", "a_best"],
        "new": ["a_best", "c", "d", "b_best"],
    }
    out = eff.bootstrap(bench, [orders], [1.0], 4, resamples=30, chosen_on="search half")
    hv = out["hypervolume"]
    assert hv["random@4"] == pytest.approx(hv["new@1"], abs=1e-12)
    assert out["goal_met_share"] == 1.0
    out = eff.bootstrap(bench, [orders], [1.0], 4, resamples=30, chosen_on="scoring half")
    assert out["goal_met_share"] == 0.0  # b_best is ahead on every resample of B


def test_a_reading_is_the_curves_and_bootstrap_of_its_choice():
    n = 100
    costs = {k: np.full((1, n), 500.0) for k in ("a_best", "b_best")}
    correct = {"a_best": np.arange(n)[None] < 70, "b_best": np.arange(n)[None] < 90}
    estimated = {"a_best": [(500.0, 0.9)], "b_best": [(500.0, 0.8)]}
    for k in ("c", "d"):  # dominated on both halves
        costs[k], correct[k], estimated[k] = (
            np.full((1, n), 900.0),
            np.zeros((1, n), bool),
            [(900.0, 0.1)],
        )
    bench = _bootstrap_bench(correct, costs, n, estimated)
    keys = ["a_best", "b_best", "c", "d"]
    orders = {"random": keys, "old": keys[::-1], "new": keys}
    settings = {"seeds": [0], "step": 1, "measurements": 4, "bootstrap": 10}
    u = np.log(1000.0 / 500.0) / np.log(1000.0 / 100.0)
    for chosen_on, accuracy in (("search half", 0.7), ("scoring half", 0.9)):
        out = eff.reading(bench, [orders], [1.0], settings, chosen_on)
        assert out["per_seed"] == [eff.curves(bench, orders, [1.0], 1, chosen_on, 0)]
        assert out["mean"]["random"][-1][1] == pytest.approx(u * accuracy)
        assert out["goal"]["random_hypervolume"] == pytest.approx(u * accuracy)
        assert set(out["bootstrap"]["hypervolume"]) == {"random@4", "old@4", "new@4", "new@1"}


def test_search_half_points_are_the_cross_fit_inside_half_a_aligned_with_half_b():
    space = SearchSpace.preset("tiny")
    rng = np.random.default_rng(5)
    n = 400
    confidence = rng.uniform(size=(3, n)).astype(np.float32)
    correct = rng.uniform(size=(3, n)) < np.array([[0.6], [0.7], [0.8]])
    full = Measurement(
        space.smallest(), [100, 200, 300], ValidationSplit.from_confidences(confidence, correct)
    )
    half_a, half_b = np.arange(0, n, 2), np.arange(1, n, 2)
    on_a = Measurement(
        full.arch,
        full.stage_macs,
        ValidationSplit.from_confidences(confidence[:, half_a], correct[:, half_a]),
    )
    budgets = [50.0, 150.0, 250.0]  # the first is below exit 1: no point
    estimated = eff.search_half_points(on_a, budgets, seed=3)
    assert len(estimated) == len(eff.held_out_points(full, on_a, half_b, budgets)) == 3
    assert estimated[0] == (300.0, pytest.approx(correct[2, half_a].mean()))
    for point, b in zip(estimated[1:], budgets[1:], strict=True):
        # The cross-fit of the search's own seed: the score the search ranked by.
        result = on_a.cross_fit(b, 3)
        assert point == (pytest.approx(result.avg_macs), pytest.approx(result.accuracy))
    other_seed = eff.search_half_points(on_a, budgets, seed=4)
    assert other_seed[0] == estimated[0] and other_seed[1:] != estimated[1:]
    # Not the fit on all of A, which scores the images it chose thresholds on.
    assert any(
        p[1] != pytest.approx(on_a.fit(b).accuracy)
        for p, b in zip(estimated[1:], budgets[1:], strict=True)
    )


def _eight_candidates(n: int, seed: int):
    """Keys, correct-per-image and the bench of 8 candidates of rising cost (100 .. 800),
    each right on about 80% of `n` images, independently."""
    rng = np.random.default_rng(seed)
    keys = [f"k{i}" for i in range(8)]
    costs = {k: np.full((1, n), 100.0 * (i + 1)) for i, k in enumerate(keys)}
    correct = {k: (rng.random((1, n)) < 0.8) for k in keys}
    return keys, correct, _bootstrap_bench(correct, costs, n)


def test_bootstrap_brackets_the_verdict_by_the_scoring_images():
    n = 400
    keys, correct, bench = _eight_candidates(n, seed=0)
    # The new search measured random's first candidates first: after 2 of 8 its front is
    # random's front after 2, and random's later candidates (costlier, no better) add little.
    orders = {"random": keys, "old": keys[::-1], "new": keys[:2] + keys[2:][::-1]}
    out = eff.bootstrap(bench, [orders], [1.0], 8, resamples=60, chosen_on="scoring half")
    hv = out["hypervolume"]
    assert set(hv) == {"random@8", "old@8", "new@8", "new@2"}
    # Same candidates, same front, on every resample.
    for label in ("old@8", "new@8"):
        assert hv[label] == pytest.approx(hv["random@8"], abs=1e-12)
    for q in hv.values():
        assert q["p05"] < q["p50"] < q["p95"]  # resampling moves the fronts
    assert out["goal_margin"]["p95"] <= 1e-12  # a subset of the points never scores more
    assert 0.0 <= out["goal_met_share"] < 1.0
    # A new search whose first two candidates are right on every image reaches it always.
    correct["k0"] = np.ones((1, n), bool)
    out = eff.bootstrap(bench, [orders], [1.0], 8, resamples=20, chosen_on="scoring half")
    assert out["goal_met_share"] == 1.0 and out["goal_margin"]["p05"] >= -1e-12


def test_a_new_search_screened_on_fewer_measurements_is_cut_and_labelled_by_them():
    settings = {"measurements": 8, "new_measurements": 4}
    assert eff.strategy_limits(settings) == {"random": 8, "old": 8, "new": 4}
    assert eff.strategy_limits({"measurements": 8, "new_measurements": 0})["new"] == 8
    n = 200
    keys, correct, bench = _eight_candidates(n, seed=1)
    orders = {"random": keys, "old": keys[::-1], "new": keys[::-1]}
    limits = eff.strategy_limits(settings)
    out = eff.bootstrap(
        bench, [orders], [1.0], 8, resamples=10, chosen_on="scoring half", limits=limits
    )
    assert set(out["hypervolume"]) == {"random@8", "old@8", "new@4", "new@2"}
    # new@4 is the front of the new search's first 4 (old's first 4: the same order), not
    # of all 8 it was given.
    old_first_4 = eff.bootstrap(bench, [orders], [1.0], 4, resamples=10, chosen_on="scoring half")[
        "hypervolume"
    ]["old@4"]
    assert out["hypervolume"]["new@4"] == old_first_4
    assert out["hypervolume"]["new@4"] != out["hypervolume"]["old@8"]


def test_a_run_without_the_old_search_measures_and_reports_random_and_new_only():
    settings = {"measurements": 8, "new_measurements": 4, "strategies": ["new", "random"]}
    assert eff.settings_strategies(settings) == ("random", "new")
    assert eff.strategy_limits(settings) == {"random": 8, "new": 4}
    assert eff.settings_strategies({"measurements": 8}) == eff.STRATEGIES
    assert eff.parse_strategies(["new", " random"]) == ["random", "new"]
    n = 200
    keys, correct, bench = _eight_candidates(n, seed=2)
    orders = {"random": keys, "new": keys[::-1][:4]}
    out = eff.bootstrap(
        bench,
        [orders],
        [1.0],
        8,
        resamples=10,
        chosen_on="scoring half",
        limits=eff.strategy_limits(settings),
    )
    assert set(out["hypervolume"]) == {"random@8", "new@4", "new@2"}
    # new@4 is the front of the new search's 4 candidates: the same resamples (same seed)
    # score it as they score a random search that measured those 4.
    same = eff.bootstrap(
        bench,
        [{"random": keys[::-1][:4], "new": keys}],
        [1.0],
        4,
        resamples=10,
        chosen_on="scoring half",
    )
    assert out["hypervolume"]["new@4"] == same["hypervolume"]["random@4"]
    assert out["hypervolume"]["new@4"] != out["hypervolume"]["random@8"]
    curves = {"random": [(4, 0.2), (8, 0.4)], "new": [(4, 0.5)]}
    assert set(eff.mean_curves([curves, curves])) == {"random", "new"}
    reading = {"mean": curves, "goal": eff.goal(curves, 8)}
    table = eff._reading_markdown(reading, {"measurements": 8})
    assert table[0] == "| measured | random | new search |"
    assert table[1] == "|---:|---:|---:|"
    assert table[2] == "| 4 | 0.2000 | 0.5000 |" and table[3] == "| 8 | 0.4000 |  |"
    report = {
        "settings": {**settings, "seeds": [0], "inner_generations": 5},
        "workdir": "/w",
        "validation_halves": {"search": 100, "score": 100},
        "reference_point": {"cost": 800.0, "accuracy": 0.0},
        "cost_unit": "MACs",
        "log_cost_floor": 100.0,
        **reading,
        "predictor": [{"new": []}],
    }
    text = eff.markdown(report)
    assert "The old search was not measured by this run" in text
    assert "old search |" not in text and "| measured | random | new search |" in text
    # A report older than the predictor flags: "auto" (the only predictor then), and the
    # floors it ran with unknown, not today's defaults.
    assert "predictor floor not recorded, inner evolution from held-out tau not recorded" in text
    assert "predictors auto." in text
    report["settings"].update(min_predictor_tau=0.2, inner_min_predictor_tau=-1.0)
    report["settings"].update(predictor="auto_summary", strategies=list(eff.STRATEGIES))
    text = eff.markdown(report)
    assert "predictor floor 0.2, inner evolution from held-out tau -1" in text
    assert "predictors auto_summary." in text and "was not measured" not in text


def test_goal_is_when_the_new_search_first_reaches_randoms_final_hypervolume():
    curves = {
        "random": [(10, 0.2), (20, 0.3), (40, 0.5)],
        "old": [(10, 0.1), (20, 0.2), (40, 0.3)],
        "new": [(10, 0.3), (20, 0.5), (40, 0.6)],
    }
    assert eff.goal(curves, 40) == {
        "random_hypervolume": 0.5,
        "new_reaches_it_after": 20,
        "allowed": 10,
        "met": False,
    }
    curves["new"][0] = (10, 0.55)
    assert eff.goal(curves, 40)["met"]
    curves["new"] = [(10, 0.1), (40, 0.4)]
    assert eff.goal(curves, 40)["new_reaches_it_after"] is None
    mean = eff.mean_curves([curves, {k: [(n, 2 * v) for n, v in c] for k, c in curves.items()}])
    assert mean["random"] == [(10, pytest.approx(0.3)), (20, pytest.approx(0.45)), (40, 0.75)]
    assert mean["new"] == [(10, pytest.approx(0.15)), (40, pytest.approx(0.6))]


def test_fronts_are_scored_on_the_half_the_thresholds_were_not_fitted_on():
    space = SearchSpace.preset("tiny")
    n = 40
    half_a, half_b = np.arange(0, n, 2), np.arange(1, n, 2)
    # Exit 1 is confident everywhere; it is right on every image of half B and wrong on every
    # image of half A; exit 2 and 3 are right on A, wrong on B.
    confidence = np.full((3, n), 0.9, np.float32)
    correct = np.zeros((3, n), bool)
    correct[0, half_b] = True
    correct[1:, half_a] = True
    full = Measurement(
        space.smallest(), [100, 200, 300], ValidationSplit.from_confidences(confidence, correct)
    )
    on_a = Measurement(
        full.arch,
        full.stage_macs,
        ValidationSplit.from_confidences(confidence[:, half_a], correct[:, half_a]),
    )
    points = eff.held_out_points(full, on_a, half_b, [150.0, 300.0])
    # No early exit: exit 3 on B, all wrong.
    assert points[0] == (300.0, 0.0)
    # Budget 150: only "everyone leaves at exit 1" fits it (confidences all tie). On A, where
    # it was fitted, that scores 0; on B it scores 1.
    assert on_a.fit(150.0).accuracy == 0.0 and points[1] == (100.0, 1.0)
    # Budget 300: fitted on A, images go on to an exit right on A (1.0); on B they are wrong.
    assert on_a.fit(300.0).accuracy == 1.0 and points[2][1] == 0.0 and points[2][0] >= 200.0


@pytest.mark.parametrize(
    "args, needles, code",
    [
        (["--seeds=a"], ("--seeds", "'a'", "not an integer"), 2),
        (["--seeds=0,-1"], ("--seeds", "-1", "negative"), 2),
        (["--seeds=1,1"], ("--seeds", "given twice"), 2),
        (["--out={file}/sub"], ("--out folder", "is a file"), 1),
        (["--out={file}"], ("--out folder", "is a file"), 1),
        (["--out={out}"], ("report", "search_efficiency.json", "is a folder"), 1),
        (["--cost=latency", "--out={fresh}"], ("--latency_table",), 1),
        (["--new_measurements=40"], ("--new_measurements=40", "between", "(50)"), 2),
        (["--new_measurements=300"], ("--new_measurements=300", "(200)"), 2),
        (["--strategies=random,new,best"], ("--strategies", "'best'", "not one of"), 2),
        (["--strategies=random,old"], ("--strategies must include new",), 2),
        (["--strategies=new"], ("--strategies must include random",), 2),
    ],
)
def test_bad_flags_and_outputs_are_refused_in_one_line_before_any_work(
    tmp_path, args, needles, code
):
    # The workdir does not exist: a case that got as far as reading it (after an
    # hours-long run's start, or TensorFlow's) would name it instead of the problem.
    file, out = tmp_path / "file", tmp_path / "out"
    file.write_text("keep")
    os.makedirs(out / "search_efficiency.json")
    args = [a.format(file=file, out=out, fresh=tmp_path / "fresh") for a in args]
    workdir = f"--workdir={tmp_path / 'no_workdir'}"
    check_fault(
        "bench.search_efficiency",
        [workdir, *args],
        *needles,
        code=code,
        guarded=[str(file), str(out)],
        timeout=60,
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_folder_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        check_fault(
            "bench.search_efficiency",
            [f"--workdir={tmp_path / 'no_workdir'}", f"--out={out}"],
            "--out folder",
            "not writable",
            code=1,
            timeout=60,
        )
    finally:
        out.chmod(0o700)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason="needs Fashion-MNIST")
def test_smoke_run_on_a_tiny_workdir_then_resumes_measuring_nothing(tmp_path):
    workdir, out = str(tmp_path / "wd"), str(tmp_path / "out")
    make_tiny_workdir(workdir, bn_seed=0, data_dir=FASHION_DIR)

    def run():
        args = [f"--workdir={workdir}", "--smoke", f"--out={out}"]
        proc = run_program("bench.search_efficiency", args, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with open(os.path.join(out, "search_efficiency.json")) as f:
            return json.load(f)

    report = run()
    assert report["measured_this_run"] == report["distinct_measured"]
    # The same command again loads every measurement from <out>/measured and measures
    # nothing, and the strategies replay to the same curves.
    again = run()
    assert again["measured_this_run"] == 0
    assert again["mean"] == report["mean"] and again["goal"] == report["goal"]
    assert report["validation_halves"] == {"search": 100, "score": 100}
    assert report["chosen_on"] == "search half"
    scoring = report["chosen_on_scoring_half"]
    for name in ("random", "old", "new"):
        assert len(report["orders"][0][name]) == 12
        assert [n for n, _ in report["mean"][name]] == [4, 8, 12]
        values = [hv for _, hv in scoring["mean"][name]]
        # Chosen on the scoring half, more candidates never shrink a front.
        assert values == sorted(values) and 0.0 < values[-1] <= 1.0
        # Chosen on the search half, the front's score on B is at most that maximum.
        for (_, on_a), (_, on_b) in zip(report["mean"][name], scoring["mean"][name], strict=True):
            assert 0.0 < on_a <= on_b + 1e-12
    # Each strategy measured 12; shared architectures are measured once.
    assert 12 <= report["distinct_measured"] <= 36
    assert report["goal"]["allowed"] == 3
    with open(os.path.join(out, "search_efficiency.md")) as f:
        text = f.read()
    assert "| 12 |" in text and "Goal: the new search reaches random's hypervolume" in text
    assert "## Fronts chosen on the scoring half" in text
    # The predictor of each generation after the random first one, replayed identically.
    new_rows = report["predictor"][0]["new"]
    assert new_rows and new_rows[0]["model"] is None  # generation 1 is random
    assert [r["generation"] for r in new_rows] == list(range(1, len(new_rows) + 1))
    assert again["predictor"] == report["predictor"]


class _CountingEvaluator:
    """Stands in for `CandidateEvaluator`: random exits, and a count of what it measured."""

    def __init__(self, num_val_images: int):
        self.num_val_images = num_val_images
        self.calls = 0

    def measure(self, arch):
        self.calls += 1
        rng = np.random.default_rng(self.calls)
        confidence = rng.uniform(size=(3, self.num_val_images)).astype(np.float32)
        correct = rng.uniform(size=(3, self.num_val_images)) < 0.7
        split = ValidationSplit.from_confidences(confidence, correct)
        return Measurement(arch, [100, 200, 300], split, seconds=0.5)


def test_measurements_are_kept_so_a_second_run_measures_nothing_again(tmp_path):
    space = SearchSpace.preset("tiny")
    settings = {"checkpoint": "ckpt-1", "num_val_images": 40}
    costs = SimpleNamespace(kind="macs")
    archs = [space.smallest(), space.largest()]

    def bench(run_settings):
        store = SearchStore(Workdir(str(tmp_path)), run_settings, space, log=lambda m: None)
        return eff.Bench(_CountingEvaluator(40), costs, space, store)

    first = bench(settings)
    measured = [first.candidate(a) for a in [*archs, archs[0]]]
    assert first.evaluator.calls == 2 and first.measured_this_run == 2
    second = bench(settings)
    loaded = [second.candidate(a) for a in archs]
    assert second.evaluator.calls == 0 and second.measured_this_run == 0
    for a, b in zip(measured[:2], loaded, strict=True):
        assert a.key == b.key
        np.testing.assert_array_equal(a.measurement.split.correct, b.measurement.split.correct)
        np.testing.assert_array_equal(
            second.full[b.key].split.confidence, first.full[a.key].split.confidence
        )
    # Another checkpoint: nothing saved is comparable, so it is measured again.
    third = bench({**settings, "checkpoint": "ckpt-2"})
    third.candidate(archs[0])
    assert third.evaluator.calls == 1


def test_predictor_rows_and_their_table_come_from_each_generations_summary():
    first = {"generation": 1, "predictor": None, "prospective_tau": None}
    second = {
        "generation": 2,
        "predictor": {"model": "ridge(alpha=3)", "held_out_tau": 0.41, "rows": 20, "used": True},
        "prospective_tau": 0.25,
    }
    rows = [eff.predictor_row(first, 10), eff.predictor_row(second, 20)]
    assert rows[0] == {
        "generation": 1,
        "measured": 10,
        "rows": None,
        "model": None,
        "held_out_tau": None,
        "used": None,
        "prospective_tau": None,
    }
    assert rows[1]["held_out_tau"] == 0.41 and rows[1]["rows"] == 20 and rows[1]["used"]
    report = {"settings": {"seeds": [0]}, "predictor": [{"new": rows, "old": []}]}
    table = eff._predictor_markdown(report)
    assert "| 1 | 10 | - | - | - | - | - |" in table
    assert "| 2 | 20 | 20 | ridge(alpha=3) | 0.410 | yes | 0.250 |" in table
    assert eff._predictor_markdown({"settings": {"seeds": [0]}, "predictor": []}) == []


def test_hypervolume_parts_split_the_area_at_the_lowest_budget():
    c_min, c_max, floor = 1e3, 1e7, 1e4  # u = log10(c_max / cost) / 4; the floor at u = 0.75
    # The cheapest network: 0.5 over the whole axis, a quarter of it under the floor.
    assert eff.hypervolume_parts([(c_min, 0.5)], c_min, c_max, floor) == pytest.approx(
        (0.125, 0.375)
    )
    # Nothing under the floor: all of it in the range.
    assert eff.hypervolume_parts([(1e5, 0.8)], c_min, c_max, floor) == pytest.approx((0.0, 0.4))
    # (u=1, 0.4) and (u=0.5, 0.8): 0.25 * 0.4 under the floor; 0.25 * 0.4 + 0.5 * 0.8 over it.
    points = [(c_min, 0.4), (1e5, 0.8)]
    below, in_range = eff.hypervolume_parts(points, c_min, c_max, floor)
    assert (below, in_range) == pytest.approx((0.1, 0.5))
    assert below + in_range == pytest.approx(eff.hypervolume(points, c_min, c_max))
    assert eff.hypervolume_parts([], c_min, c_max, floor) == (0.0, 0.0)


class _MacsEvaluator(_CountingEvaluator):
    """`_CountingEvaluator` with each architecture's real stage MACs (so the cost model's
    budgets and the points agree)."""

    def __init__(self, num_val_images: int, space):
        super().__init__(num_val_images)
        self.space = space

    def measure(self, arch):
        from enas4d_tf.model.macs import stage_macs

        m = super().measure(arch)
        return Measurement(arch, stage_macs(self.space, arch), m.split, seconds=0.5)


def test_a_reread_reads_a_report_again_from_its_store_and_measures_nothing(tmp_path):
    from enas4d_tf.errors import SearchError
    from enas4d_tf.search.objectives import make_cost_model, pareto_budgets

    space, n = SearchSpace.preset("tiny"), 40
    store_dir = tmp_path / "eff"
    state = {"checkpoint": "ckpt-1", "num_val_images": n, "num_classes": 10}
    state["space"] = space.to_dict()
    store = SearchStore(Workdir(str(store_dir / "measured")), state, space, log=lambda m: None)
    settings = {"measurements": 4, "new_measurements": 0, "strategies": ["random", "new"]}
    settings.update(seeds=[0], step=2, bootstrap=5, score_points=3, num_val_images=n)
    settings.update(num_calibration_images=10, cost="macs", latency_table="")
    settings.update(inner_generations=3)
    costs = make_cost_model(space, 10, eff.search_config(settings))
    bench = eff.Bench(_MacsEvaluator(n, space), costs, space, store)
    keys = [bench.candidate(space.sample(seed=i)).key for i in range(6)]
    orders = [{"random": keys[:4], "new": keys[2:]}]
    budgets = pareto_budgets(costs, 3)
    reading = eff.reading(bench, orders, budgets, settings, "search half")
    report = {
        "settings": settings,
        "orders": orders,
        "score_budgets": budgets,
        "workdir": "/w",
        "validation_halves": {"search": n // 2, "score": n // 2},
        "reference_point": {"cost": float(costs.largest[-1]), "accuracy": 0.0},
        "cost_unit": costs.unit,
        "log_cost_floor": float(costs.smallest[0]),
        "predictor": [{"new": []}],
        **reading,
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))

    out = eff.reread(str(path), str(store_dir), log=lambda m: None)  # measures: AssertionError
    # Every reading the report had, bootstrap included, comes back the same.
    for key in ("per_seed", "mean", "goal", "bootstrap"):
        assert out[key] == reading[key], key
    scoring = eff.reading(bench, orders, budgets, settings, "scoring half")
    assert out["chosen_on_scoring_half"] == scoring
    assert out["reread"] == {"from": str(path), "measured": 0}
    assert "measured_this_run" not in out  # the report's own (of its measuring run) stays
    got = out["hypervolume_parts"]
    assert got == eff.parts(bench, orders, budgets, settings)
    assert got["floor"] == min(budgets)
    assert set(got["mean"]) == {"random@4", "new@4", "random@1", "new@1"}
    # The two parts make each final front's hypervolume of the goal's reading.
    for name in ("random", "new"):
        assert sum(got["per_seed"][0][f"{name}@4"]) == pytest.approx(
            out["per_seed"][0][name][-1][1]
        )
    assert got["counts"] == [{"random@4": 4, "new@4": 4, "random@1": 1, "new@1": 1}]
    text = eff.markdown(out)
    assert "### Where the hypervolume lies" in text and "| random@4 |" in text
    assert "candidates)" not in text

    # A new search that stopped after 2 of its 4: its label keeps the count asked for, and
    # the table says how many it had.
    short = [{"random": keys[:4], "new": keys[2:4]}]
    got = eff.parts(bench, short, budgets, settings)
    assert got["counts"][0]["new@4"] == 2 and got["counts"][0]["random@4"] == 4
    text = "\n".join(eff._parts_markdown(got, "MACs", settings))
    assert "(2 candidates)" in text

    def refused(changed: dict, *needles):
        path.write_text(json.dumps({**report, **changed}))
        with pytest.raises(SearchError) as e:
            eff.reread(str(path), str(store_dir), log=lambda m: None)
        for needle in needles:
            assert needle in str(e.value)

    # A candidate the store does not have, a report of another space or of another run, and
    # malformed reports: one line each.
    refused({"orders": [{"random": ["nosuchkey"], "new": keys[:1]}]}, "candidate nosuchkey")
    refused({"score_budgets": [1.0, 2.0]}, "another space's measurements")
    refused({"settings": {**settings, "num_val_images": 2 * n}}, "num_val_images 80", "40")
    refused({"measured_with": {"checkpoint": "ckpt-9"}}, "checkpoint 'ckpt-9'", "ckpt-1")
    refused({"settings": {**settings, "step": "2"}}, "settings.step is missing or not int")
    refused({"settings": {**settings, "seeds": [0, 1]}}, "one mapping per seed (2)")
    refused({"orders": [{"random": keys[:4]}]}, "the candidates of random, new")
    refused({"settings": [1]}, "its settings are not a mapping")


def test_a_reread_of_a_missing_report_or_store_is_one_line(tmp_path):
    out = tmp_path / "out"
    check_fault(
        "bench.search_efficiency",
        [f"--reread={tmp_path / 'none.json'}", f"--out={out}"],
        "report",
        "not found",
        code=1,
        timeout=60,
    )
    report = tmp_path / "r.json"
    settings = {"seeds": [0], "step": 1, "measurements": 4, "bootstrap": 0, "score_points": 2}
    settings.update(num_val_images=10, num_calibration_images=5, strategies=["random", "new"])
    orders = [{"random": [], "new": []}]
    report.write_text(
        json.dumps({"settings": settings, "orders": orders, "score_budgets": [], "workdir": ""})
    )
    check_fault(
        "bench.search_efficiency",
        [f"--reread={report}", f"--out={out}", f"--store={tmp_path / 'nostore'}"],
        "no measurements to re-read",
        code=1,
        timeout=60,
    )
    check_fault("bench.search_efficiency", [f"--reread={report}"], "--reread needs --out", code=2)
