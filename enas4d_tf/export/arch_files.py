"""Architecture files: what the search hands the exporter (and `tools.train --arch_file`
reads).

An *architecture file* (`<workdir>/search/archs/<name>.json`, README.md "Search") holds one
chosen network and its exit thresholds:

  {"format_version": 2, "name": "dynamic_2M", "mode": "dynamic" | "static",
   "arch": Arch.to_dict(), "thresholds": [t_1, ..., t_S] (null = never leave there),
   "stage_macs": [...], "avg_macs": ..., "val_accuracy": ..., "exit_rates": [...],
   "budget_macs": ... | null, "exit": s,
   "cost": "macs" | "latency", "budget_ms": ..., "avg_ms": ..., "stage_ms": [...],
   "cost_target": {"kind", "device", "runtime", "threads", "quantization"}}

`"exit": s` (an int, numbered from 1) marks a *truncated* static network: the architecture's
groups `<= s` and exit `s` alone (every image leaves there; its cost is
`enas4d_tf.model.macs.truncated_macs`). Its thresholds are `[null, ..., null, 0.0]` with `s`
entries. Without the key (or with null) the file is a multi-exit network with `S` thresholds.
The latency keys are optional (`LATENCY_KEYS`). The exporter also takes a bare
`Arch.to_dict()` (exported as a static network).

Format history: version 2 numbers exits from 1; version 1 numbered them from 0. An older file
is refused with one line that says how to write it again. `enas4d_tf.export.formats`
re-exports this module's public names (it holds the manifest's schema).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Sequence

from enas4d_tf import exit_policy
from enas4d_tf.errors import ExportError
from enas4d_tf.files import read_json, write_json_atomic
from enas4d_tf.latency.table import QUANTIZATIONS, TARGET_KINDS, Target
from enas4d_tf.space import Arch, SearchSpace

ARCH_FILE_VERSION = 2

# The fields of an architecture file besides `format_version`, in the order they are listed.
ARCH_FILE_KEYS = (
    "name",
    "mode",
    "arch",
    "thresholds",
    "stage_macs",
    "avg_macs",
    "val_accuracy",
    "exit_rates",
    "budget_macs",
)
# Optional fields, written when a record has them: a search run with `--cost=latency` records
# `"cost": "latency"` and its budget, average and cumulative stage costs in milliseconds
# (`budget_ms`, `avg_ms`, `stage_ms`) beside the MACs ones; without them the cost is MACs.
LATENCY_KEYS = ("cost", "budget_ms", "avg_ms", "stage_ms")
# Also optional, with `"cost": "latency"` only: the latency table's target the ms are of
# (`enas4d_tf.latency.table.Target.to_dict()`), so an export can check it has the same table.
COST_TARGET_KEY = "cost_target"
COSTS = ("macs", "latency")
MODES = ("dynamic", "static")


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """A network to export: architecture, exit thresholds and where it came from.

    Attributes:
      name: folder name of the export.
      arch: the architecture.
      thresholds: S thresholds (None = never exit there; the last is 0.0).
      mode: "dynamic" or "static".
      search: the search result fields (val_accuracy, avg_macs, ...) or {} for a bare arch.
      source: the file it was read from (absolute path).
      exit: for a truncated static network, the one exit it keeps (numbered from 1; its
        thresholds are then `exit` entries, `[None, ..., None, 0.0]`); None for a multi-exit
        network.
    """

    name: str
    arch: Arch
    thresholds: tuple
    mode: str
    search: dict
    source: str
    exit: int | None = None


def arch_file_record(
    name: str,
    mode: str,
    arch: Arch,
    result: exit_policy.PolicyResult,
    stage_macs: Sequence[int],
    budget_macs: float | None = None,
    exit: int | None = None,
) -> dict:
    """The fields of an architecture file for one measured network (JSON-safe).

    The search also keeps these records (with its own extra keys) in pareto.json;
    `write_arch_file` writes the architecture-file fields of one.

    Args:
      name: the network's name (the export folder's name).
      mode: "dynamic" or "static".
      arch: the architecture.
      result: its exit policy on the validation split (thresholds, avg_macs, accuracy,
        exit_rates).
      stage_macs: cumulative MACs to each exit.
      budget_macs: the budget it was chosen for, or None.
      exit: None for a multi-exit network; for a truncated static network (mode "static"),
        its one exit `s` in `1..S` (S = len(stage_macs)): the record gets `"exit": s` and the
        thresholds `[None] * (s - 1) + [0.0]` (every image leaves at exit s), whatever
        `result.thresholds` says. `stage_macs` stays the architecture's `S` cumulative costs.

    Raises:
      ValueError: `exit` not an int in `1..S`, or given with a mode other than "static".
    """
    record = {
        "name": name,
        "mode": mode,
        "arch": arch.to_dict(),
        "thresholds": list(result.thresholds),
        "stage_macs": [int(c) for c in stage_macs],
        "avg_macs": float(result.avg_macs),
        "val_accuracy": float(result.accuracy),
        "exit_rates": list(result.exit_rates),
        "budget_macs": None if budget_macs is None else float(budget_macs),
    }
    if exit is not None:
        exit = check_exit(exit, len(record["stage_macs"]), mode)
        record["exit"] = exit
        record["thresholds"] = exit_policy.static_thresholds(exit)
    return record


def check_exit(exit, num_stages: int, mode: str = "static") -> int:
    """Validates the `exit` of a truncated network: an int in `1..num_stages`, mode "static".

    Raises:
      ValueError: anything else.
    """
    if isinstance(exit, bool) or not isinstance(exit, numbers.Integral):
        raise ValueError(f"exit must be an int in 1..{num_stages} or null, got {exit!r}")
    if not 1 <= exit <= num_stages:
        raise ValueError(f"exit {exit} is outside 1..{num_stages} (exits are numbered from 1)")
    if mode != "static":
        raise ValueError(f"a network truncated at exit {exit} is static, not {mode!r}")
    return int(exit)


def write_arch_file(path: str, record: dict) -> None:
    """Writes an architecture file atomically: `format_version` and the `ARCH_FILE_KEYS`
    fields of `record` (other keys, such as the search's `key`, are left out), the
    `LATENCY_KEYS` and `COST_TARGET_KEY` it has, and `exit` when the record has one that is
    not None (a truncated network)."""
    public = {k: record[k] for k in ARCH_FILE_KEYS}
    public.update((k, record[k]) for k in (*LATENCY_KEYS, COST_TARGET_KEY) if k in record)
    if record.get("exit") is not None:
        public["exit"] = record["exit"]
    write_json_atomic(path, {"format_version": ARCH_FILE_VERSION, **public})


def _valid_name(name) -> bool:
    return (
        isinstance(name, str)
        and bool(name)
        and name not in (".", "..")
        and "/" not in name
        and "\\" not in name
    )


def _old_arch_file(path: str, version) -> ExportError:
    return ExportError(
        f"architecture file {path} is format {version!r}, this version reads format "
        f"{ARCH_FILE_VERSION}; write it again by re-running the search that wrote it "
        "(python -m tools.search --workdir=<workdir> ..., which reuses what it measured)"
    )


def read_arch_file(path: str, space: SearchSpace) -> ArchSpec:
    """Reads an architecture file or a bare `Arch.to_dict()` JSON.

    Args:
      path: the JSON file.
      space: the supernet's search space (the architecture is validated against it).

    Returns:
      The ArchSpec. A bare architecture is static: thresholds [None, ..., None, 0.0], its
      name the file name without `.json`.

    Raises:
      ExportError: missing file, malformed JSON, an older format, a bad architecture or bad
        thresholds.
    """
    if not os.path.exists(path):
        raise ExportError(f"architecture file {path} does not exist")
    data = read_json(path, ExportError, "architecture file")
    default_name = os.path.splitext(os.path.basename(path))[0]
    try:
        if isinstance(data, dict) and "arch" in data:
            version = data.get("format_version", 1)
            if version != ARCH_FILE_VERSION:
                raise _old_arch_file(path, version)
            spec = _spec_from_record(data, space, default_name)
        else:
            # A bare architecture, optionally with "exit": s (as tools.train --arch_file reads it).
            exit = None
            if isinstance(data, dict) and "exit" in data:
                data = dict(data)
                exit = data.pop("exit")
                exit = None if exit is None else check_exit(exit, space.num_stages)
            arch = Arch.from_dict(data)
            space.validate(arch)
            num_exits = space.num_stages if exit is None else exit
            thresholds = exit_policy.static_thresholds(num_exits)
            spec = ArchSpec(default_name, arch, tuple(thresholds), "static", {}, "", exit)
    except ExportError:
        raise
    except (ValueError, TypeError) as e:
        raise ExportError(f"architecture file {path}: {e}") from None
    if not _valid_name(spec.name):
        raise ExportError(f"architecture file {path}: name {spec.name!r} cannot name a folder")
    return dataclasses.replace(spec, source=os.path.abspath(path))


def _spec_from_record(data: dict, space: SearchSpace, default_name: str) -> ArchSpec:
    arch = Arch.from_dict(data["arch"])
    space.validate(arch)
    mode = data.get("mode", "dynamic")
    if mode not in MODES:
        raise ValueError(f"mode must be 'dynamic' or 'static', got {mode!r}")
    exit = data.get("exit")
    if exit is not None:
        exit = check_exit(exit, space.num_stages, mode)
    # A truncated network's exits are 1..exit, of which it keeps only the last.
    num_exits = space.num_stages if exit is None else exit
    thresholds = data.get("thresholds", exit_policy.static_thresholds(num_exits))
    thresholds = exit_policy.check_thresholds(thresholds, num_exits)
    if exit is not None and any(t is not None for t in thresholds[:-1]):
        raise ValueError(
            f"a network truncated at exit {exit} has no earlier exit to leave at: its "
            f"thresholds must be [null, ..., null, 0.0], got {thresholds}"
        )
    # exit_rates: one per exit of the arch; a truncated network's file written before the
    # search listed all S may list its `exit` exits only.
    _check_cost_fields(data, space.num_stages, exit)
    skip = ("format_version", "arch", "thresholds", "name", "exit")
    search = {k: v for k, v in data.items() if k not in skip}
    name = data.get("name", default_name)
    return ArchSpec(name, arch, tuple(thresholds), mode, search, "", exit)


def _check_cost_fields(data: dict, num_exits: int, exit: int | None = None) -> None:
    """What the export refits thresholds from: `cost` is "macs" or "latency"; `budget_macs`
    and `budget_ms` are null or positive finite numbers; `cost_target` is null or (with
    "latency" only) a latency table's target; `exit_rates`, when given, are `num_exits`
    numbers in [0, 1] (the architecture's S, also for a truncated network, as
    `stage_macs`; `exit` numbers are read too for a network truncated at `exit`, as files
    of earlier versions record them)."""
    cost = data.get("cost", "macs")
    if cost not in COSTS:
        raise ValueError(f"cost must be 'macs' or 'latency', got {cost!r}")
    if data.get(COST_TARGET_KEY) is not None:
        if cost != "latency":
            raise ValueError(f"{COST_TARGET_KEY} is recorded only with cost 'latency'")
        _check_cost_target(data[COST_TARGET_KEY])
    for key in ("budget_macs", "budget_ms"):
        budget = data.get(key)
        if budget is not None and not (_is_number(budget) and budget > 0):
            raise ValueError(f"{key} must be a positive number or null, got {budget!r}")
    rates = data.get("exit_rates")
    if rates is None:
        return
    lengths = {num_exits} if exit is None else {num_exits, exit}
    if not isinstance(rates, list) or len(rates) not in lengths:
        raise ValueError(f"exit_rates must be a list of {num_exits} numbers, got {rates!r}")
    if not all(_is_number(r) and 0.0 <= r <= 1.0 for r in rates):
        raise ValueError(f"exit_rates must be numbers in [0, 1], got {rates!r}")


def _check_cost_target(target) -> None:
    """A latency table's target: exactly its fields, a known kind and quantisation, text
    device and runtime, threads an int >= 1."""
    fields = [f.name for f in dataclasses.fields(Target)]
    ok = isinstance(target, dict) and sorted(target) == sorted(fields)
    ok = ok and target["kind"] in TARGET_KINDS and target["quantization"] in QUANTIZATIONS
    ok = ok and all(isinstance(target[k], str) for k in ("device", "runtime"))
    threads = target.get("threads") if ok else None
    if not (ok and isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1):
        raise ValueError(
            f"{COST_TARGET_KEY} must be a latency table's target {{{', '.join(fields)}}} "
            f"(kind in {TARGET_KINDS}, quantization in {QUANTIZATIONS}, threads >= 1), "
            f"got {target!r}"
        )


def _is_number(value) -> bool:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return ok and math.isfinite(value)
