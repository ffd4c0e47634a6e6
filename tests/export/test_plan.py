"""plan.py: checks before any work, and the cleaning of killed exports' temporary folders."""

import json
import os
import socket
import subprocess
import sys

import pytest

from enas4d_tf.errors import ExportDirError, ExportError
from enas4d_tf.export import plan


def _dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def _killed_export(out, name, pid, host=None, with_old=False):
    """What an export killed mid-way leaves in `out`: its temporary folder and marker."""
    tmp = out / f".tmp_{name}_0a1b2c3d"
    tmp.mkdir(parents=True)
    (tmp / "subnet.keras").write_bytes(b"half")
    record = {"pid": pid, "host": host or socket.gethostname(), "target": str(out / name)}
    (out / f"{tmp.name}.writer").write_text(json.dumps(record))
    if with_old:
        old = out / f"{tmp.name}.old"
        old.mkdir()
        (old / "manifest.json").write_text("previous export")
    return tmp


def test_killed_exports_are_cleaned_and_live_or_foreign_ones_kept(tmp_path):
    out = tmp_path / "out"
    dead = _killed_export(out, "a", _dead_pid())
    alive = _killed_export(out, "b", os.getpid())  # this process: still writing
    foreign = _killed_export(out, "c", _dead_pid(), host="another-host")
    unmarked = out / ".tmp_d_ffff"  # another program's, or an older version's
    unmarked.mkdir()
    (out / "e").mkdir()  # a finished export
    lines = []
    removed = plan.clean_stale_temporaries(str(out), lines.append)
    assert removed == [str(dead)]
    assert not dead.exists() and not os.path.exists(f"{dead}.writer")
    assert alive.exists() and foreign.exists() and unmarked.exists() and (out / "e").exists()
    assert len(lines) == 1 and "1 temporary folder" in lines[0]


def test_a_previous_export_moved_aside_by_a_killed_overwrite_is_put_back(tmp_path):
    out = tmp_path / "out"
    tmp = _killed_export(out, "net", _dead_pid(), with_old=True)
    lines = []
    plan.clean_stale_temporaries(str(out), lines.append)
    assert (out / "net" / "manifest.json").read_text() == "previous export"
    assert sorted(os.listdir(out)) == ["net"]
    assert any("restored" in line for line in lines)
    assert not tmp.exists()


def test_an_existing_target_is_not_replaced_by_the_moved_aside_copy(tmp_path):
    out = tmp_path / "out"
    _killed_export(out, "net", _dead_pid(), with_old=True)
    (out / "net").mkdir()
    (out / "net" / "manifest.json").write_text("newer export")
    plan.clean_stale_temporaries(str(out), lambda _: None)
    assert (out / "net" / "manifest.json").read_text() == "newer export"
    assert sorted(os.listdir(out)) == ["net"]


def test_make_and_remove_temporary(tmp_path):
    out = tmp_path / "out"
    tmp = plan.make_temporary(str(out), "net", str(out / "net"))
    with open(tmp + plan.MARKER_SUFFIX) as f:
        record = json.load(f)
    assert record["pid"] == os.getpid() and record["target"] == str(out / "net")
    # A live writer's folder survives a cleaning run by another export.
    assert plan.clean_stale_temporaries(str(out), lambda _: None) == []
    plan.remove_temporary(tmp)
    assert os.listdir(out) == []


def test_make_temporary_in_an_unwritable_place_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportDirError, match="nothing was replaced"):
        plan.make_temporary(str(blocker / "out"), "net", str(blocker / "out" / "net"))


@pytest.mark.parametrize(
    "text, needle",
    [("", "no quantisation"), ("float32,int4", "unknown quantisation"), ("int8,int8", "repeats")],
)
def test_parse_quantizations_refuses(text, needle):
    with pytest.raises(ValueError, match=needle):
        plan.parse_quantizations(text)


def test_existing_output_that_is_a_file_is_refused_even_with_overwrite(tmp_path):
    target = tmp_path / "net"
    target.write_text("a file of the user's")
    with pytest.raises(ExportDirError, match="not a folder"):
        plan.check_output_folder(str(target), overwrite=True)
    with pytest.raises(ExportError, match="--overwrite"):
        plan.check_output_folder(str(target), overwrite=False)


def test_export_refuses_non_finite_weights_naming_the_first():
    import keras
    import numpy as np

    from enas4d_tf.export.exporter import check_finite

    good = keras.Variable(np.ones((2, 2), "float32"), name="good")
    check_finite([good], "network x")  # finite: nothing raised
    for value in (np.nan, np.inf, -np.inf):
        bad = keras.Variable(np.array([1.0, value], "float32"), name="bad")
        with pytest.raises(ExportError, match=r"network x holds non-finite weights \(1 of 2"):
            check_finite([good, bad], "network x")


def test_a_failed_move_into_place_keeps_the_previous_export(tmp_path, monkeypatch):
    from enas4d_tf.export import exporter

    out_dir = tmp_path / "net"
    out_dir.mkdir()
    (out_dir / "manifest.json").write_text("previous export")
    tmp = tmp_path / ".tmp_net_1234"
    tmp.mkdir()
    (tmp / "manifest.json").write_text("new export")
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # moving the new export in: the disk is full, say
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(exporter.os, "replace", replace)
    with pytest.raises(ExportDirError, match="cannot move the export into .*No space left"):
        exporter._move_into_place(str(tmp), str(out_dir), overwrite=True)
    assert (out_dir / "manifest.json").read_text() == "previous export"
    assert exporter._kept(str(out_dir)) == f"the existing {out_dir} was kept"
    assert exporter._kept(str(tmp_path / "other")).startswith("no ")
