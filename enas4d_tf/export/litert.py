"""TFLite flatbuffers on the LiteRT interpreter: what a graph holds, and running it.

Inspection (`op_names`, `is_builtin`, `signature`, `tensor_dtypes`,
`xnnpack_fully_accelerated`) is what the manifest records of every stage graph;
`StageRunner` runs one graph through its serving signature, as the cascade does on a phone.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Mapping

import numpy as np


def _interpreter(model_content: bytes | None = None, model_path: str | None = None, **kw):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=model_content, model_path=model_path, **kw)


def op_names(flatbuffer: bytes) -> list[str]:
    """Sorted distinct op names of a TFLite model (custom and Flex ops keep their names)."""
    it = _interpreter(model_content=flatbuffer)
    return sorted({o["op_name"] for o in it._get_ops_details()})


def is_builtin(op_name: str) -> bool:
    """Whether an op name is a TFLite builtin (Flex ops are `Flex*`, custom ops `CUSTOM`)."""
    return not (op_name.startswith("Flex") or op_name in ("CUSTOM", "DELEGATE"))


def signature(flatbuffer: bytes) -> dict:
    """Inputs and outputs of the serving signature: `{"inputs": {name: {shape, dtype}}, ...}`."""
    it = _interpreter(model_content=flatbuffer)
    runner = it.get_signature_runner()

    def describe(details):
        return {
            name: {"shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
            for name, d in sorted(details.items())
        }

    return {
        "inputs": describe(runner.get_input_details()),
        "outputs": describe(runner.get_output_details()),
    }


def tensor_dtypes(flatbuffer: bytes) -> dict:
    """Counts of tensor dtypes inside a model, e.g. `{"int8": 120, "float32": 16, ...}`."""
    it = _interpreter(model_content=flatbuffer)
    counts: dict = {}
    for t in it.get_tensor_details():
        name = np.dtype(t["dtype"]).name
        counts[name] = counts.get(name, 0) + 1
    return counts


def xnnpack_fully_accelerated(path: str, num_threads: int = 1) -> bool | None:
    """Whether every op of a .tflite file runs on LiteRT's CPU accelerator (XNNPACK).

    Uses LiteRT's `CompiledModel.is_fully_accelerated()`, what the `litert-benchmark` console
    script reports as "Fully accelerated".

    Returns:
      True or False, or None when the LiteRT CompiledModel API is not available.
    """
    try:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.environment import Environment, EnvironmentOptions
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, Options
    except ImportError:
        return None
    with _quiet_fds():
        env = Environment.create(options=EnvironmentOptions())
        options = Options(
            hardware_accelerators=HardwareAccelerator(HardwareAccelerator.CPU),
            cpu_options=CpuOptions(num_threads=num_threads),
        )
        model = CompiledModel.from_file(path, environment=env, options=options)
        accelerated = bool(model.is_fully_accelerated())
        # Destroyed here, inside the quiet block: the runtime logs each accelerator it frees.
        del model, env
        gc.collect()
        return accelerated


@contextlib.contextmanager
def _quiet_fds():
    """Silences the C++ runtime's INFO lines (written to fd 2) while LiteRT starts."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# -- running ---------------------------------------------------------------------------------


class StageRunner:
    """Runs one stage graph through its serving signature on the LiteRT interpreter.

    Args:
      path: the .tflite file (or None with `model_content`).
      num_threads: interpreter threads.
      model_content: the flatbuffer bytes instead of a file.

    The default op resolver applies the XNNPACK delegate, as on a phone.
    """

    def __init__(self, path: str | None = None, num_threads: int = 1, model_content=None):
        self.interpreter = _interpreter(
            model_content=model_content, model_path=path, num_threads=num_threads
        )
        self.runner = self.interpreter.get_signature_runner()
        self.input_names = sorted(self.runner.get_input_details())
        self.output_names = sorted(self.runner.get_output_details())

    def __call__(self, feed: Mapping[str, np.ndarray]) -> dict:
        """Runs the stage on a batch-1 feed `{input name: array}`; returns its outputs."""
        return self.runner(**{n: feed[n] for n in self.input_names})

    def timed(self, feed: Mapping[str, np.ndarray]) -> tuple[dict, float]:
        """Like `__call__`, also returning the wall time of the invocation in ms."""
        args = {n: feed[n] for n in self.input_names}
        start = time.perf_counter()
        out = self.runner(**args)
        return out, (time.perf_counter() - start) * 1e3
