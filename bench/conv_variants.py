"""Benchmark: ways to run the largest network's convolutions on this CPU, forward + gradient.

For the expanded inverted-residual convolutions of the fashion_mnist preset's largest
network (7x7 depthwise at 32x32x48 stride 2, 16x16x96 and 8x8x144 stride 1; the 1x1
expansions into them), times in one process, interleaved:
  depthwise float32 (what the supernet runs), depthwise bfloat16, depthwise under XLA
  (`jit_compile=True`), a grouped `conv2d` with one group per channel, and the 1x1
  expansion in float32 and bfloat16.
Each number is the median of --repeats timed calls, in ms, after two warm-up calls.

Usage: python -m bench.conv_variants [--batch 128] [--repeats 10]
Prints a JSON line and a markdown table.
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

# (height = width, channels after expansion, stride, expand ratio) of the largest network.
SHAPES = ((32, 48, 2, 6), (16, 96, 1, 6), (8, 144, 1, 6))
KERNEL = 7


def _grad_fn(conv, x, w, jit=False):
    @tf.function(jit_compile=jit)
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = conv(x, w)
            loss = tf.reduce_sum(tf.cast(out, tf.float32) ** 2)
        return tape.gradient(loss, [x, w])

    return step


def _variants(side, channels, stride, expand, batch, rng):
    def tensor(shape, dtype):
        return tf.constant(rng.normal(size=shape) * 0.1, dtype)

    strides = [1, stride, stride, 1]
    out = {}
    for name, dtype, jit in (
        ("depthwise_fp32", tf.float32, False),
        ("depthwise_bf16", tf.bfloat16, False),
        ("depthwise_xla", tf.float32, True),
    ):
        x = tensor([batch, side, side, channels], dtype)
        w = tensor([KERNEL, KERNEL, channels, 1], dtype)
        out[name] = _grad_fn(lambda x, w: tf.nn.depthwise_conv2d(x, w, strides, "SAME"), x, w, jit)
    x = tensor([batch, side, side, channels], tf.float32)
    w = tensor([KERNEL, KERNEL, 1, channels], tf.float32)
    out["grouped_fp32"] = _grad_fn(lambda x, w: tf.nn.conv2d(x, w, stride, "SAME"), x, w)
    for name, dtype in (("pointwise_fp32", tf.float32), ("pointwise_bf16", tf.bfloat16)):
        x = tensor([batch, side, side, channels // expand], dtype)
        w = tensor([1, 1, channels // expand, channels], dtype)
        out[name] = _grad_fn(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"), x, w)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if args.batch < 1 or args.repeats < 1:
        parser.error("--batch and --repeats must be >= 1")

    rng = np.random.default_rng(0)
    rows = []
    for side, channels, stride, expand in SHAPES:
        fns = _variants(side, channels, stride, expand, args.batch, rng)
        for fn in fns.values():
            fn()
            fn()
        times = {name: [] for name in fns}
        for _ in range(args.repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        rows.append(
            {
                "shape": [args.batch, side, side, channels],
                "stride": stride,
                "ms": {k: round(1e3 * float(np.median(v)), 2) for k, v in times.items()},
            }
        )

    print(
        json.dumps(
            {
                "batch": args.batch,
                "repeats": args.repeats,
                "kernel": KERNEL,
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "tensorflow": tf.__version__,
                "rows": rows,
            }
        )
    )
    names = list(rows[0]["ms"])
    print()
    print("| input (N,H,W,C), stride | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row in rows:
        cells = " | ".join(f"{row['ms'][n]:.1f}" for n in names)
        print(f"| {tuple(row['shape'])}, {row['stride']} | {cells} |")
    print()
    print(f"ms per forward + gradient call, median of {args.repeats}")


if __name__ == "__main__":
    main()
