"""bench.latency_model: the summary's ratios on hand-made rows, and (slow) a smoke run on one
tiny export with a table measured for its keys."""

import json
import os

import pytest

from bench.latency_model import GOAL, summarize
from tests.faults.harness import run_program


def _row(name, macs, measured, predicted):
    return {
        "export": f"/x/{name}",
        "avg_macs": macs,
        "measured_ms": measured,
        "measured_median_based_ms": measured * 0.9,
        "predicted_ms": predicted,
    }


def test_summary_ratios_and_the_goal():
    rows = [
        _row(f"n{i}", 1e6 * (i + 1), 1.0 + i, (1.0 + i) * (1.1 if i else 0.8)) for i in range(6)
    ]
    summary = summarize(rows)
    assert [r["ratio"] for r in summary["rows"]] == pytest.approx([0.8] + [1.1] * 5)
    assert summary["within_goal"] == 5 and summary["max_error"] == pytest.approx(0.2)
    assert not summary["met"]  # n0 is 20% off
    # ms per MAC: the median of 1e-6, 1e-6, ... (measured = MACs / 1e6 here): MACs fit exactly.
    assert summary["ms_per_mac"] == pytest.approx(1e-6)
    assert [r["macs_ratio"] for r in summary["rows"]] == pytest.approx([1.0] * 6)
    assert summary["rows"][0]["median_based_ratio"] == pytest.approx(0.8 / 0.9)
    # Without a median of repeats the fastest stands in; with one, its ratio is reported.
    assert summary["median_of_repeats_max_error"] == pytest.approx(0.2)
    rows[1]["measured_median_ms"] = rows[1]["measured_ms"] * 2.2
    assert summarize(rows)["rows"][1]["median_ratio"] == pytest.approx(0.5)
    assert summarize(rows)["median_of_repeats_max_error"] == pytest.approx(0.5)
    del rows[1]["measured_median_ms"]
    rows[0]["predicted_ms"] = rows[0]["measured_ms"] * (1 + GOAL)
    assert summarize(rows)["met"]


def test_networks_exported_for_a_latency_budget_are_checked_against_it():
    rows = [_row(f"n{i}", 1e6, 2.0, 2.0) for i in range(3)]
    rows[0].update(cost="latency", budget=2.5)  # measured 2.0 ms: within
    rows[1].update(cost="latency", budget=1.5)  # measured 2.0 ms: over
    rows[2].update(cost="macs", budget=1e5)  # a MACs budget is not a latency budget
    summary = summarize(rows)
    assert summary["latency_budgets"] == {"networks": 2, "within": 1}
    assert [r.get("within_budget") for r in summary["rows"]] == [True, False, None]
    assert summarize([_row("n", 1e6, 1.0, 1.0)])["latency_budgets"]["networks"] == 0
    # The budget is checked against the median of the repeats, not the fastest one.
    slow = _row("slow", 1e6, 2.0, 2.0)
    slow.update(cost="latency", budget=2.5, measured_median_ms=2.6)
    assert summarize([slow])["latency_budgets"] == {"networks": 1, "within": 0}


@pytest.mark.slow
def test_smoke_run_on_a_tiny_export(tmp_path):
    import enas4d_tf as e4
    from enas4d_tf import exit_policy
    from enas4d_tf.export import formats
    from enas4d_tf.latency.build import TableRequest, measure_table
    from enas4d_tf.latency.timing import TimingSettings
    from tests.export.test_export import make_workdir, run_tool

    workdir = str(tmp_path / "work")
    space, _ = make_workdir(workdir)
    arch = space.sample(seed=2)
    result = exit_policy.PolicyResult(0.5, [0.4, 0.3, 0.3], 1.0, [0.5, 0.4, 0.0])
    arch_file = os.path.join(workdir, "net.json")
    formats.write_arch_file(
        arch_file,
        formats.arch_file_record("net", "dynamic", arch, result, e4.stage_macs(space, arch, 10)),
    )
    exports = tmp_path / "exports"
    done = run_tool(
        [
            f"--workdir={workdir}",
            f"--arch={arch_file}",
            f"--out={exports}",
            "--threshold_images=100",
        ]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    request = TableRequest(
        space,
        10,
        timing=TimingSettings(rounds=3, runs=10),
        key_archs=[arch],
        calibration_archs=[arch],
    )
    table_path = str(tmp_path / "table.json")
    measure_table(request).save(table_path)
    out = tmp_path / "out"
    done = run_program(
        "bench.latency_model",
        [
            f"--exports={exports}",
            f"--table={table_path}",
            "--max_images=50",
            "--repeats=2",
            f"--out={out}",
        ],
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "latency_model.json").read_text())
    (row,) = summary["rows"]
    assert row["export"].endswith("net") and len(row["measured_runs_ms"]) == 2
    assert sum(row["exit_rates"]) == pytest.approx(1.0)
    assert row["predicted_ms"] > 0 and row["ratio"] == pytest.approx(
        row["predicted_ms"] / row["measured_ms"]
    )
    assert "| net |" in (out / "latency_model.md").read_text()
