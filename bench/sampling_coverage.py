"""Which costs of the space the training sampler trains: last-exit MACs of random draws.

  python -m bench.sampling_coverage --preset=fashion_mnist --draws=2000

Prints, for gene-uniform draws (`--arch_sampling=uniform`) and MACs-targeted draws
(`--arch_sampling=macs`), how many of `--draws` fall in each of 8 equal log-MACs ranges
between the space's smallest and largest networks, and the 10 fixed spread architectures'
MACs (`--eval_spread_archs`, `bench.train_benchmark`). No TensorFlow.
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

from enas4d_tf.space import SearchSpace
from enas4d_tf.train import sampling
from tools._cli import flags_parser

flags.DEFINE_string("preset", "fashion_mnist", "The search space.")
flags.DEFINE_integer("draws", 2000, "Random architectures per sampler.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the draws.", lower_bound=0)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    space = SearchSpace.preset(FLAGS.preset)
    rng = np.random.default_rng(FLAGS.seed)

    def macs(a):
        return sampling.last_exit_macs(space, a) / 1e6

    low, high = macs(space.smallest()), macs(space.largest())
    edges = np.geomspace(low, high, 9)
    print(f"{FLAGS.preset}: smallest {low:.2f} M, largest {high:.2f} M MACs to the last exit")
    ranges = [f"{a:.2f}-{b:.2f} M" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    print("| sampler | " + " | ".join(ranges) + " |")
    print("|---" * 9 + "|")
    for name, draw in (("uniform", sampling.sample_arch), ("macs", sampling.sample_arch_by_macs)):
        values = [macs(draw(space, rng)) for _ in range(FLAGS.draws)]
        counts = np.histogram(values, edges)[0]
        print(f"| {name} | " + " | ".join(str(c) for c in counts) + " |")
    spread = [f"{macs(a):.2f}" for a in sampling.spread_archs(space, 10)]
    print(f"spread architectures (M MACs): {', '.join(spread)}")


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("sampling_coverage"))
