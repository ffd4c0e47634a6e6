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


def make_tiny_workdir(
    folder: str,
    space_name: str = "tiny",
    bn_seed: int = 0,
    transform_seed: int | None = None,
    data_dir: str | None = None,
    checkpoint: bool = True,
):
    """A training workdir of an untrained supernet, as `tools.train` would leave it.

    Nothing is trained: BN statistics (and, with `transform_seed`, the kernel transforms) are
    randomised so that the exits of the network differ. Returns `(space, net)`.
    """
    import tensorflow as tf

    import enas4d_tf as e4
    from enas4d_tf.files import write_json_atomic
    from enas4d_tf.workdir import Workdir

    space = e4.SearchSpace.preset(space_name)
    net = e4.Supernet(space, num_classes=10)
    side = space.native_resolution
    net(np.zeros((1, side, side, space.image_channels), np.float32), arch=space.largest())
    randomize_batch_norms(net, seed=bn_seed)
    if transform_seed is not None:
        randomize_transforms(net, seed=transform_seed)
    paths = Workdir(folder)
    run_config = {
        "space": space.to_dict(),
        "num_classes": 10,
        "dataset": "fashion_mnist",
        "data_dir": data_dir,
    }
    write_json_atomic(paths.run_config, run_config)
    if checkpoint:
        manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=net), paths.checkpoints, max_to_keep=1
        )
        manager.save()
    return space, net
