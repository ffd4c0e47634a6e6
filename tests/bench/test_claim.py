"""Tests of the benchmark of record (bench/claim.py): the choices made from a search report,
T, the baseline recipe and its fitted epochs, the ratio of two fronts at an accuracy level,
the resume/skip logic, and (slow) one whole `--smoke` run."""

import json
import math
import os
import subprocess
import sys

import pytest

from bench import claim_choices as ch
from bench import claim_report as rep
from bench.claim_choices import ClaimError
from bench.claim_steps import ClaimPaths, Steps, check_settings
from enas4d_tf.files import write_json_atomic
from enas4d_tf.space import SearchSpace
from tests.helpers import REPO


def _static(name, cost, acc, exit=1):
    return {"name": name, "avg_macs": cost, "val_accuracy": acc, "exit": exit}


# A static front, cheapest first: the best is the 9M point (0.90, the 10M one ties but costs
# more); a third of 9M is 3M, nearest on a log scale: 3.3M (|log 1.1| = 0.095 against
# |log(2/3)| = 0.405 for 2M).
FRONT = [
    _static("s0", 1e6, 0.80),
    _static("s1", 2e6, 0.85),
    _static("s2", 3.3e6, 0.86, exit=2),
    _static("s3", 9e6, 0.90, exit=3),
    _static("s4", 10e6, 0.90, exit=3),
]


def _pareto(front=FRONT, dynamic=2, version=2):
    chosen = [{"name": f"dynamic_{i}", "mode": "dynamic"} for i in range(dynamic)]
    chosen.append({"name": "static_x", "mode": "static"})
    return {"version": version, "fronts": {"static": front, "dynamic": []}, "chosen": chosen}


def test_choices_pick_k_static_best_and_the_point_nearest_a_third():
    picked = ch.make_choices(_pareto())
    assert picked["k"] == 2  # the dynamic networks chosen; the static choice does not count
    assert picked["static_best"]["name"] == "s3"
    assert picked["static_third"]["name"] == "s2"
    assert [r["name"] for r in picked["static_front"]] == ["s0", "s1", "s2", "s3", "s4"]
    # At most 3 exported: best and third, then evenly spaced points from the cheapest.
    limited = ch.make_choices(_pareto(), limit_static=3)["static_front"]
    assert [r["name"] for r in limited] == ["s0", "s2", "s3"]
    assert [r["name"] for r in ch.make_choices(_pareto(), 2)["static_front"]] == ["s2", "s3"]


def test_choices_refuse_what_cannot_be_the_benchmark():
    with pytest.raises(ClaimError, match="chose no dynamic network"):
        ch.make_choices(_pareto(dynamic=0))
    with pytest.raises(ClaimError, match="version 1"):
        ch.make_choices(_pareto(version=1))
    with pytest.raises(ClaimError, match="mode=both"):
        ch.make_choices({"version": 2, "fronts": {"dynamic": []}, "chosen": []})
    best, third = ch.static_choices([_static("only", 1e6, 0.8)])
    assert best["name"] == "only" and third is None


def test_static_third_is_nearest_on_a_log_scale():
    # A third of 9M is 3M: 5.5M is 1.83x off, 1.2M 2.5x off (linearly 1.2M is nearer).
    front = [_static("a", 1.2e6, 0.8), _static("b", 5.5e6, 0.85), _static("c", 9e6, 0.9)]
    assert ch.static_choices(front)[1]["name"] == "b"


def _train_records(rate):
    # Windows of 20 steps at batch 256: 20 * 256 / rate seconds each.
    return [{"kind": "train", "step": s, "images_per_s": rate} for s in (20, 40)] + [
        {"kind": "eval", "step": 40}
    ]


def test_supernet_seconds_is_the_larger_of_the_summary_and_the_logged_step_time():
    run_config = {"train": {"batch_size": 256}}
    finished = {"finished": True, "train_seconds": 100.0}
    t = ch.supernet_seconds(run_config, finished, _train_records(512.0))
    assert t["seconds"] == 100.0 and t["log_step_seconds"] == 20.0  # 2 * 20 * 256 / 512
    assert t["source"].startswith("train_summary")
    # A resumed run's summary counts its last session only: the log's step time is larger.
    resumed = {"finished": True, "train_seconds": 5.0}
    assert ch.supernet_seconds(run_config, resumed, _train_records(512.0))["seconds"] == 20.0
    with pytest.raises(ClaimError, match="has not finished"):
        ch.supernet_seconds(run_config, {"finished": False, "step": 3, "total_steps": 9}, [])


def test_supernet_seconds_counts_the_run_it_started_from():
    # A supernet started from the largest network trained alone (init_from) cost both runs.
    run_config = {"train": {"batch_size": 256}}
    summary = {"finished": True, "train_seconds": 100.0, "init_from": {"train_seconds": 40.0}}
    t = ch.supernet_seconds(run_config, summary, _train_records(512.0))
    assert t["seconds"] == 140.0 and t["init_from_seconds"] == 40.0
    assert "init_from" in t["source"]
    unknown = {"finished": True, "train_seconds": 100.0, "init_from": {"train_seconds": None}}
    assert ch.supernet_seconds(run_config, unknown, [])["seconds"] == 100.0


def test_baseline_recipe_takes_the_flags_that_apply():
    train_flags = ch.parse_flagfile(os.path.join(REPO, "configs/train_benchmark.cfg"))
    flags, _ = ch.baseline_recipe(train_flags, num_exits=3)
    for expected in ("--batch_size=256", "--learning_rate=0.2", "--warmup_epochs=0.3"):
        assert expected in flags
    assert "--exit_weights=1,1,3" in flags  # one weight per exit: it applies
    names = {f.split("=")[0] for f in flags}
    assert not names & {"--kd_ratio", "--epochs", "--num_random_subnets", "--random_subnets_every"}
    assert "--num_calibration_images" not in names  # the baseline's flag means int8 calibration
    two, notes = ch.baseline_recipe(train_flags, num_exits=2)
    assert not any(f.startswith("--exit_weights") for f in two)
    assert any("exit_weights" in n for n in notes)


def test_flagfile_bare_booleans_and_bad_lines(tmp_path):
    path = tmp_path / "f.cfg"
    path.write_text("# c\n--epochs=6\n--zero_init_residual\n\n--exit_weights=1,1,3\n")
    assert ch.parse_flagfile(str(path)) == {
        "epochs": "6",
        "zero_init_residual": "true",
        "exit_weights": "1,1,3",
    }
    flags, _ = ch.baseline_recipe(ch.parse_flagfile(str(path)), num_exits=3)
    assert "--zero_init_residual=true" in flags  # the baseline's recipe matches
    for bad in ("--nozero_init_residual", "epochs=6", "--"):
        path.write_text(bad + "\n")
        with pytest.raises(ClaimError, match="flag file"):
            ch.parse_flagfile(str(path))


def _probe_records(n):
    # Two epochs of n steps at batch 256. Step 1 traces (10 images/s) and epoch 2's first
    # step waits for its pipeline (64 images/s); the others run 256 images/s: 1 s a step.
    # Epoch 1's steps end at 30 s; epoch 2's at 30 + 3 (checkpoint, pipeline) + 12
    # (evaluation after epoch 1) + n - 1 + 4 (its first step) = 48 + n s.
    records = []
    for s in range(1, 2 * n + 1):
        rate = 10.0 if s == 1 else 64.0 if s == n + 1 else 256.0
        records.append({"kind": "train", "step": s, "images_per_s": rate})
    records[n - 1]["train_seconds"] = 30.0
    records[2 * n - 1]["train_seconds"] = 48.0 + n
    records.append({"kind": "eval", "step": n, "seconds": 12.0})
    return records


def test_baseline_epochs_from_the_probe():
    n = ch.PROBE_EPOCH_STEPS
    records = _probe_records(n)
    timing = ch.probe_timing(records, {"train_seconds": 48.0 + n}, batch_size=256)
    # The first steps of the epochs are not the pace; epoch 2's wait (4 - 1 s) and its
    # checkpoint and pipeline (3 s) are the epoch's fixed cost; the rest of epoch 1 is setup.
    assert timing["step_seconds"] == 1.0 and timing["eval_seconds"] == 12.0
    assert timing["epoch_seconds"] == 6.0 and timing["setup_seconds"] == 30.0 - n - 6.0
    # 5 minutes for 50-step epochs of 56 s, an evaluation every 2 epochs (12 s) but not the
    # final one: 5 epochs take 1.05 * (3 + 5 * 56 + 2 * 12) = 322.35 s > 300 s, 4 take
    # 1.05 * (3 + 4 * 56 + 12) = 250.95 s.
    assert ch.baseline_epochs(timing, 5.0, 200, 50, eval_every=2) == 4
    assert ch.baseline_epochs(timing, 5.0, 3, 50, eval_every=2) == 3
    # 4.3 minutes (258 s): 4 epochs with their one evaluation inside the budget fit; had the
    # final evaluation been counted too (1.05 * (3 + 224 + 24) = 263.55 s), only 3 would.
    assert ch.baseline_epochs(timing, 4.3, 200, 50, eval_every=2) == 4
    assert ch.baseline_epochs(timing, 0.1, 200, 50, eval_every=2) == 1
    with pytest.raises(ClaimError, match="fewer than 2"):
        ch.probe_timing(records[:2], {"train_seconds": 3.0}, 256)
    with pytest.raises(ClaimError, match="lacks epoch_seconds, eval_seconds"):
        ch.baseline_epochs({"step_seconds": 1.0, "setup_seconds": 3.0}, 5.0, 200, 50, 2)
    no_end = [dict(r) for r in records]
    no_end[2 * n - 1].pop("train_seconds")
    with pytest.raises(ClaimError, match=f"step {n} or {2 * n}"):
        ch.probe_timing(no_end, {}, 256)


def _pt(name, cost, acc, group="dynamic", view=None, latency=None):
    return {
        "name": name,
        "group": group,
        "view": view,
        "accuracy": acc,
        "avg_macs": cost,
        "latency_ms": latency,
    }


DYN = [_pt("d1", 1e6, 0.85), _pt("d2", 2e6, 0.90), _pt("d3", 4e6, 0.92), _pt("dx", 5e6, 0.89)]
BASE = [_pt("b1", 3e6, 0.86), _pt("b2", 6e6, 0.91), _pt("b3", 12e6, 0.93)]


def test_cost_needed_is_the_cheapest_point_reaching_the_level():
    assert [p["name"] for p in rep.front(DYN, "avg_macs")] == ["d1", "d2", "d3"]  # dx dominated
    assert rep.cost_needed(DYN, 0.86, "avg_macs")["name"] == "d2"
    assert rep.cost_needed(DYN, 0.90, "avg_macs")["name"] == "d2"
    assert rep.cost_needed(DYN, 0.95, "avg_macs") is None


def test_ratio_at_three_accuracy_levels_both_fronts_reach():
    # hi = min(0.92, 0.93); lo = max(0.85, 0.86) (the cheapest points); the midpoint 0.89.
    levels = rep.accuracy_levels(rep.front(DYN, "avg_macs"), BASE)
    assert levels == pytest.approx([0.86, 0.89, 0.92])
    rows = rep.ratio_rows(DYN, BASE, "avg_macs")
    # 0.86: d2 (2M) vs b1 (3M); 0.89: d2 vs b2 (6M); 0.92: d3 (4M) vs b3 (12M).
    assert [(r["dynamic"], r["baseline"]) for r in rows] == [
        ("d2", "b1"),
        ("d2", "b2"),
        ("d3", "b3"),
    ]
    assert [r["ratio"] for r in rows] == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    assert rep.accuracy_levels([_pt("a", 1, 0.95)], [_pt("b", 1, 0.90)]) == [0.90]


def test_goal_needs_the_best_baselines_accuracy_within_the_limit():
    missed = rep.goal(DYN, BASE, "avg_macs", 0.5)
    assert not missed["met"] and missed["ratio"] is None and missed["target_accuracy"] == 0.93
    reached = rep.goal(DYN + [_pt("d4", 5e6, 0.94)], BASE, "avg_macs", 0.5)
    assert reached["met"] and reached["dynamic"] == "d4"
    assert reached["ratio"] == pytest.approx(5 / 12)
    assert not rep.goal(DYN + [_pt("d4", 7e6, 0.94)], BASE, "avg_macs", 0.5)["met"]  # 0.583x


def test_comparisons_keep_the_views_apart_and_time_only_timed_networks():
    dyn = [_pt("d", 2e6, 0.90, latency=1.0)]
    points = {
        "float32": dyn
        + [
            _pt("one", 4e6, 0.90, "scratch_static", "one", latency=4.0),
            _pt("many", 8e6, 0.90, "early_exit", "many", latency=2.0),
            _pt("ft", 1e6, 0.99, "finetuned"),  # not a baseline
        ]
    }
    out = rep.comparisons(points, ["float32"])
    assert out["one"]["goal_macs"]["ratio"] == pytest.approx(0.5)
    assert out["many"]["goal_macs"]["ratio"] == pytest.approx(0.25)
    assert out["one"]["goal_latency"]["float32"]["ratio"] == pytest.approx(0.25)
    assert out["many"]["goal_latency"]["float32"]["ratio"] == pytest.approx(0.5)
    assert rep.goal_met(out["one"]) and rep.goal_met(out["many"])
    assert out["supernet_static"]["goal_macs"]["why"] == "no points to compare"


def test_before_and_after_against_the_same_baselines_per_view():
    from bench import claim_render

    points = [
        _pt("d", 2e6, 0.90),
        _pt("old_a", 3e6, 0.88, "before"),
        _pt("old_b", 6e6, 0.90, "before"),
        _pt("one", 4e6, 0.90, "scratch_static", "one"),
        _pt("many", 8e6, 0.90, "early_exit", "many"),
    ]
    assert rep.before_after(points, "") is None
    out = rep.before_after(points, "runs/bench_v1")
    one, many = out["views"]["one"], out["views"]["many"]
    assert one["after"]["ratio"] == pytest.approx(0.5) and one["before"]["ratio"] == 1.5
    assert many["after"]["ratio"] == pytest.approx(0.25)
    assert many["before"]["ratio"] == pytest.approx(0.75)
    assert one["before"]["dynamic"] == "old_b"  # old_a does not reach 90%
    text = "\n".join(claim_render._before_after(out))
    assert "runs/bench_v1" in text and "before (earlier recipe): NOT MET" in text
    assert "after (this supernet): MET" in text


def test_a_step_runs_once_and_a_failed_step_runs_again(tmp_path):
    steps = Steps(ClaimPaths(str(tmp_path)), log=lambda line: None)
    calls = []

    def work(x):
        calls.append(x)
        return {"x": x}

    assert steps.run("a", work, 1) == {"x": 1}
    assert steps.run("a", work, 2) == {"x": 1}  # skipped: the marker holds the result
    assert calls == [1]

    def broken():
        raise ClaimError("stopped")

    with pytest.raises(ClaimError):
        steps.run("b", broken)
    assert steps.result("b") is None
    assert steps.run("b", work, 3) == {"x": 3}


def test_settings_are_kept_and_other_settings_refused(tmp_path):
    paths = ClaimPaths(str(tmp_path))
    check_settings(paths, {"workdir": "runs/w", "population": 12, "generations": 5})
    check_settings(paths, {"workdir": "/abs/runs/w", "population": 12, "generations": 5})
    with pytest.raises(ClaimError, match="population 12 -> 4"):
        check_settings(paths, {"workdir": "runs/w", "population": 4, "generations": 5})
    # An earlier recipe's supernet may be added to a benchmark already run.
    check_settings(
        paths, {"workdir": "runs/w", "population": 12, "generations": 5, "before_workdir": "b"}
    )


def _fake_workdir(root):
    """A finished supernet workdir with a search report (nothing trained: files only)."""
    from enas4d_tf.workdir import Workdir

    w = Workdir(root)
    write_json_atomic(w.run_config, {"train": {"batch_size": 64}, "steps_per_epoch": 12})
    write_json_atomic(w.train_summary, {"finished": True, "train_seconds": 120.0})
    arch = SearchSpace.preset("tiny").largest().to_dict()
    base = {"arch": arch, "thresholds": [None, None, 0.0], "stage_macs": [1, 2, 3]}
    base.update(exit_rates=[0.0, 0.0, 1.0], budget_macs=None, mode="static", key="k")
    front = [{**base, **_static(f"static_front_{i}", c, a)} for i, (c, a) in enumerate(
        [(1e6, 0.8), (3e6, 0.85), (9e6, 0.9)]
    )]  # fmt: skip
    for r in front:
        r["thresholds"] = [0.0]
    dynamic = {**base, "name": "dynamic_2M", "mode": "dynamic", "avg_macs": 2.0}
    dynamic.update(val_accuracy=0.9, budget_macs=2.0)
    pareto = {
        "version": 2,
        "settings": {"dataset": "fashion_mnist", "num_val_images": 10},
        "fronts": {"static": front, "dynamic": []},
        "chosen": [dynamic],
    }
    write_json_atomic(w.pareto_json, pareto)
    return w


def test_choices_are_written_once_and_a_changed_search_is_refused(tmp_path):
    from bench import claim_stages as st

    w = _fake_workdir(str(tmp_path / "w"))
    settings = st.Settings(
        str(tmp_path / "w"), "cfg", 2, 4, 1, 10, 10, ("float32",), 2, 3, False, 1, 0, 1e-4, 0, 0, 16
    )
    paths = ClaimPaths(str(tmp_path / "w" / "claim"))
    c = st.Claim(settings, paths, Steps(paths, lambda line: None), lambda line: None)
    choices = st.stage_choices(c)
    assert choices["k"] == 1 and choices["minutes"] == {"one": 2.0, "many": 2.0}
    assert choices["static_best"]["name"] == "static_front_2"
    assert choices["static_third"]["name"] == "static_front_1"  # 3M, a third of 9M
    with open(paths.arch("static_best")) as f:
        frozen = json.load(f)
    assert frozen["name"] == "static_best" and frozen["exit"] == 1
    assert os.path.exists(paths.arch("dynamic_2M"))
    before = os.stat(paths.choices).st_mtime_ns
    assert st.stage_choices(c) == choices and os.stat(paths.choices).st_mtime_ns == before
    with open(w.pareto_json) as f:
        pareto = json.load(f)
    pareto["stats"] = {"wall_seconds": 3.0}  # the same search run again: the same choices
    write_json_atomic(w.pareto_json, pareto)
    assert st.stage_choices(c) == choices
    pareto["fronts"]["static"][0]["val_accuracy"] = 0.81  # another search
    write_json_atomic(w.pareto_json, pareto)
    with pytest.raises(ClaimError, match="changed after the choices were made"):
        st.stage_choices(c)


def test_the_before_supernet_is_checked_and_never_swapped(tmp_path):
    from bench import claim_stages as st
    from enas4d_tf.workdir import Workdir

    _fake_workdir(str(tmp_path / "w"))
    settings = st.Settings(
        str(tmp_path / "w"), "cfg", 2, 4, 1, 10, 10, ("float32",), 2, 3, False, 1, 0, 1e-4, 0, 0, 16
    )
    paths = ClaimPaths(str(tmp_path / "w" / "claim"))
    c = st.Claim(settings, paths, Steps(paths, lambda line: None), lambda line: None)
    a, b = Workdir(str(tmp_path / "a")), Workdir(str(tmp_path / "b"))
    for w in (a, b):
        _fake_workdir(w.root)
    write_json_atomic(a.train_summary, {"finished": False})
    with pytest.raises(ClaimError, match="has not finished"):
        st._check_before(c, a)
    write_json_atomic(a.train_summary, {"finished": True})
    write_json_atomic(a.run_config, {"dataset": "mnist", "steps_per_epoch": 12})
    with pytest.raises(ClaimError, match="trained another dataset"):
        st._check_before(c, a)
    st._check_before(c, b)  # the first one measured is recorded
    st._check_before(c, Workdir(str(tmp_path / "w" / ".." / "b")))  # the same folder
    write_json_atomic(a.run_config, {"train": {"batch_size": 64}, "steps_per_epoch": 12})
    with pytest.raises(ClaimError, match="as the before supernet"):
        st._check_before(c, a)


@pytest.mark.slow
def test_smoke_run_end_to_end_then_resumes_doing_nothing(tmp_path):
    """The whole benchmark on the tiny preset (minutes); then the same command skips every
    step and writes the same verdicts."""
    workdir, out = str(tmp_path / "w"), str(tmp_path / "report")
    command = [sys.executable, "-m", "bench.claim", "--smoke", f"--workdir={workdir}"]
    command.append(f"--out={out}")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    with open(os.path.join(out, "claim.json")) as f:
        report = json.load(f)
    groups = {(p["group"], p["view"]) for p in report["points"]["float32"]}
    for expected in [
        ("dynamic", None),
        ("supernet_static", None),
        ("scratch_static", "one"),
        ("scratch_static", "many"),
        ("early_exit", "one"),
        ("early_exit", "many"),
        ("alone", "many"),
        ("finetuned", None),
    ]:
        assert expected in groups
    for p in report["points"]["float32"]:
        assert 0.0 <= p["accuracy"] <= 1.0 and p["avg_macs"] > 0
        assert (p["latency_ms"] is None) == (p["group"] == "finetuned")
    assert set(report["comparisons"]) == {"one", "many", "supernet_static"}
    assert report["num_test_images"] == 300
    assert os.path.getsize(os.path.join(out, "claim.png")) > 1000
    with open(os.path.join(out, "claim.md")) as f:
        assert "Against baselines trained for T / k" in f.read()
    second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert ": running" not in second.stdout and "done before" in second.stdout
    with open(os.path.join(out, "claim.json")) as f:
        again = json.load(f)
    assert again["comparisons"] == report["comparisons"]
    assert not math.isnan(report["choices"]["minutes"]["one"])
    assert report["before"] is None
    # An earlier recipe's supernet added afterwards (here the same one, so before == after):
    # searched with the same settings, its dynamic networks exported and measured.
    third = subprocess.run(
        [*command, f"--before_workdir={workdir}"], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert third.returncode == 0, third.stderr[-3000:]
    with open(os.path.join(out, "claim.json")) as f:
        with_before = json.load(f)
    before = [p for p in with_before["points"]["float32"] if p["group"] == "before"]
    dynamic = [p for p in with_before["points"]["float32"] if p["group"] == "dynamic"]
    assert before and len(before) == len(dynamic)
    assert sorted(p["avg_macs"] for p in before) == pytest.approx(
        sorted(p["avg_macs"] for p in dynamic), rel=1e-6
    )
    for view in ("one", "many"):
        pair = with_before["before"]["views"][view]
        assert pair["before"]["ratio"] == pytest.approx(pair["after"]["ratio"])
    with open(os.path.join(out, "claim.md")) as f:
        assert "## Before and after the training recipe" in f.read()
