"""Thresholds per quantisation (`enas4d_tf.export.policies`) and their manifest reader, on
constructed confidences (numpy only, no TensorFlow: fast).

The end-to-end cover (a `tiny` export whose int8 graphs get refitted thresholds, and the
cascade running with them) is tests/export/test_quantized_thresholds.py (slow).
"""

from __future__ import annotations

import numpy as np
import pytest

from enas4d_tf import exit_policy, thresholds
from enas4d_tf.errors import ExportDirError, ExportError
from enas4d_tf.export import formats, policies
from enas4d_tf.export.formats import ArchSpec
from enas4d_tf.space import SearchSpace
from tests.export.test_android_kit import fake_export
from tests.faults.test_cascade import MALFORMED_PER_QUANTIZATION, per_quantization_block

MACS = (1000.0, 2500.0, 6000.0)
BUDGET = 2600.0


def _outputs(seed: int, noise: float = 0.0, n: int = 600):
    """`(confidence float64 (3, n), correct (3, n))`: later exits more confident and more
    often right; `noise` perturbs the confidences as a quantised graph would."""
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(0)
    confidence = np.stack([base.beta(2 + 2 * s, 2, n) for s in range(3)])
    correct = np.stack([base.random(n) < 0.5 + 0.15 * s for s in range(3)])
    confidence = np.clip(confidence + noise * rng.standard_normal(confidence.shape), 0.1, 1.0)
    return confidence.astype(np.float64), correct


def _spec(mode="dynamic", exit=None, search=None, thresholds_=(0.8, 0.7, 0.0)):
    arch = SearchSpace.preset("tiny").sample(seed=3)
    if search is None:
        search = {"budget_macs": BUDGET, "exit_rates": [0.5, 0.3, 0.2], "cost": "macs"}
    return ArchSpec("net", arch, tuple(thresholds_), mode, search, "/x.json", exit)


def _fit(outputs, costs=MACS, budget=BUDGET):
    split = exit_policy.ValidationSplit.from_confidences(*outputs)
    return thresholds.fit_thresholds(split, costs, budget)


def test_float32_keeps_the_search_thresholds_and_records_their_outcome():
    spec, outputs = _spec(), _outputs(1)
    record = policies.policy_record(spec, "float32", "macs", outputs, policies.GraphCosts(MACS))
    assert record["thresholds"] == [0.8, 0.7, 0.0] and record["origin"] == "search"
    expected = exit_policy.evaluate_confidences(*outputs, MACS, [0.8, 0.7, 0.0])
    assert record["exit_rates"] == pytest.approx(expected.exit_rates)
    assert record["val_accuracy"] == pytest.approx(expected.accuracy)
    assert record["avg_macs"] == pytest.approx(expected.avg_macs)
    assert (record["budget"], record["num_images"], record["avg_ms"]) == (BUDGET, 600, None)


def test_int8_thresholds_are_refitted_on_its_own_confidences_within_budget():
    spec = _spec()
    float_out, int8_out = _outputs(1), _outputs(2, noise=0.03)
    record = policies.policy_record(spec, "int8", "macs", int8_out, policies.GraphCosts(MACS))
    assert record["origin"] == "refit" and record["budget"] == BUDGET
    # The fitter's own answer on the int8 confidences (snapped to them), and not the float
    # confidences' answer: the confidences differ, so do the thresholds.
    int8_fit, float_fit = _fit(int8_out), _fit(float_out)
    assert record["exit_rates"] == pytest.approx(int8_fit.exit_rates)
    assert record["val_accuracy"] == pytest.approx(int8_fit.accuracy)
    assert record["thresholds"][:2] != pytest.approx(float_fit.thresholds[:2], abs=1e-4)
    assert record["avg_macs"] <= BUDGET
    # The recorded outcome is what the thresholds do on the float64 confidences.
    again = exit_policy.evaluate_confidences(*int8_out, MACS, record["thresholds"])
    assert record["exit_rates"] == again.exit_rates and record["avg_macs"] == again.avg_macs


def test_a_network_without_a_recorded_budget_is_refitted_to_the_search_policys_average():
    search = {"exit_rates": [0.5, 0.3, 0.2]}  # no budget_macs: a hand-made file
    record = policies.policy_record(
        _spec(search=search), "int8", "macs", _outputs(2, 0.03), policies.GraphCosts(MACS)
    )
    assert record["origin"] == "refit"
    assert record["budget"] == pytest.approx(0.5 * 1000 + 0.3 * 2500 + 0.2 * 6000)
    assert record["avg_macs"] <= record["budget"]
    float32 = policies.policy_record(
        _spec(search=search), "float32", "macs", _outputs(1), policies.GraphCosts(MACS)
    )
    assert (float32["origin"], float32["thresholds"]) == ("arch_file", [0.8, 0.7, 0.0])


def test_nothing_is_fitted_without_budget_or_exit_rates_nor_for_static_networks():
    outputs, costs = _outputs(2, 0.03), policies.GraphCosts(MACS)
    bare = policies.policy_record(_spec(search={}), "int8", "macs", outputs, costs)
    assert (bare["origin"], bare["thresholds"], bare["budget"]) == (
        "arch_file",
        [0.8, 0.7, 0.0],
        None,
    )
    static = _spec("static", thresholds_=(None, None, 0.0))
    record = policies.policy_record(static, "int8", "macs", outputs, costs)
    assert record["origin"] == "static" and record["exit_rates"] == [0.0, 0.0, 1.0]
    assert record["val_accuracy"] == pytest.approx(outputs[1][2].mean())
    cut = _spec("static", exit=2, thresholds_=(None, 0.0))
    one = (outputs[0][1:2], outputs[1][1:2])
    record = policies.policy_record(cut, "int8", "macs", one, policies.GraphCosts((2400.0,)))
    assert (record["thresholds"], record["exit_rates"], record["avg_macs"]) == (
        [0.0],
        [1.0],
        2400.0,
    )


def test_latency_cost_fits_the_ms_budget_float32_included():
    ms = (1.0, 3.0, 9.0)
    costs = policies.GraphCosts(MACS, ms)
    searched = dict(_spec().search, cost="latency", budget_ms=3.5, budget_macs=None)
    for q in ("float32", "int8"):
        record = policies.policy_record(_spec(search=searched), q, "latency", _outputs(2), costs)
        assert record["origin"] == "refit" and record["budget"] == 3.5
        assert record["avg_ms"] <= 3.5
        assert record["avg_ms"] == pytest.approx(float(np.dot(record["exit_rates"], ms)))
        assert record["thresholds"] == _snapped(_fit(_outputs(2), ms, 3.5), _outputs(2))
    # A latency search's file without "cost" (its ms fields say it): float32 under
    # --cost=macs is refitted too, to the search policy's average MACs.
    in_ms = {"budget_ms": 3.5, "stage_ms": list(ms), "exit_rates": [0.5, 0.3, 0.2]}
    record = policies.policy_record(_spec(search=in_ms), "float32", "macs", _outputs(1), costs)
    assert record["origin"] == "refit"
    assert record["budget"] == pytest.approx(0.5 * 1000 + 0.3 * 2500 + 0.2 * 6000)
    # A MACs-searched network: the budget is the search policy's average in ms.
    record = policies.policy_record(_spec(), "float32", "latency", _outputs(1), costs)
    assert record["budget"] == pytest.approx(0.5 * 1 + 0.3 * 3 + 0.2 * 9)
    assert record["origin"] == "refit" and record["avg_ms"] <= record["budget"]


def _snapped(fit, outputs):
    return policies.snap_thresholds(fit.thresholds, outputs[0])


def test_a_budget_below_the_first_exit_is_one_line():
    searched = dict(_spec().search, cost="latency", budget_ms=0.5)
    costs = policies.GraphCosts(MACS, (1.0, 3.0, 9.0))
    with pytest.raises(ExportError, match="exit 1 of its int8 graphs costs 1 ms, above"):
        policies.policy_record(_spec(search=searched), "int8", "latency", _outputs(2), costs)


def test_snapped_thresholds_send_the_float64_confidences_where_float32_ones_went():
    rng = np.random.default_rng(5)
    # Confidences a float32 rounding apart: a float32 threshold equal to one of them cuts
    # differently in float64 unless it is snapped.
    confidence = 0.9 + rng.integers(0, 40, (3, 200)) * 3e-8 + rng.random((3, 200)) * 1e-9
    t32 = [float(np.float32(confidence[0, 7])), float(np.float32(confidence[1, 9])), 0.0]
    snapped = policies.snap_thresholds(t32, confidence)
    as32 = exit_policy.exit_indices(confidence.astype(np.float32), t32)
    assert np.array_equal(exit_policy.exit_indices(confidence, snapped), as32)
    # A threshold nobody reaches stays out of reach; None stays None.
    high = policies.snap_thresholds([None, 1.0, 0.0], confidence)
    assert high[0] is None and high[1] >= 1.0 and high[2] == 0.0


def _manifest(per_quantization=None):
    manifest = {"quantization": ["float32", "int8"], "thresholds": [0.8, 0.7, 0.0]}
    if per_quantization is not None:
        manifest["per_quantization"] = per_quantization
    return manifest


def test_manifest_thresholds_per_quantization_and_the_fallback_of_older_manifests():
    per_q = {"float32": {"thresholds": [0.8, 0.7, 0.0]}, "int8": {"thresholds": [0.6, 0.5, 0.0]}}
    assert formats.manifest_thresholds(_manifest(per_q), "int8") == [0.6, 0.5, 0.0]
    assert formats.manifest_thresholds(_manifest(per_q), "float32") == [0.8, 0.7, 0.0]
    # A manifest written before thresholds were refitted per quantisation: the float ones.
    assert formats.manifest_thresholds(_manifest(), "int8") == [0.8, 0.7, 0.0]
    with pytest.raises(ExportDirError, match="'float16' was not exported"):
        formats.manifest_thresholds(_manifest(per_q), "float16")


def test_android_kit_combines_stage_times_with_the_rates_of_the_graphs_it_times():
    from enas4d_tf.export import android_kit

    per_q = {
        "float32": {"exit_rates": [0.5, 0.3, 0.2], "num_images": 100},
        "int8": {"exit_rates": [0.2, 0.3, 0.5], "num_images": 100},
    }
    manifest = dict(_manifest(per_q), stages=[{}, {}, {}], search={"exit_rates": [0.9, 0.1, 0]})
    rates, source = android_kit.exit_rates_from(manifest, None, "int8")
    assert rates == [0.2, 0.3, 0.5] and "int8" in source
    # A manifest written before: the search's (float) rates.
    old = dict(manifest)
    del old["per_quantization"]
    assert android_kit.exit_rates_from(old, None, "int8")[0] == [0.9, 0.1, 0.0]
    # A cascade report of other graphs than those timed is refused.
    report = {"quantization": "float32", "exit_rates": [0.5, 0.3, 0.2]}
    with pytest.raises(ValueError, match="ran the float32 graphs, not the int8"):
        android_kit.exit_rates_from(manifest, report, "int8")
    assert android_kit.exit_rates_from(manifest, report, "float32")[1] == "cascade report"


@pytest.mark.parametrize("case", range(len(MALFORMED_PER_QUANTIZATION)))
def test_the_schema_refuses_every_malformed_per_quantization_block(tmp_path, case):
    block, needles = MALFORMED_PER_QUANTIZATION[case]
    folder = str(tmp_path / "net0")
    manifest = dict(fake_export(folder), per_quantization=block)
    formats.write_manifest(folder, manifest)
    with pytest.raises(ExportDirError) as raised:
        formats.read_manifest(folder)
    message = str(raised.value)
    assert "\n" not in message and "re-export" in message
    for needle in needles:
        assert needle in message, message
    # The same manifest with a well-formed block reads, and its thresholds are the block's.
    formats.write_manifest(folder, dict(manifest, per_quantization=per_quantization_block()))
    assert formats.manifest_thresholds(formats.read_manifest(folder), "float32") == [0.6, 0.45, 0.0]
