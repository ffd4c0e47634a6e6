"""Benchmark: training-step cost of the supernet against static models, and trace count.

Measures, in one process and interleaved (so machine noise hits all alike), the median
forward+backward step time of
  (a) the supernet at the largest architecture, through the one traced step every
      architecture shares,
  (b) the extracted static model of the same architecture (its own traced step),
  (c) the supernet at the smallest architecture (same traced step as (a)),
  (d) the supernet at one sampled architecture, the same one every repeat,
  (e) the supernet at a new sampled architecture every repeat (as the sandwich rule's
      random networks are in training),
and counts the traces of the shared step over the sampled architectures. (d) and (e) come
with their mean MACs as a fraction of the largest's, so a step's cost can be set against
the arithmetic it does.

Usage: python -m bench.supernet_step [--preset fashion_mnist] [--batch 128] [--repeats 30]
Prints a JSON line and a markdown table.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import enas4d_tf as e4  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fashion_mnist")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--archs", type=int, default=20)
    args = parser.parse_args()

    space = e4.SearchSpace.preset(args.preset)
    net = e4.Supernet(space)
    large, small = space.largest(), space.smallest()
    rng = np.random.default_rng(0)
    side = space.native_resolution
    x = tf.constant(rng.normal(size=(args.batch, side, side, space.image_channels)), tf.float32)
    y = tf.constant(rng.integers(0, net.num_classes, args.batch), tf.int32)
    traces = []

    def loss_of(logits):
        return tf.add_n(
            [
                tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, z, from_logits=True))
                for z in logits
            ]
        )

    @tf.function
    def supernet_step(sizes):
        traces.append(1)
        with tf.GradientTape() as tape:
            loss = loss_of(net(x, arch=sizes, training=True))
        return tape.gradient(loss, net.trainable_variables)

    static = e4.extract_subnet(net, large)
    x_large = tf.image.resize(x, [large.resolution, large.resolution])

    @tf.function
    def static_step():
        with tf.GradientTape() as tape:
            loss = loss_of(static(x_large, training=True))
        return tape.gradient(loss, static.trainable_variables)

    sizes_large, sizes_small = net.arch_tensors(large), net.arch_tensors(small)
    fixed = space.sample(seed=10_000)
    sizes_fixed = net.arch_tensors(fixed)
    fresh = [space.sample(seed=20_000 + r) for r in range(args.repeats)]

    def total_macs(arch):
        return sum(e4.stage_macs(space, arch, net.num_classes))

    t0 = time.perf_counter()
    supernet_step(sizes_large)
    trace_seconds = time.perf_counter() - t0
    static_step()
    for i in range(args.archs):
        supernet_step(net.arch_tensors(space.sample(seed=i)))

    supernet_step(sizes_fixed)
    times = collections.defaultdict(list)
    for r in range(args.repeats):
        sizes_new = net.arch_tensors(fresh[r])
        for key, fn in (
            ("supernet_largest", lambda: supernet_step(sizes_large)),
            ("static_largest", static_step),
            ("supernet_smallest", lambda: supernet_step(sizes_small)),
            ("supernet_sampled_same", lambda: supernet_step(sizes_fixed)),
            ("supernet_sampled_new", lambda s=sizes_new: supernet_step(s)),
        ):
            t = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    result = {
        "preset": args.preset,
        "batch": args.batch,
        "median_step_ms": {k: round(v * 1000, 1) for k, v in med.items()},
        "supernet_largest_over_static": round(med["supernet_largest"] / med["static_largest"], 3),
        "supernet_smallest_over_largest": round(
            med["supernet_smallest"] / med["supernet_largest"], 3
        ),
        "sampled_same_over_largest": round(
            med["supernet_sampled_same"] / med["supernet_largest"], 3
        ),
        "sampled_new_over_largest": round(med["supernet_sampled_new"] / med["supernet_largest"], 3),
        "macs_sampled_same_over_largest": round(total_macs(fixed) / total_macs(large), 3),
        "macs_sampled_new_over_largest": round(
            float(np.mean([total_macs(a) for a in fresh])) / total_macs(large), 3
        ),
        "traces_over_sampled_archs": len(traces),
        "archs_run": args.archs + args.repeats + 3,
        "first_step_seconds": round(trace_seconds, 1),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result))
    print()
    ratio_static = result["supernet_largest_over_static"]
    ratio_small = result["supernet_smallest_over_largest"]
    print("| measure | value | goal |")
    print("|---|---|---|")
    print(f"| supernet largest / static largest, step time | {ratio_static} | <= 1.3 |")
    print(f"| supernet smallest / supernet largest, step time | {ratio_small} | <= 0.4 |")
    for which in ("same", "new"):
        print(
            f"| supernet sampled ({which} architecture each repeat) / largest, step time"
            f" (MACs ratio {result[f'macs_sampled_{which}_over_largest']}) |"
            f" {result[f'sampled_{which}_over_largest']} | - |"
        )
    print(f"| traces of the step over {result['archs_run']} architectures | {len(traces)} | 1 |")


if __name__ == "__main__":
    main()
