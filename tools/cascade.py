"""Runs a dataset split through exported stage graphs as an early-exit cascade (LiteRT).

  python -m tools.cascade --export_dir=runs/demo/export/net0 --quantization=int8 \
      --num_threads=1 --max_images=2000 --report=runs/demo/cascade/net0_int8.json

Image by image (batch 1, as on a phone), with the thresholds the manifest records for the
graphs of --quantization (refitted on them at export; an older manifest's float ones),
keeping each stage's hand-offs for the next. Prints a JSON report: accuracy, exit rates,
average MACs, measured per-stage and average latency. Bad input ends with one line on
stderr, exit 1: the manifest's schema, the stage graphs' sizes and SHA-256 and the --report
location are checked before TensorFlow and LiteRT are imported.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from tools._cli import fail, flags_parser, quiet_stderr  # noqa: E402

flags.DEFINE_string("export_dir", None, "An export folder written by tools/export.py.")
flags.DEFINE_string("quantization", "float32", "Which exported stage graphs to run.")
flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "The split to run.")
flags.DEFINE_integer("num_threads", 1, "LiteRT interpreter threads.", lower_bound=1)
flags.DEFINE_integer("max_images", None, "Run only the first images.", lower_bound=1)
flags.DEFINE_string("data_dir", None, "Where the dataset is; default the dataset's own.")
flags.DEFINE_string("report", None, "Also write the JSON report to this file.")

FLAGS = flags.FLAGS


def _check_inputs() -> tuple[dict, list[str]]:
    """Everything a cascade reads or writes, checked before TensorFlow/LiteRT are imported:
    the manifest's schema, the graphs' sizes and hashes, and the report's location."""
    from enas4d_tf.errors import Enas4dError, ExportDirError
    from enas4d_tf.export.formats import read_manifest
    from enas4d_tf.export.integrity import check_graph_files
    from enas4d_tf.files import check_writable_file

    try:
        manifest = read_manifest(FLAGS.export_dir)
        paths = check_graph_files(FLAGS.export_dir, manifest, FLAGS.quantization)
        if FLAGS.report:
            check_writable_file(FLAGS.report, "--report", ExportDirError)
    except Enas4dError as e:
        fail("cascade", str(e))
    return manifest, paths


def main(argv: list[str]) -> None:
    if not FLAGS.export_dir:
        fail("cascade", "--export_dir is required", code=2)
    manifest, _ = _check_inputs()
    with quiet_stderr():
        from enas4d_tf.data import load_arrays
        from enas4d_tf.errors import Enas4dError
        from enas4d_tf.export.cascade import Cascade
        from enas4d_tf.files import write_json_atomic

    try:
        cascade = Cascade(FLAGS.export_dir, FLAGS.quantization, num_threads=FLAGS.num_threads)
        dataset = manifest["preprocessing"]["dataset"]
        images, labels = load_arrays(
            dataset, FLAGS.split, data_dir=FLAGS.data_dir, max_examples=FLAGS.max_images
        )
    except Enas4dError as e:  # ExportDirError, DataError
        fail("cascade", str(e))
    report = cascade.evaluate(images, labels)
    report.update(
        {"export_dir": FLAGS.export_dir, "split": FLAGS.split, "num_threads": FLAGS.num_threads}
    )
    # Printed first: if the report file cannot be written, the numbers are not lost.
    print(json.dumps(report, indent=2, sort_keys=True), flush=True)
    if FLAGS.report:
        try:
            write_json_atomic(FLAGS.report, report)
        except Enas4dError as e:
            fail("cascade", f"{e} (the report was printed on stdout)")


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("cascade"))
