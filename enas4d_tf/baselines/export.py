"""The early-exit baseline as export folders that the cascade and the Android kit run unchanged.

One folder per fitted point (`front.point_name`), laid out as `tools.export` lays out a
network (`enas4d_tf.workdir.ExportDir` names the files):

  <out>/<name>/
    subnet.keras                       the multi-exit Keras model (fine-tunable)
    stage{n}_{quantization}.tflite     one graph per exit: stage 1 takes the image, stage n > 1
                                       the feature map `unit{n-1}_out` stage n-1 handed on
    manifest.json                      `enas4d_tf.export.formats.build_manifest`'s schema

The stage graphs are converted once (`enas4d_tf.export.stage_graphs.convert_stage`: float32,
float16, int8 post-training with representative training images) and written into every
point's folder; only the thresholds in the manifests differ. The manifest's `arch` is the
backbone (`BackboneSpec.to_dict()`), `network` says "early_exit_baseline" and `space` is the
preset the backbone was drawn from. Each folder is written under a temporary name and renamed
when complete; an existing folder is replaced only with `overwrite`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence

from enas4d_tf.baselines.backbone import exit_macs
from enas4d_tf.baselines.config import EXPORT_QUANTIZATIONS
from enas4d_tf.baselines.model import EarlyExitNetwork
from enas4d_tf.errors import ExportError
from enas4d_tf.export import formats, policies
from enas4d_tf.export.cascade import preprocess
from enas4d_tf.export.exporter import ExportData, check_output_folder
from enas4d_tf.export.stage_graphs import (
    convert_stage,
    keras_stage_feeds,
    representative_samples,
)
from enas4d_tf.files import save_model_atomic, write_bytes_atomic
from enas4d_tf.space import SearchSpace
from enas4d_tf.workdir import ExportDir

NETWORK = "early_exit_baseline"
Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class BaselineExportConfig:
    """How to export.

    Attributes:
      out: parent folder; each point goes to `<out>/<name>/`.
      quantizations: a subset of `EXPORT_QUANTIZATIONS` (quantisation-aware training is the
        supernet exporter's alone).
      overwrite: replace existing folders (only once the new one is complete).
      representative_images: training images for int8 calibration.
      check_xnnpack: record whether each graph runs fully on XNNPACK.
    """

    out: str
    quantizations: tuple = ("float32",)
    overwrite: bool = False
    representative_images: int = 300
    check_xnnpack: bool = True

    def __post_init__(self):
        object.__setattr__(self, "quantizations", tuple(self.quantizations))
        for q in self.quantizations:
            if q not in EXPORT_QUANTIZATIONS:
                raise ExportError(
                    f"quantisation {q!r} is not available for the early-exit baseline; "
                    f"choose from {','.join(EXPORT_QUANTIZATIONS)}"
                )


def check_outputs(config: BaselineExportConfig, names: Sequence[str]) -> None:
    """Refuses before any work when a point's folder exists and `overwrite` is off.

    Raises:
      ExportError: one line naming the folder.
    """
    for name in names:
        check_output_folder(os.path.join(config.out, name), config.overwrite)


def convert_stages(
    network: EarlyExitNetwork, data: ExportData, config: BaselineExportConfig, log: Log
) -> list[dict]:
    """Every stage graph in every quantisation: per stage `{quantization: flatbuffer}`."""
    stages = network.stage_models()
    graphs: list[dict] = [{} for _ in stages]
    for q in config.quantizations:
        representative = None
        if q == "int8":
            n = config.representative_images
            images = preprocess(data.images[:n], network.spec.resolution)
            representative = keras_stage_feeds(stages, images)
        for s, stage in enumerate(stages):
            samples = None if representative is None else representative_samples(representative[s])
            graphs[s][q] = convert_stage(stage, q, samples)
        log(f"[{NETWORK}] {q}: {len(stages)} stage graphs")
    return graphs


def export_points(
    network: EarlyExitNetwork,
    points: Sequence[dict],
    data: ExportData,
    config: BaselineExportConfig,
    log: Log = print,
) -> list[str]:
    """Writes one export folder per point of `front.json` (see the module docstring).

    Args:
      network: the trained network.
      points: `front.json` points (name, thresholds, avg_macs, val_accuracy, ...).
      data: training images for int8 calibration and the dataset's preprocessing facts.
      config: where and how.
      log: progress lines.

    Returns:
      The folders written.

    Raises:
      ExportError: a folder exists (without `overwrite`) or cannot be written.
      ConversionError: a graph needs non-builtin ops.
    """
    check_outputs(config, [p["name"] for p in points])
    graphs = convert_stages(network, data, config, log)
    os.makedirs(config.out, exist_ok=True)
    return [_write_point(network, point, graphs, data, config, log) for point in points]


def _write_point(network, point: dict, graphs, data: ExportData, config, log: Log) -> str:
    out_dir = os.path.join(config.out, point["name"])
    tmp = tempfile.mkdtemp(prefix=f".tmp_{point['name']}_", dir=config.out)
    try:
        folder = ExportDir(tmp)
        save_model_atomic(network.model(), folder.subnet, error=ExportError)
        files = []
        for s, by_quantization in enumerate(graphs):
            files.append({})
            for q, flatbuffer in by_quantization.items():
                path = folder.stage_graph(s + 1, q)
                write_bytes_atomic(path, flatbuffer, error=ExportError)
                files[s][q] = formats.graph_file_record(path, flatbuffer, config.check_xnnpack)
        formats.write_manifest(tmp, manifest(network, point, files, data, config, folder))
        if os.path.lexists(out_dir):
            check_output_folder(out_dir, config.overwrite)
            old = tmp + ".old"
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(
            f"cannot write {out_dir}: {e.strerror or e}; nothing was replaced"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"[{point['name']}] wrote {out_dir}")
    return out_dir


def _per_quantization(arch_spec, folder: ExportDir, data: ExportData, config, macs, resolution):
    """Each quantisation's thresholds, as the supernet exporter keeps them: its stage graphs
    run on the validation images and, but for float32 (whose graphs are the network the
    front was fitted on), refitted for the point's budget (`enas4d_tf.export.policies`).
    None without validation images (every quantisation then runs the float thresholds)."""
    if len(data.val_images) == 0:
        return None
    x = preprocess(data.val_images, resolution)
    costs = policies.GraphCosts(tuple(macs), None)
    records = {}
    for q in config.quantizations:
        paths = [folder.stage_graph(s + 1, q) for s in range(len(macs))]
        outputs = policies.graph_outputs(paths, x, data.val_labels)
        records[q] = policies.policy_record(arch_spec, q, "macs", outputs, costs)
    return records


def manifest(network, point: dict, files, data: ExportData, config, folder: ExportDir) -> dict:
    """The manifest of one point whose files are in `folder` (the supernet exporter's schema)."""
    spec = network.spec
    macs = exit_macs(spec)
    stages = [
        formats.stage_record(s + 1, files[s], macs[s], point["thresholds"][s])
        for s in range(spec.num_exits)
    ]
    preprocessing = formats.preprocessing_record(
        data.dataset, data.input_size, spec.resolution, data.mean, data.std
    )
    search = {k: point[k] for k in ("avg_macs", "val_accuracy", "exit_rates", "budget_macs")}
    search["stage_macs"] = macs
    arch_spec = formats.ArchSpec(
        name=point["name"],
        arch=spec,  # build_manifest records `arch.to_dict()`: the backbone
        thresholds=tuple(point["thresholds"]),
        mode="dynamic",
        search=search,
        source=point.get("source", ""),
    )
    record = formats.build_manifest(
        arch_spec,
        SearchSpace.preset(spec.preset),
        spec.num_classes,
        preprocessing,
        stages,
        config.quantizations,
        formats.sha256(folder.subnet),
        _per_quantization(arch_spec, folder, data, config, macs, spec.resolution),
    )
    record["num_stages"] = spec.num_exits  # one stage per unit, not the space's groups
    record["network"] = NETWORK
    return record
