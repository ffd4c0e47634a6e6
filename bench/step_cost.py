"""Benchmark: where the benchmark recipe's training step spends its time.

Builds the real training step of `configs/train_benchmark.cfg` (the largest network on the
whole batch, the smallest and one random network on `--student_batch_fraction` of it; one
trace) on synthetic images, then times it, in interleaved rounds so machine noise hits every
stream alike, under streams of step architectures that differ in one thing each:

  fixed_mid    largest, smallest, one fixed architecture of median MACs every step
  new_macs     largest, smallest, a new MACs-drawn architecture every step (the recipe)
  new_uniform  largest, smallest, a new gene-uniform architecture every step
  new_macs_r   as new_macs, at one resolution (native, if a choice; only the other genes new)
  smallest_x2  largest, smallest, the smallest again (the floor of a 3-network step)

If `new_macs` costs much more than `fixed_mid` at similar MACs, the step's time goes to shapes
it has not seen (kernel creation per new shape), not to arithmetic.

Usage: python -m bench.step_cost [--rounds 3] [--steps 5] [--batch 256]
Prints a markdown table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from enas4d_tf.model.macs import stage_macs  # noqa: E402
from enas4d_tf.model.supernet import Supernet  # noqa: E402
from enas4d_tf.space import SearchSpace  # noqa: E402
from enas4d_tf.train import sampling  # noqa: E402
from enas4d_tf.train.config import TrainConfig  # noqa: E402
from enas4d_tf.train.optimization import make_optimizer, warmup_cosine  # noqa: E402
from enas4d_tf.train.step import TrainStep  # noqa: E402

STREAMS = ("fixed_mid", "new_macs", "new_uniform", "new_macs_r", "smallest_x2")


def _fixed_resolution(space: SearchSpace, arch):
    """`arch` with its resolution gene at the space's native resolution when that is a choice
    (fashion_mnist: 28), else at its largest choice."""
    from dataclasses import replace

    choices = space.resolution_choices
    native = space.native_resolution
    return replace(arch, resolution=native if native in choices else max(choices))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fashion_mnist")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--student_batch_fraction", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="steps per stream per round")
    parser.add_argument("--streams", default=",".join(STREAMS))
    parser.add_argument(
        "--pair",
        action="store_true",
        help="trace and time a 2-network step (largest, smallest) instead",
    )
    args = parser.parse_args()
    streams = args.streams.split(",")

    space = SearchSpace.preset(args.preset)
    config = TrainConfig(
        workdir="/nonexistent",
        preset=args.preset,
        batch_size=args.batch,
        num_random_subnets=1,
        student_batch_fraction=args.student_batch_fraction,
        arch_sampling="macs",
        zero_init_residual=True,
        exit_weights=(1, 1, 3),
        learning_rate=0.2,
    )
    strategy = tf.distribute.get_strategy()
    net = Supernet(space, num_classes=10)
    net.zero_residual_gammas()
    optimizer = make_optimizer(config, net.trainable_variables, warmup_cosine(config, 1000, 100))
    step = TrainStep(strategy, net, optimizer, config)

    rng = np.random.default_rng(0)
    side = space.native_resolution
    images = tf.constant(
        rng.uniform(size=(args.batch, side, side, space.image_channels)), tf.float32
    )
    labels = tf.constant(rng.integers(0, 10, args.batch), tf.int32)
    large, small = space.largest(), space.smallest()
    mids = sorted(
        (sampling.sample_arch_by_macs(space, np.random.default_rng(i)) for i in range(31)),
        key=lambda a: sampling.last_exit_macs(space, a),
    )
    fixed_mid = mids[15]
    counters = {name: 0 for name in streams}

    def third(name):
        n = counters[name]
        counters[name] += 1
        r = np.random.default_rng([7, STREAMS.index(name), n])
        if name == "fixed_mid":
            return fixed_mid
        if name == "new_macs":
            return sampling.sample_arch_by_macs(space, r)
        if name == "new_uniform":
            return sampling.sample_arch(space, r)
        if name == "new_macs_r":
            return _fixed_resolution(space, sampling.sample_arch_by_macs(space, r))
        if name == "smallest_x2":
            return small
        raise ValueError(name)

    if args.pair:
        streams = ["pair"]
        counters = {"pair": 0}
    t0 = time.perf_counter()
    step(
        (images, labels),
        sampling.stack_arch_tensors(space, [large, small] + [small][: not args.pair]),
    )
    trace_s = time.perf_counter() - t0
    times = {name: [] for name in streams}
    macs = {name: [] for name in streams}
    for _ in range(args.rounds):
        for name in streams:
            for _ in range(args.steps):
                arch = small if args.pair else third(name)
                archs = [large, small] if args.pair else [large, small, arch]
                stacked = sampling.stack_arch_tensors(space, archs)
                t = time.perf_counter()
                step((images, labels), stacked)
                times[name].append(time.perf_counter() - t)
                macs[name].append(float(stage_macs(space, arch)[-1]))
    largest_macs = float(stage_macs(space, large)[-1])
    rows = {
        name: {
            "median_s": float(np.median(times[name])),
            "mean_s": float(np.mean(times[name])),
            # A two-network step has no third network.
            "third_macs_ratio": None if args.pair else float(np.mean(macs[name]) / largest_macs),
            "steps": len(times[name]),
        }
        for name in streams
    }
    print("| stream | median s/step | mean s/step | third network's MACs / largest |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['median_s']:.2f} | {row['mean_s']:.2f} | "
            + ("- |" if row["third_macs_ratio"] is None else f"{row['third_macs_ratio']:.3f} |")
        )
    print(f"first call (trace): {trace_s:.0f} s; batch {args.batch}, machine {platform.machine()}")
    env = {k: os.environ[k] for k in os.environ if k.startswith(("TF_", "ONEDNN", "OMP"))}
    report = {"trace_s": trace_s, "traces": step.traces, "rows": rows, "batch": args.batch}
    print(json.dumps({**report, "env": env}))


if __name__ == "__main__":
    main()
