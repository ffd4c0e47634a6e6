"""fit_graph_costs: the ops' scale and the runner's cost per tensor, fitted apart."""

import numpy as np
import pytest

from enas4d_tf.latency.calibrate import fit_graph_costs
from enas4d_tf.latency.table import IDENTITY_FIT, graph_ms


def _rows(fit_ops, fit_runner, n=12, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        parts = rng.uniform(0.01, 2.0)
        inputs, outputs = int(rng.integers(1, 20)), int(rng.integers(1, 20))
        kib = rng.uniform(1.0, 100.0)
        invoke = fit_ops[0] * parts + fit_ops[1]
        runner = invoke + fit_runner[0] + fit_runner[1] * inputs + fit_runner[2] * outputs
        runner += fit_runner[3] * kib
        rows.append((parts, inputs, outputs, kib, runner, invoke))
    return rows


def test_exact_rows_give_back_their_coefficients():
    rows = _rows((0.8, 0.004), (0.01, 0.0025, 0.001, 0.0002))
    fit = fit_graph_costs(rows)
    assert fit == pytest.approx(
        {
            "scale": 0.8,
            "fixed_ms": 0.014,
            "per_input_ms": 0.0025,
            "per_output_ms": 0.001,
            "per_kib_ms": 0.0002,
        }
    )
    parts, inputs, outputs, kib, runner, _ = rows[0]
    assert graph_ms(fit, parts, inputs, outputs, kib) == pytest.approx(runner)


def test_coefficients_never_go_negative():
    # Runner times below invoke times (noise) would fit negative per-tensor costs.
    rows = [
        (p, i, o, k, inv - 0.001 * i, inv) for p, i, o, k, _, inv in _rows((1.2, 0.0), (0, 0, 0, 0))
    ]
    fit = fit_graph_costs(rows)
    assert all(v >= 0 for v in fit.values())
    assert fit["scale"] == pytest.approx(1.2, rel=0.05)


def test_too_few_graphs_give_the_identity():
    assert fit_graph_costs(_rows((2.0, 0.1), (0, 0, 0, 0), n=1)) == IDENTITY_FIT
