"""Export of chosen networks: `subnet.keras`, early-exit TFLite stage graphs, manifest.json.

`export_network` writes one folder per network:

  <out>/<name>/
    subnet.keras                   the static multi-exit Keras model (BN recalibrated)
    stage{s}_{quantization}.tflite one graph per stage and quantisation
    manifest.json                  what a runtime needs (see `build_manifest`)

Everything is written into a hidden temporary folder beside the target and renamed into
place when complete, so a failed or killed export leaves no folder that looks finished.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np

from enas4d_tf import exit_policy as dynamic
from enas4d_tf.errors import ExportError
from enas4d_tf.export.cascade import MANIFEST, preprocess
from enas4d_tf.export.stage_graphs import (
    QUANTIZATIONS,
    convert_stage,
    keras_stage_feeds,
    representative_samples,
    signature,
    tensor_dtypes,
    xnnpack_fully_accelerated,
)
from enas4d_tf.model.bn_calibration import recalibrate_bn
from enas4d_tf.model.macs import keras_model_macs, stage_macs
from enas4d_tf.model.subnet import extract_stage_models, extract_subnet
from enas4d_tf.model.supernet import Supernet
from enas4d_tf.space.search_space import Arch, SearchSpace

MANIFEST_VERSION = 1
SUBNET_FILE = "subnet.keras"


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """A network to export: architecture, exit thresholds and where it came from.

    Attributes:
      name: folder name of the export.
      arch: the architecture.
      thresholds: S thresholds (None = never exit there; the last is 0.0).
      mode: "dynamic" or "static".
      search: the search result fields (val_accuracy, avg_macs, ...) or {} for a bare arch.
      source: the file it was read from.
    """

    name: str
    arch: Arch
    thresholds: tuple
    mode: str
    search: dict
    source: str


def _valid_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def read_arch_file(path: str, space: SearchSpace) -> ArchSpec:
    """Reads a search result file (`<workdir>/search/archs/*.json`) or a bare `Arch` JSON.

    Args:
      path: the JSON file.
      space: the supernet's search space (the architecture is validated against it).

    Returns:
      The ArchSpec. A bare architecture is static: thresholds [None, ..., None, 0.0], its
      name the file name without `.json`.

    Raises:
      ExportError: missing file, malformed JSON, a bad architecture or bad thresholds.
    """
    if not os.path.exists(path):
        raise ExportError(f"architecture file {path} does not exist")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise ExportError(f"cannot read architecture file {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise ExportError(f"architecture file {path} is not valid JSON: {e}") from None
    default_name = os.path.splitext(os.path.basename(path))[0]
    try:
        if isinstance(data, dict) and "arch" in data:
            arch = Arch.from_dict(data["arch"])
            space.validate(arch)
            num_stages = space.num_stages
            thresholds = data.get("thresholds", dynamic.static_thresholds(num_stages))
            thresholds = dynamic.check_thresholds(thresholds, num_stages)
            name = data.get("name", default_name)
            mode = data.get("mode", "dynamic")
            if mode not in ("dynamic", "static"):
                raise ValueError(f"mode must be 'dynamic' or 'static', got {mode!r}")
            search = {k: v for k, v in data.items() if k not in ("arch", "thresholds", "name")}
        else:
            arch = Arch.from_dict(data)
            space.validate(arch)
            thresholds = dynamic.static_thresholds(space.num_stages)
            name, mode, search = default_name, "static", {}
    except (ValueError, TypeError) as e:
        raise ExportError(f"architecture file {path}: {e}") from None
    if not isinstance(name, str) or not _valid_name(name):
        raise ExportError(f"architecture file {path}: name {name!r} cannot name a folder")
    return ArchSpec(name, arch, tuple(thresholds), mode, search, os.path.abspath(path))


def search_arch_files(workdir: str) -> list[str]:
    """The architecture files the search wrote: `<workdir>/search/archs/*.json`, sorted.

    Raises:
      ExportError: none there.
    """
    pattern = os.path.join(workdir, "search", "archs", "*.json")
    files = sorted(glob.glob(pattern))
    if not files:
        raise ExportError(f"no architecture files match {pattern}: run tools/search.py first")
    return files


def sha256(path: str) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def check_output_folder(out_dir: str, overwrite: bool) -> None:
    """Raises ExportError if `out_dir` exists and `overwrite` is False."""
    if os.path.lexists(out_dir) and not overwrite:
        raise ExportError(f"output folder {out_dir} exists (pass --overwrite to replace it)")


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


def export_network(
    net: Supernet,
    spec: ArchSpec,
    data: ExportData,
    out_root: str,
    quantizations: Sequence[str] = ("float32",),
    overwrite: bool = False,
    calibration_images: int = 2000,
    representative_images: int = 300,
    qat_steps: int = 200,
    qat_learning_rate: float = 1e-4,
    check_xnnpack: bool = True,
    log: Callable[[str], None] = print,
) -> str:
    """Recalibrates BN, extracts and converts one network, writes its export folder.

    Args:
      net: the trained supernet (its BN statistics of `spec.arch`'s channels are replaced).
      spec: the network (`read_arch_file`).
      data: training data and preprocessing facts.
      out_root: parent folder; the export goes to `<out_root>/<spec.name>`.
      quantizations: subset of `QUANTIZATIONS`.
      overwrite: replace an existing folder (only once the new one is complete).
      calibration_images: training images for BN recalibration.
      representative_images: training images for int8 post-training calibration.
      qat_steps: optimizer steps of quantisation-aware fine-tuning ("int8_qat").
      qat_learning_rate: its learning rate.
      check_xnnpack: record whether each graph runs fully on XNNPACK.
      log: progress messages.

    Returns:
      The export folder.

    Raises:
      ExportError: the output folder exists (and not `overwrite`), or bad quantisations.
      tflite_stages.ConversionError: a graph failed to convert to builtin ops.
    """
    for q in quantizations:
        if q not in QUANTIZATIONS:
            raise ExportError(f"unknown quantisation {q!r}; choose from {','.join(QUANTIZATIONS)}")
    out_dir = os.path.join(out_root, spec.name)
    check_output_folder(out_dir, overwrite)
    os.makedirs(out_root, exist_ok=True)
    space, arch = net.space, spec.arch
    started = time.time()

    used = recalibrate_bn(net, arch, data.images, num_images=calibration_images)
    log(f"[{spec.name}] BN recalibrated on {used} training images")
    subnet = extract_subnet(net, arch)
    stages = extract_stage_models(net, arch)
    macs = stage_macs(space, arch, net.num_classes)
    counted = keras_model_macs(subnet, space.num_stages)
    if counted != macs:
        raise AssertionError(f"subnet MACs {counted} differ from stage_macs {macs}")

    tmp = tempfile.mkdtemp(prefix=f".tmp_{spec.name}_", dir=out_root)
    try:
        subnet.save(os.path.join(tmp, SUBNET_FILE))
        files = _convert_all(
            stages,
            spec,
            data,
            tmp,
            quantizations,
            representative_images,
            qat_steps,
            qat_learning_rate,
            check_xnnpack,
            log,
        )
        manifest = build_manifest(net, spec, data, stages, files, tmp, macs, quantizations)
        manifest["export_seconds"] = round(time.time() - started, 1)
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        _move_into_place(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"[{spec.name}] wrote {out_dir}")
    return out_dir


def _move_into_place(tmp: str, out_dir: str, overwrite: bool) -> None:
    if os.path.lexists(out_dir):
        if not overwrite:
            raise ExportError(f"output folder {out_dir} exists (pass --overwrite to replace it)")
        old = tmp + ".old"
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)


def _convert_all(
    stages,
    spec,
    data,
    folder,
    quantizations,
    representative_images,
    qat_steps,
    qat_learning_rate,
    check_xnnpack,
    log,
) -> dict:
    """Converts every stage for every quantisation; returns {q: [per-stage file info]}."""
    resolution = spec.arch.resolution
    files: dict = {}
    feeds = None
    if "int8" in quantizations:
        x = preprocess(data.images[:representative_images], resolution)
        feeds = keras_stage_feeds(stages, x)
    qat_models = None
    if "int8_qat" in quantizations:
        from enas4d_tf.export.quantization import qat_finetune

        x = preprocess(data.images, resolution)
        qat_models, losses = qat_finetune(
            stages, x, data.labels, steps=qat_steps, learning_rate=qat_learning_rate
        )
        k = max(1, len(losses) // 10)
        log(
            f"[{spec.name}] QAT: {len(losses)} steps, mean exit loss "
            f"{np.mean(losses[:k]):.4f} -> {np.mean(losses[-k:]):.4f}"
        )
    for q in quantizations:
        files[q] = []
        for s, stage in enumerate(stages):
            if q == "int8":
                flatbuffer = convert_stage(
                    stage, q, representative_samples(feeds[s], representative_images)
                )
            elif q == "int8_qat":
                flatbuffer = convert_stage(qat_models[s], q)
            else:
                flatbuffer = convert_stage(stage, q)
            name = f"stage{s}_{q}.tflite"
            path = os.path.join(folder, name)
            with open(path, "wb") as f:
                f.write(flatbuffer)
            info = {
                "file": name,
                "bytes": len(flatbuffer),
                "signature": signature(flatbuffer),
                "tensor_dtypes": tensor_dtypes(flatbuffer),
                "ops": _op_names(flatbuffer),
            }
            if check_xnnpack:
                info["xnnpack_fully_accelerated"] = xnnpack_fully_accelerated(path)
            files[q].append(info)
        log(f"[{spec.name}] {q}: {len(stages)} stage graphs")
    return files


def _op_names(flatbuffer: bytes) -> list[str]:
    from enas4d_tf.export.stage_graphs import op_names

    return op_names(flatbuffer)


def build_manifest(
    net: Supernet,
    spec: ArchSpec,
    data: ExportData,
    stages,
    files: dict,
    folder: str,
    macs: Sequence[int],
    quantizations: Sequence[str],
) -> dict:
    """The manifest of an export (JSON-safe).

    Keys: format_version, name, mode, arch, space, num_classes, num_stages, thresholds,
    stage_macs (cumulative MACs to each exit), quantization (list), preprocessing
    (dataset, input_size, resize, resolution, mean, std, layout, dtype), stages (per stage:
    index, inputs and outputs with shapes and dtypes, reads = hand-offs it takes, hands_on =
    hand-offs it returns, files per quantisation with sha256, size, ops and XNNPACK
    delegation), subnet (file and sha256), search (fields of the search result), versions.
    """
    num_stages = net.space.num_stages
    stage_entries = []
    for s, model in enumerate(stages):
        inputs = [t.name for t in model.inputs]
        outputs = sorted(model.output.keys())
        stage_files = {}
        for q in quantizations:
            info = dict(files[q][s])
            info["sha256"] = sha256(os.path.join(folder, info["file"]))
            stage_files[q] = info
        sig = files[quantizations[0]][s]["signature"]
        stage_entries.append(
            {
                "index": s,
                "inputs": [{"name": n, **sig["inputs"][n]} for n in sorted(inputs)],
                "outputs": [{"name": n, **sig["outputs"][n]} for n in outputs],
                "reads": sorted(n for n in inputs if n != "image"),
                "hands_on": sorted(n for n in outputs if n != "logits"),
                "cumulative_macs": int(macs[s]),
                "threshold": spec.thresholds[s],
                "files": stage_files,
            }
        )
    return {
        "format_version": MANIFEST_VERSION,
        "name": spec.name,
        "mode": spec.mode,
        "arch": spec.arch.to_dict(),
        "space": net.space.to_dict(),
        "num_classes": int(net.num_classes),
        "num_stages": num_stages,
        "thresholds": list(spec.thresholds),
        "exit_policy": "leave at the first exit s whose max softmax probability >= "
        "thresholds[s]; null = never leave there; the last exit takes the rest",
        "stage_macs": [int(c) for c in macs],
        "quantization": list(quantizations),
        "preprocessing": {
            "dataset": data.dataset,
            "input_size": int(data.input_size),
            "resize": "bilinear",
            "resolution": int(spec.arch.resolution),
            "mean": [float(v) for v in data.mean],
            "std": [float(v) for v in data.std],
            "normalize": "(pixel / 255 - mean) / std per channel, then resize",
            "layout": "NHWC",
            "batch": 1,
            "dtype": "float32",
        },
        "stages": stage_entries,
        "subnet": {"file": SUBNET_FILE, "sha256": sha256(os.path.join(folder, SUBNET_FILE))},
        "search": spec.search,
        "source": spec.source,
        "versions": versions(),
    }


def copy_subnet_weights(subnet, stage_models) -> int:
    """Copies a (fine-tuned) subnet's weights into the stage models of the same network.

    `extract_subnet` and `extract_stage_models` name every layer the same way
    (`s{stage}_...`, `exit{stage}`), so a `subnet.keras` fine-tuned with `fit` can be cut
    into stage graphs again.

    Returns:
      The number of layers copied.

    Raises:
      ValueError: a stage layer with weights has no twin of the same shapes in `subnet`.
    """
    copied = 0
    for model in stage_models:
        for layer in model.layers:
            if not layer.weights:
                continue
            try:
                twin = subnet.get_layer(layer.name)
            except ValueError:
                raise ValueError(f"the subnet has no layer {layer.name}") from None
            weights = twin.get_weights()
            if [w.shape for w in weights] != [tuple(w.shape) for w in layer.weights]:
                raise ValueError(f"layer {layer.name} has other shapes in the subnet")
            layer.set_weights(weights)
            copied += 1
    return copied


def load_export_data(dataset: str, data_dir: str | None, num_images: int) -> ExportData:
    """Loads the training images an export needs through `enas4d_tf.data`.

    Raises:
      enas4d_tf.data.DataError: the dataset cannot be read.
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


def run_export(
    workdir: str,
    arch_files: Sequence[str],
    out_root: str,
    quantizations: Sequence[str] = ("float32",),
    overwrite: bool = False,
    data_dir: str | None = None,
    num_train_images: int = 2000,
    qat_steps: int = 200,
    qat_learning_rate: float = 1e-4,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Exports networks of a training workdir (what `tools/export.py` runs).

    Every architecture file is read and every output folder checked before any work, so bad
    input fails fast and nothing is written.

    Args:
      workdir: the training workdir (`load_supernet`).
      arch_files: architecture JSON files (search results or bare `Arch.to_dict()`).
      out_root: exports go to `<out_root>/<name>/`.
      quantizations: subset of `QUANTIZATIONS`.
      overwrite: replace existing export folders.
      data_dir: dataset folder; default the run config's.
      num_train_images: training images loaded for BN recalibration, int8 calibration, QAT.
      qat_steps, qat_learning_rate: quantisation-aware fine-tuning.
      log: progress messages.

    Returns:
      The export folders.

    Raises:
      ExportError, WorkdirError, DataError: one-line messages.
    """
    from enas4d_tf.workdir import load_supernet, read_run_config

    config = read_run_config(workdir)
    space = SearchSpace.from_dict(config["space"])
    specs = [read_arch_file(p, space) for p in arch_files]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ExportError(f"two architecture files name the export {dupes[0]!r}")
    for spec in specs:
        check_output_folder(os.path.join(out_root, spec.name), overwrite)
    net, config = load_supernet(workdir)
    data = load_export_data(
        config.get("dataset", "fashion_mnist"),
        data_dir or config.get("data_dir") or None,
        num_train_images,
    )
    return [
        export_network(
            net,
            spec,
            data,
            out_root,
            quantizations,
            overwrite=overwrite,
            calibration_images=num_train_images,
            qat_steps=qat_steps,
            qat_learning_rate=qat_learning_rate,
            log=log,
        )
        for spec in specs
    ]


def compile_for_finetuning(model, learning_rate: float = 1e-4, exit_weights=None) -> None:
    """Compiles a multi-exit `subnet.keras` model for `fit` with one loss per exit.

    Every exit gets sparse categorical cross-entropy on logits; Keras reports each exit's
    loss (`exit0_loss`, ...) beside the total.

    Args:
      model: the loaded `subnet.keras` (S outputs).
      learning_rate: Adam learning rate.
      exit_weights: S loss weights; default all 1.
    """
    import keras

    num_exits = len(model.outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True)] * num_exits,
        loss_weights=list(exit_weights) if exit_weights is not None else [1.0] * num_exits,
        metrics=[["accuracy"] for _ in range(num_exits)],
    )


def finetune_dataset(model, dataset: str, split: str, data_dir, batch_size: int, training: bool):
    """`make_dataset` batches resized to the model's input side, labels repeated per exit."""
    import tensorflow as tf

    from enas4d_tf.data import make_dataset

    side = int(model.inputs[0].shape[1])
    num_exits = len(model.outputs)
    ds = make_dataset(dataset, split, data_dir=data_dir, batch_size=batch_size, training=training)

    def resize(images, labels):
        if images.shape[1] != side:
            images = tf.image.resize(images, [side, side], method="bilinear")
        return images, tuple([labels] * num_exits)

    return ds.map(resize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
