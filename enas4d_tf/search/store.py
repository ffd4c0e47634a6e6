"""The search's persistent state: every measured candidate, saved after each measurement.

`<workdir>/search/state.json` lists the candidates (architecture, stage MACs, per-exit
validation accuracy, the threshold fits computed so far) and `<workdir>/search/predictions/
<key>.npz` keeps each one's per-exit validation confidence and correctness, from which
thresholds for any budget are refitted without running the network. A run with the same
settings takes every measurement it finds here and measures nothing twice.
"""

from __future__ import annotations

import dataclasses
import io
import os

import numpy as np

from enas4d_tf.errors import WorkdirError
from enas4d_tf.evaluation import Measurement
from enas4d_tf.exit_policy import ValidationSplit
from enas4d_tf.files import read_json, write_bytes_atomic, write_json_atomic
from enas4d_tf.space import Arch, SearchSpace
from enas4d_tf.workdir import Workdir

STATE_VERSION = 2
# Settings keys renamed since an older state version: a state written with the old name
# still resumes (its measurements were made the same way).
_RENAMED_SETTINGS = {"num_calib_images": "num_calibration_images"}


@dataclasses.dataclass(eq=False)
class Candidate:
    """A measured architecture, keyed by `enas4d_tf.space.ops.arch_key`."""

    key: str
    measurement: Measurement

    @property
    def arch(self) -> Arch:
        return self.measurement.arch

    @property
    def stage_macs(self) -> list:
        return self.measurement.stage_macs


def _upgrade(state: dict) -> dict:
    """A state of version 1 as version 2: only settings keys were renamed."""
    if state.get("version") == 1 and isinstance(state.get("settings"), dict):
        settings = {_RENAMED_SETTINGS.get(k, k): v for k, v in state["settings"].items()}
        state = {**state, "version": STATE_VERSION, "settings": settings}
    return state


def _read_state(path: str) -> dict:
    advice = "delete it to start the search over"
    state = read_json(path, lambda message: WorkdirError(f"{message}; {advice}"), "search state")
    state = _upgrade(state) if isinstance(state, dict) else state
    if (
        not isinstance(state, dict)
        or state.get("version") != STATE_VERSION
        or not isinstance(state.get("candidates"), dict)
    ):
        raise WorkdirError(f"{path} is not a search state of version {STATE_VERSION}; {advice}")
    return state


class SearchStore:
    """Measured candidates in `<workdir>/search/`, saved after every measurement.

    A state measured with other settings (checkpoint, dataset, image counts) is not
    comparable and is discarded, with a log line.

    Args:
      paths: the workdir.
      settings: what makes measurements comparable (checkpoint, data, image counts).
      space: the search space.
      log: progress messages.

    Raises:
      WorkdirError: `state.json` exists but is not a search state.
    """

    def __init__(self, paths: Workdir, settings: dict, space: SearchSpace, log=print):
        self.paths = paths
        self.settings = settings
        self.space = space
        self.path = paths.search_state
        self._entries: dict = {}
        self._loaded: dict = {}
        self.measured_this_run = 0
        self.measure_seconds = 0.0
        if os.path.exists(self.path):
            state = _read_state(self.path)
            if state.get("settings") == settings:
                self._entries = state["candidates"]
            else:
                log(
                    f"{self.path} was measured with other settings (checkpoint, data or image "
                    "counts); starting the search over"
                )

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Candidate | None:
        """The stored candidate, or None (also when its predictions file is missing)."""
        if key in self._loaded:
            return self._loaded[key]
        entry = self._entries.get(key)
        if entry is None:
            return None
        try:
            arch = Arch.from_dict(entry["arch"])
            self.space.validate(arch)
            with np.load(os.path.join(self.paths.search, entry["predictions"])) as z:
                confidence = np.asarray(z["confidence"], np.float32)
                correct = np.asarray(z["correct"], bool)
            split = ValidationSplit.from_confidences(confidence, correct)
            measurement = Measurement(arch, list(entry["stage_macs"]), split, 0.0)
        except (OSError, KeyError, ValueError, TypeError):
            return None  # measured again
        candidate = Candidate(key, measurement)
        self._loaded[key] = candidate
        return candidate

    def add(self, candidate: Candidate) -> None:
        """Saves a freshly measured candidate (predictions first, then the state)."""
        m = candidate.measurement
        path = os.path.join(self.paths.search_predictions, f"{candidate.key}.npz")
        buffer = io.BytesIO()
        np.savez_compressed(buffer, confidence=m.split.confidence, correct=m.split.correct)
        write_bytes_atomic(path, buffer.getvalue())
        self._entries[candidate.key] = {
            "arch": m.arch.to_dict(),
            "stage_macs": [int(c) for c in m.stage_macs],
            "exit_accuracy": m.exit_accuracy,
            "seconds": round(m.seconds, 4),
            # Relative to the search folder, so a workdir can be moved.
            "predictions": os.path.relpath(path, self.paths.search).replace(os.sep, "/"),
        }
        self._loaded[candidate.key] = candidate
        self.measured_this_run += 1
        self.measure_seconds += m.seconds
        self.save()

    def save(self) -> None:
        """Writes `state.json`, with the threshold fits computed so far for each candidate."""
        for key, candidate in self._loaded.items():
            fits = {}
            for (budget, method), fit in sorted(candidate.measurement.fits.items()):
                if fit is not None:
                    fits[f"{method}@{budget:g}"] = {
                        "accuracy": fit.accuracy,
                        "avg_macs": fit.avg_macs,
                        "exit_rates": fit.exit_rates,
                        "thresholds": fit.thresholds,
                    }
            if key in self._entries:
                self._entries[key]["fits"] = fits
        state = {"version": STATE_VERSION, "settings": self.settings, "candidates": self._entries}
        write_json_atomic(self.path, state)
