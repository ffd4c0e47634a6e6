"""The workdir lock: one holder at a time, stale locks taken over, released on every exit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from enas4d_tf.errors import WorkdirError
from enas4d_tf.locking import LOCK_FILE, WorkdirLock, read_lock
from tests.helpers import REPO


def _write_lock(root, pid, host=None, program="search"):
    record = {"pid": pid, "host": host or socket.gethostname(), "program": program}
    record["started"] = "2026-11-30 18:00:00"
    with open(os.path.join(root, LOCK_FILE), "w") as f:
        json.dump(record, f)
    return record


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_holds_record_and_is_released(tmp_path):
    root = str(tmp_path)
    with WorkdirLock(root, "train") as lock:
        holder = read_lock(root)
        assert holder == lock.record
        assert holder["pid"] == os.getpid()
        assert holder["program"] == "train"
        assert holder["host"] == socket.gethostname()
    assert not os.path.exists(os.path.join(root, LOCK_FILE))


def test_lock_released_on_exception(tmp_path):
    root = str(tmp_path)
    with pytest.raises(RuntimeError), WorkdirLock(root, "train"):
        raise RuntimeError("boom")
    assert read_lock(root) is None
    with WorkdirLock(root, "export"):  # and it can be taken again
        assert read_lock(root)["program"] == "export"


def test_second_holder_refused_naming_the_holder(tmp_path):
    root = str(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        before = _write_lock(root, sleeper.pid, program="search")
        with pytest.raises(WorkdirError) as e, WorkdirLock(root, "train"):
            pass
        message = str(e.value)
        assert "in use by search" in message and f"pid {sleeper.pid}" in message
        assert "2026-11-30 18:00:00" in message and "\n" not in message
        assert read_lock(root) == before  # the holder's lock is untouched
    finally:
        sleeper.kill()
        sleeper.wait()


def test_own_live_process_is_a_holder_too(tmp_path):
    root = str(tmp_path)
    with WorkdirLock(root, "train"):
        with pytest.raises(WorkdirError, match="in use by train"), WorkdirLock(root, "export"):
            pass
        assert read_lock(root)["program"] == "train"  # the refused one did not release it


def test_dead_pid_is_taken_over(tmp_path):
    root = str(tmp_path)
    _write_lock(root, _dead_pid(), program="search")
    with WorkdirLock(root, "train"):
        holder = read_lock(root)
        assert holder["pid"] == os.getpid() and holder["program"] == "train"
    assert read_lock(root) is None


def test_other_host_is_never_taken_over(tmp_path):
    root = str(tmp_path)
    _write_lock(root, _dead_pid(), host="another-host.example")
    with pytest.raises(WorkdirError, match="in use by search"), WorkdirLock(root, "train"):
        pass


def test_release_leaves_a_lock_that_is_not_ours(tmp_path):
    root = str(tmp_path)
    lock = WorkdirLock(root, "train")
    lock.acquire()
    other = _write_lock(root, 1, program="export")  # replaced behind our back
    lock.release()
    assert read_lock(root) == other


def test_garbage_lock_is_one_line_and_kept(tmp_path):
    root = str(tmp_path)
    path = os.path.join(root, LOCK_FILE)
    with open(path, "wb") as f:
        f.write(b"\x00garbage")
    with pytest.raises(WorkdirError, match="unreadable") as e, WorkdirLock(root, "train"):
        pass
    assert "\n" not in str(e.value)
    with open(path, "rb") as f:
        assert f.read() == b"\x00garbage"


def test_missing_workdir_refused(tmp_path):
    with pytest.raises(WorkdirError, match="does not exist"):
        WorkdirLock(str(tmp_path / "nope"), "search").acquire()


def test_racing_processes_one_wins(tmp_path):
    """Six processes start together on one workdir: exactly one gets the lock."""
    root = str(tmp_path)
    script = textwrap.dedent(
        f"""
        import sys, time
        from enas4d_tf.errors import WorkdirError
        from enas4d_tf.locking import WorkdirLock
        time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
        try:
            with WorkdirLock({root!r}, "p"):
                print("won", flush=True)
                time.sleep(1.5)
        except WorkdirError:
            print("refused", flush=True)
        """
    )
    import time

    start = str(time.time() + 1.0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, start], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outputs) == ["refused"] * 5 + ["won"]
    assert read_lock(root) is None


def test_imports_without_tensorflow():
    code = (
        "import sys, enas4d_tf.locking, enas4d_tf.workdir; "
        "from enas4d_tf.workdir import Workdir, ExportDir, read_run_config; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
