"""LatencyTable: the JSON file's round trip and its refusals (one line, LatencyError)."""

import json
import os

import pytest

from enas4d_tf.errors import LatencyError
from enas4d_tf.latency.table import TABLE_FORMAT, LatencyTable, Target


def _table(**overrides) -> LatencyTable:
    fields = dict(
        target=Target("host", "x86-64, 2 cores", "ai-edge-litert 2.3.0", 1, "float32"),
        preset="tiny",
        num_classes=10,
        entries={"add:c=8,side=5": 0.002, "fc:cin=16,cout=10": 0.001},
        fit={
            "scale": 0.9,
            "fixed_ms": 0.02,
            "per_input_ms": 0.003,
            "per_output_ms": 0.001,
            "per_input_kib_ms": 0.0001,
            "per_output_kib_ms": 0.0002,
        },
        meta={"num_runs": 50},
    )
    fields.update(overrides)
    return LatencyTable(**fields)


def test_save_and_load_round_trip(tmp_path):
    path = str(tmp_path / "table.json")
    table = _table()
    table.save(path)
    with open(path) as f:
        assert json.load(f)["format"] == TABLE_FORMAT
    assert LatencyTable.load(path) == table


def test_a_table_without_fit_reads_as_the_identity(tmp_path):
    d = _table().to_dict()
    del d["fit"]
    table = LatencyTable.from_dict(d)
    assert table.fit == {
        "scale": 1.0,
        "fixed_ms": 0.0,
        "per_input_ms": 0.0,
        "per_output_ms": 0.0,
        "per_input_kib_ms": 0.0,
        "per_output_kib_ms": 0.0,
    }


def _write(tmp_path, obj) -> str:
    path = str(tmp_path / "t.json")
    with open(path, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))
    return path


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda d: d.update(format="enas4d_latency_table/1"), "format"),
        (lambda d: d.pop("entries"), "lacks 'entries'"),
        (lambda d: d["entries"].update({"add:c=8,side=5": -1.0}), "add:c=8,side=5"),
        (lambda d: d["entries"].update({"add:c=8,side=5": "fast"}), "add:c=8,side=5"),
        (lambda d: d.update(entries={}), "non-empty"),
        (lambda d: d["target"].update(quantization="int4"), "int4"),
        (lambda d: d["target"].update(kind="phone"), "kind"),
        (lambda d: d["target"].update(threads=0), "threads"),
        (lambda d: d["target"].pop("runtime"), "runtime"),
        (lambda d: d.update(num_classes=True), "num_classes"),
        (lambda d: d["fit"].update(scale=0.0), "scale"),
        (lambda d: d["fit"].pop("fixed_ms"), "fit"),
    ],
)
def test_load_refuses_a_bad_field_in_one_line(tmp_path, change, needle):
    d = _table().to_dict()
    change(d)
    path = _write(tmp_path, d)
    with pytest.raises(LatencyError, match="latency table") as e:
        LatencyTable.load(path)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_load_refuses_missing_and_corrupt_files(tmp_path):
    with pytest.raises(LatencyError, match="not found"):
        LatencyTable.load(str(tmp_path / "none.json"))
    path = _write(tmp_path, '{"format": "enas4d_latency_table/1", "entr')
    with pytest.raises(LatencyError, match="not JSON"):
        LatencyTable.load(path)
    path = _write(tmp_path, [1, 2])
    with pytest.raises(LatencyError, match="not a JSON object"):
        LatencyTable.load(path)


def test_a_failed_save_keeps_the_previous_file(tmp_path):
    path = str(tmp_path / "table.json")
    _table().save(path)
    before = open(path).read()
    os.chmod(tmp_path, 0o500)
    try:
        if os.access(tmp_path, os.W_OK):  # root ignores the mode
            pytest.skip("running as root: the folder stays writable")
        with pytest.raises(LatencyError, match="previous version was kept"):
            _table(preset="fashion_mnist").save(path)
    finally:
        os.chmod(tmp_path, 0o700)
    assert open(path).read() == before
