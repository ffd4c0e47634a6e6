"""fit_graph_costs: the ops' scale and the runner's cost per tensor, fitted apart."""

import numpy as np
import pytest

from enas4d_tf.latency.calibrate import fit_graph_costs
from enas4d_tf.latency.table import FIT_FIELDS, IDENTITY_FIT, graph_ms


def _rows(fit, n=16, seed=0):
    """Graphs of random sizes whose times follow `fit` (a dict of FIT_FIELDS) exactly."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        parts = rng.uniform(0.01, 2.0)
        io = (
            int(rng.integers(1, 20)),
            int(rng.integers(1, 20)),
            rng.uniform(1, 99),
            rng.uniform(1, 99),
        )
        invoke = fit["scale"] * parts + fit["fixed_ms"]
        runner = graph_ms(fit, parts, io)
        rows.append((parts, *io, runner, invoke))
    return rows


FIT = {
    "scale": 0.8,
    "fixed_ms": 0.004,
    "per_input_ms": 0.0025,
    "per_output_ms": 0.001,
    "per_input_kib_ms": 0.0002,
    "per_output_kib_ms": 0.0011,
}


def test_exact_rows_give_back_their_coefficients():
    fit = fit_graph_costs(_rows(FIT))
    assert list(fit) == list(FIT_FIELDS)
    assert fit == pytest.approx(FIT)


def test_coefficients_never_go_negative():
    # Runner times below invoke times (noise) would fit negative per-tensor costs.
    ops_only = IDENTITY_FIT | {"scale": 1.2}
    rows = [(*r[:5], r[6] - 0.001 * r[1], r[6]) for r in _rows(ops_only)]
    fit = fit_graph_costs(rows)
    assert all(v >= 0 for v in fit.values())
    assert fit["scale"] == pytest.approx(1.2, rel=0.05)


def test_small_graphs_count_as_much_as_large_ones():
    # Nine small graphs and one 100x larger whose runner costs twice its ops: an absolute
    # least squares would fit the large one; relative errors keep the small ones right.
    rows = _rows(FIT, n=9)
    parts = 200.0
    rows.append((parts, 1, 1, 1.0, 1.0, 2 * FIT["scale"] * parts, FIT["scale"] * parts))
    fit = fit_graph_costs(rows)
    small = [abs(graph_ms(fit, r[0], r[1:5]) / r[5] - 1) for r in rows[:9]]
    assert max(small) < 0.15


def test_too_few_graphs_give_the_identity():
    assert fit_graph_costs(_rows(FIT, n=1)) == IDENTITY_FIT
