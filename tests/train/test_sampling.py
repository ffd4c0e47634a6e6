"""Which architectures a training step trains: the sandwich rule, progressive shrinking."""

import numpy as np
import pytest

import enas4d_tf as e4
from enas4d_tf.train import sampling

TINY = e4.SearchSpace.preset("tiny")
FMNIST = e4.SearchSpace.preset("fashion_mnist")
GENES = ("depth", "kernel", "expand", "width")


def _flat(arch, gene):
    return np.ravel(np.array(getattr(arch, gene), dtype=float))


def test_sandwich_sampler_is_a_function_of_the_step():
    a = sampling.step_archs(FMNIST, seed=3, step=17, num_random=4)
    b = sampling.step_archs(FMNIST, seed=3, step=17, num_random=4)
    assert a == b  # same step: identical on every replica, worker and restart
    assert a[0] == FMNIST.largest() and a[1] == FMNIST.smallest()
    assert len(a) == 6 and len(set(a[2:])) == 4
    c = sampling.step_archs(FMNIST, seed=3, step=18, num_random=4)
    assert c[:2] == a[:2] and c[2:] != a[2:]
    d = sampling.step_archs(FMNIST, seed=4, step=17, num_random=4)
    assert d[2:] != a[2:]
    for arch in a + c:
        FMNIST.validate(arch)


@pytest.mark.parametrize("phase", [0, 1, 2, 3])
def test_progressive_sampler_keeps_genes_not_yet_elastic_at_largest(phase):
    elastic = sampling.elastic_genes(phase)
    rng = np.random.default_rng(0)
    archs = [sampling.sample_arch(FMNIST, rng, phase) for _ in range(40)]
    largest = FMNIST.largest()
    for gene in GENES:
        values = np.stack([_flat(a, gene) for a in archs])
        if gene in elastic:
            # 40 draws of dozens of uniform genes: every choice shows up.
            assert set(np.unique(values)) == set(getattr(FMNIST, f"{gene}_choices"))
        else:
            assert np.all(values == _flat(largest, gene)), gene
    resolutions = {a.resolution for a in archs}
    assert resolutions == set(FMNIST.resolution_choices)  # elastic from phase 0
    smallest = sampling.smallest_arch(FMNIST, phase)
    for gene in GENES:
        want = min if gene in elastic else max
        assert np.all(_flat(smallest, gene) == want(getattr(FMNIST, f"{gene}_choices")))


def test_phase_schedule():
    starts = (0.0, 0.25, 0.5, 0.75)
    phases = [sampling.phase_for_epoch(e, 8, "progressive", starts) for e in range(8)]
    assert phases == [0, 0, 1, 1, 2, 2, 3, 3]
    assert sampling.phase_for_epoch(0, 8, "sandwich") == 3
    with pytest.raises(ValueError, match="increase"):
        sampling.check_phase_starts((0.0, 0.5, 0.4, 0.9))
    assert sampling.elastic_genes(0) == {"resolution", "kernel"}
    assert sampling.elastic_genes(3) == {"resolution", "kernel", "depth", "expand", "width"}


def test_stacked_arch_tensors_have_one_row_per_arch():
    archs = sampling.step_archs(TINY, 0, 0, 2)
    stacked = sampling.stack_arch_tensors(TINY, archs)
    assert stacked["resolution"].tolist() == [a.resolution for a in archs]
    assert stacked["hidden"].shape == (4, 3, 2, 2)  # (K, S, U, D) of the tiny space
    assert stacked["hidden"].dtype == np.int32


def _log_macs(archs):
    return np.log([sampling.last_exit_macs(FMNIST, a) for a in archs])


def test_macs_sampling_trains_every_cost_range_of_the_space():
    low, high = _log_macs([FMNIST.smallest(), FMNIST.largest()])
    edges = np.linspace(low, high, 5)  # four equal ranges of log-MACs
    rng = np.random.default_rng(0)
    by_macs = np.histogram(
        _log_macs([sampling.sample_arch_by_macs(FMNIST, rng) for _ in range(200)]), edges
    )[0]
    uniform = np.histogram(
        _log_macs([sampling.sample_arch(FMNIST, rng) for _ in range(200)]), edges
    )[0]
    # Gene-uniform draws never reach the costliest quarter; MACs-targeted ones fill each
    # quarter with about a fourth of the draws.
    assert uniform[-1] <= 2
    assert by_macs.min() >= 30, by_macs
    a = sampling.step_archs(FMNIST, 3, 17, 2, arch_sampling="macs")
    assert a == sampling.step_archs(FMNIST, 3, 17, 2, arch_sampling="macs")
    assert a[2:] != sampling.step_archs(FMNIST, 3, 17, 2)[2:]
    with pytest.raises(ValueError, match="arch_sampling"):
        sampling.step_archs(FMNIST, 3, 17, 2, arch_sampling="flops")


def test_macs_sampling_keeps_genes_not_yet_elastic_at_largest():
    rng = np.random.default_rng(1)
    largest = FMNIST.largest()
    for _ in range(10):
        arch = sampling.sample_arch_by_macs(FMNIST, rng, phase=0)
        for gene in ("depth", "expand", "width"):
            np.testing.assert_array_equal(_flat(arch, gene), _flat(largest, gene))


def test_spread_architectures_rise_over_the_whole_range():
    archs = sampling.spread_archs(FMNIST, 10)
    assert archs == sampling.spread_archs(FMNIST, 10)
    macs = _log_macs(archs)
    low, high = _log_macs([FMNIST.smallest(), FMNIST.largest()])
    assert np.all(np.diff(macs) > 0) and low < macs[0] and macs[-1] < high
    # Each near its log-spaced target: within a tenth of the range.
    targets = low + np.arange(1, 11) / 11 * (high - low)
    assert np.max(np.abs(macs - targets)) < 0.1 * (high - low)
    assert sampling.spread_archs(FMNIST, 0) == []
