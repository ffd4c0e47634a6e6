"""Host-side early-exit cascade over exported stage graphs (LiteRT interpreter).

Runs images one at a time (batch 1, as on a phone) through the stage graphs of an export
folder with the thresholds the manifest records for those graphs' quantisation: stage 1 on
the image; if exit 1 is not confident enough, stage 2 on the image and the hand-offs stage 1
produced; and so on. Nothing is recomputed: each stage reads the cached hand-offs of earlier
stages.

Example:
  cascade = Cascade("runs/demo/export/net0", quantization="int8", num_threads=1)
  report = cascade.evaluate(images, labels)   # images normalised at the dataset's size
  print(report["accuracy"], report["exit_rates"], report["avg_latency_ms"])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from enas4d_tf import exit_policy
from enas4d_tf.errors import ExportDirError
from enas4d_tf.export.formats import manifest_thresholds, read_manifest
from enas4d_tf.export.integrity import check_graph_files
from enas4d_tf.export.litert import StageRunner


def check_thresholds(thresholds: Sequence, num_stages: int) -> list:
    """Thresholds given in place of the manifest's: one per stage graph, each a number in
    [0, 1] or None, the last 0.0.

    Raises:
      ExportDirError: anything else (one line).
    """
    try:
        return exit_policy.check_thresholds(thresholds, num_stages)
    except (TypeError, ValueError) as e:
        raise ExportDirError(f"thresholds: {e}") from None


def confidence(logits: np.ndarray) -> float:
    """Max softmax probability of one logits vector (numerically stable)."""
    z = np.asarray(logits, np.float64).reshape(-1)
    z = z - z.max()
    p = np.exp(z)
    return float(p.max() / p.sum())


def preprocess(images: np.ndarray, resolution: int) -> np.ndarray:
    """Normalised dataset images -> the network's input: bilinear resize to `resolution`.

    The supernet resizes with `tf.image.resize(..., "bilinear")` inside; the exported graphs
    take images at the architecture's resolution, so the runner resizes the same way.
    """
    images = np.asarray(images, np.float32)
    if images.shape[1] == resolution and images.shape[2] == resolution:
        return images
    import tensorflow as tf

    return tf.image.resize(images, [resolution, resolution], method="bilinear").numpy()


def _load(path: str, num_threads: int) -> StageRunner:
    """A runner of one stage graph; a file LiteRT cannot load (its hash matched a manifest
    that was rewritten with it) is refused in one line."""
    try:
        return StageRunner(path, num_threads=num_threads)
    except Exception as e:  # LiteRT raises ValueError or RuntimeError from its C++ loader
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportDirError(f"stage graph {path} cannot be loaded by LiteRT: {first}") from None


class Cascade:
    """The stage graphs of one export and quantisation, run as an early-exit cascade.

    Args:
      export_dir: a folder written by `tools/export.py` (manifest.json + .tflite files).
      quantization: which set of stage graphs to run (a key of the manifest's files).
      num_threads: LiteRT interpreter threads per stage.
      thresholds: exit thresholds; default the manifest's for `quantization`'s graphs
        (`formats.manifest_thresholds`).

    Raises:
      ExportDirError: bad folder or manifest (`formats.read_manifest`), unknown
        quantisation, a graph missing or not matching the manifest's size and SHA-256
        (`integrity.check_graph_files`), bad thresholds.
    """

    def __init__(
        self,
        export_dir: str,
        quantization: str = "float32",
        num_threads: int = 1,
        thresholds: Sequence | None = None,
    ):
        self.manifest = read_manifest(export_dir)
        paths = check_graph_files(export_dir, self.manifest, quantization)
        self.quantization = quantization
        self.stage_macs = [int(c) for c in self.manifest["stage_macs"]]
        # The exit each stage graph ends in, from 1: 1..S, or [s] for a truncated network.
        self.exits = [int(stage["exit"]) for stage in self.manifest["stages"]]
        self.num_stages = len(self.manifest["stages"])
        if thresholds is None:  # those fitted on these graphs (older manifests: the float ones)
            self.thresholds = manifest_thresholds(self.manifest, quantization)
        else:
            self.thresholds = check_thresholds(thresholds, self.num_stages)
        self.resolution = int(self.manifest["preprocessing"]["resolution"])
        self.runners = [_load(path, num_threads) for path in paths]

    def _leaves(self, s: int, logits) -> bool:
        if s == self.num_stages - 1:
            return True
        t = self.thresholds[s]
        return t is not None and confidence(logits) >= float(t)

    def run_one(self, image: np.ndarray) -> tuple[int, np.ndarray, list[float]]:
        """Runs one preprocessed image `(1, r, r, C)` through the cascade.

        Returns:
          `(exit index, that exit's logits, per-stage times in ms of the stages run)`.
        """
        handoffs = {"image": image}
        times = []
        for s, runner in enumerate(self.runners):
            out, ms = runner.timed(handoffs)
            times.append(ms)
            logits = out["logits"]
            if self._leaves(s, logits):
                return s, logits[0], times
            handoffs.update((k, v) for k, v in out.items() if k != "logits")
        raise AssertionError("the last exit always takes the image")

    def all_exits(self, image: np.ndarray) -> list[np.ndarray]:
        """Every exit's logits for one preprocessed image (runs all stages)."""
        handoffs = {"image": image}
        logits = []
        for runner in self.runners:
            out = runner(handoffs)
            logits.append(np.asarray(out["logits"][0]))
            handoffs.update((k, v) for k, v in out.items() if k != "logits")
        return logits

    def evaluate(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        max_images: int | None = None,
        warmup: int = 5,
    ) -> dict:
        """Runs a split image by image; reports accuracy, exits, MACs and latency.

        Args:
          images: normalised images at the dataset's size `(N, H, W, C)`; resized here.
          labels: int labels `(N,)`.
          max_images: only the first images.
          warmup: images run first and not timed (interpreter and cache warm-up).

        Returns:
          A JSON-safe dict: exits (the exit of each stage graph, from 1), accuracy,
          exit_counts and exit_rates (per stage graph), exit_accuracies, avg_macs, stage_macs,
          stage_latency_ms (mean time of each stage graph over the images that ran it),
          avg_latency_ms (mean time per image, all stages it ran), p50/p90 latency, counts.
        """
        n = len(images) if max_images is None else min(len(images), max_images)
        if n < 1:
            raise ValueError("the cascade needs at least one image")
        x = preprocess(images[:n], self.resolution)
        labels = np.asarray(labels[:n])
        for i in range(min(warmup, n)):
            self.run_one(x[i : i + 1])
        exits = np.zeros(n, np.int64)
        correct = np.zeros(n, bool)
        per_image = np.zeros(n)
        stage_times: list[list[float]] = [[] for _ in range(self.num_stages)]
        for i in range(n):
            s, logits, times = self.run_one(x[i : i + 1])
            exits[i] = s
            correct[i] = int(np.argmax(logits)) == int(labels[i])
            per_image[i] = sum(times)
            for t, ms in enumerate(times):
                stage_times[t].append(ms)
        counts = np.bincount(exits, minlength=self.num_stages)
        rates = counts / n
        exit_acc = [
            float(correct[exits == s].mean()) if counts[s] else None for s in range(self.num_stages)
        ]
        return {
            "quantization": self.quantization,
            "exits": self.exits,
            "num_images": int(n),
            "accuracy": float(correct.mean()),
            "exit_counts": [int(c) for c in counts],
            "exit_rates": [float(r) for r in rates],
            "exit_accuracies": exit_acc,
            "thresholds": self.thresholds,
            "stage_macs": self.stage_macs,
            "avg_macs": float(np.dot(rates, self.stage_macs)),
            "stage_latency_ms": [float(np.mean(t)) if t else None for t in stage_times],
            "avg_latency_ms": float(per_image.mean()),
            "p50_latency_ms": float(np.percentile(per_image, 50)),
            "p90_latency_ms": float(np.percentile(per_image, 90)),
        }
