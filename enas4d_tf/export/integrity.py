"""Checks of an export folder before anything runs it: the manifest's schema and the graphs'
hashes.

Whatever reads an export (the host cascade, the Android kit) calls `check_manifest` (through
`formats.read_manifest`) and `check_graph_files` first, so a truncated, empty, garbage or
swapped stage graph, a manifest missing a key or holding a bad value (a threshold that is
not a number in [0, 1] or null, NaN included) ends in one `ExportDirError` line instead of a
traceback or a silently wrong result. Imports neither TensorFlow nor LiteRT: a tool checks
its input before paying for them.
"""

from __future__ import annotations

import math
import numbers
import os

from enas4d_tf.errors import ExportDirError
from enas4d_tf.files import sha256  # noqa: F401  (formats re-exports it)


class _Schema:
    """Type checks of one manifest; each failure is one line naming the key and the file."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, key: str, problem: str):
        raise ExportDirError(f"{self.path} is malformed: {key} {problem}; re-export it")

    def get(self, record, key: str, where: str = ""):
        if not isinstance(record, dict):
            self.fail(where or "the manifest", "is not a JSON object")
        if key not in record:
            self.fail(f"{where}{key}", "is missing")
        return record[key]

    def integer(self, value, key: str, low: int = 0):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            self.fail(key, f"must be an int >= {low}, got {value!r}")
        return int(value)

    def number(self, value, key: str, positive: bool = False):
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or (positive and value <= 0):
            kind = "a positive finite number" if positive else "a finite number"
            self.fail(key, f"must be {kind}, got {value!r}")
        return float(value)

    def string(self, value, key: str):
        if not isinstance(value, str) or not value:
            self.fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def listing(self, value, key: str, length: int | None = None):
        if not isinstance(value, list) or (length is not None and len(value) != length):
            want = "a list" if length is None else f"a list of {length}"
            self.fail(key, f"must be {want}, got {value!r}"[:300])
        return value

    def threshold(self, value, key: str):
        """A threshold: a number in [0, 1] (NaN is not) or null (never leave there)."""
        if value is None:
            return None
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not ok or not 0.0 <= value <= 1.0:  # NaN fails both comparisons
            self.fail(key, f"must be a number in [0, 1] or null, got {value!r}")
        return float(value)


def check_manifest(manifest, path: str) -> None:
    """Checks every key a runtime reads from a manifest (`formats.build_manifest`'s schema).

    Args:
      manifest: the parsed manifest.json (format version already checked).
      path: its file, for messages.

    Raises:
      ExportDirError: one line naming the first bad key.
    """
    v = _Schema(path)
    stages = v.listing(v.get(manifest, "stages"), "stages")
    if not stages:
        v.fail("stages", "is empty")
    n = len(stages)
    thresholds = v.listing(v.get(manifest, "thresholds"), "thresholds", n)
    for s, t in enumerate(thresholds):
        v.threshold(t, f"thresholds[{s}]")
    macs = v.listing(v.get(manifest, "stage_macs"), "stage_macs", n)
    for s, c in enumerate(macs):
        v.number(c, f"stage_macs[{s}]", positive=True)
    if any(b < a for a, b in zip(macs, macs[1:], strict=False)):
        v.fail("stage_macs", f"must not decrease, got {macs}")
    quantizations = v.listing(v.get(manifest, "quantization"), "quantization")
    for q in quantizations:
        v.string(q, "quantization[]")
    v.integer(v.get(manifest, "num_classes"), "num_classes", low=1)
    exit_number = manifest.get("exit")
    if exit_number is not None:
        v.integer(exit_number, "exit", low=1)
        if n != 1:
            v.fail("stages", f"of a network truncated at exit {exit_number} must be one")
    _check_preprocessing(v, v.get(manifest, "preprocessing"))
    if manifest.get("per_quantization") is not None:
        _check_per_quantization(v, manifest["per_quantization"], quantizations, n)
    previous = 0
    for s, stage in enumerate(stages):
        number = v.integer(v.get(stage, "exit", f"stages[{s}]."), f"stages[{s}].exit", low=1)
        if number <= previous:
            v.fail(f"stages[{s}].exit", f"must increase, got {number} after {previous}")
        previous = number
        v.threshold(v.get(stage, "threshold", f"stages[{s}]."), f"stages[{s}].threshold")
        _check_stage_files(v, stage, s, quantizations)


def _check_preprocessing(v: _Schema, pre) -> None:
    where = "preprocessing."
    v.string(v.get(pre, "dataset", where), where + "dataset")
    v.integer(v.get(pre, "input_size", where), where + "input_size", low=1)
    v.integer(v.get(pre, "resolution", where), where + "resolution", low=1)
    for key in ("mean", "std"):
        values = v.listing(v.get(pre, key, where), where + key)
        if not values:
            v.fail(where + key, "is empty")
        for c in values:
            v.number(c, where + key, positive=key == "std")


# How a quantisation's thresholds were chosen (`enas4d_tf.export.policies`).
ORIGINS = ("refit", "search", "static", "arch_file")


def _check_per_quantization(v: _Schema, block, quantizations, n: int) -> None:
    """`per_quantization`: one policy record per exported quantisation, none other."""
    if not isinstance(block, dict):
        v.fail("per_quantization", "is not a JSON object")
    extra = sorted(set(block) - set(quantizations))
    if extra:
        v.fail(f"per_quantization.{extra[0]}", "names a quantisation that was not exported")
    for q in quantizations:
        where = f"per_quantization.{q}."
        record = v.get(block, q, "per_quantization.")
        thresholds = v.listing(v.get(record, "thresholds", where), where + "thresholds", n)
        for s, t in enumerate(thresholds):
            v.threshold(t, f"{where}thresholds[{s}]")
        if thresholds[-1] != 0.0:
            v.fail(where + "thresholds", f"must end in 0.0 (the last exit), got {thresholds}")
        origin = v.get(record, "origin", where)
        if origin not in ORIGINS:
            v.fail(where + "origin", f"must be one of {', '.join(ORIGINS)}, got {origin!r}")
        if v.get(record, "cost", where) not in ("macs", "latency"):
            v.fail(where + "cost", f"must be 'macs' or 'latency', got {record['cost']!r}")
        if v.get(record, "budget", where) is not None:
            v.number(record["budget"], where + "budget", positive=True)
        v.integer(v.get(record, "num_images", where), where + "num_images", low=1)
        accuracy = v.number(v.get(record, "val_accuracy", where), where + "val_accuracy")
        if not 0.0 <= accuracy <= 1.0:
            v.fail(where + "val_accuracy", f"must be in [0, 1], got {accuracy}")
        rates = v.listing(v.get(record, "exit_rates", where), where + "exit_rates", n)
        for r in rates:
            if not 0.0 <= v.number(r, where + "exit_rates") <= 1.0:
                v.fail(where + "exit_rates", f"must be in [0, 1], got {r}")
        if abs(sum(rates) - 1.0) > 1e-6:
            v.fail(where + "exit_rates", f"must sum to 1, got {rates}")
        v.number(v.get(record, "avg_macs", where), where + "avg_macs", positive=True)
        if v.get(record, "avg_ms", where) is not None:
            v.number(record["avg_ms"], where + "avg_ms", positive=True)


def _check_stage_files(v: _Schema, stage: dict, s: int, quantizations) -> None:
    where = f"stages[{s}]."
    for key in ("inputs", "outputs"):
        for t in v.listing(v.get(stage, key, where), where + key):
            v.string(v.get(t, "name", where + key + "[]."), where + key + "[].name")
            shape = v.listing(v.get(t, "shape", where + key + "[]."), where + key + "[].shape")
            for d in shape:
                v.integer(d, where + key + "[].shape", low=1)
    files = v.get(stage, "files", where)
    for q in quantizations:
        record = v.get(files, q, where + "files.")
        key = f"{where}files.{q}."
        name = v.string(v.get(record, "file", key), key + "file")
        if os.path.basename(name) != name or name in (".", ".."):
            v.fail(key + "file", f"must be a file name inside the export folder, got {name!r}")
        digest = v.string(v.get(record, "sha256", key), key + "sha256")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            v.fail(key + "sha256", f"is not a hex SHA-256, got {digest!r}")
        v.integer(v.get(record, "bytes", key), key + "bytes", low=1)
        sig = v.get(record, "signature", key)
        for part in ("inputs", "outputs"):
            tensors = v.get(sig, part, key + "signature.")
            if not isinstance(tensors, dict) or not tensors:
                v.fail(key + "signature." + part, "must be a non-empty object")
            for name_, t in tensors.items():
                for d in v.listing(v.get(t, "shape", f"{key}signature.{part}.{name_}."), "shape"):
                    v.integer(d, f"{key}signature.{part}.{name_}.shape", low=1)


def check_graph_files(export_dir: str, manifest: dict, quantization: str) -> list[str]:
    """Checks the stage graphs of one quantisation against the manifest: each exists, is a
    file, has the recorded size and SHA-256.

    Args:
      export_dir: the export folder.
      manifest: its manifest, checked by `check_manifest`.
      quantization: which graphs.

    Returns:
      The graph paths, stage 1 first.

    Raises:
      ExportDirError: the quantisation was not exported, or a graph is missing, truncated,
        replaced or corrupt (one line naming it).
    """
    available = manifest["quantization"]
    if quantization not in available:
        raise ExportDirError(
            f"quantisation {quantization!r} was not exported to {export_dir}; "
            f"available: {', '.join(available)}"
        )
    paths = []
    for stage in manifest["stages"]:
        record = stage["files"][quantization]
        path = os.path.join(export_dir, record["file"])
        if not os.path.isfile(path):
            raise ExportDirError(f"stage graph {path} is missing; re-export {export_dir}")
        size = os.path.getsize(path)
        if size != record["bytes"] or sha256(path) != record["sha256"]:
            raise ExportDirError(
                f"stage graph {path} does not match manifest.json ({size} bytes, recorded "
                f"{record['bytes']}; sha256 differs): it was truncated, replaced or corrupted; "
                f"re-export {export_dir}"
            )
        paths.append(path)
    return paths
