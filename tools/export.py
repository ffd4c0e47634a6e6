"""Exports networks of a trained supernet for deployment (README.md "Export and deployment").

  python -m tools.export --workdir=runs/demo --from_search --out=runs/demo/export \
      --quantization=float32,int8
  python -m tools.export --workdir=runs/demo --arch=runs/demo/search/archs/dynamic_2M.json \
      --out=exports

Writes `<out>/<name>/`: subnet.keras (fine-tunable Keras model), stage{n}_{q}.tflite (one
early-exit graph per exit n = 1, 2, ... and quantisation) and manifest.json, which holds per
quantisation the exit thresholds refitted on that quantisation's graphs over validation
images for the network's budget (--cost=macs, or --cost=latency with --latency_table) and
their exit rates, accuracy and average cost; an architecture
file with `"exit": s` (a truncated static network) gives one graph, stage{s}_{q}.tflite, and
a one-output subnet.keras. Each folder is built under a temporary name and renamed when
complete; the temporary folders of killed exports in --out are removed. The tool holds the
workdir's lock (`enas4d_tf.locking`) while it exports.

Bad input ends with one line on stderr and exit 1 (flag errors: exit 2). Flags, workdir,
architecture files and output locations are checked before TensorFlow is imported.
"""

from __future__ import annotations

import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402

from tools._cli import config_from_flags, fail, flags_parser, quiet_stderr  # noqa: E402

flags.DEFINE_string("workdir", None, "The training workdir whose supernet is exported.")
flags.DEFINE_string(
    "arch",
    None,
    "An architecture JSON file: a search result (<workdir>/search/archs/*.json) or a bare "
    "Arch.to_dict() (exported as a static network).",
)
flags.DEFINE_bool(
    "from_search", False, "Export every <workdir>/search/archs/*.json the search wrote."
)
flags.DEFINE_string("out", None, "Parent folder of the exports; default <workdir>/export.")
flags.DEFINE_string(
    "quantization",
    "float32",
    "Comma list of stage-graph quantisations: float32, float16, int8 (post-training), "
    "int8_qat (quantisation-aware fine-tuning through tensorflow-model-optimization).",
)
flags.DEFINE_bool("overwrite", False, "Replace export folders that exist.")
flags.DEFINE_string(
    "data_dir", None, "Where the dataset is, if not where the workdir's run config says."
)
flags.DEFINE_integer(
    "num_calibration_images",
    2000,
    "Training images used for BN recalibration, int8 calibration and QAT fine-tuning.",
    lower_bound=16,
)
flags.DEFINE_integer(
    "qat_steps", 200, "Optimizer steps of quantisation-aware fine-tuning.", lower_bound=1
)
flags.DEFINE_float(
    "qat_learning_rate", 1e-4, "Adam learning rate of QAT fine-tuning.", lower_bound=0.0
)
flags.DEFINE_integer(
    "threshold_images",
    5000,
    "Validation images each quantisation's stage graphs run on to refit its exit thresholds "
    "for the network's budget (at most the validation split).",
    lower_bound=1,
)
flags.DEFINE_enum(
    "cost",
    "macs",
    ["macs", "latency"],
    "The unit of the budget thresholds are refitted for: average MACs, or average latency "
    "predicted by --latency_table.",
)
flags.DEFINE_list(
    "latency_table",
    [],
    "With --cost=latency: latency table files (python -m tools.latency_table), one per "
    "exported quantisation (an int8 table also serves int8_qat).",
)

FLAGS = flags.FLAGS


def _plan():
    """Checks flags, workdir, architecture files and output locations before TensorFlow is
    imported; returns `(config, arch files)`."""
    from enas4d_tf.errors import Enas4dError
    from enas4d_tf.export import plan
    from enas4d_tf.workdir import Workdir

    try:
        quantizations = plan.parse_quantizations(FLAGS.quantization)
    except ValueError as e:
        fail("export", f"--quantization: {e}", code=2)
    try:
        config = config_from_flags(
            plan.ExportConfig,
            out=FLAGS.out or Workdir(FLAGS.workdir).exports,
            quantizations=quantizations,
            latency_tables=tuple(FLAGS.latency_table),
        )
        files = plan.search_arch_files(FLAGS.workdir) if FLAGS.from_search else [FLAGS.arch]
        plan.plan_export(FLAGS.workdir, files, config)
    except Enas4dError as e:  # ExportError, ExportDirError, WorkdirError, LatencyError
        fail("export", str(e))
    return config, files


def main(argv: list[str]) -> None:
    if not FLAGS.workdir:
        fail("export", "--workdir is required: the training workdir to export from", code=2)
    if bool(FLAGS.arch) == FLAGS.from_search:
        fail("export", "give exactly one of --arch=<file> and --from_search", code=2)
    if FLAGS.latency_table and FLAGS.cost != "latency":
        fail("export", "--latency_table is read only with --cost=latency", code=2)
    config, files = _plan()
    from enas4d_tf.errors import Enas4dError
    from enas4d_tf.locking import WorkdirLock

    try:
        with WorkdirLock(FLAGS.workdir, "export"):
            _export(config, files)
    except Enas4dError as e:  # WorkdirError: the workdir is in use
        fail("export", str(e))


def _export(config, files) -> None:
    with quiet_stderr():
        from enas4d_tf.errors import Enas4dError
        from enas4d_tf.export import exporter

    # TensorFlow logs every SavedModel write at INFO through absl, and its int8 calibrator
    # warns that it uses the deprecated tf.lite.Interpreter (ours is LiteRT's): per stage graph
    # that is a dozen lines of noise around the export's own progress lines.
    logging.set_verbosity(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated")
    try:
        exporter.run_export(FLAGS.workdir, files, config, log=lambda line: print(line, flush=True))
    except Enas4dError as e:  # ExportError, ConversionError, WorkdirError, DataError
        _quiet_exit()
        fail("export", str(e))


def _quiet_exit() -> None:
    """After a refusal, TensorFlow may still warn at exit (a checkpoint reader about values a
    partial restore left unused, the runtime on fd 2): the error line goes to the real stderr
    and everything after it to /dev/null, so the error is the only line."""
    logging.set_verbosity(logging.FATAL)
    sys.stderr.flush()
    sys.stderr = os.fdopen(os.dup(2), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("export"))
