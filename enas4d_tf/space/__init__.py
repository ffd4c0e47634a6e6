"""The search space: architectures as immutable data, walked by pure functions.

- `arch`: `Arch` (the genes of one architecture) and `ArchSizes` (what they mean).
- `search_space`: `SearchSpace` (the choices and the largest network); `presets`: `PRESETS`.
- `genes`: the one walk over the genes (`Gene`, `genes`, `build`, `get`, `replace`, `validate`).
- `blocks`: the one walk over the blocks (`BlockSpec`, `blocks`, `active_blocks`, ...).
- `ops`: sample, encode, `arch_key`, mutate, crossover, repair, `sample_within`.

The walks are reached through their modules (`genes.genes(space)`, `blocks.blocks(space)`):
the package names `genes` and `blocks` are those modules, not the functions.
"""

from enas4d_tf.space import blocks, genes, ops  # the modules, see above
from enas4d_tf.space.arch import ARCH_FORMAT_VERSION, GENE_NAMES, Arch, ArchSizes
from enas4d_tf.space.blocks import (
    BlockSpec,
    active_blocks,
    active_width,
    block_at,
    input_width,
    is_block_active,
    se_width,
)
from enas4d_tf.space.genes import Gene, build, build_order
from enas4d_tf.space.ops import arch_key, crossover, encode, mutate, repair, sample_within
from enas4d_tf.space.presets import PRESETS
from enas4d_tf.space.search_space import SearchSpace

__all__ = [
    "ARCH_FORMAT_VERSION",
    "GENE_NAMES",
    "PRESETS",
    "Arch",
    "ArchSizes",
    "BlockSpec",
    "Gene",
    "SearchSpace",
    "active_blocks",
    "active_width",
    "arch_key",
    "block_at",
    "blocks",
    "build",
    "build_order",
    "crossover",
    "encode",
    "genes",
    "input_width",
    "is_block_active",
    "mutate",
    "ops",
    "repair",
    "sample_within",
    "se_width",
]
