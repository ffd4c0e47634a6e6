"""The fault matrix of tools.latency_table: each case ends with one stderr line naming the
problem, the expected exit code, and an existing table and kit unchanged
(tests/faults/harness.py). Every case is refused before TensorFlow is imported: about a
second each."""

from __future__ import annotations

import json
import os

import pytest

from tests.faults.harness import check_fault
from tests.latency.test_android import _kit, _record

PROGRAM = "tools.latency_table"


@pytest.fixture
def place(tmp_path):
    table = tmp_path / "table.json"
    table.write_text('{"an": "earlier table"}')
    return {"tmp": tmp_path, "table": str(table)}


def _check(place, args, *needles, code=1):
    return check_fault(PROGRAM, args, *needles, guarded=[str(place["tmp"])], code=code)


def test_no_preset(place):
    _check(place, [f"--out={place['tmp']}/new.json"], "--preset is required", code=2)


def test_unknown_preset(place):
    _check(place, ["--preset=huge", f"--out={place['tmp']}/new.json"], "preset", code=2)


def test_no_out(place):
    _check(place, ["--preset=tiny"], "--out is required", code=2)


def test_an_existing_table_is_not_replaced_without_overwrite(place):
    _check(place, ["--preset=tiny", f"--out={place['table']}"], "exists", "--overwrite")


def test_out_is_a_folder(place):
    _check(place, ["--preset=tiny", f"--out={place['tmp']}"], "is a folder")


def test_out_under_a_file(place):
    _check(place, ["--preset=tiny", f"--out={place['table']}/t.json"], "is a file")


def test_bad_quantization(place):
    _check(
        place,
        ["--preset=tiny", "--quantization=int4", f"--out={place['tmp']}/n.json"],
        "quantization",
        code=2,
    )


def test_zero_threads(place):
    _check(
        place,
        ["--preset=tiny", "--num_threads=0", f"--out={place['tmp']}/n.json"],
        "num_threads",
        code=2,
    )


def test_kit_and_from_android_together(place):
    args = [f"--android_kit={place['tmp']}/k", f"--from_android={place['tmp']}/k"]
    _check(place, ["--preset=tiny", *args], "exclude each other", code=2)


def test_a_kit_folder_is_never_written_over(place):
    kit = place["tmp"] / "kit"
    _kit(kit)
    _check(place, ["--preset=tiny", f"--android_kit={kit}"], "already holds a latency kit")


def test_from_android_without_a_kit(place):
    _check(
        place,
        [f"--from_android={place['tmp']}/none", f"--out={place['tmp']}/n.json"],
        "latency kit",
        "not found",
    )


def test_from_android_before_the_phone_ran(place):
    kit = place["tmp"] / "kit"
    _kit(kit)
    _check(
        place, [f"--from_android={kit}", f"--out={place['tmp']}/n.json"], "run record", "not found"
    )


def test_from_android_with_an_output_without_timings(place):
    kit = place["tmp"] / "kit"
    _record(kit, _kit(kit))
    (kit / "outputs" / "p00002.txt").write_text("ERROR: could not open graph\n")
    _check(
        place,
        [f"--from_android={kit}", f"--out={place['tmp']}/n.json"],
        "p00002.txt",
        "Inference (avg)",
    )


def test_from_android_with_a_corrupt_kit(place):
    kit = place["tmp"] / "kit"
    _record(kit, _kit(kit))
    record = json.loads((kit / "latency_kit.json").read_text())
    record["format"] = "something else"
    (kit / "latency_kit.json").write_text(json.dumps(record))
    _check(
        place,
        [f"--from_android={kit}", f"--out={place['tmp']}/n.json"],
        "latency_kit.json",
        "enas4d_latency_kit/1",
    )
    assert not os.path.exists(place["tmp"] / "n.json")


KIT_FAULTS = {
    "no num_classes": (lambda k: k.pop("num_classes"), "num_classes must be an integer"),
    "text num_classes": (lambda k: k.update(num_classes="10"), "num_classes must be an integer"),
    "stage graph without arch": (
        lambda k: k["graphs"]["arch0_stage2"].pop("arch"),
        "arch0_stage2 lacks 'arch' or 'stage'",
    ),
    "stage graph without stage": (
        lambda k: k["graphs"]["arch0_stage1"].pop("stage"),
        "arch0_stage1 lacks 'arch' or 'stage'",
    ),
}


@pytest.mark.parametrize("case", sorted(KIT_FAULTS))
def test_from_android_with_a_malformed_kit(place, case):
    from tests.latency.test_android import write_bad_kit

    edit, needle = KIT_FAULTS[case]
    kit = place["tmp"] / "kit"
    write_bad_kit(kit, edit)
    _check(
        place,
        [f"--from_android={kit}", f"--out={place['tmp']}/n.json"],
        "latency_kit.json",
        needle,
    )
    assert not os.path.exists(place["tmp"] / "n.json")
