"""The fault matrix of export.android_benchmark: each case ends with one stderr line naming the
problem, the expected exit code, and the export folder and an existing --report unchanged
(tests/faults/harness.py). The kit imports neither TensorFlow nor LiteRT: about a second a
case. `adb` is a stand-in (tests/export/test_android_kit.py) or absent.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from tests.export.test_android_kit import _fake_adb, fake_export
from tests.faults.harness import check_fault

PROGRAM = "export.android_benchmark"


@pytest.fixture
def export(tmp_path):
    folder = str(tmp_path / "net0")
    manifest = fake_export(folder, search={"exit_rates": [0.5, 0.3, 0.2]})
    report = tmp_path / "report.json"
    report.write_text('{"an": "earlier report"}')
    bin_dir = str(tmp_path / "bin")
    _fake_adb(bin_dir)
    return {
        "dir": folder,
        "manifest": manifest,
        "report": str(report),
        "tmp": tmp_path,
        "env": {"PATH": f"{bin_dir}:{os.environ['PATH']}"},
    }


def _check(export, args, *needles, code=1, env=None):
    guarded = [export["dir"], export["report"]]
    args = [f"--export_dir={export['dir']}", f"--report={export['report']}", *args]
    return check_fault(
        PROGRAM, args, *needles, guarded=guarded, code=code, env=env or export["env"]
    )


def test_no_export_dir_flag(export):
    check_fault(PROGRAM, ["--dry_run"], "--export_dir is required", code=2)


def test_bad_flag_value(export):
    _check(export, ["--num_threads=0"], "num_threads", code=2)


def test_swapped_graphs_even_in_a_dry_run(export):
    a = os.path.join(export["dir"], "stage1_float32.tflite")
    b = os.path.join(export["dir"], "stage3_float32.tflite")
    os.replace(a, a + ".x")
    os.replace(b, a)
    os.replace(a + ".x", b)
    _check(export, ["--dry_run"], "stage1_float32.tflite", "does not match")


def test_manifest_with_a_decreasing_cost(export):
    manifest = dict(export["manifest"], stage_macs=[3000, 2000, 1000])
    with open(os.path.join(export["dir"], "manifest.json"), "w") as f:
        json.dump(manifest, f)
    _check(export, ["--dry_run"], "stage_macs", "must not decrease")


@pytest.mark.parametrize(
    "rates, needle",
    [([0.5, float("nan"), 0.5], "exit rates must be"), ([0.5, 0.5], "exit rates must be 3")],
)
def test_cascade_report_with_bad_exit_rates(export, rates, needle):
    path = os.path.join(str(export["tmp"]), "cascade.json")
    with open(path, "w") as f:
        json.dump({"exit_rates": rates}, f)
    _check(export, [f"--cascade_report={path}"], needle)


def test_cascade_report_not_json(export):
    path = os.path.join(str(export["tmp"]), "cascade.json")
    with open(path, "w") as f:
        f.write("{")
    _check(export, [f"--cascade_report={path}"], "cascade report", "not JSON")


def test_report_is_a_folder(export):
    folder = os.path.join(str(export["tmp"]), "reports")
    os.makedirs(folder)
    args = [f"--export_dir={export['dir']}", f"--report={folder}"]
    check_fault(
        PROGRAM, args, "--report", "is a folder", guarded=[export["dir"], folder], env=export["env"]
    )


def test_no_adb(export, tmp_path):
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    _check(export, [], "adb not found", env={"PATH": str(empty)})


def test_benchmark_model_that_fails(export, tmp_path):
    # An adb whose benchmark_model run cannot open its graph (recorded output) and exits 1.
    bin_dir = tmp_path / "failing_bin"
    bin_dir.mkdir()
    data = os.path.join(os.path.dirname(__file__), "..", "export", "data")
    adb = bin_dir / "adb"
    adb.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        f'  *benchmark_model*) cat "{data}/benchmark_model_failed.txt"; exit 1;;\n'
        "  *) exit 0;;\n"
        "esac\n"
    )
    adb.chmod(adb.stat().st_mode | stat.S_IXUSR)
    _check(export, [], "benchmark_model", "failed", env={"PATH": f"{bin_dir}:/usr/bin:/bin"})


def test_host_mode_with_a_benchmark_that_writes_no_result(export, tmp_path):
    # A litert-benchmark that exits 0 but writes nothing: the missing result is named.
    fake = tmp_path / "silent-benchmark"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    _check(
        export, ["--host", f"--host_binary={fake}"], "litert-benchmark", "stage1.json", "not found"
    )


def test_latency_kit_folder_without_a_kit(export, tmp_path):
    args = [f"--latency_kit={tmp_path / 'nokit'}"]
    check_fault(PROGRAM, args, "latency kit", "not found", guarded=[str(tmp_path)], code=1)


def test_latency_kit_with_an_existing_table(export, tmp_path):
    from tests.latency.test_android import _kit

    kit = tmp_path / "kit"
    _kit(kit)
    (kit / "table.json").write_text('{"an": "earlier table"}')
    check_fault(
        PROGRAM, [f"--latency_kit={kit}"], "table.json", "exists", guarded=[str(kit)], code=1
    )


@pytest.mark.parametrize("case", ["no num_classes", "text num_classes", "stage graph without arch"])
def test_latency_kit_malformed(tmp_path, case):
    from tests.faults.test_latency_table import KIT_FAULTS
    from tests.latency.test_android import write_bad_kit

    edit, needle = KIT_FAULTS[case]
    kit = tmp_path / "kit"
    write_bad_kit(kit, edit)
    args = [f"--latency_kit={kit}"]
    check_fault(PROGRAM, args, "latency_kit.json", needle, guarded=[str(kit)], code=1)
    assert not (kit / "table.json").exists()
