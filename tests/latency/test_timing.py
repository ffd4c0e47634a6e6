"""time_stage_graphs: stage graphs timed network by network, as the host cascade runs them."""

import numpy as np

from enas4d_tf.latency import timing
from enas4d_tf.latency.timing import TimingSettings, network_of, time_stage_graphs


class _Recorder:
    """Stands in for LiteRT: every runner call and invoke appends `(kind, graph)` to `log`."""

    def __init__(self):
        self.log = []

    def interpreter(self, flatbuffer, num_threads):
        log, name = self.log, flatbuffer.decode()

        class Interpreter:
            def get_signature_runner(self):
                def runner(**feed):
                    log.append(("call", name))
                    return {}

                runner.get_input_details = lambda: {
                    "image": {"dtype": np.float32, "shape": np.array([1, 4, 4, 1])}
                }
                return runner

            def allocate_tensors(self):
                pass

            def get_input_details(self):
                return [{"index": 0, "dtype": np.float32, "shape": np.array([1, 4, 4, 1])}]

            def set_tensor(self, index, value):
                pass

            def invoke(self):
                log.append(("invoke", name))

        return Interpreter()


def test_network_of_reads_the_calibration_names():
    assert network_of("arch2_stage3") == "arch2"
    assert network_of("arch10_stage1") == "arch10"
    assert network_of("alone") == "alone"


def test_each_network_runs_its_stages_in_turn_before_the_next(monkeypatch):
    recorder = _Recorder()
    monkeypatch.setattr(timing, "_interpreter", recorder.interpreter)
    names = ["a_stage1", "a_stage2", "b_stage1", "b_stage2", "b_stage3"]
    graphs = {n: n.encode() for n in names}
    settings = TimingSettings(rounds=2, runs=3, warmup=1)
    times = time_stage_graphs(graphs, settings)
    assert set(times) == set(names)
    # Fastest runner round, fastest invoke round, and the median runner round (no faster).
    assert all(len(t) == 3 and min(t) >= 0 and t[2] >= t[0] for t in times.values())
    calls = [name for kind, name in recorder.log if kind == "call"]
    a = ["a_stage1", "a_stage2"]
    b = ["b_stage1", "b_stage2", "b_stage3"]
    # Per round and network: the warm-up pass, then `runs` passes through its stages in
    # order; no call of another network in between (that would be the interleaved timing
    # whose cold caches over-predicted small networks).
    one_round = a * (1 + 3) + b * (1 + 3)
    assert calls == one_round * 2
    invokes = [name for kind, name in recorder.log if kind == "invoke"]
    assert invokes == (a * (1 + 3) + b * (1 + 3)) * 2


def test_a_graph_keeps_its_fastest_and_its_median_round(monkeypatch):
    """Rounds of 1, 5 and 2 ms a call: the fastest is 1 ms, the median 2 ms (not the mean or
    the slowest)."""
    from types import SimpleNamespace

    clock = [0.0]
    per_round_ms = iter([1.0, 5.0, 2.0])
    settings = TimingSettings(rounds=3, runs=2, warmup=1)
    calls = {"n": 0}

    class Interpreter:
        def get_signature_runner(self):
            def runner(**feed):
                # Each round: one warm-up call, then `runs` timed ones, all at that round's ms.
                if calls["n"] % (settings.warmup + settings.runs) == 0:
                    runner.ms = next(per_round_ms)
                calls["n"] += 1
                clock[0] += runner.ms / 1e3

            runner.get_input_details = lambda: {}
            return runner

        def allocate_tensors(self):
            pass

        def get_input_details(self):
            return []

        def invoke(self):
            pass

    monkeypatch.setattr(timing, "_interpreter", lambda flatbuffer, num_threads: Interpreter())
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    fastest, invoke, median = time_stage_graphs({"a_stage1": b"x"}, settings)["a_stage1"]
    assert abs(fastest - 1.0) < 1e-9
    assert abs(median - 2.0) < 1e-9 and invoke == 0.0
