"""Predicted latency of any architecture of a space, from a measured `LatencyTable`.

A stage graph's time is predicted as the sum of its parts' measured times
(`enas4d_tf.latency.parts`), scaled and offset by the table's `fit`, plus what feeding its
inputs and reading its outputs costs (`enas4d_tf.latency.handoffs`):

  stage_ms(s) = scale * sum(entries[p] for p in parts(s))
                + fixed_ms + per_input_ms * inputs(s) + per_output_ms * outputs(s)
                + per_input_kib_ms * KiB in(s) + per_output_kib_ms * KiB out(s)

Example:
  >>> table = LatencyTable.load("runs/latency/host_float32.json")
  >>> model = LatencyModel(table, SearchSpace.preset("fashion_mnist"), num_classes=10)
  >>> model.stage_ms(arch)      # [t_1, t_2, t_3]: each stage graph alone
  >>> model.cumulative(arch)    # [t_1, t_1 + t_2, ...]: the cost of leaving at each exit

This module does not import TensorFlow.
"""

from __future__ import annotations

from enas4d_tf.errors import LatencyError
from enas4d_tf.latency.handoffs import GraphIO, stage_io, truncated_io
from enas4d_tf.latency.parts import stage_parts, truncated_parts
from enas4d_tf.latency.table import LatencyTable, graph_ms
from enas4d_tf.space import Arch, SearchSpace


class LatencyModel:
    """Stage, cumulative and truncated latencies in milliseconds, memoised per architecture
    (each memo is emptied when it reaches `max_cached` architectures: a long search asks for
    about a million, which would otherwise hold hundreds of MB).

    Args:
      table: the measured table.
      space: the search space; its name must be the table's preset.
      num_classes: classifier outputs; must be the table's.
      quantization: if given, the table's target must be of this quantisation.
      threads: if given, the table's target must have run on this many threads.
      margin: every prediction is multiplied by `1 + margin` (>= 0): a conservative model
        for fitting thresholds to a budget (`calibrate.calibration_margin`, the table's
        largest under-prediction of its own calibration graphs; what `tools.search` and
        `tools.export` use with `--cost=latency`). 0: the table's predictions as they are.

    Raises:
      LatencyError: the table is of another space, class count, quantisation or thread count.
      ValueError: a negative margin.
    """

    unit = "ms"
    max_cached = 100_000

    def __init__(
        self,
        table: LatencyTable,
        space: SearchSpace,
        num_classes: int,
        quantization: str | None = None,
        threads: int | None = None,
        margin: float = 0.0,
    ):
        if not margin >= 0.0:
            raise ValueError(f"latency margin must be >= 0, got {margin}")
        target = table.target
        if table.preset != space.name:
            raise LatencyError(
                f"the latency table was measured for search space {table.preset!r}, "
                f"not {space.name!r}"
            )
        if table.num_classes != int(num_classes):
            raise LatencyError(
                f"the latency table was measured with {table.num_classes} classes, "
                f"not {num_classes}"
            )
        if quantization is not None and target.quantization != quantization:
            raise LatencyError(
                f"the latency table is of {target.quantization} graphs, not {quantization}"
            )
        if threads is not None and target.threads != int(threads):
            raise LatencyError(
                f"the latency table was measured on {target.threads} thread(s), not {threads}"
            )
        self.table = table
        self.margin = float(margin)
        self.space = space
        self.num_classes = int(num_classes)
        self._stages: dict = {}
        self._truncated: dict = {}

    def _graph_ms(self, parts: list[str], io: GraphIO) -> float:
        entries = self.table.entries
        total = 0.0
        for key in parts:
            if key not in entries:
                raise LatencyError(
                    f"the latency table has no entry {key!r} (measure it for this space: "
                    f"python -m tools.latency_table --preset={self.space.name})"
                )
            total += entries[key]
        return graph_ms(self.table.fit, total, io.counts) * (1.0 + self.margin)

    def stage_ms(self, arch: Arch) -> list[float]:
        """Predicted time of each stage graph alone (stage `s` computes group `s` only),
        stage 1 first.

        Raises:
          LatencyError: the table lacks a part the architecture needs (named).
          SpaceError: `arch` is not of the space.
        """
        key = arch.to_json()
        if key not in self._stages:
            space, n = self.space, self.num_classes
            ios = stage_io(space, arch, n)
            _make_room(self._stages, self.max_cached)
            self._stages[key] = [
                self._graph_ms(stage_parts(space, arch, s, n), ios[s])
                for s in range(space.num_stages)
            ]
        return list(self._stages[key])

    def cumulative(self, arch: Arch) -> list[float]:
        """The cost of an image that leaves at each exit: stages `1..s` summed, exit 1 first."""
        out, total = [], 0.0
        for t in self.stage_ms(arch):
            total += t
            out.append(total)
        return out

    def truncated(self, arch: Arch) -> list[float]:
        """The time of the network cut at each exit `s` and run as one graph (image in,
        exit `s`'s logits out), exit 1 first.

        Raises:
          LatencyError: the table lacks a part the architecture needs (named).
        """
        key = arch.to_json()
        if key not in self._truncated:
            space, n = self.space, self.num_classes
            io = truncated_io(space, arch, n)
            _make_room(self._truncated, self.max_cached)
            self._truncated[key] = [
                self._graph_ms(truncated_parts(space, arch, e, n), io)
                for e in range(1, space.num_stages + 1)
            ]
        return list(self._truncated[key])

    def average(self, arch: Arch, exit_rates) -> float:
        """Expected time per image for exit rates `p_s`: `sum_s p_s * cumulative[s]`."""
        cum = self.cumulative(arch)
        if len(exit_rates) != len(cum):
            raise ValueError(f"{len(exit_rates)} exit rates for {len(cum)} exits")
        return float(sum(float(p) * c for p, c in zip(exit_rates, cum, strict=True)))


def _make_room(cache: dict, limit: int) -> None:
    """Empties a memo that holds `limit` entries (cheaper than an LRU; a search's
    recent architectures are soon asked for again and computed anew)."""
    if len(cache) >= limit:
        cache.clear()
