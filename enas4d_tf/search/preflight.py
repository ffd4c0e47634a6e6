"""What a search checks before it loads a network or any data (no TensorFlow).

`check_search_workdir` refuses, with one line, the inputs a search would otherwise meet only
after minutes of work or with a traceback: bad settings, a workdir that is not a training
workdir or has no checkpoint, a latency table that is unreadable, of another space or
lacks a part (`--cost=latency`), a budget no network can meet, a malformed search state, and
output locations that cannot be written (a file where a folder should be, a folder where a
file should be, no write permission). `tools/search.py` runs it before importing TensorFlow,
and `run_search` runs it first too.
"""

from __future__ import annotations

import os
import re

from enas4d_tf.errors import SearchError, WorkdirError
from enas4d_tf.files import check_writable_dir, check_writable_file
from enas4d_tf.search.config import SearchConfig
from enas4d_tf.search.objectives import budgets_per_mode, make_cost_model, make_objectives
from enas4d_tf.search.store import PREVIOUS_FOLDER, read_state
from enas4d_tf.space import SearchSpace
from enas4d_tf.workdir import Workdir, read_run_config

# A CheckpointManager checkpoint's index file; its presence is the cheap test for "trained".
_CHECKPOINT_INDEX = re.compile(r"^ckpt-\d+\.index$")


def check_output_locations(paths: Workdir) -> None:
    """Refuses output locations the search could not write (nothing is created).

    Raises:
      SearchError: one line naming the path and the problem.
    """
    check_writable_dir(paths.search, "search folder", SearchError)
    previous = os.path.join(paths.search, PREVIOUS_FOLDER)
    for folder in (paths.search_predictions, paths.search_archs, previous):
        if os.path.lexists(folder):
            check_writable_dir(folder, "search folder", SearchError)
    for path in (paths.search_state, paths.pareto_json, paths.pareto_png):
        check_writable_file(path, "search file", SearchError)


def check_search_workdir(workdir: str, config: SearchConfig) -> dict:
    """Checks everything a search can check cheaply; returns the workdir's run config.

    Raises:
      SearchError: bad settings, a budget no network of a searched mode can meet, or an
        output location that cannot be written.
      WorkdirError: no workdir, run config or checkpoint, or a malformed search state.
      LatencyError: a latency table that cannot serve the search (`make_cost_model`).
    """
    config.validate()
    run_config = read_run_config(workdir)
    paths = Workdir(workdir)
    folder = paths.checkpoints
    names = os.listdir(folder) if os.path.isdir(folder) else []
    if not any(_CHECKPOINT_INDEX.match(n) for n in names):
        raise WorkdirError(f"no checkpoint in {folder}: train the supernet first")
    space = SearchSpace.from_dict(run_config["space"])
    costs = make_cost_model(space, int(run_config["num_classes"]), config)
    budgets_per_mode(config, make_objectives(costs, config.max_cost_ratio), costs)
    check_output_locations(paths)
    if os.path.lexists(paths.search_state):
        read_state(paths.search_state)
    return run_config
