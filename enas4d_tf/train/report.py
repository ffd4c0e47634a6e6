"""What a training run achieved: test accuracy of every exit of a few architectures, and speed.

Used by `bench/train_benchmark.py` after `tools/train.py` has trained a workdir.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from enas4d_tf import data as data_lib
from enas4d_tf.model.macs import stage_macs
from enas4d_tf.pretrained import resolve_workdir
from enas4d_tf.space import SearchSpace
from enas4d_tf.train import sampling
from enas4d_tf.train.evaluate import Evaluator
from enas4d_tf.train.logs import read_train_log
from enas4d_tf.workdir import Workdir, latest_checkpoint, load_supernet


def training_speed(workdir: str) -> dict:
    """Training throughput of a run, from its `train_log.jsonl`.

    Returns:
      `{"images_per_s": float or None, "subnet_images_per_s": float or None,
      "logged_windows": int}`: the mean of the logged windows' rates (each window covers
      `log_every_steps` steps; the first step of every process, which traces, is excluded
      from the windows' timing).
    """
    rates, subnet_rates = [], []
    for record in read_train_log(workdir):
        if record.get("kind") != "train":
            continue
        rate = record.get("images_per_s")
        if isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0:
            rates.append(rate)
            subnet_rates.append(record.get("subnet_images_per_s", float("nan")))
    if not rates:
        return {"images_per_s": None, "subnet_images_per_s": None, "logged_windows": 0}
    return {
        "images_per_s": float(np.mean(rates)),
        "subnet_images_per_s": float(np.nanmean(subnet_rates)),
        "logged_windows": len(rates),
    }


def spearman(x, y) -> float:
    """Spearman's rank correlation of two equally long sequences (tied values share their
    mean rank); NaN when either is constant."""

    def ranks(v):
        v = np.asarray(v, float)
        r = np.empty(len(v))
        r[np.argsort(v, kind="mergesort")] = np.arange(len(v))
        for value in np.unique(v):
            tied = v == value
            r[tied] = r[tied].mean()
        return r - r.mean()

    rx, ry = ranks(x), ranks(y)
    denominator = float(np.sqrt((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def spread_checks(networks: list[dict], key: str = "test_accuracy") -> dict:
    """What the whole space must show, over the `spread_*` networks of a report: per exit,
    how many score below the smallest network, and the Spearman correlation of their MACs
    to that exit (`stage_macs[s]`) with their accuracy there."""
    by_name = {n["name"]: n for n in networks}
    spread = [n for n in networks if n["name"].startswith("spread_")]
    if not spread or "smallest" not in by_name:
        return {}
    smallest = by_name["smallest"][key]
    S = len(smallest)
    return {
        "num_spread": len(spread),
        "below_smallest": [sum(n[key][s] < smallest[s] for n in spread) for s in range(S)],
        "spearman": [
            spearman([n["stage_macs"][s] for n in spread], [n[key][s] for n in spread])
            for s in range(S)
        ],
    }


def report_archs(space: SearchSpace, num_spread: int, num_sampled: int, seed: int) -> list:
    """`(name, arch)` of the networks a report measures: the largest, the smallest,
    `spread_1..num_spread` (`sampling.spread_archs`) and `sampled_1..num_sampled` (random,
    seeded by `seed`)."""
    rng = np.random.default_rng(seed)
    archs = [("largest", space.largest()), ("smallest", space.smallest())]
    spread = sampling.spread_archs(space, num_spread)
    archs += [(f"spread_{i + 1}", a) for i, a in enumerate(spread)]
    return archs + [(f"sampled_{i + 1}", space.sample(rng=rng)) for i in range(num_sampled)]


def measure_archs(
    workdir: str,
    split: str,
    archs_of,
    num_calibration_images: int = 2000,
    max_examples: int | None = None,
    data_dir: str | None = None,
    on_network=None,
) -> dict:
    """Every exit's accuracy and loss of the networks `archs_of` names, cut out of the
    supernet of `workdir` and measured on `split` of its dataset.

    Each network's BN statistics are recalibrated on `num_calibration_images` training
    images first; `split` is read for nothing else.

    Args:
      workdir: a training workdir (run_config.json and checkpoints) or `pretrained:NAME`.
      split: "validation" or "test".
      archs_of: `archs_of(space)` -> a list of `(name, arch)`, measured in that order.
      num_calibration_images: training images for BN recalibration.
      max_examples: measure on the first this many images of `split` only.
      data_dir: override the run's data directory.
      on_network: called with each network's record as soon as it is measured.

    Returns:
      `{"workdir", "checkpoint", "dataset", "space", "config", "examples",
      "calibration_images", "networks"}`, where `networks` is a list of `{"name", "arch",
      "stage_macs", "accuracy" [S], "loss" [S]}` (JSON-safe but `space` and `config`).

    Raises:
      WorkdirError: the workdir or its checkpoint cannot be used.
      DataError: the dataset cannot be read.
    """
    workdir = resolve_workdir(workdir)  # a released supernet reads as its folder
    net, config = load_supernet(workdir)
    space: SearchSpace = net.space
    dataset = config.get("dataset", data_lib.DEFAULT_DATASET)
    data_dir = data_dir if data_dir is not None else config.get("data_dir")
    calibration, _ = data_lib.load_arrays(dataset, "train", data_dir, num_calibration_images)
    images, labels = data_lib.load_arrays(dataset, split, data_dir, max_examples)
    evaluator = Evaluator(space, net.num_classes, calibration, images, labels)
    evaluator.copy_weights(net)
    networks = []
    for name, arch in archs_of(space):
        result = evaluator.evaluate(arch)
        networks.append(
            {
                "name": name,
                "arch": arch.to_dict(),
                "stage_macs": [int(m) for m in stage_macs(space, arch, net.num_classes)],
                "accuracy": [float(a) for a in result["accuracy"]],
                "loss": [float(x) for x in result["loss"]],
            }
        )
        if on_network is not None:
            on_network(networks[-1])
    return {
        "workdir": os.path.abspath(workdir),
        "checkpoint": latest_checkpoint(workdir),
        "dataset": dataset,
        "space": space,
        "config": config,
        "examples": int(len(labels)),
        "calibration_images": int(len(calibration)),
        "networks": networks,
    }


def benchmark_workdir(
    workdir: str,
    num_sampled: int = 0,
    seed: int = 0,
    num_calibration_images: int = 2000,
    max_test_examples: int | None = None,
    data_dir: str | None = None,
    num_spread: int = 10,
) -> dict:
    """Test accuracy of every exit of the largest, the smallest, `num_spread` fixed
    architectures spread over the space's MACs (`sampling.spread_archs`, the ones
    training-time evaluation watches) and `num_sampled` random ones (`measure_archs` on
    the test split).

    Args:
      workdir: a training workdir (run_config.json and checkpoints).
      num_sampled: random architectures (seeded by `seed`) besides largest and smallest.
      seed: the sampling seed.
      num_calibration_images: training images for BN recalibration.
      max_test_examples: evaluate on the first this many test images only.
      data_dir: override the run's data directory.
      num_spread: fixed architectures spread over the MACs range.

    Returns:
      A JSON-safe dict: workdir, checkpoint, dataset, preset, test_examples, the training
      speed (`training_speed`), `networks`: a list of `{"name", "arch", "stage_macs",
      "test_accuracy" [S], "test_loss" [S]}`, and `spread_checks` (`spread_checks`).

    Raises:
      WorkdirError: the workdir or its checkpoint cannot be used.
      DataError: the dataset cannot be read.
    """
    measured = measure_archs(
        workdir,
        "test",
        lambda space: report_archs(space, num_spread, num_sampled, seed),
        num_calibration_images,
        max_test_examples,
        data_dir,
    )
    networks = [
        {
            "name": n["name"],
            "arch": n["arch"],
            "stage_macs": n["stage_macs"],
            "test_accuracy": n["accuracy"],
            "test_loss": n["loss"],
        }
        for n in measured["networks"]
    ]
    return {
        "workdir": measured["workdir"],
        "checkpoint": measured["checkpoint"],
        "dataset": measured["dataset"],
        "preset": measured["space"].name,
        "test_examples": measured["examples"],
        "calibration_images": measured["calibration_images"],
        "training": training_speed(measured["workdir"]),
        "train_config": measured["config"].get("train", {}),
        "networks": networks,
        "spread_checks": spread_checks(networks),
    }


def markdown_table(report: dict) -> str:
    """The report as a markdown table: one row per network, one accuracy column per exit."""
    S = len(report["networks"][0]["test_accuracy"])
    head = ["network", *[f"exit {s + 1} acc (%)" for s in range(S)], "MACs to last exit (M)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in report["networks"]:
        cells = [n["name"], *[f"{100 * a:.2f}" for a in n["test_accuracy"]]]
        cells.append(f"{n['stage_macs'][-1] / 1e6:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    checks = report.get("spread_checks")
    if checks:
        lines.append("")
        lines.append(
            f"Over the {checks['num_spread']} spread architectures, per exit: below the smallest "
            f"network {'/'.join(str(b) for b in checks['below_smallest'])}; Spearman "
            f"(MACs to that exit vs accuracy) "
            f"{'/'.join(f'{r:.2f}' for r in checks['spearman'])}"
        )
    speed = report["training"]
    rate = speed["images_per_s"]
    log_name = os.path.basename(Workdir(report["workdir"]).train_log)
    lines.append("")
    lines.append(
        f"{report['test_examples']} test images of {report['dataset']}, BN recalibrated on "
        f"{report['calibration_images']} training images per network; training speed: "
        + (
            f"{rate:.0f} images/s ({speed['subnet_images_per_s']:.0f} subnet images/s)"
            if rate
            else f"unknown (no timed steps in {log_name})"
        )
    )
    return "\n".join(lines)


def report_json(report: dict) -> str:
    """The report as one JSON line."""
    return json.dumps(report, sort_keys=True)
