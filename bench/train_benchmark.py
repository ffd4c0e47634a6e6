"""Benchmark of a trained supernet: test accuracy of every exit, and training speed.

After `python -m tools.train --flagfile=configs/train_benchmark.cfg --workdir=W`:

  python -m bench.train_benchmark --workdir=W [--out=bench/results/train_benchmark]

loads the newest checkpoint of W, recalibrates BN for the largest, the smallest and 10 fixed
architectures spread over the space's MACs (2,000 training images each) and measures every
exit on the test split. Prints one JSON line, then a markdown table with, over the spread
architectures, how many fall below the smallest network and the Spearman correlation of MACs
and accuracy at each exit. Training images/s come from W/train_log.jsonl.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402

from enas4d_tf.errors import DataError, WorkdirError  # noqa: E402
from enas4d_tf.files import (  # noqa: E402
    check_writable_dir,
    write_bytes_atomic,
    write_json_atomic,
)
from enas4d_tf.train import report as train_report  # noqa: E402
from tools._cli import fail, flags_parser  # noqa: E402

flags.DEFINE_string("workdir", None, "The training workdir to measure.")
flags.DEFINE_integer(
    "num_spread",
    10,
    "Fixed architectures spread over the space's MACs (the ones training-time evaluation "
    "watches with --eval_spread_archs).",
    lower_bound=0,
)
flags.DEFINE_integer(
    "num_sampled",
    0,
    "Random architectures measured besides the largest and the smallest.",
    lower_bound=0,
)
flags.DEFINE_integer("seed", 0, "Seed of the sampled architectures.", lower_bound=0)
flags.DEFINE_integer(
    "num_calibration_images",
    2000,
    "Training images for BN recalibration per network.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "max_test_examples",
    None,
    "Measure on the first this many test images only.",
    lower_bound=1,
)
flags.DEFINE_string("data_dir", None, "Override the run's data directory.")
flags.DEFINE_string(
    "out", None, "Also write <out>.json (the JSON line, indented) and <out>.md (the table)."
)
FLAGS = flags.FLAGS


def main(argv):
    if not FLAGS.workdir:
        fail("train_benchmark", "--workdir is required", code=2)
    logging.set_verbosity(logging.WARNING)
    try:
        if FLAGS.out:  # before minutes of measuring
            check_writable_dir(os.path.dirname(FLAGS.out) or ".", "--out folder", WorkdirError)
        report = train_report.benchmark_workdir(
            FLAGS.workdir,
            num_sampled=FLAGS.num_sampled,
            num_spread=FLAGS.num_spread,
            seed=FLAGS.seed,
            num_calibration_images=FLAGS.num_calibration_images,
            max_test_examples=FLAGS.max_test_examples,
            data_dir=FLAGS.data_dir,
        )
    except (WorkdirError, DataError) as e:
        fail("train_benchmark", str(e))
    table = train_report.markdown_table(report)
    print(train_report.report_json(report))
    print()
    print(table)
    if FLAGS.out:
        try:
            write_json_atomic(FLAGS.out + ".json", report, error=WorkdirError)
            write_bytes_atomic(FLAGS.out + ".md", (table + "\n").encode(), error=WorkdirError)
        except WorkdirError as e:
            fail("train_benchmark", str(e))


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("train_benchmark"))
