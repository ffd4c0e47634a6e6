"""Benchmarks exported networks on this CPU: accuracy, exits, latency, size, ms per MAC.

  python -m bench.export_benchmark --export_dirs=runs/demo/export/net0,runs/demo/export/net1 \
      --static_dir=runs/demo/export/static --max_images=2000 --out=bench/export_results.json

For every export folder and each of float32 and int8 (those exported) with 1 and 2 threads:
test accuracy, exit rates, average MACs and measured average latency of the early-exit
cascade (`enas4d_tf.export.cascade`), file sizes. A static full network (--static_dir, an export of
a single-exit network; default: the first export run with every stage, i.e. exit at the
last exit only) fixes the CPU's ms per MAC; each dynamic network's measured latency is
divided by the latency its average MACs predict at that rate. A ratio above 1 is the
overhead of early exits (several small graphs, hand-off copies) that MACs do not see.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from tools._cli import fail, flags_parser  # noqa: E402

flags.DEFINE_list("export_dirs", None, "Export folders (tools/export.py) to benchmark.")
flags.DEFINE_string(
    "static_dir",
    None,
    "Export of the static full network; default: the first export forced to its last exit.",
)
flags.DEFINE_list("quantizations", ["float32", "int8"], "Which stage graphs to time.")
flags.DEFINE_list("threads", ["1", "2"], "Interpreter thread counts.")
flags.DEFINE_integer("max_images", 2000, "Test images per run.", lower_bound=10)
flags.DEFINE_string("out", None, "Write the results JSON here.")
FLAGS = flags.FLAGS


def _sizes(export_dir: str, manifest: dict, q: str) -> int:
    return sum(
        os.path.getsize(os.path.join(export_dir, s["files"][q]["file"])) for s in manifest["stages"]
    )


def benchmark(export_dirs, static_dir, quantizations, threads, max_images) -> dict:
    from enas4d_tf.data import load_arrays
    from enas4d_tf.export.cascade import Cascade
    from enas4d_tf.export.formats import read_manifest

    first = read_manifest(export_dirs[0])
    images, labels = load_arrays(first["preprocessing"]["dataset"], "test", max_examples=max_images)
    rows = []
    static_rate = {}
    static_source = static_dir or export_dirs[0]
    static_manifest = read_manifest(static_source)
    for q in quantizations:
        if q not in static_manifest["quantization"]:
            continue
        for t in threads:
            # Static: every image runs every stage (thresholds never met before the last).
            never = [None] * (static_manifest["num_stages"] - 1) + [0.0]
            r = Cascade(static_source, q, t, thresholds=never).evaluate(images, labels, warmup=50)
            static_rate[(q, t)] = r["avg_latency_ms"] / r["avg_macs"]
            rows.append(
                {
                    "network": "static:" + static_manifest["name"],
                    "export_dir": static_source,
                    "num_threads": t,
                    **r,
                    "file_bytes": _sizes(static_source, static_manifest, q),
                    "ms_per_mac": static_rate[(q, t)],
                    "latency_over_macs_prediction": 1.0,
                }
            )
    for d in export_dirs:
        m = read_manifest(d)
        for q in quantizations:
            if q not in m["quantization"]:
                continue
            for t in threads:
                r = Cascade(d, q, t).evaluate(images, labels, warmup=50)
                predicted = static_rate.get((q, t), float("nan")) * r["avg_macs"]
                rows.append(
                    {
                        "network": m["name"],
                        "export_dir": d,
                        "num_threads": t,
                        **r,
                        "file_bytes": _sizes(d, m, q),
                        "predicted_latency_ms": predicted,
                        "latency_over_macs_prediction": r["avg_latency_ms"] / predicted,
                    }
                )
    return {"num_images": int(len(images)), "rows": rows}


def main(argv) -> None:
    del argv
    if not FLAGS.export_dirs:
        fail("export_benchmark", "--export_dirs is required", code=2)
    result = benchmark(
        FLAGS.export_dirs,
        FLAGS.static_dir,
        FLAGS.quantizations,
        [int(t) for t in FLAGS.threads],
        FLAGS.max_images,
    )
    header = f"{'network':<18}{'q':<9}{'thr':>4}{'acc':>7}{'avgMACs':>11}{'ms':>8}{'ratio':>7}"
    print(header + "  exit rates / KB")
    for r in result["rows"]:
        print(
            f"{r['network'][:17]:<18}{r['quantization']:<9}{r['num_threads']:>4}"
            f"{r['accuracy']:>7.3f}{r['avg_macs']:>11.0f}{r['avg_latency_ms']:>8.3f}"
            f"{r['latency_over_macs_prediction']:>7.2f}  "
            f"{[round(p, 3) for p in r['exit_rates']]} {r['file_bytes'] / 1024:.0f}"
        )
    if FLAGS.out:
        from enas4d_tf.files import write_json_atomic

        write_json_atomic(FLAGS.out, result, sort_keys=False)


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("export_benchmark"))
