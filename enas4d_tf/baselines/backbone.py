"""The early-exit baseline's network as data, and its MACs (no TensorFlow).

One backbone of the search space's block family without the channel split: the space's stem,
its units (strides, activations, SE) of MBConv blocks (1x1 expand, BN, activation, depthwise
`k x k`, BN, activation, optional squeeze-excitation, 1x1 project, BN; identity residual on
every block after a unit's first), and an exit after every unit in the supernet's head style
(1x1 conv, BN, activation, global pooling, dense). Exit `n` reads unit `n`'s output only, as
in BranchyNet / Shallow-Deep Networks: there are no groups for it to read.

One configuration is fixed per run: depth, kernel size and expand ratio per unit, a width
multiplier per unit of the space's largest network (`S` groups together, so `1.0` has the
largest network's channel count in every unit) and the input resolution.

MACs are counted as `enas4d_tf.model.macs` counts them: convolutions
`k*k*Cin/groups*Cout*Hout*Wout`, SE and dense layers `Cin*Cout`; BN, activations, pooling and
adds are free. The cost of leaving at exit `n` is everything computed to get there: the stem,
units `1..n` and the heads (classifiers included) of exits `1..n`, since a cascade evaluates
every earlier exit to decide not to leave there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from enas4d_tf.errors import SpaceError
from enas4d_tf.space import SearchSpace
from enas4d_tf.space.blocks import active_width, se_width

ACTIVATIONS = ("relu", "relu6", "hard_swish")


@dataclasses.dataclass(frozen=True)
class UnitSpec:
    """One unit of the backbone.

    Attributes:
      width: output channels of every block of the unit.
      stride: stride of the unit's first block (its depthwise convolution).
      depth: number of blocks.
      kernel: depthwise kernel size of every block.
      expand: expand ratio of every block (hidden = expand x block input channels).
      se: whether the blocks have squeeze-excitation.
      activation: activation after expand and depthwise.
    """

    width: int
    stride: int
    depth: int
    kernel: int
    expand: int
    se: bool
    activation: str


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """What one block computes: unit `unit`, block `block` (both 0-based) and its sizes."""

    unit: int
    block: int
    in_width: int
    hidden: int
    out_width: int
    se: int  # SE bottleneck channels, 0 without SE
    kernel: int
    stride: int
    activation: str

    @property
    def residual(self) -> bool:
        """Blocks after a unit's first keep width and side, so they add their input."""
        return self.block > 0

    @property
    def tag(self) -> str:
        """`u{u}b{b}`, 0-based like the supernet's block tags."""
        return f"u{self.unit}b{self.block}"


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """The whole early-exit network, JSON-safe (`to_dict` / `from_dict`).

    Attributes:
      preset: the search space it is drawn from.
      resolution: input image side.
      image_channels: input channels.
      num_classes: classifier outputs of every exit.
      stem_width, stem_kernel, stem_stride, stem_activation: the stem convolution.
      units: the units, first to last; exit `n` follows unit `n`.
      head_width: channels of every exit's 1x1 head convolution.
      head_activation: activation after the head BN.
    """

    preset: str
    resolution: int
    image_channels: int
    num_classes: int
    stem_width: int
    stem_kernel: int
    stem_stride: int
    stem_activation: str
    units: tuple
    head_width: int
    head_activation: str

    def __post_init__(self):
        units = tuple(u if isinstance(u, UnitSpec) else UnitSpec(**u) for u in self.units)
        object.__setattr__(self, "units", units)

    @property
    def num_exits(self) -> int:
        """One exit per unit."""
        return len(self.units)

    def blocks(self) -> Iterator[BlockPlan]:
        """Every block in the order the network runs them."""
        cin = self.stem_width
        for u, unit in enumerate(self.units):
            for b in range(unit.depth):
                hidden = unit.expand * cin
                yield BlockPlan(
                    unit=u,
                    block=b,
                    in_width=cin,
                    hidden=hidden,
                    out_width=unit.width,
                    se=se_width(hidden) if unit.se else 0,
                    kernel=unit.kernel,
                    stride=unit.stride if b == 0 else 1,
                    activation=unit.activation,
                )
                cin = unit.width

    def to_dict(self) -> dict:
        """The fields as a JSON-safe dict (units as a list of dicts)."""
        d = dataclasses.asdict(self)
        d["units"] = [dataclasses.asdict(u) for u in self.units]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BackboneSpec:
        """Reads `to_dict()` output.

        Raises:
          SpaceError: not a dict of exactly the fields.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict) or set(d) != names:
            raise SpaceError("backbone description does not have the expected fields")
        try:
            return cls(**d)
        except TypeError as e:
            raise SpaceError(f"backbone description is malformed: {e}") from None


def _per_unit(name: str, value, num_units: int) -> tuple:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if len(values) == 1:
        values = values * num_units
    if len(values) != num_units:
        raise SpaceError(f"{name} needs 1 or {num_units} values (one per unit), got {len(values)}")
    return values


def middle_choice(choices: Sequence) -> object:
    """The middle entry of a sorted choice list (the lower middle of an even one)."""
    ordered = sorted(choices)
    return ordered[(len(ordered) - 1) // 2]


@dataclasses.dataclass(frozen=True)
class BackboneGenes:
    """The configuration a run fixes; each field is one value for every unit or one per unit.

    `None` fields take the space's middle choice (`middle_choice`); `width` defaults to 1.0
    (the largest network's channels), `head_width` to the space's head width (one exit's own
    head group in the supernet).
    """

    depth: object = None
    kernel: object = None
    expand: object = None
    width: object = 1.0
    resolution: int | None = None
    head_width: int | None = None


def backbone_spec(
    space: SearchSpace, genes: BackboneGenes, num_classes: int | None = None
) -> BackboneSpec:
    """The early-exit backbone of `space` with the configuration `genes`.

    Unit `u`'s width is `genes.width[u]` times the space's largest network there
    (`S x unit_widths[u]`, rounded as the space rounds widths); the stem is the largest
    network's stem. Kernels must be odd, depths, expand ratios and the resolution >= 1, width
    multipliers > 0 (values outside the space's choices are allowed: the baseline is not a
    network of the space).

    Raises:
      SpaceError: a value that is out of range or a list of the wrong length.
    """
    U, S = space.num_units, space.num_stages
    pick = lambda name, default: _per_unit(  # noqa: E731
        name, default if getattr(genes, name) is None else getattr(genes, name), U
    )
    depth = pick("depth", middle_choice(space.depth_choices))
    kernel = pick("kernel", middle_choice(space.kernel_choices))
    expand = pick("expand", middle_choice(space.expand_choices))
    width = pick("width", 1.0)
    resolution = genes.resolution or middle_choice(space.resolution_choices)
    head_width = genes.head_width or space.head_width
    for name, values, ok in (
        ("depth", depth, lambda v: isinstance(v, int) and v >= 1),
        ("kernel", kernel, lambda v: isinstance(v, int) and v >= 1 and v % 2 == 1),
        ("expand", expand, lambda v: isinstance(v, int) and v >= 1),
        ("width", width, lambda v: isinstance(v, (int, float)) and 0 < v <= 4),
    ):
        for u, v in enumerate(values):
            if isinstance(v, bool) or not ok(v):
                raise SpaceError(f"{name} of unit {u + 1} is {v!r}, out of range")
    for name, v in (("resolution", resolution), ("head_width", head_width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpaceError(f"{name} must be a positive integer, got {v!r}")
    units = tuple(
        UnitSpec(
            width=active_width(S * space.unit_widths[u], float(width[u])),
            stride=int(space.unit_strides[u]),
            depth=int(depth[u]),
            kernel=int(kernel[u]),
            expand=int(expand[u]),
            se=bool(space.unit_se[u]),
            activation=space.unit_activations[u],
        )
        for u in range(U)
    )
    return BackboneSpec(
        preset=space.name,
        resolution=int(resolution),
        image_channels=space.image_channels,
        num_classes=int(space.default_num_classes if num_classes is None else num_classes),
        stem_width=S * space.stem_width,
        stem_kernel=space.stem_kernel,
        stem_stride=space.stem_stride,
        stem_activation=space.stem_activation,
        units=units,
        head_width=int(head_width),
        head_activation=space.head_activation,
    )


def _out_side(side: int, stride: int) -> int:
    return -(-side // stride)  # 'same' padding


def exit_macs(spec: BackboneSpec) -> list[int]:
    """Cumulative MACs to each exit: `C_n` = stem + units `1..n` + heads of exits `1..n`.

    Returns:
      One int per exit, strictly increasing.
    """
    side = _out_side(spec.resolution, spec.stem_stride)
    per_exit = [0] * spec.num_exits
    per_exit[0] += spec.stem_kernel**2 * spec.image_channels * spec.stem_width * side * side
    sides = []
    for block in spec.blocks():
        out = _out_side(side, block.stride)
        cost = block.in_width * block.hidden * side * side  # expand 1x1
        cost += block.kernel**2 * block.hidden * out * out  # depthwise
        cost += 2 * block.hidden * block.se  # SE reduce and expand
        cost += block.hidden * block.out_width * out * out  # project 1x1
        per_exit[block.unit] += cost
        side = out
        if block.block == spec.units[block.unit].depth - 1:
            sides.append(side)
    for n, unit in enumerate(spec.units):
        per_exit[n] += unit.width * spec.head_width * sides[n] ** 2  # head 1x1
        per_exit[n] += spec.head_width * spec.num_classes  # classifier
    total, out = 0, []
    for c in per_exit:
        total += c
        out.append(int(total))
    return out
