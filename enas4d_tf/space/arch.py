"""Architectures of a multi-stage search space as immutable, JSON-safe values.

An `Arch` picks, for every stage, the depth of each unit, the kernel and expand ratio of each
block and the width of each unit, plus one global input resolution. `ArchSizes` is what those
genes mean: the active channel counts that the supernet, the extracted subnet and the MACs
counter all read (built by `SearchSpace.sizes`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from enas4d_tf.errors import SpaceError
from enas4d_tf.space.blocks import input_width

ARCH_FORMAT_VERSION = 1
GENE_NAMES = ("depth", "kernel", "expand", "width", "resolution")
# How deep each gene's values nest: indexed by stage and unit (2), plus block (3), or global (0).
GENE_LEVELS = {"depth": 2, "kernel": 3, "expand": 3, "width": 2, "resolution": 0}


def _tuplify(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_tuplify(v) for v in value)
    return value


def _listify(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_listify(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class Arch:
    """One multi-stage architecture: its genes.

    Attributes:
      depth: `depth[s][u]`, active blocks of unit `u` for stage `s`.
      kernel: `kernel[s][u][b]`, depthwise kernel size of group `s` in block `b` of unit `u`.
      expand: `expand[s][u][b]`, expand ratio of group `s` in that block.
      width: `width[s][u]`, group `s`'s width in unit `u` as a fraction of its maximum.
      resolution: input image side.

    Genes of blocks past a unit's depth are kept (so mutation can switch a block back on)
    but have no effect.
    """

    depth: tuple
    kernel: tuple
    expand: tuple
    width: tuple
    resolution: int

    def __post_init__(self):
        for name in ("depth", "kernel", "expand", "width"):
            object.__setattr__(self, name, _tuplify(getattr(self, name)))

    @property
    def num_stages(self) -> int:
        return len(self.depth)

    def to_dict(self) -> dict:
        """Returns a JSON-safe dict keyed by the gene names, plus a format `version`."""
        d = {name: _listify(getattr(self, name)) for name in GENE_NAMES}
        d["resolution"] = int(self.resolution)
        d["version"] = ARCH_FORMAT_VERSION
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Arch:
        """Builds an `Arch` from `to_dict()` output.

        Raises:
          SpaceError: (a ValueError) `d` is not a dict, lacks a gene, has an unknown key, a
            wrong version, or a gene of the wrong type. Range checks against a space are
            `SearchSpace.validate`.
        """
        if not isinstance(d, dict):
            raise SpaceError(f"architecture must be a JSON object, got {type(d).__name__}")
        version = d.get("version", ARCH_FORMAT_VERSION)
        if version != ARCH_FORMAT_VERSION:
            raise SpaceError(
                f"architecture format version {version!r} is not supported "
                f"(this package reads version {ARCH_FORMAT_VERSION})"
            )
        missing = [n for n in GENE_NAMES if n not in d]
        if missing:
            raise SpaceError(f"architecture is missing gene(s): {', '.join(missing)}")
        unknown = sorted(set(d) - set(GENE_NAMES) - {"version"})
        if unknown:
            raise SpaceError(f"architecture has unknown key(s): {', '.join(unknown)}")
        res = d["resolution"]
        if isinstance(res, bool) or not isinstance(res, int):
            raise SpaceError(f"gene 'resolution' must be an integer, got {res!r}")
        for name in GENE_NAMES:
            if GENE_LEVELS[name]:  # the resolution was checked above
                _check_nested_numbers(name, d[name], GENE_LEVELS[name])
        return cls(
            depth=d["depth"],
            kernel=d["kernel"],
            expand=d["expand"],
            width=d["width"],
            resolution=res,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Arch:
        """Parses JSON text; malformed JSON raises SpaceError naming the problem."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpaceError(f"architecture is not valid JSON: {e}") from None
        return cls.from_dict(d)


def _check_nested_numbers(name: str, value: Any, levels: int) -> None:
    if levels == 0:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpaceError(f"gene '{name}' holds {value!r}, which is not a number")
        return
    if not isinstance(value, (list, tuple)):
        raise SpaceError(f"gene '{name}' must be a nested list {levels} levels deep")
    for v in value:
        _check_nested_numbers(name, v, levels - 1)


@dataclasses.dataclass(frozen=True)
class ArchSizes:
    """Active sizes of an architecture: what every layer computes, group by group.

    All arrays are int64 numpy. Zero in `hidden` or `se` means the block is inactive for that
    group (the group passes through it unchanged).

    Attributes:
      resolution: input image side.
      stem: `(S,)` stem channels per group (not elastic).
      width: `(S, U)` active output channels of group `s` in unit `u`.
      depth: `(S, U)` active blocks.
      kernel: `(S, U, D)` depthwise kernel sizes.
      kernel_index: `(S, U, D)` index of the kernel size in the space's kernel choices.
      hidden: `(S, U, D)` active hidden (expanded) channels, 0 where inactive.
      se: `(S, U, D)` squeeze-excitation bottleneck channels, 0 where inactive or no SE.
      head: `(S,)` head channels per group (not elastic).
    """

    resolution: int
    stem: np.ndarray
    width: np.ndarray
    depth: np.ndarray
    kernel: np.ndarray
    kernel_index: np.ndarray
    hidden: np.ndarray
    se: np.ndarray
    head: np.ndarray

    def block_input_width(self, s: int, u: int, b: int) -> int:
        """Channels of group `s` entering block `b` of unit `u`."""
        return input_width(self.stem, self.width, s, u, b)

    def as_tensors(self) -> dict:
        """The sizes as a dict of int32 arrays with shapes fixed by the space.

        Passing this (converted to tensors) to a `tf.function` lets one trace serve every
        architecture of the space.
        """
        return {
            "resolution": np.int32(self.resolution),
            "width": self.width.astype(np.int32),
            "depth": self.depth.astype(np.int32),
            "kernel_index": self.kernel_index.astype(np.int32),
            "hidden": self.hidden.astype(np.int32),
            "se": self.se.astype(np.int32),
        }
