"""The one walk over the genes of a search space.

Every gene of an architecture is a `Gene(name, index, choices)`: `name` is one of
`GENE_NAMES`, `index` its position in the nested tuple of that name (`(s, u)` for depth and
width, `(s, u, b)` for kernel and expand, `()` for the resolution) and `choices` the values
the space allows. `genes(space)` lists them all once, in one fixed order; samplers,
validators, the encoder and the evolution operators all walk that list, and read or change
an `Arch` through `get` and `replace`.

Example:
  >>> space = SearchSpace.preset("tiny")
  >>> g = genes(space)[0]                        # Gene("depth", (0, 0), (1, 2))
  >>> arch = replace(space.largest(), {g: min(g.choices)})
  >>> get(arch, g)
  1
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from enas4d_tf.space.arch import GENE_NAMES, Arch

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


def replace(arch: Arch, changes: Mapping[Gene, Any]) -> Arch:
    """A copy of `arch` with each gene of `changes` set to its value (`arch` is unchanged)."""
    fields = {name: _nested_list(getattr(arch, name)) for name in GENE_NAMES}
    for gene, value in changes.items():
        if not gene.index:
            fields[gene.name] = value
            continue
        target = fields[gene.name]
        for i in gene.index[:-1]:
            target = target[i]
        target[gene.index[-1]] = value
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
