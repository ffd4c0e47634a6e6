"""What the benchmark of record (`bench/claim.py`) measures in-process, with TensorFlow.

- `refit_alone`: thresholds of an architecture trained alone, refitted on the validation split
  for the budget the search chose it for (`CandidateEvaluator`, `thresholds.fit_thresholds`);
- `refit_finetuned`: the same for a fine-tuned cut-out (a Keras model);
- `export_networks`: `tools.export`'s work (`exporter.run_export`) for several architecture
  files of one workdir, under its lock, skipping networks already exported;
- `test_cascade` / `test_keras`: a network on the test split (stage 7 alone calls these).

Imported only by the stages that need it: the rest of the benchmark runs without TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from bench.claim_choices import ClaimError
from enas4d_tf import exit_policy, thresholds
from enas4d_tf.export import formats
from enas4d_tf.files import write_json_atomic


def validation_data(search_settings: dict) -> tuple:
    """`(val_images, val_labels, calibration_images)` as the search measured candidates."""
    from enas4d_tf.data import load_arrays

    dataset, data_dir = search_settings["dataset"], search_settings.get("data_dir") or None
    num_val = search_settings["num_val_images"]
    # Reports written before the flag was renamed call it num_calib_images.
    num_cal = search_settings.get("num_calibration_images", search_settings.get("num_calib_images"))
    images, labels = load_arrays(dataset, "validation", data_dir, num_val)
    calibration, _ = load_arrays(dataset, "train", data_dir, num_cal)
    return images, labels, calibration


def refit_alone(run_dir: str, record: dict, out_path: str, data: tuple) -> dict:
    """Refits a dynamic architecture's thresholds on validation, on the weights of `run_dir`
    (where it was trained alone), and writes an architecture file with them to `out_path`.

    Args:
      run_dir: the training workdir of the architecture trained alone.
      record: the search's record of the network (arch, name, budget_macs, avg_macs).
      out_path: the architecture file to write (the input of its export).
      data: `validation_data(...)`.

    Returns:
      The fit: `{"thresholds", "val_accuracy", "avg_macs", "exit_rates", "budget_macs"}`.
    """
    from enas4d_tf.evaluation import CandidateEvaluator
    from enas4d_tf.space import Arch
    from enas4d_tf.workdir import load_supernet

    net, _ = load_supernet(run_dir)
    images, labels, calibration = data
    evaluator = CandidateEvaluator(net, images, labels, calibration, len(calibration))
    arch = Arch.from_dict(record["arch"])
    measured = evaluator.measure(arch)
    budget = _budget(record, measured.stage_macs)
    fit = thresholds.fit_thresholds(measured.split, measured.stage_macs, budget)
    entry = formats.arch_file_record(
        record["name"], "dynamic", arch, fit, measured.stage_macs, budget
    )
    formats.write_arch_file(out_path, entry)
    return _fit_record(fit, measured.stage_macs)


def _budget(record: dict, stage_macs: Sequence[int]) -> float:
    """The budget the search chose the network for (its cost when it had none), never below
    exit 1's cost."""
    budget = record.get("budget_macs") or record["avg_macs"]
    return max(float(budget), float(stage_macs[0]))


def _fit_record(fit, stage_macs) -> dict:
    return {
        "thresholds": list(fit.thresholds),
        "val_accuracy": float(fit.accuracy),
        "avg_macs": float(fit.avg_macs),
        "exit_rates": [float(r) for r in fit.exit_rates],
        "budget_macs": float(fit.budget_macs),
        "stage_macs": [int(c) for c in stage_macs],
    }


def _load_keras(path: str):
    import keras

    try:
        return keras.models.load_model(path)
    except Exception as e:  # Keras raises many types for a bad archive
        raise ClaimError(f"cannot load {path}: {str(e).strip()[:200]}") from None


def refit_finetuned(model_path: str, record: dict, stage_macs, out_path: str, data) -> dict:
    """Refits a fine-tuned cut-out's thresholds on validation for the budget the search chose
    its network for; writes the fit (JSON) to `out_path` and returns it."""
    from enas4d_tf.baselines.front import exit_probabilities

    images, labels, _ = data
    probs = exit_probabilities(_load_keras(model_path), images)
    split = exit_policy.ValidationSplit(probs, labels)
    fit = thresholds.fit_thresholds(split, stage_macs, _budget(record, stage_macs))
    out = _fit_record(fit, stage_macs)
    write_json_atomic(out_path, out, error=ClaimError)
    return out


def export_networks(workdir: str, arch_files: list[str], config, log) -> list[str]:
    """Exports the networks of `arch_files` from `workdir` whose export folder is not complete
    (a complete one has its manifest: an export is renamed into place when done).

    Args:
      workdir: the training workdir.
      arch_files: architecture files.
      config: `enas4d_tf.export.plan.ExportConfig` (its `out` is the parent folder).
      log: progress lines.

    Returns:
      The names exported now.
    """
    from enas4d_tf.export import exporter
    from enas4d_tf.locking import WorkdirLock
    from enas4d_tf.space import SearchSpace
    from enas4d_tf.workdir import read_run_config

    space = SearchSpace.from_dict(read_run_config(workdir)["space"])
    pending = []
    for path in arch_files:
        name = formats.read_arch_file(path, space).name
        if not os.path.exists(config.export_dir(name).manifest):
            pending.append((name, path))
    if pending:
        with WorkdirLock(workdir, "export"):
            exporter.run_export(workdir, [p for _, p in pending], config, log=log)
    return [name for name, _ in pending]


def test_cascade(export_dir: str, quantization: str, images, labels) -> dict:
    """The LiteRT cascade of an export on the test images (1 thread): accuracy, exit rates,
    average MACs and latency (`enas4d_tf.export.cascade.Cascade.evaluate`)."""
    from enas4d_tf.export.cascade import Cascade

    report = Cascade(export_dir, quantization, num_threads=1).evaluate(images, labels)
    report.update({"export_dir": export_dir, "split": "test", "num_threads": 1})
    return report


def test_keras(model_path: str, fit: dict, images, labels) -> dict:
    """A Keras multi-exit model on the test images at its validation-fitted thresholds."""
    from enas4d_tf.baselines.front import exit_probabilities

    probs = exit_probabilities(_load_keras(model_path), images)
    result = exit_policy.evaluate_policy(
        probs, np.asarray(labels), fit["stage_macs"], fit["thresholds"]
    )
    return {
        "model": model_path,
        "split": "test",
        "num_images": int(len(labels)),
        "accuracy": float(result.accuracy),
        "exit_rates": [float(r) for r in result.exit_rates],
        "avg_macs": float(result.avg_macs),
        "thresholds": fit["thresholds"],
        "stage_macs": fit["stage_macs"],
        "avg_latency_ms": None,
    }
