"""files.py: atomic writes keep the old file on failure, give the mode a plain write gives,
and turn OSError into one project-error line; the output-location checks."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest

from enas4d_tf.errors import DataError, Enas4dError
from enas4d_tf.files import (
    check_writable_dir,
    check_writable_file,
    save_model_atomic,
    write_bytes_atomic,
    write_json_atomic,
)


@pytest.fixture
def umask():
    """Sets the umask for one test and restores it."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _leftovers(folder) -> list[str]:
    return [name for name in os.listdir(folder) if name.startswith(".tmp_")]


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_file_gets_the_mode_of_a_plain_write(tmp_path, umask, mask, expected):
    umask(mask)
    path = tmp_path / "a.json"
    write_json_atomic(str(path), {"a": 1})
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert _mode(path) == _mode(plain) == expected
    assert json.loads(path.read_text()) == {"a": 1}


def test_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    write_bytes_atomic(str(path), b"new")
    assert path.read_bytes() == b"new"
    assert _mode(path) == 0o640


def test_missing_folders_are_created(tmp_path):
    path = tmp_path / "x" / "y" / "a.bin"
    write_bytes_atomic(str(path), b"data")
    assert path.read_bytes() == b"data"


def test_a_folder_in_the_way_is_one_project_error(tmp_path):
    target = tmp_path / "out.json"
    target.mkdir()
    with pytest.raises(DataError) as info:
        write_json_atomic(str(target), {"a": 1}, error=DataError)
    message = str(info.value)
    assert str(target) in message and "nothing was written" in message
    assert "\n" not in message
    assert target.is_dir() and not _leftovers(tmp_path)


class _FailingModel:
    """Stands for a Keras model whose save runs out of space halfway."""

    def save(self, path):
        with open(path, "wb") as f:
            f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _Model:
    def save(self, path):
        assert path.endswith(".keras")  # Keras refuses other suffixes
        with open(path, "wb") as f:
            f.write(b"model")


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "m.keras"
    save_model_atomic(_Model(), str(path))
    assert path.read_bytes() == b"model"
    with pytest.raises(Enas4dError) as info:
        save_model_atomic(_FailingModel(), str(path))
    message = str(info.value)
    assert "previous version was kept" in message and str(path) in message
    assert os.strerror(errno.ENOSPC) in message
    assert path.read_bytes() == b"model"
    assert not _leftovers(tmp_path)


def test_failed_first_save_leaves_nothing(tmp_path):
    path = tmp_path / "m.keras"
    with pytest.raises(Enas4dError, match="nothing was written"):
        save_model_atomic(_FailingModel(), str(path))
    assert os.listdir(tmp_path) == []


def test_other_exceptions_pass_through_and_leave_nothing(tmp_path):
    class Broken:
        def save(self, path):
            raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        save_model_atomic(Broken(), str(tmp_path / "m.keras"))
    assert os.listdir(tmp_path) == []


def test_check_writable_dir(tmp_path):
    check_writable_dir(str(tmp_path), "workdir")
    check_writable_dir(str(tmp_path / "new" / "deeper"), "workdir")
    afile = tmp_path / "f"
    afile.write_text("")
    with pytest.raises(Enas4dError, match="workdir .* is a file, not a folder"):
        check_writable_dir(str(afile), "workdir")
    with pytest.raises(DataError, match=f"cannot be created: {afile} is a file"):
        check_writable_dir(str(afile / "sub" / "x"), "workdir", error=DataError)
    with pytest.raises(Enas4dError, match="workdir is empty"):
        check_writable_dir("", "workdir")
    assert sorted(os.listdir(tmp_path)) == ["f"]  # nothing created


def test_check_writable_file(tmp_path):
    check_writable_file(str(tmp_path / "a.json"), "--report")
    check_writable_file(str(tmp_path / "new" / "a.json"), "--report")
    existing = tmp_path / "e.json"
    existing.write_text("{}")
    check_writable_file(str(existing), "--report")
    with pytest.raises(Enas4dError, match="--report .* is a folder, not a file"):
        check_writable_file(str(tmp_path), "--report")
    with pytest.raises(Enas4dError, match=f"cannot be written: {existing} is a file"):
        check_writable_file(str(existing / "a.json"), "--report")
    assert sorted(os.listdir(tmp_path)) == ["e.json"]


def test_permissions_are_checked(tmp_path, monkeypatch):
    # Tests may run as root, for whom chmod does not deny; stand in for the kernel's answer.
    locked = str(tmp_path / "locked")
    os.mkdir(locked)
    readonly = str(tmp_path / "readonly.json")
    open(readonly, "w").close()
    real_access = os.access
    denied = {locked, readonly}
    monkeypatch.setattr(os, "access", lambda p, m: p not in denied and real_access(p, m))
    with pytest.raises(Enas4dError, match="workdir .*locked is not writable"):
        check_writable_dir(locked, "workdir")
    with pytest.raises(Enas4dError, match="cannot be created: .*locked is not writable"):
        check_writable_dir(os.path.join(locked, "run"), "workdir")
    with pytest.raises(Enas4dError, match="cannot be written: .*locked is not writable"):
        check_writable_file(os.path.join(locked, "a.json"), "--out")
    with pytest.raises(Enas4dError, match="--out .*readonly.json is read-only"):
        check_writable_file(readonly, "--out")
