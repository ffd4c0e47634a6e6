"""Helpers shared by the tests."""

import os

import numpy as np


def randomize_batch_norms(net, seed: int = 0) -> None:
    """Gives every BN non-trivial statistics and affine parameters.

    Fresh BNs are the identity (mean 0, variance 1, gamma 1, beta 0), which would hide a
    wrongly sliced statistic in an agreement test.
    """
    rng = np.random.default_rng(seed)
    for bn in net.batch_norms():
        c = bn.max_channels
        bn.moving_mean.assign(rng.normal(0.0, 0.2, c).astype("float32"))
        bn.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
        bn.gamma.assign(rng.uniform(0.7, 1.3, c).astype("float32"))
        bn.beta.assign(rng.normal(0.0, 0.1, c).astype("float32"))


def randomize_transforms(net, seed: int = 0) -> None:
    """Moves the kernel-transform matrices away from the identity they start at."""
    rng = np.random.default_rng(seed)
    for block in net.blocks:
        for dw in block.depthwise:
            for t in dw.transforms.values():
                n = t.shape[0]
                t.assign((np.eye(n) + rng.normal(0.0, 0.1, (n, n))).astype("float32"))


# The repository root: tests run tools as `python -m tools.X` from here.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
