"""A latency table the tests build themselves (no timing): every part a space needs, with a
made-up time, so a `--cost=latency` search runs on the `tiny` space in seconds."""

from __future__ import annotations

import hashlib

from enas4d_tf.latency.coverage import space_keys
from enas4d_tf.latency.table import IDENTITY_FIT, LatencyTable, Target
from enas4d_tf.space import SearchSpace


def part_ms(key: str) -> float:
    """A made-up time per part: convolutions 0.01-0.03 ms, the rest 0.001-0.003 ms (spread by
    a hash of the key, so latency is not a multiple of MACs)."""
    spread = 1 + int(hashlib.sha1(key.encode()).hexdigest()[:4], 16) % 3
    return (0.01 if key.startswith("conv:") else 0.001) * spread


def fake_table(space_name: str = "tiny", drop: int = 0, preset: str | None = None) -> LatencyTable:
    """The table of every part of `space_name` (10 classes), less its first `drop` keys in
    sorted order; `preset` overrides the space it says it was measured for."""
    space = SearchSpace.preset(space_name)
    keys = sorted(space_keys(space, 10))[drop:]
    return LatencyTable(
        target=Target("host", "fake", "none", 1, "float32"),
        preset=preset or space.name,
        num_classes=10,
        entries={k: part_ms(k) for k in keys},
        fit=dict(IDENTITY_FIT),
    )


def write_fake_table(path: str, **kwargs) -> str:
    """Saves `fake_table(**kwargs)` at `path`; returns `path`."""
    fake_table(**kwargs).save(str(path))
    return str(path)
