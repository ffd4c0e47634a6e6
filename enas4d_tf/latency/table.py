"""A latency lookup table: measured times of the parts stage graphs are made of, on one target.

The file is JSON:

    {
      "format": "enas4d_latency_table/2",
      "target": {"kind": "host" | "android", "device": "...", "runtime": "...",
                 "threads": 1, "quantization": "float32"},
      "preset": "fashion_mnist",          # the search space the keys were enumerated for
      "num_classes": 10,
      "entries": {"conv:act=relu,cin=8,cout=24,k=1,side=16,stride=1": 0.0123, ...},
      "fit": {"scale": 1.0, "fixed_ms": 0.0, "per_input_ms": 0.0, "per_output_ms": 0.0,
              "per_input_kib_ms": 0.0, "per_output_kib_ms": 0.0},
      "meta": {...}                       # free-form: how it was measured
    }

`entries` maps a part key (`enas4d_tf.latency.parts`) to its time in milliseconds, measured
alone. `fit` relates whole stage graphs to the sum of their parts (fitted on measured stage
graphs by `tools.latency_table`; identity when not fitted): a graph of parts `P` with
`n_in` input tensors of `kib_in` KiB and `n_out` output tensors of `kib_out` KiB takes
(`graph_ms`) `scale * sum(entries[p] for p in P) + fixed_ms + per_input_ms * n_in
+ per_output_ms * n_out + per_input_kib_ms * kib_in + per_output_kib_ms * kib_out`.
BUILD_NOTES.md "Latency table keys" says why the keys are what they are.

This module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from enas4d_tf.errors import LatencyError
from enas4d_tf.files import read_json, write_json_atomic

TABLE_FORMAT = "enas4d_latency_table/2"
TARGET_KINDS = ("host", "android")
# The quantisations an export can hold (enas4d_tf.export.plan.QUANTIZATIONS, without
# importing the export package).
QUANTIZATIONS = ("float32", "float16", "int8", "int8_qat")
FIT_FIELDS = (
    "scale",
    "fixed_ms",
    "per_input_ms",
    "per_output_ms",
    "per_input_kib_ms",
    "per_output_kib_ms",
)
IDENTITY_FIT = {name: 0.0 for name in FIT_FIELDS} | {"scale": 1.0}


def graph_ms(fit: dict, parts_ms: float, io) -> float:
    """A whole graph's time from the sum of its parts' times and its input and output
    tensors, by a table's `fit`.

    Args:
      fit: the table's `fit`.
      parts_ms: the sum of the graph's parts' entries.
      io: `(inputs, outputs, input KiB, output KiB)` (`handoffs.GraphIO.counts`).
    """
    inputs, outputs, kib_in, kib_out = io
    return (
        fit["scale"] * parts_ms
        + fit["fixed_ms"]
        + fit["per_input_ms"] * inputs
        + fit["per_output_ms"] * outputs
        + fit["per_input_kib_ms"] * kib_in
        + fit["per_output_kib_ms"] * kib_out
    )


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a table was measured.

    Attributes:
      kind: "host" (this machine) or "android" (a phone, benchmark_model).
      device: the machine, in words (CPU model, phone model).
      runtime: the runtime and its version; for "host" it tells LiteRT's Python interpreter
        (`ai-edge-litert X interpreter`, tools.latency_table) from `litert-benchmark ...`
        (a kit timed with `export.android_benchmark --latency_kit --host`).
      threads: CPU threads the graphs ran on.
      quantization: which stage graphs the times are for (one of `QUANTIZATIONS`).
    """

    kind: str
    device: str
    runtime: str
    threads: int
    quantization: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LatencyTable:
    """Measured part times of one target and search space (see the module docstring).

    Attributes:
      target: where it was measured.
      preset: the search space's name.
      num_classes: the classifier outputs the exit keys were measured with.
      entries: part key -> milliseconds.
      fit: `FIT_FIELDS` -> float; how a whole graph relates to its parts.
      meta: free-form notes on the measurement (not read by the model).
    """

    target: Target
    preset: str
    num_classes: int
    entries: dict
    fit: dict = dataclasses.field(default_factory=lambda: dict(IDENTITY_FIT))
    meta: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        """The JSON form (`from_dict` reads it back)."""
        return {
            "format": TABLE_FORMAT,
            "target": self.target.to_dict(),
            "preset": self.preset,
            "num_classes": int(self.num_classes),
            "entries": {k: float(v) for k, v in sorted(self.entries.items())},
            "fit": {k: float(self.fit[k]) for k in FIT_FIELDS},
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "latency table") -> LatencyTable:
        """Checks and reads the JSON form.

        Raises:
          LatencyError: one line naming `where` and the first bad field.
        """
        if not isinstance(d, dict):
            raise LatencyError(f"{where} is not a JSON object")
        if d.get("format") != TABLE_FORMAT:
            raise LatencyError(
                f"{where} has format {d.get('format')!r}, expected {TABLE_FORMAT!r} "
                "(write it with python -m tools.latency_table)"
            )
        for key in ("target", "preset", "num_classes", "entries"):
            if key not in d:
                raise LatencyError(f"{where} lacks {key!r}")
        preset = d["preset"]
        if not isinstance(preset, str) or not preset:
            raise LatencyError(f"{where}: 'preset' must be a non-empty string")
        num_classes = d["num_classes"]
        if not _is_int(num_classes) or num_classes < 1:
            raise LatencyError(f"{where}: 'num_classes' must be an integer >= 1")
        return cls(
            target=_read_target(d["target"], where),
            preset=preset,
            num_classes=int(num_classes),
            entries=_read_entries(d["entries"], where),
            fit=_read_fit(d.get("fit", IDENTITY_FIT), where),
            meta=d.get("meta", {}) if isinstance(d.get("meta", {}), dict) else {},
        )

    @classmethod
    def load(cls, path: str) -> LatencyTable:
        """Reads a table file.

        Raises:
          LatencyError: missing, unreadable, not JSON, another format or a bad field (one
            line naming the file).
        """
        return cls.from_dict(
            read_json(path, LatencyError, "latency table"), f"latency table {path}"
        )

    def save(self, path: str) -> None:
        """Writes the table atomically (a reader never sees half a file; a failed write
        keeps the previous one).

        Raises:
          LatencyError: the file cannot be written.
        """
        write_json_atomic(path, self.to_dict(), sort_keys=False, error=LatencyError)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _read_target(t: Any, where: str) -> Target:
    if not isinstance(t, dict):
        raise LatencyError(f"{where}: 'target' must be an object")
    missing = [f.name for f in dataclasses.fields(Target) if f.name not in t]
    if missing:
        raise LatencyError(f"{where}: 'target' lacks {', '.join(missing)}")
    if t["kind"] not in TARGET_KINDS:
        raise LatencyError(f"{where}: target kind {t['kind']!r} is not one of {TARGET_KINDS}")
    for name in ("device", "runtime"):
        if not isinstance(t[name], str):
            raise LatencyError(f"{where}: target {name} must be a string")
    if not _is_int(t["threads"]) or t["threads"] < 1:
        raise LatencyError(f"{where}: target threads must be an integer >= 1")
    if t["quantization"] not in QUANTIZATIONS:
        raise LatencyError(
            f"{where}: target quantization {t['quantization']!r} is not one of {QUANTIZATIONS}"
        )
    return Target(
        kind=t["kind"],
        device=t["device"],
        runtime=t["runtime"],
        threads=int(t["threads"]),
        quantization=t["quantization"],
    )


def _read_entries(entries: Any, where: str) -> dict:
    if not isinstance(entries, dict) or not entries:
        raise LatencyError(f"{where}: 'entries' must be a non-empty object")
    out = {}
    for key, ms in entries.items():
        if not _is_number(ms) or ms < 0:
            raise LatencyError(f"{where}: entry {key!r} is {ms!r}, not a time >= 0 in ms")
        out[key] = float(ms)
    return out


def _read_fit(fit: Any, where: str) -> dict:
    if not isinstance(fit, dict) or set(fit) != set(FIT_FIELDS):
        raise LatencyError(f"{where}: 'fit' must hold exactly {', '.join(FIT_FIELDS)}")
    for name in FIT_FIELDS:
        if not _is_number(fit[name]):
            raise LatencyError(f"{where}: fit {name} is {fit[name]!r}, not a finite number")
    if fit["scale"] <= 0:
        raise LatencyError(f"{where}: fit scale must be > 0, got {fit['scale']!r}")
    return {name: float(fit[name]) for name in FIT_FIELDS}
