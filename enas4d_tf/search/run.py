"""The architecture search behind `tools/search.py` (README.md, "Search").

`run_search(workdir, config)` loads the trained supernet of a workdir, the "validation" split
(candidates are scored on it) and the "train" split (BN recalibration images), and runs the
evolutionary search for dynamic multi-exit networks, static single-exit networks, or both,
sharing every measurement between them. It never loads the test split. Tests (and callers
with their own arrays) hand it `SearchData` instead.

Everything lands under `<workdir>/search/` (`enas4d_tf.workdir.Workdir` names each path):
state.json and predictions/ (`search.store`: every measured candidate, so a second run with
the same arguments continues and measures nothing twice), archs/<name>.json, pareto.json and
pareto.png (`search.outputs`).

The search is a pure function of its arguments and the measurements: a run that was stopped
and started again with the same arguments replays the evolution, takes every measurement it
already has from the state, and goes on measuring where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import numpy as np

from enas4d_tf.errors import SearchError
from enas4d_tf.evaluation import CandidateEvaluator
from enas4d_tf.search.config import MAX_BATCH_SIZE, SearchConfig
from enas4d_tf.search.display import log_generations, log_table
from enas4d_tf.search.evolution import evolve
from enas4d_tf.search.objectives import (
    CostModel,
    budgets_per_mode,
    make_cost_model,
    make_objectives,
)
from enas4d_tf.search.outputs import (
    SearchOutcome,
    choose,
    cost_report,
    fronts,
    generation_seconds,
    generations_report,
    reference_entries,
    write_outputs,
)
from enas4d_tf.search.preflight import check_search_workdir
from enas4d_tf.search.store import Candidate, SearchStore
from enas4d_tf.space import Arch, arch_key
from enas4d_tf.workdir import Workdir, checkpoint_digest, latest_checkpoint, load_supernet

# Pixels of one forward pass at most: MAX_BATCH_SIZE images at 32x32, the largest pass of the
# fashion_mnist space, peaked at about 3.4 GB resident (BN recalibration and all exits of its
# largest network on 2 CPU cores). A space of larger images gets proportionally fewer.
MAX_PIXELS_PER_PASS = MAX_BATCH_SIZE * 32 * 32


@dataclasses.dataclass(frozen=True)
class SearchData:
    """The images a search runs on, when the caller has them (`run_search(data=...)`).

    Used as given except that at most `config.num_val_images` validation images and
    `config.num_calibration_images` calibration images are taken, as the loader would.

    Attributes:
      val_images: `(N, H, W, C)` float images candidates are scored on (never test data).
      val_labels: `(N,)` int labels.
      calibration_images: `(M, H, W, C)` training images for BN recalibration.
    """

    val_images: np.ndarray
    val_labels: np.ndarray
    calibration_images: np.ndarray


@dataclasses.dataclass
class SearchResult:
    """What `run_search` chose and wrote.

    Attributes:
      chosen: the pareto.json records of the chosen networks (`archs/<name>.json`).
      fronts: `{"dynamic": [...], "static": [...]}` front points, cheapest first.
      measured_this_run: candidates measured by this run (not taken from the state).
      known: candidates in the state after the run.
      wall_seconds: wall time of the run.
      paths: the files written.
    """

    chosen: list
    fronts: dict
    measured_this_run: int
    known: int
    wall_seconds: float
    paths: dict


def _clamped(name: str, asked: int, available: int, split: str, log) -> int:
    """`asked`, or the split's size when it holds fewer images (with a log line)."""
    if asked <= available:
        return asked
    log(f"{name} = {asked} is more than the {split} split holds; using its {available} images")
    return available


def images_per_pass(space, batch_size: int, log: Callable[[str], None] = print) -> int:
    """`batch_size`, or fewer images when a pass at the space's largest resolution would hold
    more pixels than `MAX_PIXELS_PER_PASS` (with a log line), so memory stays bounded in
    every space."""
    side = max(space.resolution_choices)
    limit = max(1, MAX_PIXELS_PER_PASS // (side * side))
    if batch_size <= limit:
        return batch_size
    log(
        f"batch_size = {batch_size} images of {side}x{side} would exhaust memory; using "
        f"{limit} images per forward pass"
    )
    return limit


def load_search_data(
    dataset: str, data_dir: str | None, config: SearchConfig, log: Callable[[str], None] = print
) -> SearchData:
    """The validation images and labels and the calibration (train) images of `dataset`.

    Image counts larger than a split are clamped to it (with a log line) before anything is
    loaded, so a huge count never loads more than the split.
    """
    from enas4d_tf import data as data_lib  # looked up at call time: tests replace it

    info = data_lib.dataset_info(dataset, data_dir)
    num_val = _clamped(
        "num_val_images", config.num_val_images, info.num_validation, "validation", log
    )
    num_calibration = _clamped(
        "num_calibration_images", config.num_calibration_images, info.num_train, "train", log
    )
    # Only these two splits are ever loaded here: the test split is never used to choose.
    val_images, val_labels = data_lib.load_arrays(dataset, "validation", data_dir, num_val)
    calibration, _ = data_lib.load_arrays(dataset, "train", data_dir, num_calibration)
    return SearchData(val_images, val_labels, calibration)


def run_search(
    workdir: str,
    config: SearchConfig,
    log: Callable[[str], None] = print,
    data: SearchData | None = None,
) -> SearchResult:
    """Searches the supernet of `workdir` and writes `<workdir>/search/`.

    Args:
      workdir: a training workdir (run_config.json and a checkpoint).
      config: the search settings.
      log: receives progress lines.
      data: the images to search on; None loads them from the workdir's dataset (or
        `config.data_dir`).

    Returns:
      The SearchResult.

    Raises:
      SearchError: bad settings, a budget no network can meet, or an output location that
        cannot be written (checked before any data is loaded or network run); a write that
        fails later (the measurements saved so far are kept in the state).
      WorkdirError: no workdir, config or checkpoint, a checkpoint that does not match or
        holds non-finite weights, or a malformed search state.
      DataError: the data cannot be read.
    """
    start = time.perf_counter()
    check_search_workdir(workdir, config)
    paths = Workdir(workdir)
    net, run_config = load_supernet(workdir)
    costs = make_cost_model(net.space, net.num_classes, config)
    objectives = make_objectives(costs, config.max_cost_ratio, config.seed)
    budgets = budgets_per_mode(config, objectives, costs)

    evaluator, dataset, data_dir = _evaluator(net, run_config, config, data, log)
    log(
        f"search of {workdir}: {evaluator.num_val_images} validation images, "
        f"{evaluator.num_calibration_images} calibration images, modes {', '.join(config.modes)}, "
        f"costs in {costs.origin()}"
    )
    settings = store_settings(workdir, dataset, data_dir, evaluator)
    store = SearchStore(paths, settings, net.space, log)
    if len(store):
        log(f"continuing from {store.path}: {len(store)} candidates measured before")
    measure = _Measurer(store, evaluator, costs)
    references, records, generations = _search(config, objectives, budgets, measure, log)
    outcome = _outcome(config, objectives, budgets, (references, records, generations), settings)
    store.save()
    wall = time.perf_counter() - start
    outcome.stats = {**_stats(store, wall), **generation_seconds(generations)}
    written = _write(paths, outcome, store)
    log_generations(generations, log)
    log_table(outcome.chosen, log)
    log(
        f"done in {wall:.1f}s: {store.measured_this_run} candidates measured this run, "
        f"{len(store)} in the state; wrote {written['pareto_json']}"
    )
    return SearchResult(
        outcome.chosen, outcome.fronts, store.measured_this_run, len(store), wall, written
    )


def _outcome(config, objectives, budgets, found, settings) -> SearchOutcome:
    """What pareto.json reports of the records found (its `stats` filled in later)."""
    references, records, generations = found
    return SearchOutcome(
        chosen=choose(objectives, budgets, records),
        fronts=fronts(objectives, budgets, records),
        references=reference_entries(objectives["static"], *references),
        budgets=budgets,
        settings=settings,
        config=config,
        stats={},
        cost=cost_report(objectives["static"].costs),
        generations=generations_report(generations),
    )


def _write(paths: Workdir, outcome: SearchOutcome, store: SearchStore) -> dict:
    """`write_outputs`, with a failed write as one line that says what is kept."""
    try:
        return write_outputs(paths, outcome)
    except OSError as e:
        raise SearchError(
            f"cannot write {e.filename or paths.search}: {e.strerror or e}; the "
            f"{len(store)} measured candidates are kept in {store.path}"
        ) from None


def _evaluator(net, run_config: dict, config: SearchConfig, data: SearchData | None, log):
    """The candidate evaluator on `data` (loaded when None); also the dataset's name and
    folder as the settings record them."""
    dataset = run_config.get("dataset", "fashion_mnist")
    data_dir = config.data_dir or run_config.get("data_dir") or None
    if data is None:
        data = load_search_data(dataset, data_dir, config, log)
    num_val = _clamped(
        "num_val_images", config.num_val_images, len(data.val_labels), "validation", log
    )
    num_calibration = _clamped(
        "num_calibration_images",
        config.num_calibration_images,
        len(data.calibration_images),
        "train",
        log,
    )
    evaluator = CandidateEvaluator(
        net,
        data.val_images[:num_val],
        data.val_labels[:num_val],
        data.calibration_images,
        num_calibration,
        images_per_pass(net.space, config.batch_size, log),
    )
    return evaluator, dataset, data_dir


class _Measurer:
    """`measure(archs) -> [Candidate]` for `evolve`: from the store, or measured and stored;
    thresholds of each are fitted to the cost model's costs (MACs or milliseconds)."""

    def __init__(self, store: SearchStore, evaluator: CandidateEvaluator, costs: CostModel):
        self.store = store
        self.evaluator = evaluator
        self.costs = costs

    def __call__(self, archs: list[Arch]) -> list[Candidate]:
        out = []
        for arch in archs:
            key = arch_key(self.store.space, arch)
            candidate = self.store.get(key)
            if candidate is None:
                candidate = Candidate(key, self.evaluator.measure(arch))
                self.store.add(candidate)
            latency = self.costs.kind == "latency"
            candidate.measurement.use_costs(self.costs(candidate.arch) if latency else None)
            out.append(candidate)
        return out


def _search(config, objectives, budgets, measure: _Measurer, log) -> tuple[list, list, list]:
    """The smallest and largest networks, then the evolution of each mode in turn, each
    starting from every record known so far. Returns `(references, records, generations)`,
    the last one summary per generation (also saved in state.json as each ends)."""
    store = measure.store
    space = store.space
    references = measure([space.smallest(), space.largest()])
    records, generations = list(references), []

    def on_generation(entry: dict) -> None:
        generations.append(entry)
        store.set_generations(generations)

    for mode in config.modes:
        if not budgets[mode]:
            continue
        result = evolve(
            space,
            objectives[mode],
            budgets[mode],
            config.evolution_config(),
            measure,
            records=records,
            log=lambda line: log(
                f"{line}; measured {store.measured_this_run} this run, {len(store)} in the state"
            ),
            on_generation=on_generation,
        )
        records = result.records
    return references, records, generations


def store_settings(workdir, dataset, data_dir, evaluator: CandidateEvaluator) -> dict:
    """What makes measurements comparable: a state measured otherwise is not reused (the
    search's `SearchStore`, and bench/search_efficiency.py's). The checkpoint is named by
    its file name and by the sha256 of its index: a workdir trained again, or another
    workdir copied in, has a checkpoint of the same name but other weights."""
    net = evaluator.net
    checkpoint = latest_checkpoint(workdir)
    return {
        "checkpoint": os.path.basename(checkpoint or ""),
        "checkpoint_index_sha256": checkpoint_digest(checkpoint),
        "dataset": dataset,
        "data_dir": data_dir,
        "num_val_images": evaluator.num_val_images,
        "num_calibration_images": evaluator.num_calibration_images,
        "batch_size": evaluator.batch_size,
        "num_classes": net.num_classes,
        "space": net.space.to_dict(),
    }


def _stats(store: SearchStore, wall: float) -> dict:
    return {
        "wall_seconds": round(wall, 2),
        "measured_this_run": store.measured_this_run,
        "measure_seconds": round(store.measure_seconds, 2),
        "candidates_per_second": (
            round(store.measured_this_run / store.measure_seconds, 4)
            if store.measure_seconds > 0
            else None
        ),
        "known_candidates": len(store),
    }
