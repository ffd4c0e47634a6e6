"""Architecture files and their `exit` key (truncated static networks), without a supernet."""

import json

import pytest

import enas4d_tf as e4
from enas4d_tf import exit_policy
from enas4d_tf.errors import ExportError
from enas4d_tf.export import formats


def _record(space, arch, exit=None, mode="static"):
    result = exit_policy.PolicyResult(
        accuracy=0.7, exit_rates=[0.0, 1.0, 0.0], avg_macs=123.0, thresholds=[None, 0.0, None]
    )
    macs = e4.stage_macs(space, arch, 10)
    return formats.arch_file_record("static_x", mode, arch, result, macs, None, exit=exit)


def test_truncated_record_round_trips_with_its_exit(tmp_path):
    space = e4.SearchSpace.preset("tiny")
    arch = space.sample(seed=1)
    record = _record(space, arch, exit=2)
    # The truncated network's own policy, whatever the result said: exits 1..2, leave at 2.
    assert record["exit"] == 2 and record["thresholds"] == [None, 0.0]
    assert record["stage_macs"] == e4.stage_macs(space, arch, 10)
    path = str(tmp_path / "t.json")
    formats.write_arch_file(path, record)
    with open(path) as f:
        assert json.load(f)["exit"] == 2
    spec = formats.read_arch_file(path, space)
    assert (spec.exit, spec.mode, spec.arch) == (2, "static", arch)
    assert list(spec.thresholds) == [None, 0.0]
    assert "exit" not in spec.search


def test_multi_exit_record_has_no_exit_key(tmp_path):
    space = e4.SearchSpace.preset("tiny")
    arch = space.sample(seed=1)
    result = exit_policy.PolicyResult(0.7, [0.2, 0.3, 0.5], 1.0, [0.9, 0.8, 0.0])
    record = formats.arch_file_record("d", "dynamic", arch, result, e4.stage_macs(space, arch))
    assert "exit" not in record
    path = str(tmp_path / "d.json")
    formats.write_arch_file(path, record)
    with open(path) as f:
        assert set(json.load(f)) == {"format_version", *formats.ARCH_FILE_KEYS}
    spec = formats.read_arch_file(path, space)
    assert spec.exit is None and list(spec.thresholds) == [0.9, 0.8, 0.0]
    # "exit": null reads as a multi-exit network too.
    with open(path) as f:
        data = json.load(f)
    data["exit"] = None
    (tmp_path / "n.json").write_text(json.dumps(data))
    assert formats.read_arch_file(str(tmp_path / "n.json"), space).exit is None


@pytest.mark.parametrize("bad", [0, 4, -1, 1.5, True, "2"])
def test_record_refuses_a_bad_exit(bad):
    space = e4.SearchSpace.preset("tiny")
    with pytest.raises(ValueError, match="exit"):
        _record(space, space.smallest(), exit=bad)


def test_record_refuses_a_dynamic_truncated_network():
    space = e4.SearchSpace.preset("tiny")
    with pytest.raises(ValueError, match="static"):
        _record(space, space.smallest(), exit=1, mode="dynamic")


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"exit": 0}, "outside 1..3"),
        ({"exit": 4}, "outside 1..3"),
        ({"exit": "1"}, "exit must be an int"),
        ({"exit": 2.0}, "exit must be an int"),
        ({"mode": "dynamic"}, "is static"),
        ({"thresholds": [None, None, 0.0]}, "need 2 thresholds"),
        ({"thresholds": [0.5, 0.0]}, "no earlier exit"),
        ({"thresholds": [None, float("nan")]}, "threshold"),
    ],
)
def test_reader_refuses_a_bad_truncated_file(tmp_path, change, needle):
    space = e4.SearchSpace.preset("tiny")
    record = _record(space, space.sample(seed=2), exit=2)
    path = tmp_path / "bad.json"
    data = {"format_version": formats.ARCH_FILE_VERSION, **record, **change}
    path.write_text(json.dumps(data))
    with pytest.raises(ExportError, match=needle):
        formats.read_arch_file(str(path), space)


def test_bare_architecture_with_an_exit_reads_as_a_truncated_network(tmp_path):
    # tools.train --arch_file accepts a bare Arch.to_dict() with "exit": s; the exporter must too.
    space = e4.SearchSpace.preset("tiny")
    arch = space.sample(seed=3)
    path = tmp_path / "cut.json"
    path.write_text(json.dumps({**arch.to_dict(), "exit": 2}))
    spec = formats.read_arch_file(str(path), space)
    assert spec.exit == 2 and spec.mode == "static" and spec.arch == arch
    assert list(spec.thresholds) == [None, 0.0]
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(arch.to_dict()))
    assert formats.read_arch_file(str(plain), space).exit is None
    path.write_text(json.dumps({**arch.to_dict(), "exit": 9}))
    with pytest.raises(ExportError, match="outside 1..3"):
        formats.read_arch_file(str(path), space)


def test_latency_fields_round_trip_and_are_in_the_search_fields(tmp_path):
    space = e4.SearchSpace.preset("tiny")
    arch = space.sample(seed=1)
    result = exit_policy.PolicyResult(0.7, [0.2, 0.3, 0.5], 1.0, [0.9, 0.8, 0.0])
    record = formats.arch_file_record("d", "dynamic", arch, result, e4.stage_macs(space, arch))
    record.update(cost="latency", budget_ms=2.5, avg_ms=2.4, stage_ms=[1.0, 2.0, 3.0], key="x")
    path = str(tmp_path / "d.json")
    formats.write_arch_file(path, record)
    with open(path) as f:
        written = json.load(f)
    assert set(written) == {"format_version", *formats.ARCH_FILE_KEYS, *formats.LATENCY_KEYS}
    spec = formats.read_arch_file(path, space)
    assert (spec.search["cost"], spec.search["budget_ms"]) == ("latency", 2.5)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"cost": "joules"}, "cost must be 'macs' or 'latency'"),
        ({"budget_ms": -1.0}, "budget_ms must be a positive number"),
        ({"budget_macs": "2e6"}, "budget_macs must be a positive number"),
        ({"budget_macs": float("inf")}, "budget_macs must be a positive number"),
        ({"exit_rates": [0.5, 0.5]}, "exit_rates must be a list of 3"),
        ({"exit_rates": [0.5, None, 0.5]}, r"exit_rates must be numbers in \[0, 1\]"),
    ],
)
def test_reader_refuses_bad_cost_fields(tmp_path, change, needle):
    # The export refits thresholds from these: a bad one is refused before any work.
    space = e4.SearchSpace.preset("tiny")
    result = exit_policy.PolicyResult(0.7, [0.2, 0.3, 0.5], 1.0, [0.9, 0.8, 0.0])
    arch = space.sample(seed=1)
    record = formats.arch_file_record("d", "dynamic", arch, result, e4.stage_macs(space, arch))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format_version": formats.ARCH_FILE_VERSION, **record, **change}))
    with pytest.raises(ExportError, match=needle):
        formats.read_arch_file(str(path), space)
