"""Measures a latency lookup table for a search space on this host (LiteRT, CPU).

  python -m tools.latency_table --preset=fashion_mnist --out=runs/latency/host_fp32.json
  python -m tools.latency_table --preset=fashion_mnist --quantization=int8 --num_threads=1 \
      --out=runs/latency/host_int8.json
  python -m tools.latency_table --preset=tiny --keys_of_archs=3 --calibration_archs=2 \
      --out=/tmp/tiny.json                      # a smoke run: only the keys of 3 networks

For a phone: `--android_kit=DIR` writes the part graphs and a list of them instead of timing
them here; `python -m export.android_benchmark --latency_kit=DIR` times them on the phone and
writes the table; `--from_android=DIR` writes it again from the outputs the kit recorded.

Every part key the space's stage graphs need (`enas4d_tf.latency.coverage`) is converted to
a small LiteRT graph and timed with the interpreter; then the stage graphs of
`--calibration_archs` networks are timed as the host cascade times them, and the table's
fit (per graph, per input and output tensor) is fitted on them. Bad input ends with one line
on stderr: flags, --out and the kit folder are checked before TensorFlow is imported.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from tools._cli import fail, flags_parser, quiet_stderr  # noqa: E402

# None of these imports TensorFlow: the tool checks its input in a fraction of a second.
with quiet_stderr():
    from enas4d_tf.errors import Enas4dError, LatencyError
    from enas4d_tf.files import check_writable_dir, check_writable_file
    from enas4d_tf.latency import android
    from enas4d_tf.latency.table import QUANTIZATIONS
    from enas4d_tf.space import PRESETS, SearchSpace

PROGRAM = "latency_table"

flags.DEFINE_enum("preset", None, sorted(PRESETS), "The search space whose parts to measure.")
flags.DEFINE_string("out", None, "The table file to write (JSON).")
flags.DEFINE_bool("overwrite", False, "Replace an existing --out file.")
flags.DEFINE_enum("quantization", "float32", list(QUANTIZATIONS), "Which graphs to time.")
flags.DEFINE_integer("num_threads", 1, "LiteRT interpreter threads.", lower_bound=1)
flags.DEFINE_integer(
    "num_classes", None, "Classifier outputs; default the space's dataset's.", lower_bound=1
)
flags.DEFINE_integer("rounds", 7, "Rounds over all graphs; the fastest counts.", lower_bound=1)
flags.DEFINE_integer("runs", 20, "Invokes per graph and round.", lower_bound=1)
flags.DEFINE_integer(
    "passes", 3, "Passes over all graphs, minutes apart; the fastest counts.", lower_bound=1
)
flags.DEFINE_integer(
    "calibration_archs",
    4,
    "Networks (the smallest, the largest, then sampled ones) whose stage graphs are timed "
    "whole to fit the table's per-graph and per-tensor costs; 0 leaves the identity fit.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "keys_of_archs",
    None,
    "Measure only the part keys of this many networks (the smallest, the largest, then "
    "sampled ones) and of the calibration networks, instead of every key of the space: a "
    "smoke run whose table refuses networks that need other keys.",
    lower_bound=1,
)
flags.DEFINE_integer("seed", 0, "Seed of the sampled networks.")
flags.DEFINE_string(
    "android_kit", None, "Write the part graphs for a phone to this folder instead of timing."
)
flags.DEFINE_string(
    "from_android",
    None,
    "A folder written with --android_kit whose recorded phone outputs to read (the kit, "
    "`python -m export.android_benchmark --latency_kit=DIR`, records them).",
)

FLAGS = flags.FLAGS


def _archs(space: SearchSpace, count: int) -> list:
    """The smallest, the largest, then sampled networks: `count` in all."""
    archs = [space.smallest(), space.largest()][:count]
    archs += [space.sample(seed=FLAGS.seed + i) for i in range(count - len(archs))]
    return archs


def _check_flags() -> None:
    """Everything checkable before TensorFlow: flag combinations and the places written."""
    if FLAGS.android_kit and FLAGS.from_android:
        fail(PROGRAM, "--android_kit and --from_android exclude each other", code=2)
    if not FLAGS.from_android and not FLAGS.preset:
        fail(PROGRAM, "--preset is required", code=2)
    if not FLAGS.android_kit and not FLAGS.out:
        fail(PROGRAM, "--out is required", code=2)
    try:
        if FLAGS.out:
            check_writable_file(FLAGS.out, "--out", LatencyError)
            if os.path.exists(FLAGS.out) and not FLAGS.overwrite:
                raise LatencyError(f"--out {FLAGS.out} exists; pass --overwrite to replace it")
        if FLAGS.android_kit:
            check_writable_dir(FLAGS.android_kit, "--android_kit", LatencyError)
            android.check_new_kit_dir(FLAGS.android_kit)
    except Enas4dError as e:
        fail(PROGRAM, str(e))


def _from_android() -> None:
    try:
        table = android.table_from_kit(FLAGS.from_android)
        table.save(FLAGS.out)
    except Enas4dError as e:
        fail(PROGRAM, str(e))
    print(f"{PROGRAM}: {len(table.entries)} entries from {FLAGS.from_android} -> {FLAGS.out}")


def main(argv) -> None:
    _check_flags()
    if FLAGS.from_android:
        _from_android()
        return
    space = SearchSpace.preset(FLAGS.preset)
    num_classes = FLAGS.num_classes or space.default_num_classes
    calibration = _archs(space, FLAGS.calibration_archs)
    key_archs = None if FLAGS.keys_of_archs is None else _archs(space, FLAGS.keys_of_archs)
    with quiet_stderr():
        from enas4d_tf.latency import build
        from enas4d_tf.latency.timing import TimingSettings

    def progress(message: str) -> None:
        print(f"{PROGRAM}: {message}", file=sys.stdout, flush=True)

    request = build.TableRequest(
        space=space,
        num_classes=num_classes,
        quantization=FLAGS.quantization,
        timing=TimingSettings(FLAGS.num_threads, FLAGS.rounds, FLAGS.runs, passes=FLAGS.passes),
        key_archs=key_archs,
        calibration_archs=calibration,
    )
    try:
        with quiet_stderr():
            if FLAGS.android_kit:
                build.write_android_kit(request, FLAGS.android_kit, progress)
            else:
                table = build.measure_table(request, progress)
                table.save(FLAGS.out)
    except Enas4dError as e:
        fail(PROGRAM, str(e))
    if FLAGS.android_kit:
        progress(
            f"kit written to {FLAGS.android_kit}: python -m export.android_benchmark "
            f"--latency_kit={FLAGS.android_kit}"
        )
    else:
        progress(f"{len(table.entries)} entries, fit {table.fit} -> {FLAGS.out}")


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser(PROGRAM))
