"""Searches a trained supernet for dynamic and static networks (README.md "Search").

  python -m tools.search --workdir=/tmp/enas4d_quick --budgets=2e6,4e6
  python -m tools.search --workdir=/tmp/enas4d_quick --pareto --mode=both
  python -m tools.search --workdir=/tmp/enas4d_quick --cost=latency \
      --latency_table=/tmp/host_float32.json --budgets=1.5,3

Writes `<workdir>/search/`: pareto.json, pareto.png, archs/<name>.json (one per chosen
network) and state.json (every measured candidate). Running the same command again continues
from state.json and measures nothing twice. Only the "validation" and "train" splits are read.
Bad input ends with one line on stderr and exit 1 (flag errors: exit 2): what can be checked
without TensorFlow (settings, budgets, the workdir, its lock, the output locations, the search
state) is checked before TensorFlow is imported. The workdir is locked while the search writes.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from enas4d_tf.errors import Enas4dError  # noqa: E402
from enas4d_tf.search.config import (  # noqa: E402
    COST_KINDS,
    MAX_BATCH_SIZE,
    MODES,
    SearchConfig,
    parse_budgets,
)
from enas4d_tf.search.selection import PREDICTOR_KINDS  # noqa: E402
from tools._cli import config_from_flags, fail, flags_parser, quiet_stderr  # noqa: E402

_DEFAULTS = SearchConfig()

flags.DEFINE_string("workdir", None, "The training workdir whose supernet is searched.")
flags.DEFINE_enum(
    "mode",
    _DEFAULTS.mode,
    list(MODES),
    "What to search: dynamic multi-exit networks (thresholds fitted per budget), static "
    "networks (an architecture cut at any exit: its stages up to that exit and that exit "
    "alone), or both.",
)
flags.DEFINE_list(
    "budgets",
    [],
    "Average-cost budgets, comma-separated: MACs (e.g. 2e6,4e6), or ms with --cost=latency "
    "(e.g. 1.5,3); one network is chosen per budget and mode.",
)
flags.DEFINE_bool(
    "pareto",
    False,
    "Search a geometric grid of budgets spanning the space instead of --budgets.",
)
flags.DEFINE_integer(
    "pareto_points", _DEFAULTS.pareto_points, "Budgets in the --pareto grid.", lower_bound=2
)
flags.DEFINE_integer(
    "population",
    _DEFAULTS.population,
    "Candidates measured per generation, shared among the budgets.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "generations",
    _DEFAULTS.generations,
    "Generations of the evolution in all, the random first one included.",
    lower_bound=1,
)
flags.DEFINE_float(
    "mutation_prob",
    _DEFAULTS.mutation_prob,
    "Probability that each gene of a child is changed.",
    lower_bound=0.0,
    upper_bound=1.0,
)
flags.DEFINE_float(
    "crossover_prob",
    _DEFAULTS.crossover_prob,
    "Probability that a child is the crossover of two parents rather than a mutated parent.",
    lower_bound=0.0,
    upper_bound=1.0,
)
flags.DEFINE_float(
    "max_cost_ratio",
    _DEFAULTS.max_cost_ratio,
    "A dynamic candidate for budget B costs at most this times B at its last exit.",
    lower_bound=1.0,
)
flags.DEFINE_integer(
    "num_val_images",
    _DEFAULTS.num_val_images,
    "Validation images each candidate is scored on (more than the split holds: the whole "
    "split). Dynamic candidates are ranked by thresholds fitted on one half of them and scored "
    "on the other.",
    lower_bound=2,
)
flags.DEFINE_integer(
    "num_calibration_images",
    _DEFAULTS.num_calibration_images,
    "Training images used to recalibrate each candidate's batch norm (more than the split "
    "holds: the whole split).",
    lower_bound=1,
)
flags.DEFINE_integer(
    "batch_size",
    _DEFAULTS.batch_size,
    "Images per forward pass.",
    lower_bound=1,
    upper_bound=MAX_BATCH_SIZE,
)
flags.DEFINE_string(
    "data_dir", None, "Where the dataset is, if not where the workdir's run config says."
)
flags.DEFINE_integer(
    "seed",
    _DEFAULTS.seed,
    "Seeds the search and fixes the two halves of the validation images for the cross-fit.",
    lower_bound=0,
)
flags.DEFINE_enum(
    "cost",
    _DEFAULTS.cost,
    list(COST_KINDS),
    "What budgets count: MACs, or milliseconds predicted by the latency table given with "
    "--latency_table (budgets are then in ms; MACs are still recorded).",
)
flags.DEFINE_string(
    "latency_table",
    None,
    "The latency table file (python -m tools.latency_table) for --cost=latency. Costs are "
    "those of the table's graphs: its quantization, device and threads (recorded in each "
    "architecture file as cost_target). Pick the table of the quantization you will deploy: "
    "a float32 table for networks exported as int8 is allowed, and is your choice.",
)
flags.DEFINE_integer(
    "inner_population",
    _DEFAULTS.inner_population,
    "Population of the evolution on predicted accuracy run per budget and generation.",
    lower_bound=2,
)
flags.DEFINE_integer(
    "inner_generations",
    _DEFAULTS.inner_generations,
    "Generations of that evolution; 0 searches without it (children of the best measured "
    "networks, ranked by the predictor).",
    lower_bound=0,
)
flags.DEFINE_integer(
    "top_k",
    _DEFAULTS.top_k,
    "Networks of the inner evolution measured per budget and generation (0: the budget's "
    "share of --population).",
    lower_bound=0,
)
flags.DEFINE_enum(
    "predictor",
    _DEFAULTS.predictor,
    list(PREDICTOR_KINDS),
    "Accuracy predictor: the MLP or ridge regression, over all budgets or one model per "
    "budget (per exit for static networks), whichever ranks held-out candidates better "
    "(auto); the same plus the MLP on a summary of the architecture, per unit its depth, "
    "kernels, widths and MACs (auto_summary); or one of them over all budgets.",
)
flags.DEFINE_float(
    "min_predictor_tau",
    _DEFAULTS.min_predictor_tau,
    "A predictor whose Kendall tau on held-out candidates is below this does not rank that "
    "generation's candidates (-1: always used).",
    lower_bound=-1.0,
    upper_bound=1.0,
)
flags.DEFINE_float(
    "inner_min_predictor_tau",
    _DEFAULTS.inner_min_predictor_tau,
    "The held-out tau the predictor needs before the inner evolution searches on it; below "
    "it, the predictor ranks children of the best measured (-1: whenever it is used).",
    lower_bound=-1.0,
    upper_bound=1.0,
)
flags.DEFINE_integer(
    "predictor_folds",
    _DEFAULTS.predictor_folds,
    "K of the K-fold over measured candidates that measures the predictor's held-out tau.",
    lower_bound=2,
)

FLAGS = flags.FLAGS


def _import_search():
    """`run_search`, imported (with TensorFlow) without its start-up noise, and TensorFlow's
    Python logging limited to errors: a refused checkpoint would otherwise be followed by a
    warning per unrestored variable."""
    with quiet_stderr():
        import tensorflow as tf
        from absl import logging

        from enas4d_tf.search.run import run_search

    tf.get_logger().setLevel("ERROR")
    logging.set_verbosity(logging.ERROR)
    return run_search


def main(argv: list[str]) -> None:
    if not FLAGS.workdir:
        fail("search", "--workdir is required: the training workdir to search", code=2)
    try:
        config = config_from_flags(
            SearchConfig,
            budgets=parse_budgets(FLAGS.budgets),
            data_dir=FLAGS.data_dir or "",
            latency_table=FLAGS.latency_table or "",
        )
        from enas4d_tf.locking import WorkdirLock
        from enas4d_tf.search.preflight import check_search_workdir

        check_search_workdir(FLAGS.workdir, config)
        with WorkdirLock(FLAGS.workdir, "search"):
            run_search = _import_search()
            run_search(FLAGS.workdir, config, log=lambda line: print(line, flush=True))
    except Enas4dError as e:
        fail("search", str(e))


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("search"))
