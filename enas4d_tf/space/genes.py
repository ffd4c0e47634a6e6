"""The one walk over the genes of a search space.

Every gene of an architecture is a `Gene(name, index, choices)`: `name` is one of
`GENE_NAMES`, `index` its position in the nested tuple of that name (`(s, u)` for depth and
width, `(s, u, b)` for kernel and expand, `()` for the resolution) and `choices` the values
the space allows. `genes(space)` lists them all once; builders and samplers (`build`), the
validator (`validate`), the encoder and the evolution operators all walk that list, and read
or change an `Arch` through `get` and `replace`.

Two orders of the same genes are fixed, because random numbers are drawn in them:
`genes(space)` goes unit by unit (the encoding's layout; mutation and crossover), and
`build_order(space)` gene name by gene name in `GENE_NAMES` order (sampling).

Example:
  >>> space = SearchSpace.preset("tiny")
  >>> g = genes(space)[0]                        # Gene("depth", (0, 0), (1, 2))
  >>> arch = replace(space.largest(), {g: min(g.choices)})
  >>> get(arch, g)
  1
  >>> build(space, lambda gene: min(gene.choices)) == space.smallest()
  True
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from enas4d_tf.errors import SpaceError
from enas4d_tf.space.arch import GENE_LEVELS, GENE_NAMES, Arch

if TYPE_CHECKING:
    from enas4d_tf.space.search_space import SearchSpace


class Gene(NamedTuple):
    """One gene of a space: its name, its position in that gene's nested tuple, its choices."""

    name: str
    index: tuple
    choices: tuple


@functools.cache
def genes(space: SearchSpace) -> tuple[Gene, ...]:
    """Every gene of `space` once, unit by unit.

    The order is stage `s`, unit `u`: depth, width, then for each block `b` kernel and
    expand; the resolution last. It is the layout of `encode` and the order in which
    mutation and crossover draw random numbers, so it never changes.
    """
    out = []
    for s in range(space.num_stages):
        for u in range(space.num_units):
            out.append(Gene("depth", (s, u), space.depth_choices))
            out.append(Gene("width", (s, u), space.width_choices))
            for b in range(space.max_depth):
                out.append(Gene("kernel", (s, u, b), space.kernel_choices))
                out.append(Gene("expand", (s, u, b), space.expand_choices))
    out.append(Gene("resolution", (), space.resolution_choices))
    return tuple(out)


@functools.cache
def build_order(space: SearchSpace) -> tuple[Gene, ...]:
    """The genes of `genes(space)` by name in `GENE_NAMES` order, each name's by position.

    Every depth gene (stage by stage, unit by unit), then every kernel, expand and width
    gene, then the resolution: the order in which `build` asks for values, so the order in
    which samplers draw random numbers.
    """
    return tuple(sorted(genes(space), key=lambda g: GENE_NAMES.index(g.name)))


def gene_shapes(space: SearchSpace) -> dict[str, tuple[int, ...]]:
    """The shape of each gene's nested tuple: `(S, U)`, `(S, U, D)` or `()` (resolution)."""
    full = (space.num_stages, space.num_units, space.max_depth)
    return {name: full[: GENE_LEVELS[name]] for name in GENE_NAMES}


def get(arch: Arch, gene: Gene) -> Any:
    """The value of `gene` in `arch`."""
    value = getattr(arch, gene.name)
    for i in gene.index:
        value = value[i]
    return value


def _nested_list(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_nested_list(v) for v in value]
    return value


def _set(fields: dict, gene: Gene, value: Any) -> None:
    if not gene.index:
        fields[gene.name] = value
        return
    target = fields[gene.name]
    for i in gene.index[:-1]:
        target = target[i]
    target[gene.index[-1]] = value


def replace(arch: Arch, changes: Mapping[Gene, Any]) -> Arch:
    """A copy of `arch` with each gene of `changes` set to its value (`arch` is unchanged)."""
    fields = {name: _nested_list(getattr(arch, name)) for name in GENE_NAMES}
    for gene, value in changes.items():
        _set(fields, gene, value)
    return Arch(**fields)


def _filled(shape: tuple[int, ...]) -> Any:
    return None if not shape else [_filled(shape[1:]) for _ in range(shape[0])]


def build(space: SearchSpace, pick: Callable[[Gene], Any]) -> Arch:
    """The `Arch` whose every gene is `pick(gene)`, asked once per gene in `build_order`.

    Example:
      >>> largest = build(space, lambda gene: max(gene.choices))
    """
    fields = {name: _filled(shape) for name, shape in gene_shapes(space).items()}
    for gene in build_order(space):
        _set(fields, gene, pick(gene))
    return Arch(**fields)


def is_active(arch: Arch, gene: Gene) -> bool:
    """False for the kernel and expand genes of blocks past a unit's depth (no effect)."""
    if gene.name in ("kernel", "expand"):
        s, u, b = gene.index
        return b < arch.depth[s][u]
    return True


def active_genes(space: SearchSpace, arch: Arch) -> list[Gene]:
    """The genes of `space` that change the network `arch` computes, in `genes` order."""
    return [g for g in genes(space) if is_active(arch, g)]


def validate(space: SearchSpace, arch: Arch) -> None:
    """Checks the shape and every value of `arch`'s genes against `space`, in `build_order`.

    Raises:
      SpaceError: (a ValueError) naming the first bad gene, its position and the allowed
        values, e.g. `gene kernel[0][1][2] = 4 is not allowed; choices: [3, 5, 7]`.
    """
    if not isinstance(arch, Arch):
        raise SpaceError(f"expected an Arch, got {type(arch).__name__}")
    shapes = gene_shapes(space)
    checked_shape = set()
    for gene in build_order(space):
        if gene.name not in checked_shape:
            _check_shape(gene.name, getattr(arch, gene.name), shapes[gene.name])
            checked_shape.add(gene.name)
        value = get(arch, gene)
        if value not in gene.choices or isinstance(value, bool):
            where = "".join(f"[{i}]" for i in gene.index)
            raise SpaceError(
                f"gene {gene.name}{where} = {value!r} is not allowed; choices: {list(gene.choices)}"
            )


def _check_shape(name: str, value: Any, shape: tuple[int, ...]) -> None:
    def walk(v, level, where):
        if level == len(shape):
            return
        if not isinstance(v, (list, tuple)) or len(v) != shape[level]:
            got = len(v) if isinstance(v, (list, tuple)) else type(v).__name__
            raise SpaceError(
                f"gene {name}{where} must have {shape[level]} entries "
                f"(shape {tuple(shape)}), got {got}"
            )
        for i, x in enumerate(v):
            walk(x, level + 1, f"{where}[{i}]")

    walk(value, 0, "")
