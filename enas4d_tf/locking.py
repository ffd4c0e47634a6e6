"""One writer per workdir: the lock that `tools.train`, `tools.search` and `tools.export` hold
while they write.

The lock is the file `<workdir>/.lock`, created with `O_CREAT | O_EXCL` (so exactly one of
two programs starting together gets it) and holding `{"pid", "host", "program", "started"}`.
A second program refuses with one line naming the holder. A lock left by a process that is
gone (same host, pid no longer running) is taken over; a lock from another host is never
taken over, since its process cannot be checked from here. Imports no TensorFlow, so a tool
checks the lock before paying for it.

Example:
  >>> with WorkdirLock("/tmp/run", "train"):
  ...     ...  # write the workdir
"""

from __future__ import annotations

import json
import os
import socket
import time

from enas4d_tf.errors import WorkdirError

LOCK_FILE = ".lock"

# A lock file is written right after it is created; a reader that finds it empty or cut short
# waits this long for the writer to finish before calling it unreadable.
_SETTLE_S = 1.0


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (one of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(root: str) -> dict | None:
    """The holder recorded in `<root>/.lock`: `{"pid", "host", "program", "started"}`, or None
    when there is no lock.

    Raises:
      WorkdirError: the lock file stays unreadable or malformed (it is left as it is).
    """
    path = os.path.join(root, LOCK_FILE)
    deadline = time.monotonic() + _SETTLE_S
    while True:
        try:
            with open(path) as f:
                holder = json.load(f)
            if isinstance(holder, dict) and isinstance(holder.get("pid"), int):
                return holder
            problem = "not a lock record"
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            problem = str(e)
        if time.monotonic() > deadline:
            raise WorkdirError(
                f"workdir lock {path} is unreadable ({problem}); if no program is using "
                f"{root}, remove it"
            )
        time.sleep(0.05)


class WorkdirLock:
    """Context manager: holds `<root>/.lock` for `program` while the block runs.

    The workdir must exist. The lock is released when the block ends, by an exception too,
    and only if the file is still this holder's.

    Args:
      root: the workdir.
      program: who holds it ("train", "search", "export"), named to a refused second writer.

    Raises (on entry):
      WorkdirError: the workdir is missing or not writable, or another live process holds it.
    """

    def __init__(self, root: str, program: str):
        self.root = root
        self.program = program
        self.path = os.path.join(root, LOCK_FILE)
        self.record: dict | None = None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Takes the lock (taking over one whose process is gone); see the class."""
        if not os.path.isdir(self.root):
            raise WorkdirError(f"workdir {self.root} does not exist or is not a folder")
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "program": self.program,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        # Two rounds: the second follows the removal of a stale lock.
        for _ in range(2):
            if self._create(record):
                self.record = record
                return
            holder = read_lock(self.root)
            if holder is not None and not self._stale(holder):
                raise WorkdirError(
                    f"workdir {self.root} is in use by {holder.get('program', '?')} "
                    f"(pid {holder['pid']}, since {holder.get('started', '?')}); wait for it "
                    "to finish or stop it"
                )
            if holder is not None:
                self._remove_stale(holder)
        raise WorkdirError(f"workdir {self.root}: another program took the lock {self.path}")

    def _create(self, record: dict) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as e:
            raise WorkdirError(
                f"cannot write the workdir lock {self.path}: {e.strerror or e}"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record) + "\n")
        return True

    @staticmethod
    def _stale(holder: dict) -> bool:
        return holder.get("host") == socket.gethostname() and not pid_alive(holder["pid"])

    def _remove_stale(self, holder: dict) -> None:
        """Removes the stale lock `holder`, unless another process replaced it meanwhile.

        The file is renamed aside first (atomic), then checked: if it is no longer the stale
        record (a third process took it over in between), it is put back.
        """
        aside = f"{self.path}.stale.{os.getpid()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another process removed it first
        try:
            with open(aside) as f:
                moved = json.load(f)
        except (OSError, ValueError):
            moved = None
        if moved != holder:
            try:
                os.link(aside, self.path)  # fails if yet another lock appeared: theirs wins
            except OSError:
                pass
        os.remove(aside)

    def release(self) -> None:
        """Removes the lock file if it is still this holder's; safe to call twice."""
        if self.record is None:
            return
        try:
            with open(self.path) as f:
                current = json.load(f)
            if current == self.record:
                os.remove(self.path)
        except (OSError, ValueError):
            pass
        self.record = None
