"""One generation's record: what chose its candidates, the predictor and how well it ranked.

`GenerationLog.summary()` is what state.json and pareto.json keep per generation and
`GenerationLog.line()` what the log shows (README.md, "Search": reading the predictor's
quality).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from enas4d_tf.search.predictor import kendall_tau
from enas4d_tf.search.scoring import Objective
from enas4d_tf.search.selection import PredictorChoice


@dataclasses.dataclass
class GenerationLog:
    """How one generation chose its candidates, and how well its predictor did.

    Attributes:
      objective: the objective's name.
      generation: numbered from 1.
      ranked_by: what chose the candidates.
      choice: the predictor choice (None in the random first generation).
      predicted: `{budget: [(key, predicted score)]}` of the candidates chosen, when a
        predictor was fitted (also when it was not used: its predictions are then checked
        on candidates it did not choose).
      inner_cpu_seconds, inner_evaluated: CPU time and architectures scored by the inner
        evolutions of all budgets.
    """

    objective: str
    generation: int
    ranked_by: str
    choice: PredictorChoice | None = None
    predicted: dict = dataclasses.field(default_factory=dict)
    inner_cpu_seconds: float = 0.0
    inner_evaluated: int = 0
    candidates: int = 0
    measured: int = 0
    prospective_tau: float = float("nan")
    prospective_n: int = 0

    def finish(self, objective: Objective, known: dict, candidates: int, measured: int):
        """Records the counts and the prospective tau: per budget, the predictions of the
        chosen candidates against their measured scores, averaged weighted by count."""
        self.candidates, self.measured = candidates, measured
        taus, weights = [], []
        for b, pairs in self.predicted.items():
            scored = [(p, objective.score(known[k], b)) for k, p in pairs if k in known]
            scored = [(p, sc[0]) for p, sc in scored if sc is not None and np.isfinite(p)]
            tau = kendall_tau(*zip(*scored, strict=True)) if len(scored) >= 3 else math.nan
            if math.isfinite(tau):
                taus.append(tau)
                weights.append(len(scored))
        if taus:
            self.prospective_tau = float(np.average(taus, weights=weights))
            self.prospective_n = int(sum(weights))

    def line(self) -> str:
        """The predictor's log phrase, with the inner evolution's cost."""
        out = self.choice.line() if self.choice is not None else ""
        if self.inner_evaluated:
            out += (
                f"; inner evolution scored {self.inner_evaluated} architectures in "
                f"{self.inner_cpu_seconds:.1f}s CPU"
            )
        return out

    def summary(self) -> dict:
        """JSON-safe, for state.json and pareto.json."""
        tau = self.prospective_tau
        return {
            "objective": self.objective,
            "generation": self.generation,
            "ranked_by": self.ranked_by,
            "candidates": self.candidates,
            "measured": self.measured,
            "predictor": None if self.choice is None else self.choice.summary(),
            "prospective_tau": round(tau, 4) if math.isfinite(tau) else None,
            "prospective_n": self.prospective_n,
            "inner_cpu_seconds": round(self.inner_cpu_seconds, 3),
            "inner_evaluated": self.inner_evaluated,
        }
