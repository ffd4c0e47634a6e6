"""Searches a trained supernet for dynamic and static networks (README.md "Search").

  python -m tools.search --workdir=/tmp/enas4d_quick --budgets=2e6,4e6
  python -m tools.search --workdir=/tmp/enas4d_quick --pareto --mode=both

Writes `<workdir>/search/`: pareto.json, pareto.png, archs/<name>.json (one per chosen
network) and state.json (every measured candidate). Running the same command again continues
from state.json and measures nothing twice. Only the "validation" and "train" splits are read.
Bad input ends with one line on stderr and exit 1 (flag errors: exit 2).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from enas4d_tf.errors import Enas4dError  # noqa: E402
from enas4d_tf.search.config import MODES, SearchConfig, parse_budgets  # noqa: E402
from enas4d_tf.search.run import run_search  # noqa: E402
from tools._cli import config_from_flags, fail, flags_parser  # noqa: E402

_DEFAULTS = SearchConfig()

flags.DEFINE_string("workdir", None, "The training workdir whose supernet is searched.")
flags.DEFINE_enum(
    "mode",
    _DEFAULTS.mode,
    list(MODES),
    "What to search: dynamic multi-exit networks, static single-exit networks (the last exit "
    "only, at full cost), or both.",
)
flags.DEFINE_list(
    "budgets",
    [],
    "Average-MACs budgets, comma-separated (e.g. 2e6,4e6); one network is chosen per budget "
    "and mode.",
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
    "Validation images each candidate is scored on (at most the whole split).",
    lower_bound=1,
)
flags.DEFINE_integer(
    "num_calibration_images",
    _DEFAULTS.num_calibration_images,
    "Training images used to recalibrate each candidate's batch norm.",
    lower_bound=1,
)
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Images per forward pass.", lower_bound=1)
flags.DEFINE_string(
    "data_dir", None, "Where the dataset is, if not where the workdir's run config says."
)
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seeds the search.", lower_bound=0)

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if not FLAGS.workdir:
        fail("search", "--workdir is required: the training workdir to search", code=2)
    try:
        config = config_from_flags(
            SearchConfig, budgets=parse_budgets(FLAGS.budgets), data_dir=FLAGS.data_dir or ""
        )
        run_search(FLAGS.workdir, config, log=lambda line: print(line, flush=True))
    except Enas4dError as e:
        fail("search", str(e))


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("search"))
