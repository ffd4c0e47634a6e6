"""The multi-stage search space: immutable, JSON-safe data walked by pure functions.

A network has `S` stages. The channels of every layer are split into `S` contiguous groups
and group `s` belongs to stage `s`: stage `s`'s exit reads groups `0..s` only, so exit `s`
costs what stages `0..s` compute and nothing more. An `Arch` picks, for every stage, the depth
of each unit, the kernel and expand ratio of each block and the width of each unit, plus one
global input resolution. `SearchSpace.sizes(arch)` turns those genes into the active channel
counts that the supernet, the extracted subnet and the MACs counter all read, so the three
can never disagree about what an architecture means.

The walks live beside it: `genes` (every gene once), `blocks` (every block position once),
`ops` (sample, encode, mutate, crossover, repair) and `presets` (the named spaces). Import
these names from `enas4d_tf.space`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from enas4d_tf.errors import SpaceError
from enas4d_tf.space import genes, ops
from enas4d_tf.space.arch import (
    Arch,
    ArchSizes,
    _listify,
    _tuplify,
)
from enas4d_tf.space.blocks import (
    active_blocks,
    active_width,
    block_at,
    input_width,
    se_width,
)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A multi-stage MobileNetV3-style search space.

    Use `SearchSpace.preset(name)`; the fields describe the largest network and the choices.
    Widths are per group: a layer of the largest network has `S * width` channels. A
    network is a stem, `num_units` units of up to `max_depth` inverted-residual blocks each
    (MobileNetV3 blocks: expand 1x1, depthwise, optional squeeze-excitation, project 1x1)
    and a head with one classifier per stage.

    Raises:
      SpaceError: (a ValueError) on construction, a field that does not fit the others.
    """

    name: str
    num_stages: int
    num_units: int
    max_depth: int
    image_channels: int
    native_resolution: int
    depth_choices: tuple
    kernel_choices: tuple
    expand_choices: tuple
    width_choices: tuple
    resolution_choices: tuple
    stem_width: int
    stem_kernel: int
    stem_stride: int
    stem_activation: str
    unit_widths: tuple
    unit_strides: tuple
    unit_activations: tuple
    unit_se: tuple
    head_width: int
    head_activation: str
    default_num_classes: int

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _tuplify(getattr(self, f.name)))
        units = self.num_units
        for f in ("unit_widths", "unit_strides", "unit_activations", "unit_se"):
            if len(getattr(self, f)) != units:
                raise SpaceError(f"{f} needs {units} entries, one per unit")
        if max(self.depth_choices) != self.max_depth or min(self.depth_choices) < 1:
            raise SpaceError("depth choices must be >= 1 and reach max_depth")
        for k in self.kernel_choices:
            if k % 2 != 1:
                raise SpaceError(f"kernel sizes must be odd, got {k}")

    # -- construction -------------------------------------------------------------------

    @staticmethod
    def preset(name: str) -> SearchSpace:
        """Returns a named space of `PRESETS`.

        Raises:
          SpaceError: (a ValueError) an unknown name; the message lists the names.
        """
        from enas4d_tf.space.presets import PRESETS  # presets.py builds SearchSpace values

        if name not in PRESETS:
            raise SpaceError(f"unknown search space {name!r}; presets: {', '.join(PRESETS)}")
        return PRESETS[name]

    def to_dict(self) -> dict:
        """The fields as a JSON-safe dict (`from_dict` reads it back)."""
        return {f.name: _listify(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> SearchSpace:
        """Builds a space from `to_dict()` output.

        Raises:
          SpaceError: (a ValueError) not a dict of exactly the fields, or fields that do not fit.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict) or set(d) != names:
            raise SpaceError("search space description does not have the expected fields")
        return cls(**d)

    # -- architectures ------------------------------------------------------------------

    def largest(self) -> Arch:
        """Every gene at its largest choice."""
        return genes.build(self, lambda gene: max(gene.choices))

    def smallest(self) -> Arch:
        """Every gene at its smallest choice."""
        return genes.build(self, lambda gene: min(gene.choices))

    def sample(self, seed: int | None = None, rng: np.random.Generator | None = None) -> Arch:
        """A uniformly random architecture; the same seed gives the same architecture."""
        return ops.sample(self, rng if rng is not None else np.random.default_rng(seed))

    def validate(self, arch: Arch) -> None:
        """Checks every gene against this space.

        Raises:
          SpaceError: (a ValueError) naming the first bad gene, its position and the allowed
            values.
        """
        genes.validate(self, arch)

    # -- what an architecture means -----------------------------------------------------

    def sizes(self, arch: Arch) -> ArchSizes:
        """Active channel counts of `arch` (validated first)."""
        self.validate(arch)
        S, U, D = self.num_stages, self.num_units, self.max_depth
        width = np.zeros((S, U), np.int64)
        for s in range(S):
            for u in range(U):
                width[s, u] = active_width(self.unit_widths[u], arch.width[s][u])
        depth = np.array(arch.depth, np.int64)
        kernel = np.array(arch.kernel, np.int64)
        kernel_index = np.vectorize(self.kernel_choices.index)(kernel).astype(np.int64)
        hidden = np.zeros((S, U, D), np.int64)
        se = np.zeros((S, U, D), np.int64)
        stem = np.full((S,), self.stem_width, np.int64)
        for s in range(S):
            for spec in active_blocks(self, arch.depth, s):
                u, b = spec.unit, spec.block
                hidden[s, u, b] = arch.expand[s][u][b] * input_width(stem, width, s, u, b)
                if spec.se:
                    se[s, u, b] = se_width(hidden[s, u, b])
        return ArchSizes(
            resolution=int(arch.resolution),
            stem=stem,
            width=width,
            depth=depth,
            kernel=kernel,
            kernel_index=kernel_index,
            hidden=hidden,
            se=se,
            head=np.full((S,), self.head_width, np.int64),
        )

    def max_hidden(self, u: int, b: int) -> int:
        """Largest hidden width of one group in block `b` of unit `u` (`BlockSpec.max_hidden`)."""
        return block_at(self, u, b).max_hidden

    def max_se(self, u: int, b: int) -> int:
        """Largest SE bottleneck of one group in that block, 0 without SE (`BlockSpec.max_se`)."""
        return block_at(self, u, b).max_se

    def block_stride(self, u: int, b: int) -> int:
        """Depthwise stride of block `b` of unit `u` (`BlockSpec.stride`)."""
        return block_at(self, u, b).stride

    # -- encoding for search and predictors ---------------------------------------------

    @property
    def encoding_size(self) -> int:
        """Length of `encode`'s vectors."""
        return ops.encoding_size(self)

    def encode(self, arch: Arch) -> np.ndarray:
        """A fixed-length float32 one-hot encoding; blocks past a unit's depth encode as 0."""
        return ops.encode(self, arch)

    def summarize(self, arch: Arch) -> np.ndarray:
        """A short float32 description: per unit its depth, width and mean kernel and expand
        (`ops.summarize`)."""
        return ops.summarize(self, arch)
