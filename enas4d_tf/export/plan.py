"""What an export will do, checked before TensorFlow is imported, and its temporary folders.

`plan_export` reads the workdir's run config and every architecture file and checks every
output location (an existing export folder without --overwrite, an `--out` that is a file or
cannot be written), so bad input ends in one line within a second and before any work.

Each network is built in a temporary folder `<out>/.tmp_<name>_<random>` beside its target
and renamed into place when complete (`enas4d_tf.export.exporter`). A marker file
`<that folder>.writer` beside it names the writing process (`{"pid", "host", "target"}`) and
is removed last. A killed export leaves both behind: `clean_stale_temporaries`, run at the
start of the next export into the same `--out`, removes only those whose writer is gone
(same host, pid no longer running). If the writer died between moving the previous export
aside (`<temporary>.old`) and moving the new one in, the previous export is put back first.
Temporary folders without a marker (another program's, or an older version's) are left alone.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import secrets
import shutil
import socket
from collections.abc import Callable, Sequence

from enas4d_tf.errors import Enas4dError, ExportDirError, ExportError
from enas4d_tf.export import formats
from enas4d_tf.export.formats import ArchSpec
from enas4d_tf.export.policies import (
    COSTS,
    DEFAULT_THRESHOLD_IMAGES,
    graph_ms,
    latency_models,
)
from enas4d_tf.files import check_writable_dir
from enas4d_tf.locking import pid_alive
from enas4d_tf.space import SearchSpace
from enas4d_tf.workdir import ExportDir, Workdir, read_run_config

QUANTIZATIONS = ("float32", "float16", "int8", "int8_qat")
TEMPORARY_PREFIX = ".tmp_"
MARKER_SUFFIX = ".writer"
OLD_SUFFIX = ".old"

Log = Callable[[str], None]


def parse_quantizations(text: str) -> list[str]:
    """Parses a comma list such as "float32,int8" into known quantisation names.

    Raises:
      ValueError: empty list, unknown or repeated name.
    """
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ValueError("no quantisation given; choose from " + ",".join(QUANTIZATIONS))
    for n in names:
        if n not in QUANTIZATIONS:
            raise ValueError(f"unknown quantisation {n!r}; choose from {','.join(QUANTIZATIONS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"quantisation list {text!r} repeats a name")
    return names


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """How to export (what `tools/export.py`'s flags set).

    Attributes:
      out: parent folder; each network goes to `<out>/<name>/`.
      quantizations: a subset of `QUANTIZATIONS`, in the order the graphs are converted.
      overwrite: replace an existing folder (only once the new one is complete).
      data_dir: dataset folder; default the run config's.
      num_calibration_images: training images loaded for BN recalibration (all of them),
        int8 calibration and QAT fine-tuning.
      representative_images: of those, images for int8 post-training calibration.
      qat_steps: optimizer steps of quantisation-aware fine-tuning ("int8_qat").
      qat_learning_rate: its Adam learning rate.
      check_xnnpack: record whether each graph runs fully on XNNPACK.
      threshold_images: validation images each quantisation's stage graphs run on to refit
        its thresholds (`enas4d_tf.export.policies`; at most the split).
      cost: "macs" or "latency": the unit of the budget thresholds are refitted for.
      latency_tables: with cost "latency", latency table files (`enas4d_tf.latency`), one
        for each exported quantisation's target (int8_qat may use the int8 one).

    Raises:
      ExportError: an unknown quantisation or cost, or a bad threshold_images.
    """

    out: str
    quantizations: tuple = ("float32",)
    overwrite: bool = False
    data_dir: str | None = None
    num_calibration_images: int = 2000
    representative_images: int = 300
    qat_steps: int = 200
    qat_learning_rate: float = 1e-4
    check_xnnpack: bool = True
    threshold_images: int = DEFAULT_THRESHOLD_IMAGES
    cost: str = "macs"
    latency_tables: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "quantizations", tuple(self.quantizations))
        object.__setattr__(self, "latency_tables", tuple(self.latency_tables))
        if self.cost not in COSTS:
            raise ExportError(f"unknown cost {self.cost!r}; choose from {','.join(COSTS)}")
        if self.threshold_images < 1:
            raise ExportError(f"threshold_images must be >= 1, got {self.threshold_images}")
        for q in self.quantizations:
            if q not in QUANTIZATIONS:
                raise ExportError(
                    f"unknown quantisation {q!r}; choose from {','.join(QUANTIZATIONS)}"
                )

    def export_dir(self, name: str) -> ExportDir:
        """The folder of the network `name`'s export."""
        return ExportDir(os.path.join(self.out, name))


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """The checked input of an export: the run config, its space, the networks and, with
    cost "latency", `{quantization: LatencyModel}` (else empty)."""

    run_config: dict
    space: SearchSpace
    specs: list
    latency_models: dict = dataclasses.field(default_factory=dict)


def search_arch_files(workdir: str) -> list[str]:
    """The architecture files the search wrote: `<workdir>/search/archs/*.json`, sorted.

    Raises:
      ExportError: none there.
    """
    pattern = os.path.join(Workdir(workdir).search_archs, "*.json")
    files = sorted(glob.glob(pattern))
    if not files:
        raise ExportError(f"no architecture files match {pattern}: run tools/search.py first")
    return files


def check_output_folder(out_dir: str, overwrite: bool) -> None:
    """Raises ExportError if `out_dir` exists and `overwrite` is False, or if it exists and
    is not a folder (an export never replaces a file)."""
    if os.path.lexists(out_dir) and not overwrite:
        raise ExportError(f"output folder {out_dir} exists (pass --overwrite to replace it)")
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise ExportDirError(f"output folder {out_dir} exists and is not a folder; move it away")


def plan_export(workdir: str, arch_files: Sequence[str], config: ExportConfig) -> ExportPlan:
    """Reads and checks everything an export needs before any work (no TensorFlow).

    Raises:
      WorkdirError: no workdir or run config.
      ExportError: a bad architecture file, two files naming one export, an existing export
        folder without `config.overwrite`.
      ExportDirError: `config.out` is a file or cannot be written.
      LatencyError: with cost "latency", a latency table that is missing, corrupt, of
        another target or lacking a key a network needs (`policies.latency_models`).
    """
    run_config = read_run_config(workdir)
    space = SearchSpace.from_dict(run_config["space"])
    specs: list[ArchSpec] = [formats.read_arch_file(p, space) for p in arch_files]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ExportError(f"two architecture files name the export {dupes[0]!r}")
    check_writable_dir(config.out, "--out folder", ExportDirError)
    for spec in specs:
        check_output_folder(config.export_dir(spec.name).root, config.overwrite)
    models = {}
    if config.cost == "latency":
        num_classes = int(run_config["num_classes"])
        models = latency_models(config.latency_tables, config.quantizations, space, num_classes)
        for spec in specs:  # every key each network needs is in its tables
            check_cost_target(spec, models)
            for q, model in models.items():
                try:
                    graph_ms(model, spec)
                except Enas4dError as e:  # LatencyError, or SpaceError
                    raise type(e)(f"network {spec.name}, {q} graphs: {e}") from None
    return ExportPlan(run_config, space, specs, models)


def check_cost_target(spec, models: dict) -> None:
    """A latency search's budget is in the milliseconds of the table it searched with (its
    arch file's `cost_target`): exporting with a table of another machine, runtime or thread
    count would refit to a budget that means something else there. The quantisation may
    differ (each quantisation's graphs have their own table).

    Raises:
      LatencyError: a table's target differs from the file's in kind, device, runtime or
        threads.
    """
    from enas4d_tf.errors import LatencyError

    recorded = spec.search.get("cost_target")
    if not recorded:
        return
    for q, model in models.items():
        t = model.table.target
        if any(recorded.get(k) != getattr(t, k) for k in ("kind", "device", "runtime", "threads")):
            raise LatencyError(
                f"network {spec.name} was searched with the latencies of {recorded.get('kind')} "
                f"{recorded.get('device')!r} ({recorded.get('runtime')}, "
                f"{recorded.get('threads')} threads) but the {q} latency table is of {t.kind} "
                f"{t.device!r} ({t.runtime}, {t.threads} threads): its ms budget does not carry "
                "over; export with tables measured on the same target"
            )


# -- temporary folders -----------------------------------------------------------------------


def make_temporary(out: str, name: str, target: str) -> str:
    """Creates `<out>/.tmp_<name>_<random>` and its marker (this process, `target`).

    Raises:
      ExportDirError: the folder cannot be created (one line; nothing was replaced).
    """
    try:
        os.makedirs(out, exist_ok=True)
        for _ in range(100):
            tmp = os.path.join(out, f"{TEMPORARY_PREFIX}{name}_{secrets.token_hex(4)}")
            try:
                os.mkdir(tmp)
            except FileExistsError:
                continue
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "target": os.path.abspath(target),
            }
            with open(tmp + MARKER_SUFFIX, "w") as f:
                json.dump(record, f)
            return tmp
        raise FileExistsError(f"no free temporary name in {out}")
    except OSError as e:
        raise ExportDirError(
            f"cannot write in {out}: {e.strerror or e}; nothing was replaced"
        ) from None


def remove_temporary(tmp: str) -> None:
    """Removes a temporary folder, its `.old` sibling and its marker (the marker last)."""
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(tmp + OLD_SUFFIX, ignore_errors=True)
    try:
        os.remove(tmp + MARKER_SUFFIX)
    except OSError:
        pass


def _stale_writer(marker: str) -> dict | None:
    """The marker's record if its writer is gone (same host, pid not running), else None."""
    try:
        with open(marker) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None  # being written, or not ours: leave it
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return None
    if record.get("host") != socket.gethostname() or pid_alive(record["pid"]):
        return None
    return record


def clean_stale_temporaries(out: str, log: Log = print) -> list[str]:
    """Removes the temporary folders of killed exports in `out` (see the module docstring).

    Returns:
      The temporary folders removed.
    """
    try:
        names = sorted(os.listdir(out))
    except OSError:
        return []
    removed = []
    for name in names:
        if not (name.startswith(TEMPORARY_PREFIX) and name.endswith(MARKER_SUFFIX)):
            continue
        marker = os.path.join(out, name)
        record = _stale_writer(marker)
        if record is None:
            continue
        tmp = marker[: -len(MARKER_SUFFIX)]
        target = record.get("target")
        old = tmp + OLD_SUFFIX
        if isinstance(target, str) and os.path.isdir(old) and not os.path.lexists(target):
            # Killed between moving the previous export aside and moving the new one in.
            os.replace(old, target)
            log(f"restored {target} that a killed export (pid {record['pid']}) had moved aside")
        remove_temporary(tmp)
        removed.append(tmp)
    if removed:
        log(f"removed {len(removed)} temporary folder(s) of killed exports in {out}")
    return removed
