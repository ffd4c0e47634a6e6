"""Timing LiteRT graphs on this host, robustly on a shared machine.

Every graph is loaded once; then `rounds` rounds each time every graph in turn (`runs`
back-to-back invokes, averaged), so a burst of load from another process hits all graphs
alike instead of a few. A graph's time is the lowest of its rounds' averages: on a shared
machine a round is slowed by whatever else runs and never sped up, so the fastest round is
the best estimate of the graph's time on a machine of its own. Even idle, this VM's median
round is a few percent slower (1.5-6% for stage graphs); `time_stage_graphs` returns it too,
so that a latency budget can allow for it (`calibrate.calibration_margin`).

`time_invokes` times the interpreter's `invoke()` alone (inputs set once): the time of the
ops, for part graphs. `time_stage_graphs` times a signature runner called with its
inputs, as the host cascade (`enas4d_tf.export.cascade`) times a stage graph: the ops plus
feeding the inputs and reading the outputs, network by network as the cascade runs them,
and, in the same rounds, its invokes alone.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class TimingSettings:
    """How graphs are timed.

    Attributes:
      num_threads: interpreter threads.
      rounds: rounds over all graphs; each graph's time is the lowest of its rounds.
      runs: invokes per graph per round, averaged.
      warmup: invokes per graph before the first round (`time_invokes`); passes through
        each network's stages at the start of each of its rounds (`time_stage_graphs`).
      passes: how many times a table measurement times every graph (minutes apart on a
        large space); each graph keeps its fastest pass (`build.measure_table`).
    """

    num_threads: int = 1
    rounds: int = 7
    runs: int = 20
    warmup: int = 5
    passes: int = 3


def _interpreter(flatbuffer: bytes, num_threads: int):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=flatbuffer, num_threads=num_threads)


def _random_input(detail: dict, rng) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    shape = tuple(int(d) for d in detail["shape"])
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-100, 100, shape).astype(dtype)
    return rng.normal(0.0, 1.0, shape).astype(dtype)


def time_invokes(graphs: Mapping[str, bytes], settings: TimingSettings) -> dict[str, float]:
    """Ms of one `invoke()` of each graph, inputs random and set once.

    Args:
      graphs: name -> flatbuffer.
      settings: threads, rounds, runs.

    Returns:
      name -> milliseconds.
    """
    rng = np.random.default_rng(0)
    loaded = {}
    for name, flatbuffer in graphs.items():
        it = _interpreter(flatbuffer, settings.num_threads)
        it.allocate_tensors()
        for detail in it.get_input_details():
            it.set_tensor(detail["index"], _random_input(detail, rng))
        for _ in range(settings.warmup):
            it.invoke()
        loaded[name] = it
    samples: dict[str, list] = {name: [] for name in loaded}
    for _ in range(settings.rounds):
        for name, it in loaded.items():
            start = time.perf_counter()
            for _ in range(settings.runs):
                it.invoke()
            samples[name].append((time.perf_counter() - start) * 1e3 / settings.runs)
    return {name: float(np.min(v)) for name, v in samples.items()}


def network_of(graph_name: str) -> str:
    """The network a stage graph belongs to: its name up to `_stage` (`arch2_stage3` ->
    `arch2`, as `calibrate.stage_graphs` names them); a name without it is its own network."""
    return graph_name.rsplit("_stage", 1)[0]


def time_stage_graphs(
    graphs: Mapping[str, bytes], settings: TimingSettings
) -> dict[str, tuple[float, float, float]]:
    """Each graph's ms of one signature-runner call with random float32 inputs (what
    the host cascade's `StageRunner.timed` measures: the ops plus feeding the inputs and
    reading the outputs) and of one `invoke()` alone (the ops).

    The graphs are timed network by network (`network_of`), as the cascade runs them: one
    image after another through the same network's stages, in the order given, so a
    network's weights and tensors are what the caches hold. Each round times every network
    in turn (a burst of load hits them all alike); a graph's time is its fastest round.
    Interleaving every network's graphs call by call instead left each call to meet caches
    another network had filled: the smallest network's stage 1 took 0.063 ms a call that
    way against 0.021 ms in a cascade, and a fit on those times over-predicted small
    networks' cascades 1.6-2.0x (BUILD_NOTES.md "Latency model: timed as the cascade runs").

    Args:
      graphs: name -> flatbuffer with a serving signature (exported stage graphs), each
        network's stages in cascade order.
      settings: threads, rounds, runs.

    Returns:
      name -> `(runner ms, invoke ms, runner ms of the median round)`: the fastest rounds,
      and the median round, whose distance from the fastest is the spread a measurement on
      this machine meets.
    """
    rng = np.random.default_rng(0)
    networks: dict[str, list] = {}
    for name, flatbuffer in graphs.items():
        runner = _interpreter(flatbuffer, settings.num_threads).get_signature_runner()
        feed = {n: _random_input(d, rng) for n, d in runner.get_input_details().items()}
        # A second interpreter for invokes alone: the runner keeps views of its tensors,
        # which LiteRT refuses to invoke under.
        it = _interpreter(flatbuffer, settings.num_threads)
        it.allocate_tensors()
        for detail in it.get_input_details():
            it.set_tensor(detail["index"], _random_input(detail, rng))
        networks.setdefault(network_of(name), []).append((name, runner, feed, it))
    calls: dict[str, list] = {name: [] for name in graphs}
    invokes: dict[str, list] = {name: [] for name in graphs}
    for _ in range(settings.rounds):
        for stages in networks.values():
            for _ in range(settings.warmup):
                for _, runner, feed, it in stages:
                    runner(**feed)
                    it.invoke()
            call_total = dict.fromkeys((s[0] for s in stages), 0.0)
            invoke_total = dict(call_total)
            for _ in range(settings.runs):
                for name, runner, feed, _ in stages:
                    start = time.perf_counter()
                    runner(**feed)
                    call_total[name] += time.perf_counter() - start
            for _ in range(settings.runs):
                for name, _, _, it in stages:
                    start = time.perf_counter()
                    it.invoke()
                    invoke_total[name] += time.perf_counter() - start
            for name in call_total:
                calls[name].append(call_total[name] * 1e3 / settings.runs)
                invokes[name].append(invoke_total[name] * 1e3 / settings.runs)
    return {
        name: (
            float(np.min(calls[name])),
            float(np.min(invokes[name])),
            float(np.median(calls[name])),
        )
        for name in graphs
    }
