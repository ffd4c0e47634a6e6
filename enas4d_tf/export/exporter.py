"""Export of chosen networks: `subnet.keras`, early-exit TFLite stage graphs, manifest.json.

`export_network` writes one folder per network (`enas4d_tf.workdir.ExportDir` names its files):

  <out>/<name>/
    subnet.keras                       the static multi-exit Keras model (BN recalibrated)
    stage{exit}_{quantization}.tflite  one graph per exit (numbered from 1) and quantisation
    manifest.json                      what a runtime needs (`formats.build_manifest`)

Each quantisation's stage graphs then run on validation images and get their own thresholds,
refitted for the network's budget (`policies`; the manifest's `per_quantization`).

A network truncated at exit `s` (`ArchSpec.exit`) is exported as ONE graph per quantisation,
`stage{s}_{q}.tflite` (image in, exit `s`'s logits out, no other classifier), a one-output
`subnet.keras`, and a manifest with `"exit": s` and one stage. One graph rather than `s`
graphs that hand tensors on: a static network never stops early, so splitting it buys
nothing and costs a user the hand-off plumbing, the runtime a graph launch and tensor copies
per stage, and the converter the fusions across stage boundaries. The cascade and the Android
kit run it unchanged, as a one-stage network whose only exit takes every image; its cost is
`macs.truncated_macs`, checked against the graph's own layers.

Everything is written into a hidden temporary folder beside the target and renamed into
place when complete, so a failed or killed export leaves no folder that looks finished;
the next export into the same folder removes what a killed one left (`plan`). A write that
fails ends in one `ExportDirError` line saying what was kept.

Example:
  config = ExportConfig(out="runs/demo/export", quantizations=("float32", "int8"))
  run_export("runs/demo", plan.search_arch_files("runs/demo"), config)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Sequence

import numpy as np

from enas4d_tf.errors import ExportDirError, ExportError
from enas4d_tf.export import formats, policies
from enas4d_tf.export.cascade import preprocess
from enas4d_tf.export.formats import ArchSpec
from enas4d_tf.export.plan import (
    OLD_SUFFIX,
    ExportConfig,
    check_output_folder,
    clean_stale_temporaries,
    make_temporary,
    plan_export,
    remove_temporary,
)
from enas4d_tf.export.stage_graphs import (
    convert_stage,
    keras_stage_feeds,
    representative_samples,
)
from enas4d_tf.files import save_model_atomic, write_bytes_atomic, write_json_atomic
from enas4d_tf.model.bn_calibration import recalibrate_bn
from enas4d_tf.model.macs import keras_model_macs, stage_macs, truncated_macs
from enas4d_tf.model.subnet import (
    extract_stage_models,
    extract_subnet,
    extract_truncated,
    stage_model_name,
)
from enas4d_tf.model.supernet import Supernet
from enas4d_tf.workdir import ExportDir, load_supernet

Log = Callable[[str], None]


@dataclasses.dataclass
class ExportData:
    """Training data an export needs (normalised, at the dataset's native size).

    Attributes:
      images: training images `(N, H, W, C)` for BN recalibration, int8 calibration and QAT.
      labels: their labels (QAT).
      mean, std: per-channel normalisation of the dataset (for the manifest).
      dataset: the dataset name.
      input_size: the side the dataset pipeline yields (before the network's resize).
      val_images, val_labels: validation images (normalised) and labels each quantisation's
        stage graphs run on to refit its thresholds (`policies`); empty: no refit.
    """

    images: np.ndarray
    labels: np.ndarray
    mean: tuple
    std: tuple
    dataset: str
    input_size: int
    val_images: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 1, 1, 1)))
    val_labels: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))


def load_export_data(
    dataset: str, data_dir: str | None, num_images: int, num_val_images: int | None = 0
) -> ExportData:
    """Loads the training images an export needs through `enas4d_tf.data`, and the first
    `num_val_images` validation images (at most the split; none when 0; all when None).

    Raises:
      DataError: the dataset cannot be read.
    """
    from enas4d_tf.data import dataset_info, load_arrays

    info = dataset_info(dataset, data_dir)
    images, labels = load_arrays(dataset, "train", data_dir=data_dir, max_examples=num_images)
    data = ExportData(
        images=images,
        labels=labels,
        mean=tuple(info.mean),
        std=tuple(info.std),
        dataset=info.name,
        input_size=int(info.image_size),
    )
    if num_val_images is None or num_val_images > 0:
        data.val_images, data.val_labels = load_arrays(
            dataset, "validation", data_dir=data_dir, max_examples=num_val_images
        )
    return data


def run_export(
    workdir: str, arch_files: Sequence[str], config: ExportConfig, log: Log = print
) -> list[str]:
    """Exports networks of a training workdir (what `tools/export.py` runs).

    Every architecture file is read and every output location checked before any work
    (`plan.plan_export`), so bad input fails fast and nothing is written. Temporary folders
    of killed exports in `config.out` are removed (`plan.clean_stale_temporaries`).

    Args:
      workdir: the training workdir (`load_supernet`).
      arch_files: architecture files (`formats.read_arch_file`).
      config: where and how to export.
      log: progress messages.

    Returns:
      The export folders.

    Raises:
      ExportError, ExportDirError, WorkdirError, DataError: one-line messages; ExportError
        also for a supernet whose weights are not all finite.
    """
    plan = plan_export(workdir, arch_files, config)
    net, run_config = load_supernet(workdir)
    check_finite(net.weights, f"the supernet of {workdir} (newest checkpoint)")
    clean_stale_temporaries(config.out, log)
    data = load_export_data(
        run_config.get("dataset", "fashion_mnist"),
        config.data_dir or run_config.get("data_dir") or None,
        config.num_calibration_images,
        config.threshold_images,
    )
    models = plan.latency_models
    return [export_network(net, spec, data, config, log, models) for spec in plan.specs]


def check_finite(variables, what: str) -> None:
    """Raises ExportError naming `what` if any variable holds NaN or infinity: an export of
    a diverged network would load and run, and predict nothing."""
    bad = [v for v in variables if not np.all(np.isfinite(np.asarray(v)))]
    if bad:
        first = getattr(bad[0], "path", None) or bad[0].name
        raise ExportError(
            f"{what} holds non-finite weights ({len(bad)} of {len(variables)} variables, "
            f"first {first}): training diverged; nothing was exported (train again, or "
            "resume from a finite checkpoint)"
        )


def export_network(
    net: Supernet,
    spec: ArchSpec,
    data: ExportData,
    config: ExportConfig,
    log: Log = print,
    latency_models: dict | None = None,
) -> str:
    """Recalibrates BN, extracts and converts one network, refits each quantisation's
    thresholds on its graphs (`policies`), writes its export folder.

    Args:
      net: the trained supernet (its BN statistics of `spec.arch`'s channels are replaced).
      spec: the network (`formats.read_arch_file`).
      data: training and validation data and preprocessing facts; without validation
        images the manifest gets no per-quantisation thresholds.
      config: where and how to export.
      log: progress messages.
      latency_models: `{quantization: LatencyModel}` (`plan.ExportPlan`), needed when
        `config.cost` is "latency".

    Returns:
      The export folder.

    Raises:
      ExportError: the output folder exists (and not `config.overwrite`), or the recalibrated
        network's weights are not all finite.
      ExportDirError: a write failed (one line saying what was kept).
      ConversionError: a graph failed to convert to builtin ops.
      LatencyError: a latency table lacks a part the network needs.
    """
    out_dir = config.export_dir(spec.name).root
    check_output_folder(out_dir, config.overwrite)
    started = time.time()

    used = recalibrate_bn(net, spec.arch, data.images, num_images=config.num_calibration_images)
    log(f"[{spec.name}] BN recalibrated on {used} training images")
    subnet, stages, macs = _extract(net, spec)
    check_finite(subnet.weights, f"network {spec.name} after BN recalibration")

    tmp = make_temporary(config.out, spec.name, out_dir)
    try:
        folder = ExportDir(tmp)
        save_model_atomic(subnet, folder.subnet, ExportDirError)
        files = _write_stage_graphs(stages, spec, data, folder, config, log)
        per_quantization = _policies(spec, data, config, folder, macs, latency_models or {}, log)
        manifest = _manifest(net, spec, data, config, files, macs, folder, per_quantization)
        manifest["export_seconds"] = round(time.time() - started, 1)
        write_json_atomic(folder.manifest, manifest, sort_keys=False, error=ExportDirError)
        _move_into_place(tmp, out_dir, config.overwrite)
    except ExportDirError as e:
        remove_temporary(tmp)
        raise ExportDirError(f"{e}; {_kept(out_dir)}") from None
    except BaseException:
        remove_temporary(tmp)
        raise
    remove_temporary(tmp)  # the marker (and an emptied .old) of a finished export
    log(f"[{spec.name}] wrote {out_dir}")
    return out_dir


def _kept(out_dir: str) -> str:
    if os.path.isdir(out_dir):
        return f"the existing {out_dir} was kept"
    return f"no {out_dir} was written"


def _extract(net: Supernet, spec: ArchSpec) -> tuple:
    """`(subnet, stage models, cumulative MACs of each graph's exit)` of one network.

    A multi-exit network gives `S` stage models (`extract_stage_models`). A network truncated
    at exit `s` gives ONE graph, image in and exit `s`'s logits out: a static network is
    deployed as one model, so a user (and the Android kit) runs one graph, the converter
    optimises across what would be stage boundaries, and no hand-off tensors cross graphs.
    Its MACs are `truncated_macs`; the earlier exits' classifiers are not in it.
    """
    space, arch = net.space, spec.arch
    if spec.exit is None:
        subnet = extract_subnet(net, arch)
        stages = extract_stage_models(net, arch)
        macs = stage_macs(space, arch, net.num_classes)
        counted = keras_model_macs(subnet, space.num_stages)
    else:
        subnet = extract_truncated(net, arch, spec.exit)
        name = stage_model_name(spec.exit - 1)
        stage = extract_truncated(net, arch, spec.exit, name=name, dict_io=True)
        stages = [stage]
        macs = [truncated_macs(space, arch, spec.exit, net.num_classes)]
        counted = keras_model_macs(subnet, spec.exit)[-1:]
        if keras_model_macs(stage, spec.exit)[-1:] != counted:
            raise AssertionError("the truncated stage graph and subnet differ in MACs")
    if counted != macs:
        raise AssertionError(f"subnet MACs {counted} differ from the MACs model's {macs}")
    return subnet, stages, macs


def graph_exits(spec: ArchSpec, num_stages: int) -> list[int]:
    """The exit (numbered from 1) each stage graph of `spec`'s export ends in: `1..S`, or
    `[s]` for a network truncated at exit `s`."""
    return list(range(1, num_stages + 1)) if spec.exit is None else [spec.exit]


def _move_into_place(tmp: str, out_dir: str, overwrite: bool) -> None:
    """Renames the finished `tmp` to `out_dir`; an existing `out_dir` (with `overwrite`) is
    moved aside to `<tmp>.old` first and removed after (`plan` restores it if killed in
    between)."""
    try:
        if os.path.lexists(out_dir):
            check_output_folder(out_dir, overwrite)
            old = tmp + OLD_SUFFIX
            os.replace(out_dir, old)
            try:
                os.replace(tmp, out_dir)
            except OSError:
                os.replace(old, out_dir)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except OSError as e:
        raise ExportDirError(f"cannot move the export into {out_dir}: {e.strerror or e}") from None


def _manifest(net, spec: ArchSpec, data: ExportData, config, files, macs, folder, per_q):
    """The manifest of an export whose files are in `folder` (an `ExportDir`)."""
    exits = graph_exits(spec, net.space.num_stages)
    thresholds = list(spec.thresholds) if spec.exit is None else [0.0]
    stage_entries = [
        formats.stage_record(exits[i], files[i], macs[i], thresholds[i]) for i in range(len(files))
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
        per_q,
    )


def _policies(spec: ArchSpec, data: ExportData, config, folder, macs, models: dict, log):
    """`{quantization: policies.policy_record(...)}`: each quantisation's stage graphs run on
    the validation images and its thresholds chosen; None without validation images."""
    if len(data.val_images) == 0:
        return None
    missing = [q for q in config.quantizations if config.cost == "latency" and q not in models]
    if missing:
        raise ExportError(
            f"cost 'latency' needs a latency model of the {missing[0]} graphs "
            "(plan.plan_export builds them from config.latency_tables)"
        )
    exits = graph_exits(spec, len(macs))
    x = preprocess(data.val_images, spec.arch.resolution)
    records = {}
    for q in config.quantizations:
        paths = [folder.stage_graph(e, q) for e in exits]
        outputs = policies.graph_outputs(paths, x, data.val_labels)
        ms = policies.graph_ms(models[q], spec) if config.cost == "latency" else None
        costs = policies.GraphCosts(tuple(macs), ms)
        r = policies.policy_record(spec, q, config.cost, outputs, costs)
        shown = ", ".join("-" if t is None else f"{t:.4f}" for t in r["thresholds"])
        log(
            f"[{spec.name}] {q}: thresholds [{shown}] ({r['origin']}) on {r['num_images']} "
            f"validation images: accuracy {r['val_accuracy']:.4f}, average MACs "
            f"{r['avg_macs']:.4g}"
            + ("" if r["avg_ms"] is None else f", {r['avg_ms']:.4g} ms")
            + f", exit rates {[round(v, 3) for v in r['exit_rates']]}"
        )
        records[q] = r
    return records


def _write_stage_graphs(stages, spec: ArchSpec, data: ExportData, folder: ExportDir, config, log):
    """Converts and writes every stage graph in every quantisation.

    Returns:
      Per stage, `{quantization: formats.graph_file_record(...)}` in `config.quantizations`
      order.
    """
    files: list[dict] = [{} for _ in stages]
    exits = graph_exits(spec, len(stages))
    for q in config.quantizations:
        convert = _converter(q, stages, spec, data, config, log)
        for s in range(len(stages)):
            flatbuffer = convert(s)
            path = folder.stage_graph(exits[s], q)
            write_bytes_atomic(path, flatbuffer, ExportDirError)
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
