"""Export of chosen networks: `subnet.keras`, early-exit TFLite stage graphs, manifest.json.

`export_network` writes one folder per network (`enas4d_tf.workdir.ExportDir` names its files):

  <out>/<name>/
    subnet.keras                       the static multi-exit Keras model (BN recalibrated)
    stage{exit}_{quantization}.tflite  one graph per exit (numbered from 1) and quantisation
    manifest.json                      what a runtime needs (`formats.build_manifest`)

Everything is written into a hidden temporary folder beside the target and renamed into
place when complete, so a failed or killed export leaves no folder that looks finished.

Example:
  config = ExportConfig(out="runs/demo/export", quantizations=("float32", "int8"))
  run_export("runs/demo", search_arch_files("runs/demo"), config)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np

from enas4d_tf.errors import ExportError
from enas4d_tf.export import formats
from enas4d_tf.export.cascade import preprocess
from enas4d_tf.export.formats import ArchSpec
from enas4d_tf.export.stage_graphs import (
    QUANTIZATIONS,
    convert_stage,
    keras_stage_feeds,
    representative_samples,
)
from enas4d_tf.files import save_model_atomic, write_bytes_atomic
from enas4d_tf.model.bn_calibration import recalibrate_bn
from enas4d_tf.model.macs import keras_model_macs, stage_macs
from enas4d_tf.model.subnet import extract_stage_models, extract_subnet
from enas4d_tf.model.supernet import Supernet
from enas4d_tf.space import SearchSpace
from enas4d_tf.workdir import ExportDir, load_supernet, read_run_config

Log = Callable[[str], None]


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

    Raises:
      ExportError: an unknown quantisation.
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

    def __post_init__(self):
        object.__setattr__(self, "quantizations", tuple(self.quantizations))
        for q in self.quantizations:
            if q not in QUANTIZATIONS:
                raise ExportError(
                    f"unknown quantisation {q!r}; choose from {','.join(QUANTIZATIONS)}"
                )

    def export_dir(self, name: str) -> ExportDir:
        """The folder of the network `name`'s export."""
        return ExportDir(os.path.join(self.out, name))


@dataclasses.dataclass
class ExportData:
    """Training data an export needs (normalised, at the dataset's native size).

    Attributes:
      images: training images `(N, H, W, C)` for BN recalibration, int8 calibration and QAT.
      labels: their labels (QAT).
      mean, std: per-channel normalisation of the dataset (for the manifest).
      dataset: the dataset name.
      input_size: the side the dataset pipeline yields (before the network's resize).
    """

    images: np.ndarray
    labels: np.ndarray
    mean: tuple
    std: tuple
    dataset: str
    input_size: int


def load_export_data(dataset: str, data_dir: str | None, num_images: int) -> ExportData:
    """Loads the training images an export needs through `enas4d_tf.data`.

    Raises:
      DataError: the dataset cannot be read.
    """
    from enas4d_tf.data import dataset_info, load_arrays

    info = dataset_info(dataset, data_dir)
    images, labels = load_arrays(dataset, "train", data_dir=data_dir, max_examples=num_images)
    return ExportData(
        images=images,
        labels=labels,
        mean=tuple(info.mean),
        std=tuple(info.std),
        dataset=info.name,
        input_size=int(info.image_size),
    )


def check_output_folder(out_dir: str, overwrite: bool) -> None:
    """Raises ExportError if `out_dir` exists and `overwrite` is False."""
    if os.path.lexists(out_dir) and not overwrite:
        raise ExportError(f"output folder {out_dir} exists (pass --overwrite to replace it)")


def run_export(
    workdir: str, arch_files: Sequence[str], config: ExportConfig, log: Log = print
) -> list[str]:
    """Exports networks of a training workdir (what `tools/export.py` runs).

    Every architecture file is read and every output folder checked before any work, so bad
    input fails fast and nothing is written.

    Args:
      workdir: the training workdir (`load_supernet`).
      arch_files: architecture files (`formats.read_arch_file`).
      config: where and how to export.
      log: progress messages.

    Returns:
      The export folders.

    Raises:
      ExportError, WorkdirError, DataError: one-line messages.
    """
    run_config = read_run_config(workdir)
    space = SearchSpace.from_dict(run_config["space"])
    specs = [formats.read_arch_file(p, space) for p in arch_files]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ExportError(f"two architecture files name the export {dupes[0]!r}")
    for spec in specs:
        check_output_folder(config.export_dir(spec.name).root, config.overwrite)
    net, run_config = load_supernet(workdir)
    data = load_export_data(
        run_config.get("dataset", "fashion_mnist"),
        config.data_dir or run_config.get("data_dir") or None,
        config.num_calibration_images,
    )
    return [export_network(net, spec, data, config, log) for spec in specs]


def export_network(
    net: Supernet, spec: ArchSpec, data: ExportData, config: ExportConfig, log: Log = print
) -> str:
    """Recalibrates BN, extracts and converts one network, writes its export folder.

    Args:
      net: the trained supernet (its BN statistics of `spec.arch`'s channels are replaced).
      spec: the network (`formats.read_arch_file`).
      data: training data and preprocessing facts.
      config: where and how to export.
      log: progress messages.

    Returns:
      The export folder.

    Raises:
      ExportError: the output folder exists (and not `config.overwrite`).
      ConversionError: a graph failed to convert to builtin ops.
    """
    out_dir = config.export_dir(spec.name).root
    check_output_folder(out_dir, config.overwrite)
    os.makedirs(config.out, exist_ok=True)
    space, arch = net.space, spec.arch
    started = time.time()

    used = recalibrate_bn(net, arch, data.images, num_images=config.num_calibration_images)
    log(f"[{spec.name}] BN recalibrated on {used} training images")
    subnet = extract_subnet(net, arch)
    stages = extract_stage_models(net, arch)
    macs = stage_macs(space, arch, net.num_classes)
    counted = keras_model_macs(subnet, space.num_stages)
    if counted != macs:
        raise AssertionError(f"subnet MACs {counted} differ from stage_macs {macs}")

    tmp = tempfile.mkdtemp(prefix=f".tmp_{spec.name}_", dir=config.out)
    try:
        folder = ExportDir(tmp)
        save_model_atomic(subnet, folder.subnet)
        files = _write_stage_graphs(stages, spec, data, folder, config, log)
        manifest = _manifest(net, spec, data, config, files, macs, folder)
        manifest["export_seconds"] = round(time.time() - started, 1)
        formats.write_manifest(tmp, manifest)
        _move_into_place(tmp, out_dir, config.overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"[{spec.name}] wrote {out_dir}")
    return out_dir


def _move_into_place(tmp: str, out_dir: str, overwrite: bool) -> None:
    if os.path.lexists(out_dir):
        check_output_folder(out_dir, overwrite)
        old = tmp + ".old"
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)


def _manifest(net, spec: ArchSpec, data: ExportData, config, files, macs, folder: ExportDir):
    """The manifest of an export whose files are in `folder`."""
    stage_entries = [
        formats.stage_record(s + 1, files[s], macs[s], spec.thresholds[s])
        for s in range(len(files))
    ]
    preprocessing = formats.preprocessing_record(
        data.dataset, data.input_size, spec.arch.resolution, data.mean, data.std
    )
    return formats.build_manifest(
        spec,
        net.space,
        net.num_classes,
        preprocessing,
        stage_entries,
        config.quantizations,
        formats.sha256(folder.subnet),
    )


def _write_stage_graphs(stages, spec: ArchSpec, data: ExportData, folder: ExportDir, config, log):
    """Converts and writes every stage graph in every quantisation.

    Returns:
      Per stage, `{quantization: formats.graph_file_record(...)}` in `config.quantizations`
      order.
    """
    files: list[dict] = [{} for _ in stages]
    for q in config.quantizations:
        convert = _converter(q, stages, spec, data, config, log)
        for s in range(len(stages)):
            flatbuffer = convert(s)
            path = folder.stage_graph(s + 1, q)
            write_bytes_atomic(path, flatbuffer)
            files[s][q] = formats.graph_file_record(path, flatbuffer, config.check_xnnpack)
        log(f"[{spec.name}] {q}: {len(stages)} stage graphs")
    return files


def _converter(q: str, stages, spec: ArchSpec, data: ExportData, config, log):
    """`convert(stage index) -> flatbuffer` for one quantisation; int8 computes its
    representative data and int8_qat fine-tunes its stage models once, here."""
    resolution = spec.arch.resolution
    if q == "int8":
        n = config.representative_images
        feeds = keras_stage_feeds(stages, preprocess(data.images[:n], resolution))
        return lambda s: convert_stage(stages[s], q, representative_samples(feeds[s], n))
    if q == "int8_qat":
        from enas4d_tf.export.quantization import qat_finetune

        qat_models, losses = qat_finetune(
            stages,
            preprocess(data.images, resolution),
            data.labels,
            steps=config.qat_steps,
            learning_rate=config.qat_learning_rate,
        )
        k = max(1, len(losses) // 10)
        log(
            f"[{spec.name}] QAT: {len(losses)} steps, mean exit loss "
            f"{np.mean(losses[:k]):.4f} -> {np.mean(losses[-k:]):.4f}"
        )
        return lambda s: convert_stage(qat_models[s], q)
    return lambda s: convert_stage(stages[s], q)
