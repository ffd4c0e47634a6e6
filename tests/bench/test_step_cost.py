"""bench/step_cost.py (slow): one traced step serves every stream of architectures, each
timed as many times as asked, and `--pair` times a two-network step instead."""

import json

import pytest

from bench.step_cost import STREAMS
from tests.faults.harness import run_program


def _report(args):
    proc = run_program(
        "bench.step_cost", ["--preset=tiny", "--batch=8", "--rounds=2", "--steps=1", *args]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_every_stream_is_timed_through_one_step():
    report = _report([])
    assert report["traces"] == 1  # every stream's architectures through the one trace
    assert list(report["rows"]) == list(STREAMS)
    for name, row in report["rows"].items():
        assert row["steps"] == 2 and row["median_s"] > 0, name
    # The third network's MACs: the smallest's own (a ratio well below the others'), a
    # fixed one the same every step, a MACs-drawn one anywhere in the space.
    rows = report["rows"]
    assert rows["smallest_x2"]["third_macs_ratio"] < rows["fixed_mid"]["third_macs_ratio"] < 1
    pair = _report(["--pair"])
    assert list(pair["rows"]) == ["pair"] and pair["rows"]["pair"]["steps"] == 2
    assert pair["traces"] == 1 and pair["rows"]["pair"]["third_macs_ratio"] is None
