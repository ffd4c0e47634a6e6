"""Epoch-end evaluation during training: BN recalibration, then every exit on held-out data.

The work itself is `enas4d_tf.evaluation.ExitRunner`'s, which the search uses too.
"""

from __future__ import annotations

import numpy as np

from enas4d_tf.evaluation import ExitRunner
from enas4d_tf.model.supernet import Supernet
from enas4d_tf.space import Arch, SearchSpace
from enas4d_tf.train import sampling
from enas4d_tf.train.logs import summary_scalar


class Evaluator:
    """Recalibrates BN and measures every exit of an architecture on held-out data.

    Works on a plain (undistributed) copy of the supernet, so the training network's BN
    statistics are left alone and evaluation never runs inside a strategy.

    Args:
      space: the search space.
      num_classes: classes.
      calibration_images: `(N, H, W, C)` training images for BN recalibration.
      images, labels: the evaluation data.
      batch_size: evaluation batch size.
      spread: how many fixed architectures spread over the space's MACs
        (`sampling.spread_archs`) each evaluation measures besides the largest and the
        smallest.
    """

    def __init__(
        self,
        space: SearchSpace,
        num_classes: int,
        calibration_images: np.ndarray,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int = 500,
        spread: int = 0,
    ):
        self.net = Supernet(space, num_classes=num_classes)
        self.networks = [("largest", space.largest()), ("smallest", space.smallest())]
        self.networks += [
            (f"spread_{i + 1}", arch) for i, arch in enumerate(sampling.spread_archs(space, spread))
        ]
        self.calibration_images = calibration_images
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.runner = ExitRunner(self.net)

    def copy_weights(self, net: Supernet) -> None:
        """Takes the weights of `net` (on every worker at once under multi_worker: reading
        replica-local BN statistics is a collective)."""
        self.net.set_weights(net.get_weights())

    def evaluate(self, arch: Arch) -> dict[str, list[float]]:
        """BN recalibration, then accuracy and mean cross-entropy of every exit.

        Returns:
          `{"accuracy": [S floats], "loss": [S floats]}`.
        """
        # BN recalibration at the runner's default batch size, evaluation at this one.
        self.runner.recalibrate(arch, self.calibration_images, len(self.calibration_images))
        return self.runner.accuracy_and_loss(arch, self.images, self.labels, self.batch_size)


def _evaluate(evaluator, net, space, epoch, step, log, write_log, writer) -> dict:
    evaluator.copy_weights(net)
    result = {"kind": "eval", "epoch": epoch + 1, "step": step}
    for name, arch in evaluator.networks:
        result[name] = evaluator.evaluate(arch)
    write_log(result)
    names = [name for name, _ in evaluator.networks]
    with writer.as_default(step=step):
        for name in names:
            for s, acc in enumerate(result[name]["accuracy"]):
                summary_scalar(f"validation/{name}/exit{s + 1}/accuracy", acc)
                summary_scalar(f"validation/{name}/exit{s + 1}/loss", result[name]["loss"][s])
    accs = " ".join(
        f"{name} " + "/".join(f"{100 * a:.2f}" for a in result[name]["accuracy"])
        for name in ("largest", "smallest")
    )
    log(f"epoch {epoch + 1} validation accuracy per exit (%): {accs}")
    if len(names) > 2:
        log(spread_line(result, names[2:]))
    return result


def spread_line(result: dict, names: list[str]) -> str:
    """One log line of the spread architectures' accuracy per exit, and how many of them
    score below the smallest network at some exit."""
    smallest = result["smallest"]["accuracy"]
    below = sum(
        any(a < b for a, b in zip(result[n]["accuracy"], smallest, strict=True)) for n in names
    )
    cells = " ".join("/".join(f"{100 * a:.1f}" for a in result[n]["accuracy"]) for n in names)
    return (
        f"  spread architectures (cheapest first) per exit (%): {cells}; "
        f"{below} of {len(names)} below the smallest at some exit"
    )
