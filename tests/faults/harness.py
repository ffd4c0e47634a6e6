"""The fault matrix's one check: a program meets a fault the way a user would, and ends cleanly.

Each case runs a program as a user does (`python -m tools.X ...` from the repository root,
TensorFlow's logging left at its default) and asserts three things:

* the exit code;
* stderr is exactly one line, and it names the problem (every `needle` is in it);
* the files the case guards are unchanged: the same paths with the same sha256 before and after
  (a folder is guarded with everything under it).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Sequence

from tests.helpers import REPO


def run_program(module: str, args: Sequence[str], timeout: float = 600, env=None):
    """Runs `python -m <module> <args>` from the repository root; returns the CompletedProcess.

    The environment is the test process's, less `TF_CPP_MIN_LOG_LEVEL` (a user who never set it
    must see one line too), plus `env`.
    """
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def snapshot(paths: Sequence[str]) -> dict[str, str | None]:
    """`{path: sha256}` of every file at or under `paths` (None for a path that does not exist;
    folders are listed with their files, so a file added or removed shows too)."""
    out: dict[str, str | None] = {}
    for path in paths:
        if os.path.isdir(path):
            out[path] = "<dir>"
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    full = os.path.join(root, name)
                    out[full] = _sha256(full)
        elif os.path.exists(path):
            out[path] = _sha256(path)
        else:
            out[path] = None
    return out


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_fault(
    module: str,
    args: Sequence[str],
    *needles: str,
    guarded: Sequence[str] = (),
    code: int | Sequence[int] = (1, 2),
    timeout: float = 600,
    env=None,
) -> str:
    """Runs the case and asserts the three things above; returns the error line.

    Args:
      module: the program, for example "tools.train".
      args: its command-line arguments.
      *needles: substrings the error line must contain (case-insensitive).
      guarded: files and folders that must be unchanged.
      code: the expected exit code, or the codes accepted (default: 1 or 2, never 0).
      timeout, env: as `run_program`.
    """
    before = snapshot(guarded)
    result = run_program(module, args, timeout=timeout, env=env)
    codes = (code,) if isinstance(code, int) else tuple(code)
    lines = result.stderr.splitlines()
    context = f"{module} {' '.join(args)}\nexit {result.returncode}\nstderr:\n{result.stderr}"
    assert result.returncode in codes, context
    assert len(lines) == 1, "stderr is not one line: " + context
    line = lines[0]
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in the error line: " + context
    assert "Traceback" not in result.stdout, context
    after = snapshot(guarded)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    assert not changed, f"guarded files changed: {changed}\n" + context
    return line
