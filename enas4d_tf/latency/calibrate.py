"""Whole stage graphs against the sum of their parts: the table's `fit`.

Parts timed alone miss what a whole graph adds or saves: the runner's cost per call and per
input and output tensor (the host cascade feeds every hand-off through the signature
runner), copying the hand-offs, and caches warmed by the op before. So the table tool also
times the real stage graphs of a few architectures (`stage_graphs`, converted exactly as
`tools.export` converts them, weights of an untrained supernet: the time of a dense
kernel does not depend on its values) and fits

  measured = scale * sum(parts) + fixed_ms + per_input_ms * inputs
             + per_output_ms * outputs + per_input_kib_ms * KiB in + per_output_kib_ms * KiB out

with every coefficient >= 0 (`fit_graph_costs`, which fits the ops and the runner's cost
per tensor apart, from each graph's invoke time and its runner call time).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from enas4d_tf.latency.handoffs import stage_io
from enas4d_tf.latency.parts import stage_parts
from enas4d_tf.latency.table import FIT_FIELDS, IDENTITY_FIT
from enas4d_tf.space import Arch, SearchSpace


def _nonnegative_lstsq(x: np.ndarray, y: np.ndarray, keep: int | None) -> np.ndarray | None:
    """Least squares with every coefficient >= 0, solved over every subset of the columns
    (those always contain column `keep` when given): a handful of columns, so a handful of
    tiny solves. None when no subset gives a non-negative solution."""
    n = x.shape[1]
    others = [c for c in range(n) if c != keep]
    best, best_err = None, np.inf
    for r in range(len(others) + 1):
        for extra in itertools.combinations(others, r):
            cols = sorted(([keep] if keep is not None else []) + list(extra))
            if not cols or len(cols) > len(y):
                continue
            coef, *_ = np.linalg.lstsq(x[:, cols], y, rcond=None)
            if np.any(coef < 0):
                continue
            err = float(np.sum((x[:, cols] @ coef - y) ** 2))
            if err < best_err:
                best_err, best = err, np.zeros(n)
                best[cols] = coef
    return best


def fit_graph_costs(rows: Sequence[Sequence[float]]) -> dict:
    """The table's `fit` from timed stage graphs, in two separate fits.

    The ops: `invoke_ms = scale * parts_ms + fixed`. The runner: `runner_ms - invoke_ms =
    fixed' + per_input_ms * inputs + per_output_ms * outputs + per_input_kib_ms * kib_in +
    per_output_kib_ms * kib_out` (what feeding and reading the tensors costs; 0 when the
    graphs were timed by invokes alone, as on a phone; reading an output costs more than
    feeding an input: the runner allocates a new array for it). Both by least squares with
    non-negative coefficients, on errors relative to each graph's time (so the calibration
    networks count alike, not the largest one alone); `fixed_ms = fixed + fixed'`.

    Args:
      rows: `(parts_ms, inputs, outputs, kib_in, kib_out, runner_ms, invoke_ms)` per graph.

    Returns:
      `FIT_FIELDS` -> value; the identity fit with fewer than 2 graphs or a scale that is
      not positive.
    """
    if len(rows) < 2:
        return dict(IDENTITY_FIT)
    d = np.asarray(rows, np.float64)
    runner_ms, invoke_ms = d[:, 5], d[:, 6]
    weight = 1.0 / np.maximum(runner_ms, 1e-9)[:, None]
    x_ops = np.column_stack([d[:, 0], np.ones(len(d))])
    ops = _nonnegative_lstsq(x_ops * weight, invoke_ms * weight[:, 0], keep=0)
    if ops is None or ops[0] <= 0:
        return dict(IDENTITY_FIT)
    x_io = np.column_stack([np.ones(len(d)), d[:, 1:5]])
    runner = _nonnegative_lstsq(x_io * weight, (runner_ms - invoke_ms) * weight[:, 0], keep=None)
    runner = np.zeros(5) if runner is None else runner
    values = (ops[0], ops[1] + runner[0], *runner[1:])
    return {name: float(v) for name, v in zip(FIT_FIELDS, values, strict=True)}


def calibration_margin(table) -> float:
    """The table's largest under-prediction of its own calibration stage graphs, as a
    fraction: `max(measured / predicted) - 1` over `meta["calibration"]` (0 when it has none
    or never under-predicts). `tools.search` and `tools.export` with `--cost=latency` fit
    thresholds to predictions times `1 + margin` (`LatencyModel(margin=...)`), so that a
    network chosen at the edge of its budget stays within it when the table errs low by as
    much as it did on its calibration graphs.

    "Measured" is the slower of a graph's fastest and median rounds where the table recorded
    the median (`median_ms`, tables since 2026-12-06; an unreadable one is ignored), else its
    fastest: the fit predicts the fastest rounds, and a network timed again on this machine
    lands anywhere in the spread of rounds, so the margin covers the median measurement, not
    only the best one. A row whose fastest time or prediction is unreadable is skipped."""
    worst = 0.0
    for row in (table.meta or {}).get("calibration") or []:
        try:
            predicted, measured = float(row["predicted_ms"]), float(row["measured_ms"])
        except (KeyError, TypeError, ValueError):
            continue
        try:
            measured = max(measured, float(row.get("median_ms")))
        except (TypeError, ValueError):
            pass  # no median recorded (older tables), or an unreadable one
        if predicted > 0 and np.isfinite(measured):
            worst = max(worst, measured / predicted - 1.0)
    return worst


def stage_graphs(
    space: SearchSpace, archs: Sequence[Arch], num_classes: int, quantization: str
) -> dict[str, bytes]:
    """The converted stage graphs of `archs`, named `arch{i}_stage{n}` (n from 1).

    int8 graphs are calibrated on random images; "int8_qat" graphs are timed as int8
    post-training ones (the same int8 kernels; QAT needs training data).
    """
    import keras

    from enas4d_tf.export import stage_graphs as sg
    from enas4d_tf.model.subnet import extract_stage_models
    from enas4d_tf.model.supernet import Supernet

    keras.utils.set_random_seed(0)
    net = Supernet(space, num_classes=num_classes)
    side = space.native_resolution
    net(np.zeros((1, side, side, space.image_channels), np.float32), arch=space.largest())
    rng = np.random.default_rng(0)
    quant = "int8" if quantization == "int8_qat" else quantization
    out = {}
    for i, arch in enumerate(archs):
        models = extract_stage_models(net, arch)
        feeds = None
        if quant == "int8":
            r = arch.resolution
            images = rng.normal(0.0, 1.0, (16, r, r, space.image_channels)).astype(np.float32)
            feeds = sg.keras_stage_feeds(models, images)
        for s, model in enumerate(models):
            rep = sg.representative_samples(feeds[s]) if feeds else None
            out[f"arch{i}_stage{s + 1}"] = sg.convert_stage(model, quant, rep)
    return out


def calibration_rows(
    space: SearchSpace,
    archs: Sequence[Arch],
    num_classes: int,
    entries: dict,
    measured: dict[str, tuple[float, float, float]],
) -> list[dict]:
    """One row per timed stage graph: its parts' sum, inputs, outputs, KiB, and its measured times
    (`measured`: name -> (runner ms, invoke ms, runner ms of the median round),
    `timing.time_stage_graphs`)."""
    rows = []
    for i, arch in enumerate(archs):
        ios = stage_io(space, arch, num_classes)
        for s in range(space.num_stages):
            name = f"arch{i}_stage{s + 1}"
            parts = stage_parts(space, arch, s, num_classes)
            rows.append(
                {
                    "graph": name,
                    "arch": arch.to_dict(),
                    "parts_ms": float(sum(entries[k] for k in parts)),
                    "inputs": ios[s].num_inputs,
                    "outputs": ios[s].num_outputs,
                    "kib_in": ios[s].kib_in,
                    "kib_out": ios[s].kib_out,
                    "measured_ms": measured[name][0],
                    "invoke_ms": measured[name][1],
                    "median_ms": measured[name][2],
                }
            )
    return rows
