"""LatencyModel and the parts it sums: golden parts of a hand-walked network, the fit, the
refusals, and that every key a sampled architecture needs is one `space_keys` enumerates."""

import subprocess
import sys

import pytest

from enas4d_tf.errors import LatencyError
from enas4d_tf.latency.coverage import space_keys
from enas4d_tf.latency.handoffs import stage_io
from enas4d_tf.latency.model import LatencyModel
from enas4d_tf.latency.parts import parse_key, part_key, stage_parts, truncated_parts
from enas4d_tf.latency.table import IDENTITY_FIT, LatencyTable, Target
from enas4d_tf.space import SearchSpace
from tests.helpers import REPO

TINY = SearchSpace.preset("tiny")

# Stage 1 of tiny's smallest network, walked by hand from presets.py: resolution 20, stem
# 3x3/2 to 4 channels (side 10); unit 0 (relu, stride 2): width 0.5 * 8 = 4, expand 2 * 4 = 8,
# one block (no residual); unit 1 (h-swish, SE, stride 2): width 0.5 * 12 = 6, hidden 8,
# SE 8 // 4 = 2, side 5 -> 3; head 16 channels over 6, 10 classes.
SMALLEST_STAGE1 = [
    "conv:act=relu,cin=1,cout=4,k=3,side=20,stride=2",
    "conv:act=relu,cin=4,cout=8,k=1,side=10,stride=1",
    "dwconv:act=relu,c=8,k=3,side=10,stride=2",
    "conv:act=linear,cin=8,cout=4,k=1,side=5,stride=1",
    "conv:act=hard_swish,cin=4,cout=8,k=1,side=5,stride=1",
    "dwconv:act=hard_swish,c=8,k=3,side=5,stride=2",
    "mean:c=8,side=3",
    "conv:act=relu,cin=8,cout=2,k=1,side=1,stride=1",
    "conv:act=hard_sigmoid,cin=2,cout=8,k=1,side=1,stride=1",
    "mul:c=8,side=3",
    "conv:act=linear,cin=8,cout=6,k=1,side=3,stride=1",
    "conv:act=relu,cin=6,cout=16,k=1,side=3,stride=1",
    "mean:c=16,side=3",
    "fc:cin=16,cout=10",
]


def test_stage1_parts_of_the_smallest_tiny_network():
    assert stage_parts(TINY, TINY.smallest(), 0, 10) == SMALLEST_STAGE1


def test_stage2_reads_the_earlier_groups_through_concats():
    parts = stage_parts(TINY, TINY.smallest(), 1, 10)
    # Unit 0's expand reads groups 1-2 (4 + 4 channels); its project reads both hidden
    # groups (8 + 8); the head reads both last groups (6 + 6); the classifier both pooled
    # head groups (16 + 16).
    assert "concat:c=8,n=2,side=10" in parts
    assert "conv:act=relu,cin=8,cout=8,k=1,side=10,stride=1" in parts
    assert "concat:c=16,n=2,side=5" in parts
    assert "conv:act=linear,cin=16,cout=4,k=1,side=5,stride=1" in parts
    assert "concat:c=12,n=2,side=3" in parts
    assert "fc:cin=32,cout=10" in parts


def test_truncated_parts_drop_the_earlier_classifiers():
    arch = TINY.sample(seed=3)
    parts = truncated_parts(TINY, arch, 3, 10)
    stages = sum((stage_parts(TINY, arch, s, 10) for s in range(3)), [])
    dropped = list(stages)
    for key in parts:
        dropped.remove(key)
    assert sorted(dropped) == sorted(
        ["fc:cin=16,cout=10", "fc:cin=32,cout=10", "concat:c=32,n=2,side=1"]
    )


def test_keys_parse_back():
    key = part_key("dwconv", act="relu", c=8, k=3, side=10, stride=2)
    assert parse_key(key) == ("dwconv", {"act": "relu", "c": 8, "k": 3, "side": 10, "stride": 2})
    with pytest.raises(ValueError):
        parse_key("relu:c=3")


def test_space_keys_cover_sampled_architectures():
    keys = space_keys(TINY, 10)
    needed = set()
    for arch in [TINY.smallest(), TINY.largest()] + [TINY.sample(seed=i) for i in range(200)]:
        for s in range(3):
            needed.update(stage_parts(TINY, arch, s, 10))
            needed.update(truncated_parts(TINY, arch, s + 1, 10))
    assert needed <= keys
    # Enumerated from sums, not padded: most of what it lists, samples do reach.
    assert len(needed) > 0.6 * len(keys)


def _table(entries, fit=None, preset="tiny", quantization="float32", threads=1):
    target = Target("host", "test", "none", threads, quantization)
    fit = fit or IDENTITY_FIT
    return LatencyTable(target=target, preset=preset, num_classes=10, entries=entries, fit=fit)


def _model(fit=None, **kw):
    # 0.01 ms per conv and 0.001 ms for every other part, so sums are countable by hand.
    entries = {k: (0.01 if k.startswith("conv:") else 0.001) for k in space_keys(TINY, 10)}
    return LatencyModel(_table(entries, fit, **kw), TINY, 10)


def test_stage_ms_sums_the_parts_and_the_fit():
    arch = TINY.smallest()
    # SMALLEST_STAGE1: 8 convs and 6 other parts.
    assert _model().stage_ms(arch)[0] == pytest.approx(8 * 0.01 + 6 * 0.001)
    fit = {
        "scale": 2.0,
        "fixed_ms": 0.5,
        "per_input_ms": 0.1,
        "per_output_ms": 0.03,
        "per_input_kib_ms": 0.25,
        "per_output_kib_ms": 0.125,
    }
    io = stage_io(TINY, arch, 10)[0]
    # One input: the image, 20 x 20 x 1 float32 = 1.5625 KiB.
    assert io.num_inputs == 1 and io.kib_in == pytest.approx(1.5625)
    expected = 2.0 * 0.086 + 0.5 + 0.1 + 0.03 * io.num_outputs + 0.25 * 1.5625 + 0.125 * io.kib_out
    assert _model(fit).stage_ms(arch)[0] == pytest.approx(expected)


def test_cumulative_and_truncated():
    model = _model(IDENTITY_FIT | {"fixed_ms": 0.5})
    arch = TINY.sample(seed=1)
    stages = model.stage_ms(arch)
    assert model.cumulative(arch) == pytest.approx([stages[0], stages[0] + stages[1], sum(stages)])
    truncated = model.truncated(arch)
    # Exit 1 cut alone is stage 1's graph; exit 3 cut is one graph (one fixed cost, not
    # three) without the two earlier classifiers (0.001 ms each) and their concat.
    assert truncated[0] == pytest.approx(stages[0])
    assert truncated[2] == pytest.approx(sum(stages) - 2 * 0.5 - 0.003)
    assert model.average(arch, [0.5, 0.0, 0.5]) == pytest.approx(
        0.5 * stages[0] + 0.5 * sum(stages)
    )
    assert model.unit == "ms"


def test_the_memos_are_bounded_and_answers_stay_the_same():
    # A long search asks for ~1M architectures: the memos must not keep them all.
    assert LatencyModel.max_cached <= 200_000
    model, fresh = _model(), _model()
    model.max_cached = 3
    archs = [TINY.sample(seed=i) for i in range(10)]
    for arch in archs + archs[:2]:
        assert model.stage_ms(arch) == fresh.stage_ms(arch)
        assert model.truncated(arch) == fresh.truncated(arch)
        assert len(model._stages) <= 3 and len(model._truncated) <= 3
    assert len(fresh._stages) == len(fresh._truncated) == 10


def test_a_missing_key_is_named():
    entries = {k: 0.01 for k in SMALLEST_STAGE1 if k != "mean:c=8,side=3"}
    model = LatencyModel(_table(entries), TINY, 10)
    with pytest.raises(LatencyError, match="mean:c=8,side=3"):
        model.stage_ms(TINY.smallest())


@pytest.mark.parametrize(
    "table_kw, model_kw, needle",
    [
        ({"preset": "fashion_mnist"}, {}, "fashion_mnist"),
        ({"quantization": "int8"}, {"quantization": "float32"}, "int8"),
        ({"threads": 4}, {"threads": 1}, "4 thread"),
    ],
)
def test_a_table_of_another_target_is_refused(table_kw, model_kw, needle):
    table = _table({"fc:cin=16,cout=10": 0.001}, **table_kw)
    with pytest.raises(LatencyError, match=needle):
        LatencyModel(table, TINY, 10, **model_kw)
    with pytest.raises(LatencyError, match="classes"):
        LatencyModel(_table({"fc:cin=16,cout=10": 0.001}), TINY, 100)


def test_the_latency_model_does_not_import_tensorflow():
    code = (
        "import sys, enas4d_tf.latency.model, enas4d_tf.latency.coverage, "
        "enas4d_tf.latency.build, enas4d_tf.latency.android;"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported';"
        "assert 'ai_edge_litert' not in sys.modules, 'litert imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_a_margin_scales_every_prediction():
    entries = {k: (0.01 if k.startswith("conv:") else 0.001) for k in space_keys(TINY, 10)}
    table = _table(entries, IDENTITY_FIT | {"fixed_ms": 0.5})
    plain = LatencyModel(table, TINY, 10)
    safe = LatencyModel(table, TINY, 10, margin=0.04)
    arch = TINY.sample(seed=2)
    assert safe.stage_ms(arch) == pytest.approx([1.04 * t for t in plain.stage_ms(arch)])
    assert safe.truncated(arch) == pytest.approx([1.04 * t for t in plain.truncated(arch)])
    with pytest.raises(ValueError, match="margin"):
        LatencyModel(table, TINY, 10, margin=-0.1)


def test_the_calibration_margin_is_the_tables_worst_under_prediction():
    from enas4d_tf.latency.calibrate import calibration_margin

    table = _table({})
    assert calibration_margin(table) == 0.0  # no calibration graphs
    table.meta["calibration"] = [
        {"measured_ms": 1.0, "predicted_ms": 1.1},  # over-predicted: no margin needed
        {"measured_ms": 0.52, "predicted_ms": 0.5},  # 4% under
        {"measured_ms": 2.02, "predicted_ms": 2.0},  # 1% under
        {"measured_ms": "?", "predicted_ms": 1.0},  # unreadable: skipped
    ]
    assert calibration_margin(table) == pytest.approx(0.04)
    table.meta["calibration"] = table.meta["calibration"][:1]
    assert calibration_margin(table) == 0.0
    # A table that kept each graph's median round: the margin covers the median, which a
    # measurement on the same machine lands at as often as not.
    table.meta["calibration"] = [
        {"measured_ms": 0.52, "median_ms": 0.54, "predicted_ms": 0.5},  # 8% under at the median
        {"measured_ms": 1.0, "median_ms": 1.05, "predicted_ms": 1.1},  # over-predicted still
    ]
    assert calibration_margin(table) == pytest.approx(0.08)
    # The slower of the two counts; an unreadable median leaves the fastest.
    table.meta["calibration"] = [
        {"measured_ms": 0.55, "median_ms": 0.53, "predicted_ms": 0.5},  # 10% under, fastest
        {"measured_ms": 1.11, "median_ms": "?", "predicted_ms": 1.0},  # 11% under, fastest
    ]
    assert calibration_margin(table) == pytest.approx(0.11)
