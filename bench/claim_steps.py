"""Resumable steps of the benchmark of record (`bench/claim.py`); no TensorFlow.

Every step of every stage has an id. When a step completes, a marker
`<workdir>/claim/done/<id>.json` is written atomically (what ran, how long it took, what it
returned); a step whose marker exists is skipped. A step killed half-way has no marker and
runs again: the tools it runs resume their own work (training from the newest checkpoint, the
search from its state) or redo it (an export is renamed into place only when complete).

The settings of the run are kept in `<workdir>/claim/settings.json` when it starts; the same
command runs again with the same settings, and other settings are refused (the work done so
far was made with the first ones).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable

from bench.claim_choices import ClaimError, read_json_file
from enas4d_tf.files import write_json_atomic

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class ClaimPaths:
    """Where the benchmark of record keeps its work: `<supernet workdir>/claim/`."""

    root: str

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def settings(self) -> str:
        return self._path("settings.json")

    @property
    def choices(self) -> str:
        return self._path("choices.json")

    def done(self, step: str) -> str:
        """The marker of a completed step."""
        return self._path("done", f"{step}.json")

    def arch(self, name: str) -> str:
        """An architecture file the choices froze (or a refit wrote)."""
        return self._path("archs", f"{name}.json")

    def run(self, name: str) -> str:
        """The workdir of a training run (a baseline, or an architecture trained alone)."""
        return self._path("runs", name)

    def probe(self, name: str) -> str:
        """The scratch workdir of a baseline's timing probe."""
        return self._path("probe", name)

    def exports(self, group: str) -> str:
        """The parent folder of a group's exports (`<group>/<network name>/`)."""
        return self._path("export", group)

    def finetuned(self, name: str) -> str:
        """A fine-tuned cut-out (`.keras`)."""
        return self._path("finetune", f"{name}.keras")

    def finetuned_fit(self, name: str) -> str:
        """A fine-tuned cut-out's thresholds, refitted on validation."""
        return self._path("finetune", f"{name}.json")

    @property
    def before(self) -> str:
        """Which earlier-recipe supernet the "before" steps measured (`stage_before`)."""
        return self._path("before.json")

    def test_result(self, name: str) -> str:
        """A network's measurement on the test split (stage 7)."""
        return self._path("test", f"{name}.json")


# Settings a resumed run may spell differently: the workdir holds the claim folder itself, so
# `runs/bench` and its absolute path are the same run.
RESUMABLE_SETTINGS = ("workdir", "before_workdir")


def check_settings(paths: ClaimPaths, settings: dict) -> None:
    """Writes the run's settings on its first start; later, refuses other settings (but for
    `RESUMABLE_SETTINGS`).

    Raises:
      ClaimError: `settings.json` holds other settings (each difference named).
    """
    if not os.path.exists(paths.settings):
        write_json_atomic(paths.settings, settings, error=ClaimError)
        return
    old = read_json_file(paths.settings, "claim settings")
    diff = [
        f"{k} {old.get(k)!r} -> {settings.get(k)!r}"
        for k in sorted(set(old) | set(settings))
        if old.get(k) != settings.get(k) and k not in RESUMABLE_SETTINGS
    ]
    if diff:
        raise ClaimError(
            f"{paths.root} was started with other settings ({', '.join(diff)}): run it with "
            "the same flags, or move that folder away to start over"
        )


class Steps:
    """Runs steps once each, across interruptions.

    Args:
      paths: the claim folder.
      log: progress lines.
      python: the interpreter tools run with.
    """

    def __init__(self, paths: ClaimPaths, log: Log, python: str = sys.executable):
        self.paths = paths
        self.log = log
        self.python = python

    def result(self, step: str) -> dict | None:
        """The marker of `step` if it completed, else None."""
        path = self.paths.done(step)
        return read_json_file(path, "step marker") if os.path.exists(path) else None

    def run(self, step: str, fn: Callable[..., object], *args) -> object:
        """Runs `fn(*args)` unless `step` completed before; returns what it returned (kept in
        the marker, so it must be JSON-safe)."""
        done = self.result(step)
        if done is not None:
            self.log(f"[claim] {step}: done before ({done['seconds']:.0f} s), skipped")
            return done["result"]
        self.log(f"[claim] {step}: running")
        start = time.time()
        result = fn(*args)
        seconds = time.time() - start
        marker = {"step": step, "seconds": round(seconds, 1), "finished": start + seconds}
        write_json_atomic(self.paths.done(step), {**marker, "result": result}, error=ClaimError)
        self.log(f"[claim] {step}: done in {seconds:.0f} s")
        return result

    def tool(self, step: str, module: str, args: list[str]) -> object:
        """Runs `python -m <module> <args>` as step `step` (`run`)."""
        return self.run(step, run_tool, self.python, module, args, self.log)


def run_tool(python: str, module: str, args: list[str], log: Log) -> dict:
    """Runs a tool, its stdout passed through, its stderr kept for the error line.

    Returns:
      `{"command": [...]}` (what the marker records).

    Raises:
      ClaimError: the tool exited non-zero; the message has its last stderr line.
    """
    command = [python, "-m", module, *args]
    log("[claim] $ " + " ".join(command[1:]))
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    proc = subprocess.run(command, stdout=None, stderr=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else "(nothing on stderr)"
        raise ClaimError(f"{module} exited with status {proc.returncode}: {last}")
    return {"command": command[1:]}
