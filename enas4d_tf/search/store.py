"""The search's persistent state: every measured candidate, saved after each measurement.

`<workdir>/search/state.json` lists the candidates (architecture, stage MACs, per-exit
validation accuracy, the threshold fits computed so far) and the last run's generations
(`generations`: per generation, the predictor chosen and its held-out Kendall tau);
`<workdir>/search/predictions/<key>.npz` keeps each one's per-exit validation confidence
and correctness, from which thresholds for any budget are refitted without running the
network. A run with the same settings takes every measurement it finds here and measures
nothing twice.

Nothing measured is lost silently. A state measured with other settings is moved aside,
with its predictions, to `<workdir>/search/previous/<time>/` (named in the log), and the
search starts over. A predictions file that is missing or unreadable is measured again,
with a log line.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
import zipfile

import numpy as np

from enas4d_tf.errors import SearchError, WorkdirError
from enas4d_tf.exit_policy import ValidationSplit
from enas4d_tf.files import read_json, write_bytes_atomic, write_json_atomic
from enas4d_tf.search.measurement import Measurement
from enas4d_tf.space import Arch, SearchSpace
from enas4d_tf.workdir import Workdir

STATE_VERSION = 2
# Where states measured with other settings are moved: `<search>/previous/<time>/`.
PREVIOUS_FOLDER = "previous"
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


def read_state(path: str) -> dict:
    """Reads a search state (upgraded to the current version).

    Raises:
      WorkdirError: unreadable, not JSON, or not a search state of a version this reads.
    """
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
    comparable: it is moved aside with its predictions (`<workdir>/search/previous/<time>/`),
    with a log line naming the settings that differ and where it went.

    Args:
      paths: the workdir.
      settings: what makes measurements comparable (checkpoint, data, image counts).
      space: the search space.
      log: progress messages.

    Raises:
      WorkdirError: `state.json` exists but is not a search state.
      SearchError: it cannot be moved aside.
    """

    def __init__(self, paths: Workdir, settings: dict, space: SearchSpace, log=print):
        self.paths = paths
        self.settings = settings
        self.space = space
        self.log = log
        self.path = paths.search_state
        self._entries: dict = {}
        self._loaded: dict = {}
        self.measured_this_run = 0
        self.measure_seconds = 0.0
        self.generations: list = []
        if os.path.exists(self.path):
            state = read_state(self.path)
            if state.get("settings") == settings:
                self._entries = state["candidates"]
            else:
                old = state.get("settings") or {}
                differ = sorted(
                    k for k in set(old) | set(settings) if old.get(k) != settings.get(k)
                )
                folder = self._move_aside()
                log(
                    f"{self.path} was measured with other settings ({', '.join(differ)}); "
                    f"moved it and its predictions to {folder} and starting the search over"
                )

    def _move_aside(self) -> str:
        """Moves state.json and predictions/ into a new `search/previous/<time>/`; returns it.

        The predictions go first: a run stopped in between leaves the state where it was,
        and the next run moves it too.
        """
        stamp = time.strftime("%Y%m%dT%H%M%S")
        base = os.path.join(self.paths.search, PREVIOUS_FOLDER, stamp)
        folder, n = base, 1
        while os.path.exists(folder):
            n += 1
            folder = f"{base}_{n}"
        try:
            os.makedirs(folder)
            if os.path.isdir(self.paths.search_predictions):
                os.replace(self.paths.search_predictions, os.path.join(folder, "predictions"))
            os.replace(self.path, os.path.join(folder, os.path.basename(self.path)))
        except OSError as e:
            raise SearchError(
                f"cannot move the search state {self.path} (measured with other settings) "
                f"aside to {folder}: {e.strerror or e}; it is kept where it was"
            ) from None
        return folder

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
            path = os.path.join(self.paths.search, entry["predictions"])
            with np.load(path) as z:
                confidence = np.asarray(z["confidence"], np.float32)
                correct = np.asarray(z["correct"], bool)
            split = ValidationSplit.from_confidences(confidence, correct)
            if split.num_images != self.settings.get("num_val_images", split.num_images):
                raise ValueError(f"{split.num_images} images instead of the settings' count")
            measurement = Measurement(arch, list(entry["stage_macs"]), split, 0.0)
        except FileNotFoundError:
            self.log(f"candidate {key}: its predictions file is missing; measuring it again")
            return None
        except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as e:
            # A truncated or garbled .npz raises any of these, depending on where it breaks.
            reason = " ".join(str(e).split()) or type(e).__name__
            self.log(
                f"candidate {key}: its predictions are unreadable ({reason}); measuring it again"
            )
            return None
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

    def set_generations(self, generations: list) -> None:
        """Keeps this run's per-generation summaries (`GenerationLog.summary()`: the
        predictor chosen, its held-out and prospective Kendall tau, the inner evolution's
        CPU time) in state.json, and saves it. A resumed run replays the search and writes
        them again."""
        self.generations = list(generations)
        self.save()

    def save(self) -> None:
        """Writes `state.json`, with the threshold fits computed so far for each candidate
        (`<method>@<budget>`, average cost `avg_macs`; fitted to latency, `<method>@<budget>ms`
        and `avg_ms`)."""
        for key, candidate in self._loaded.items():
            fits = {}
            latency = candidate.measurement.stage_costs is not None
            unit, avg = ("ms", "avg_ms") if latency else ("", "avg_macs")
            for (budget, method), fit in sorted(candidate.measurement.fits.items()):
                if fit is not None:
                    # A cross-fit has one set of thresholds per half of the images.
                    t = getattr(fit, "thresholds", None) or [f.thresholds for f in fit.fits]
                    fits[f"{method}@{budget:g}{unit}"] = {
                        "accuracy": fit.accuracy,
                        avg: fit.avg_macs,
                        "exit_rates": fit.exit_rates,
                        "thresholds": t,
                    }
            if key in self._entries:
                self._entries[key]["fits"] = fits
        state = {
            "version": STATE_VERSION,
            "settings": self.settings,
            "candidates": self._entries,
            "generations": self.generations,
        }
        write_json_atomic(self.path, state)
