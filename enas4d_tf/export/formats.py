"""The two files that cross from one step to the next: architecture files and manifest.json.

Both schemas are written and read in this package, nowhere else: architecture files in
`enas4d_tf.export.arch_files` (its public names are re-exported here, where callers have
always found them), the manifest here.

A *manifest* (`<export dir>/manifest.json`, README.md "Export and deployment") is what a
runtime needs to run an export's stage graphs as an early-exit cascade: see `build_manifest`;
`manifest_thresholds` reads the thresholds of one quantisation's graphs.

Format history: version 2 of both numbers exits from 1 in the names a user sees (stage graph
files `stage1_<q>.tflite`, ...; a manifest stage's `exit`); version 1 numbered them from 0.
An older file is refused with one line that says how to write it again. A version 2
manifest written before exports refitted thresholds per quantisation has no
`per_quantization`; it is read as it was (`manifest_thresholds` falls back to its float
thresholds).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence

from enas4d_tf.errors import ExportDirError
from enas4d_tf.export import litert
from enas4d_tf.export.arch_files import (  # noqa: F401  (re-exported, see the docstring)
    ARCH_FILE_KEYS,
    ARCH_FILE_VERSION,
    COSTS,
    LATENCY_KEYS,
    MODES,
    ArchSpec,
    arch_file_record,
    check_exit,
    read_arch_file,
    write_arch_file,
)
from enas4d_tf.export.integrity import check_manifest, sha256
from enas4d_tf.files import read_json, write_json_atomic
from enas4d_tf.space import SearchSpace
from enas4d_tf.workdir import ExportDir

MANIFEST_VERSION = 2
# The manifest names files relative to its folder; ExportDir owns the names.
_SUBNET_FILE = os.path.basename(ExportDir("").subnet)


# -- manifest.json ---------------------------------------------------------------------------


def versions() -> dict:
    """Versions of the packages that made an export."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in (
        "enas4d_tf",
        "tensorflow",
        "keras",
        "tf_keras",
        "tensorflow-model-optimization",
        "ai-edge-litert",
        "numpy",
    ):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def preprocessing_record(
    dataset: str, input_size: int, resolution: int, mean: Sequence, std: Sequence
) -> dict:
    """The manifest's `preprocessing`: how a runtime turns a dataset image into the input."""
    return {
        "dataset": dataset,
        "input_size": int(input_size),
        "resize": "bilinear",
        "resolution": int(resolution),
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "normalize": "(pixel / 255 - mean) / std per channel, then resize",
        "layout": "NHWC",
        "batch": 1,
        "dtype": "float32",
    }


def graph_file_record(path: str, flatbuffer: bytes, check_xnnpack: bool = True) -> dict:
    """The manifest's record of one stage graph file (written at `path`, named relative to
    its folder): size, serving signature, tensor dtypes, ops, whether XNNPACK takes every op
    (when `check_xnnpack`) and SHA-256."""
    record = {
        "file": os.path.basename(path),
        "bytes": len(flatbuffer),
        "signature": litert.signature(flatbuffer),
        "tensor_dtypes": litert.tensor_dtypes(flatbuffer),
        "ops": litert.op_names(flatbuffer),
    }
    if check_xnnpack:
        record["xnnpack_fully_accelerated"] = litert.xnnpack_fully_accelerated(path)
    record["sha256"] = sha256(path)
    return record


def stage_record(
    exit_number: int, files: dict, cumulative_macs: int, threshold: float | None
) -> dict:
    """One entry of the manifest's `stages`.

    Args:
      exit_number: the stage's exit, numbered from 1.
      files: `{quantization: graph_file_record(...)}`, in the export's quantisation order;
        the first one's signature names the inputs and outputs (every quantisation keeps
        them).
      cumulative_macs: MACs to this exit.
      threshold: this exit's threshold (None = never leave here).
    """
    signature = next(iter(files.values()))["signature"]
    inputs, outputs = sorted(signature["inputs"]), sorted(signature["outputs"])
    return {
        "exit": int(exit_number),
        "inputs": [{"name": n, **signature["inputs"][n]} for n in inputs],
        "outputs": [{"name": n, **signature["outputs"][n]} for n in outputs],
        "reads": [n for n in inputs if n != "image"],
        "hands_on": [n for n in outputs if n != "logits"],
        "cumulative_macs": int(cumulative_macs),
        "threshold": threshold,
        "files": dict(files),
    }


def build_manifest(
    spec: ArchSpec,
    space: SearchSpace,
    num_classes: int,
    preprocessing: dict,
    stages: Sequence[dict],
    quantizations: Sequence[str],
    subnet_sha256: str,
    per_quantization: dict | None = None,
) -> dict:
    """The manifest of an export (JSON-safe).

    Keys: format_version, name, mode, exit (None, or the one exit `s` of a network truncated
    there), arch, space, num_classes, num_stages (stage graphs: S, or 1 for a truncated
    network), thresholds (one per stage graph: the search's, fitted on the float network),
    exit_policy (in words), stage_macs (cumulative MACs to each stage graph's exit),
    quantization (list), preprocessing (`preprocessing_record`), stages (`stage_record` per
    exit: exit number from 1, inputs and outputs with shapes and dtypes, reads = hand-offs it
    takes, hands_on = hand-offs it returns, files per quantisation with sha256, size, ops and
    XNNPACK delegation), subnet (file and sha256), search (fields of the search result),
    source, versions, and, when given, per_quantization: `{quantization:
    policies.policy_record(...)}`, the thresholds, exit rates, validation accuracy and
    average cost of that quantisation's own graphs (read thresholds with
    `manifest_thresholds`). The exporter adds export_seconds.
    """
    manifest = {
        "format_version": MANIFEST_VERSION,
        "name": spec.name,
        "mode": spec.mode,
        "exit": spec.exit,
        "arch": spec.arch.to_dict(),
        "space": space.to_dict(),
        "num_classes": int(num_classes),
        "num_stages": len(stages),
        "thresholds": [stage["threshold"] for stage in stages],
        "exit_policy": "leave at the first exit s whose max softmax probability >= "
        "thresholds[s] (per_quantization[q].thresholds[s] for the graphs of quantisation q, "
        "when present); null = never leave there; the last exit takes the rest",
        "stage_macs": [int(stage["cumulative_macs"]) for stage in stages],
        "quantization": list(quantizations),
        "preprocessing": preprocessing,
        "stages": list(stages),
        "subnet": {"file": _SUBNET_FILE, "sha256": subnet_sha256},
        "search": spec.search,
        "source": spec.source,
        "versions": versions(),
    }
    if per_quantization is not None:
        manifest["per_quantization"] = {q: per_quantization[q] for q in quantizations}
    return manifest


def manifest_thresholds(manifest: dict, quantization: str) -> list:
    """The exit thresholds of one quantisation's stage graphs (one per stage graph).

    An export records, per quantisation, thresholds refitted on that quantisation's graphs
    (`manifest["per_quantization"][q]["thresholds"]`). A manifest written before exports did
    that has no `per_quantization`: its float thresholds (`manifest["thresholds"]`, fitted
    by the search on the float network) are returned for every quantisation, as that
    version's cascade used them.

    Args:
      manifest: a manifest checked by `read_manifest`.
      quantization: which stage graphs.

    Raises:
      ExportDirError: the quantisation was not exported.
    """
    available = manifest["quantization"]
    if quantization not in available:
        raise ExportDirError(
            f"quantisation {quantization!r} was not exported; available: {', '.join(available)}"
        )
    per_quantization = manifest.get("per_quantization")
    if per_quantization is None:
        return list(manifest["thresholds"])
    return list(per_quantization[quantization]["thresholds"])


def write_manifest(export_dir: str, manifest: dict) -> None:
    """Writes `<export_dir>/manifest.json` atomically (keys in `build_manifest`'s order)."""
    write_json_atomic(ExportDir(export_dir).manifest, manifest, sort_keys=False)


def read_manifest(export_dir: str) -> dict:
    """Loads and checks `<export_dir>/manifest.json`.

    Raises:
      ExportDirError: no such folder or manifest, malformed JSON, a missing key or a value of
        the wrong type or range (`integrity.check_manifest`), or a manifest of another format
        version (the message says how to export it again).
    """
    path = ExportDir(export_dir).manifest
    if not os.path.isdir(export_dir):
        raise ExportDirError(f"export folder {export_dir} does not exist")
    if not os.path.exists(path):
        raise ExportDirError(f"{path} not found: {export_dir} is not an export folder")
    manifest = read_json(path, ExportDirError, "manifest")
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != MANIFEST_VERSION:
        source = manifest.get("source") if isinstance(manifest, dict) else None
        raise ExportDirError(
            f"manifest.json of {export_dir} is format {version!r}, this version reads format "
            f"{MANIFEST_VERSION}; re-export it with this version: python -m tools.export "
            f"--workdir=<training workdir> --arch={source or '<architecture file>'} "
            f"--out={os.path.dirname(os.path.abspath(export_dir))} --overwrite"
        )
    check_manifest(manifest, path)
    return manifest
