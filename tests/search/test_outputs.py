"""What a `--cost=latency` search writes about its costs (enas4d_tf/search/outputs.py): MACs
stay under the MACs keys, milliseconds go under ms keys, and every record says which latency
table target its milliseconds are of. No network runs: candidates are measurements made of
hand-built per-exit confidences and correctness, costed by a made-up table."""

import dataclasses
import json

import numpy as np
import pytest

from enas4d_tf.errors import ExportError
from enas4d_tf.exit_policy import ValidationSplit
from enas4d_tf.export import formats
from enas4d_tf.latency.model import LatencyModel
from enas4d_tf.latency.table import Target
from enas4d_tf.model.macs import stage_macs, truncated_macs
from enas4d_tf.search import objectives, outputs
from enas4d_tf.search.measurement import Measurement
from enas4d_tf.search.store import Candidate
from enas4d_tf.space import SearchSpace, arch_key
from tests.search.fakes import fake_table

SPACE = SearchSpace.preset("tiny")
# Not float32, so a record that wrote a fixed quantisation rather than the table's shows.
INT8_TARGET = Target("android", "fake phone", "benchmark_model 2.21", 4, "int8")


def latency_costs(target: Target = INT8_TARGET) -> objectives.CostModel:
    table = dataclasses.replace(fake_table(), target=target)
    return objectives.CostModel(SPACE, 10, LatencyModel(table, SPACE, 10))


def candidate(arch, costs: objectives.CostModel, seed: int = 0) -> Candidate:
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.2, 1.0, (3, 200)).astype(np.float32)
    correct = rng.random((3, 200)) < np.array([0.6, 0.75, 0.9])[:, None]
    split = ValidationSplit.from_confidences(confidence, correct)
    c = Candidate(arch_key(SPACE, arch), Measurement(arch, stage_macs(SPACE, arch, 10), split))
    if costs.kind == "latency":  # as the search's measurer does
        c.measurement.use_costs(costs(arch))
    return c


def test_reference_entries_keep_macs_and_ms_apart():
    costs = latency_costs()
    model = costs.latency
    static = objectives.make_objectives(costs, 3.0)["static"]
    small, large = SPACE.smallest(), SPACE.largest()
    refs = outputs.reference_entries(static, candidate(small, costs), candidate(large, costs, 1))
    for label, arch in (("smallest", small), ("largest", large)):
        entry = refs[label]
        macs = [truncated_macs(SPACE, arch, s, 10) for s in (1, 2, 3)]
        # MACs under the MACs key (the milliseconds are a few ms, the MACs hundreds of
        # thousands: a record mixing them fails this).
        assert entry["truncated_macs"] == macs
        assert entry["truncated_ms"] == pytest.approx(model.truncated(arch))
        assert entry["avg_macs"] == macs[-1]
        assert entry["avg_ms"] == pytest.approx(model.truncated(arch)[-1])
        assert entry["ranking_avg_cost"] == pytest.approx(entry["avg_ms"])
        assert entry["cost_target"] == INT8_TARGET.to_dict()
    # With MACs costs there is no ms key and no target.
    macs_static = objectives.make_objectives(objectives.CostModel(SPACE, 10), 3.0)["static"]
    plain = objectives.CostModel(SPACE, 10)
    refs = outputs.reference_entries(macs_static, candidate(small, plain), candidate(large, plain))
    assert refs["largest"]["truncated_macs"] == [
        truncated_macs(SPACE, large, s, 10) for s in (1, 2, 3)
    ]
    assert "truncated_ms" not in refs["largest"] and "cost_target" not in refs["largest"]


def test_chosen_latency_networks_record_the_tables_target_in_their_arch_files(tmp_path):
    costs = latency_costs()
    objs = objectives.make_objectives(costs, 3.0)
    arch = SPACE.sample(seed=3)
    record = candidate(arch, costs)
    budget = float(costs(arch)[-1])
    chosen = outputs.choose(objs, {"dynamic": [budget], "static": [budget]}, [record])
    assert {e["mode"] for e in chosen} == {"dynamic", "static"}
    for entry in chosen:
        path = str(tmp_path / f"{entry['name']}.json")
        formats.write_arch_file(path, entry)
        spec = formats.read_arch_file(path, SPACE)
        # The table's own target, quantisation included (int8 here, not a default float32).
        assert spec.search["cost_target"] == INT8_TARGET.to_dict()
        assert spec.search["cost"] == "latency" and spec.search["budget_ms"] == budget
    assert "int8 graphs on fake phone" in costs.origin()
    assert objectives.CostModel(SPACE, 10).origin() == "MACs"
    assert outputs.cost_report(costs)["target"]["quantization"] == "int8"


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"cost": "macs"}, "cost_target is recorded only with cost 'latency'"),
        ({"cost_target": {**INT8_TARGET.to_dict(), "quantization": "int4"}}, "cost_target"),
        ({"cost_target": {**INT8_TARGET.to_dict(), "threads": True}}, "cost_target"),
        ({"cost_target": {**INT8_TARGET.to_dict(), "threads": 0}}, "cost_target"),
        ({"cost_target": {"kind": "host"}}, "cost_target"),
        ({"cost_target": "int8"}, "cost_target"),
    ],
)
def test_the_exporter_refuses_a_bad_cost_target(tmp_path, change, needle):
    costs = latency_costs()
    arch = SPACE.sample(seed=3)
    record = candidate(arch, costs)
    budget = float(costs(arch)[-1])
    entry = outputs.choose(objectives.make_objectives(costs, 3.0), {"dynamic": [budget]}, [record])
    path = tmp_path / "bad.json"
    formats.write_arch_file(str(path), entry[0])
    data = json.loads(path.read_text())
    assert data["cost_target"] == INT8_TARGET.to_dict()  # the good one reads (above)
    path.write_text(json.dumps({**data, **change}))
    with pytest.raises(ExportError, match=needle):
        formats.read_arch_file(str(path), SPACE)
