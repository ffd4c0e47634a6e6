"""tools.latency_table end to end on `tiny` (slow: it converts and times real graphs): a
smoke table on this host, and a kit timed on this host by the Android kit's --host, whose
table must agree in kind with the interpreter's."""

import json
import os

import pytest

from enas4d_tf.latency.model import LatencyModel
from enas4d_tf.latency.table import LatencyTable
from enas4d_tf.space import SearchSpace
from tests.faults.harness import run_program

TINY = SearchSpace.preset("tiny")
SMOKE = ["--preset=tiny", "--keys_of_archs=1", "--calibration_archs=1", "--rounds=3", "--runs=10"]


@pytest.mark.slow
def test_a_smoke_table_predicts_the_stage_graphs_it_timed(tmp_path):
    out = str(tmp_path / "table.json")
    done = run_program("tools.latency_table", [*SMOKE, f"--out={out}"])
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    table = LatencyTable.load(out)
    assert table.target.kind == "host" and table.target.threads == 1
    assert all(v >= 0 for v in table.fit.values()) and table.fit["scale"] > 0
    model = LatencyModel(table, TINY, 10, quantization="float32", threads=1)
    predicted = model.stage_ms(TINY.smallest())  # keys_of_archs=1: the smallest network
    rows = table.meta["calibration"]
    assert [r["graph"] for r in rows] == ["arch0_stage1", "arch0_stage2", "arch0_stage3"]
    for p, r in zip(predicted, rows, strict=True):
        assert p == pytest.approx(r["predicted_ms"])
        # Fitted on these three graphs: close, though not exact (5 coefficients, 3 graphs
        # can fit them exactly; a coefficient held at 0 cannot).
        assert 0.5 <= p / r["measured_ms"] <= 2.0
    # Another network needs keys a smoke table does not have: refused by name.
    with pytest.raises(ValueError, match="no entry"):
        model.stage_ms(TINY.largest())
    # Run again: the table is not replaced without --overwrite.
    before = open(out, "rb").read()
    done = run_program("tools.latency_table", [*SMOKE, f"--out={out}"])
    assert done.returncode == 1 and "--overwrite" in done.stderr
    assert open(out, "rb").read() == before


@pytest.mark.slow
def test_a_kit_timed_on_this_host_by_the_android_kit_writes_a_table(tmp_path):
    kit = str(tmp_path / "kit")
    done = run_program("tools.latency_table", [*SMOKE, f"--android_kit={kit}"])
    assert done.returncode == 0, done.stderr
    with open(os.path.join(kit, "latency_kit.json")) as f:
        listed = json.load(f)["graphs"]
    done = run_program(
        "export.android_benchmark",
        [f"--latency_kit={kit}", "--host", "--num_runs=20", "--warmup_runs=2"],
    )
    assert done.returncode == 0, done.stderr
    table = LatencyTable.load(os.path.join(kit, "table.json"))
    assert len(table.entries) == sum("key" in g for g in listed.values())
    # litert-benchmark's results, kept beside the kit's graphs.
    assert all(os.path.isfile(os.path.join(kit, "outputs", f"{n}.json")) for n in listed)
    model = LatencyModel(table, TINY, 10)
    assert all(t > 0 for t in model.stage_ms(TINY.smallest()))
