"""Settings of a search run (`SearchConfig`) and the budgets given on the command line."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from enas4d_tf.errors import SearchError
from enas4d_tf.search.evolution import EvolutionConfig

MODES = ("dynamic", "static", "both")
# What budgets count: MACs, or milliseconds of a latency model (`objectives.CostModel`).
COST_KINDS = ("macs", "latency")
# Images per forward pass at most: a larger batch of a large network can exhaust memory.
MAX_BATCH_SIZE = 4096


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Settings of one search run (`tools/search.py` has a flag of each name).

    Attributes:
      mode: "dynamic" (multi-exit networks with fitted thresholds), "static" (networks cut
        at any exit `s`: groups `<= s` and exit `s` alone) or "both".
      budgets: average-cost budgets (MACs, or ms with cost "latency"); empty when `pareto`
        is set.
      pareto: search a grid of `pareto_points` budgets spanning the space instead.
      pareto_points: budgets of that grid.
      population: candidates measured per generation (shared among the budgets).
      generations: generations in all, the random first one included.
      mutation_prob: probability that a gene of a child changes.
      crossover_prob: probability that a child comes from two parents.
      max_cost_ratio: a candidate for budget `B` has `C_S <= max_cost_ratio * B` (and
        `C_1 <= B`), so the search does not spend measurements on networks it could use only
        at their first exit.
      num_val_images: validation images each candidate is scored on (at most the split; at
        least 2, for the two halves of the dynamic cross-fit).
      num_calibration_images: training images for each candidate's BN recalibration.
      batch_size: images per forward pass (at most `MAX_BATCH_SIZE`).
      data_dir: overrides the workdir's data directory when not empty.
      seed: seeds the search and fixes the halves of the dynamic cross-fit.
      cost: "macs" (budgets and costs in MACs) or "latency" (in the milliseconds of the
        latency model of `latency_table`; MACs are still recorded).
      latency_table: the latency table file (`enas4d_tf.latency.table`), with cost
        "latency" only. Its target (device, threads, quantisation) is what the costs are
        of, recorded in every architecture file as `cost_target`; the search does not
        check it against how the networks will be exported (a float32 table for int8
        exports is the user's choice).
      inner_population, inner_generations, top_k: the evolution on predicted scores run
        for each budget and generation, and how many of its best are measured
        (`EvolutionConfig`; inner_generations 0: the search without it).
      predictor: "auto", "mlp", "ridge" or "auto_summary": the accuracy predictors tried
        each generation (`selection.PredictorSettings.kind`).
      min_predictor_tau: the held-out Kendall tau below which a predictor is not used
        (-1: always used).
      inner_min_predictor_tau: the held-out tau the predictor needs before the inner
        evolution runs on it; below, it ranks children of the best (-1: whenever used).
      predictor_folds: K of the K-fold that measures that tau.
    """

    mode: str = "both"
    budgets: tuple = ()
    pareto: bool = False
    pareto_points: int = 6
    population: int = 16
    generations: int = 8
    mutation_prob: float = 0.1
    crossover_prob: float = 0.5
    max_cost_ratio: float = 3.0
    num_val_images: int = 5000
    num_calibration_images: int = 2000
    batch_size: int = 500
    data_dir: str = ""
    seed: int = 0
    cost: str = "macs"
    latency_table: str = ""
    inner_population: int = 100
    inner_generations: int = 50
    top_k: int = 0
    predictor: str = EvolutionConfig.predictor
    min_predictor_tau: float = EvolutionConfig.min_predictor_tau
    inner_min_predictor_tau: float = EvolutionConfig.inner_min_predictor_tau
    predictor_folds: int = 5

    @property
    def unit(self) -> str:
        """The unit of budgets: "MACs" or "ms"."""
        return "MACs" if self.cost == "macs" else "ms"

    @property
    def modes(self) -> list[str]:
        """The kinds of network searched, dynamic first."""
        return ["dynamic", "static"] if self.mode == "both" else [self.mode]

    def evolution_config(self) -> EvolutionConfig:
        """The evolution settings among these."""
        return EvolutionConfig(
            population=self.population,
            generations=self.generations,
            mutation_prob=self.mutation_prob,
            crossover_prob=self.crossover_prob,
            seed=self.seed,
            inner_population=self.inner_population,
            inner_generations=self.inner_generations,
            top_k=self.top_k,
            predictor=self.predictor,
            min_predictor_tau=self.min_predictor_tau,
            inner_min_predictor_tau=self.inner_min_predictor_tau,
            predictor_folds=self.predictor_folds,
        )

    def validate(self) -> None:
        """Raises SearchError naming the first setting out of range."""
        if self.mode not in MODES:
            raise SearchError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.pareto and self.budgets:
            raise SearchError("give either budgets or pareto, not both")
        if self.cost not in COST_KINDS:
            raise SearchError(f"cost {self.cost!r} is not one of {', '.join(COST_KINDS)}")
        if self.cost == "latency" and not self.latency_table:
            raise SearchError("--cost=latency needs --latency_table=PATH (a latency table file)")
        if self.cost != "latency" and self.latency_table:
            raise SearchError("--latency_table is read only with --cost=latency")
        if not self.pareto and not self.budgets:
            example = "--budgets=2e6,4e6" if self.cost == "macs" else "--budgets=1.5,3"
            raise SearchError(f"give {self.unit} budgets (e.g. {example}) or --pareto")
        for b in self.budgets:
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b):
                raise SearchError(f"budget {b!r} is not a number")
            if b <= 0:
                raise SearchError(f"budget {b:g} must be positive")
        checks = [
            ("pareto_points", self.pareto_points >= 2, "must be >= 2"),
            ("max_cost_ratio", self.max_cost_ratio >= 1.0, "must be >= 1"),
            ("num_val_images", self.num_val_images >= 2, "must be >= 2"),
            ("num_calibration_images", self.num_calibration_images >= 1, "must be >= 1"),
            (
                "batch_size",
                1 <= self.batch_size <= MAX_BATCH_SIZE,
                f"must be in 1..{MAX_BATCH_SIZE}",
            ),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise SearchError(f"{name} = {getattr(self, name)} {rule}")
        try:
            self.evolution_config().validate()
        except ValueError as e:
            raise SearchError(str(e)) from None


def parse_budgets(values: Sequence[str]) -> tuple:
    """Parses budget strings such as "2e6" or "4000000".

    Raises:
      SearchError: a value is not a positive finite number.
    """
    out = []
    for v in values:
        try:
            b = float(v)
        except (TypeError, ValueError):
            raise SearchError(f"budget {v!r} is not a number") from None
        if not math.isfinite(b) or b <= 0:
            raise SearchError(
                f"budget {v!r} must be a positive number (of MACs, or of ms with --cost=latency)"
            )
        out.append(b)
    return tuple(out)
