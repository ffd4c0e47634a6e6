"""Which accuracy predictor ranks a generation's children, chosen by held-out rank correlation.

Every generation after the first, `choose_predictor` fits the candidate models (the MLP of
`enas4d_tf.search.predictor.AccuracyPredictor` and `RidgePredictor` for a grid of penalties)
and scores each by Kendall's tau between its predictions and the measured scores of
candidates it was NOT trained on:

* K-fold over the measured candidates (all rows of one candidate in one fold, so the same
  architecture at another budget never leaks into its own test fold); each candidate is
  predicted by the model fitted on the other folds;
* the tau is that of the scores the search ranks by: per budget, the predicted score of each
  held-out candidate (`Objective.predict`) against its measured score there
  (`Objective.score`); the budgets' taus are averaged, weighted by their candidates.

Why K-fold rather than "the next generation's measurements scored by the predictor fitted
before": the decision (which model, whether to use one at all) must be made before this
generation is measured, K-fold uses every measured candidate (tens to hundreds, where a
generation has a few per budget), and the next generation's children were chosen by the
predictor itself, so their predicted scores span a narrow top range and their tau is
range-restricted. That prospective tau is still computed and logged beside it
(`evolution.evolve`), as a check that involves no refitting.

With `kind="auto_summary"` and an objective whose rows carry a summary of the architecture
(`Objective.summary_columns`), the MLP is also tried on those columns alone ("mlp on
summary"): a few dozen ordered numbers (per unit depth, width, mean kernel and expand) and the
costs, without the ~200 one-hot gene slots. On the candidates `tools.search` measured
(102 each, two seeds), it ranked held-out candidates at 0.570-0.674 against 0.535-0.601 for
the MLP on every column (BUILD_NOTES.md "A summary of the architecture for the predictor").

With `kind="auto"`, each model is also tried as one model per group of rows
(`GroupedPredictor` over `Objective.predictor_groups`: per budget for dynamic networks, per
exit for static ones), since the tau compares candidates within a budget only.

The model with the higher held-out tau is used (ridge on a tie: fewer parameters), unless its
tau is below the floor `min_tau`: then no predictor ranks this generation's children. Ridge's
penalty is chosen by the same measure; choosing among a few models on the tau they are then
reported with biases that tau up a little, which the prospective tau does not share.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence

import numpy as np

from enas4d_tf.search.blas import one_blas_thread
from enas4d_tf.search.predictor import (
    AccuracyPredictor,
    ColumnPredictor,
    GroupedPredictor,
    RidgePredictor,
    kendall_tau,
)

PREDICTOR_KINDS = ("auto", "mlp", "ridge", "auto_summary")
# Ridge penalties tried, on standardised features (one-hot genes and log costs).
RIDGE_ALPHAS = (0.3, 3.0, 30.0, 300.0, 3000.0)
# Held-out candidates a budget needs before its tau counts.
_MIN_PER_BUDGET = 3
# "mlp per budget": the MLP fitted per group of rows (`Objective.predictor_groups`).
_PER = " per "
# "mlp on summary": the MLP on the rows' summary columns only (`Objective.summary_columns`).
_ON_SUMMARY = " on summary"


@dataclasses.dataclass(frozen=True)
class PredictorSettings:
    """How `choose_predictor` chooses.

    Attributes:
      kind: "auto" (the MLP or ridge, whichever has the higher held-out tau), "mlp",
        "ridge", or "auto_summary" (as "auto", and the MLP on the architecture's summary).
      folds: K of the K-fold over measured candidates (at least 2).
      min_tau: the floor: a predictor whose held-out tau is below it (or undefined) is not
        used. -1 uses any fitted predictor, as searches did before the floor existed.
      min_rows: predictor rows needed before any predictor is fitted.
      max_rows: rows a predictor trains on at most (a fixed random subset beyond that).
      seed: seeds the folds, the subsets and the MLP's initialisation.
    """

    kind: str = "auto"
    folds: int = 5
    min_tau: float = 0.2
    min_rows: int = 8
    max_rows: int = 768
    seed: int = 0

    def validate(self) -> None:
        """Raises ValueError naming the first setting out of range."""
        if self.kind not in PREDICTOR_KINDS:
            raise ValueError(f"predictor {self.kind!r} is not one of {', '.join(PREDICTOR_KINDS)}")
        if self.folds < 2:
            raise ValueError(f"predictor_folds = {self.folds} must be >= 2")
        if not -1.0 <= self.min_tau <= 1.0:
            raise ValueError(f"min_predictor_tau = {self.min_tau} must be in [-1, 1]")


@dataclasses.dataclass
class PredictorChoice:
    """The predictor of one generation and why.

    Attributes:
      predictor: the chosen model fitted on every row, or None when none is used.
      model: "mlp", "ridge(alpha=...)", either followed by " per budget" or " per exit" (one
        model per group of rows), or "" (none fitted).
      tau: the chosen model's held-out tau (NaN: undefined).
      taus: held-out tau of every model tried, by name.
      candidates: measured candidates with predictor rows.
      rows: predictor rows.
      used: whether `predictor` ranks this generation's children.
      reason: why not, when not used.
      seconds: CPU wall time of the choice (fits of every fold included).
    """

    predictor: object | None
    model: str
    tau: float
    taus: dict
    candidates: int
    rows: int
    used: bool
    reason: str
    seconds: float

    def summary(self) -> dict:
        """JSON-safe fields (NaN as None) for state.json and pareto.json."""
        return {
            "model": self.model,
            "held_out_tau": _finite(self.tau),
            "taus": {k: _finite(v) for k, v in self.taus.items()},
            "candidates": self.candidates,
            "rows": self.rows,
            "used": self.used,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
        }

    def line(self) -> str:
        """One log phrase: the model, its tau and whether it ranks."""
        if not self.model:
            return f"no predictor ({self.reason})"
        tried = ", ".join(f"{k} {_fmt(v)}" for k, v in self.taus.items())
        verdict = "used" if self.used else f"NOT used: {self.reason}"
        return f"predictor {self.model} held-out tau {_fmt(self.tau)} ({tried}); {verdict}"


def _finite(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 4)


def _fmt(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def predictor_data(objective, records: Sequence, budgets: Sequence[float]):
    """`(x (n, d), y (n,), group (n,))`: every predictor row the records teach (repeats of a
    row left out) and the index in `records` of the record each comes from."""
    rows, targets, groups, seen = [], [], [], set()
    for i, r in enumerate(records):
        for x, target in objective.predictor_rows(r, budgets):
            signature = (r.key, x.tobytes())
            if signature in seen:
                continue
            seen.add(signature)
            rows.append(x)
            targets.append(target)
            groups.append(i)
    if not rows:
        return np.zeros((0, 0)), np.zeros(0), np.zeros(0, np.int64)
    return np.stack(rows), np.asarray(targets, np.float64), np.asarray(groups, np.int64)


def _subset(n: int, settings: PredictorSettings) -> np.ndarray:
    """Indices of at most `max_rows` of `n` rows: all, or a fixed random sorted subset
    (training time grows with the rows; the subset keeps a fit to a second)."""
    if n <= settings.max_rows:
        return np.arange(n)
    rng = np.random.default_rng(settings.seed)
    return np.sort(rng.choice(n, settings.max_rows, replace=False))


def _make(name: str, settings: PredictorSettings, group_of=None, columns=(None, None)):
    """The unfitted model `name`: "mlp", "ridge(alpha=A)" or "mlp on summary", or any of
    them followed by " per <group>" (a `GroupedPredictor` of it over `group_of`'s groups).

    `columns` is `(summary, plain)` (`Objective.summary_columns`, `.plain_columns`): a model
    "on summary" sees the summary columns, the others the plain ones (every column where
    None)."""
    base, grouped, _ = name.partition(_PER)
    if grouped:
        return GroupedPredictor(
            lambda: _make(base, settings, columns=columns), group_of, min_rows=settings.min_rows
        )
    summary, plain = columns
    if base.endswith(_ON_SUMMARY):
        return ColumnPredictor(_make(base[: -len(_ON_SUMMARY)], settings), summary)
    if name == "mlp":
        model = AccuracyPredictor(seed=settings.seed)
    else:
        model = RidgePredictor(alpha=float(name[len("ridge(alpha=") : -1]))
    return model if plain is None else ColumnPredictor(model, plain)


def _model_names(kind: str, group: str = "", summary: bool = False) -> list[str]:
    """The models `kind` chooses among; with `group` ("budget", "exit"), "auto" and
    "auto_summary" also try each one per group. "auto_summary" adds the MLP on the summary
    columns when the objective's rows have them (`summary`)."""
    ridge = [f"ridge(alpha={a:g})" for a in RIDGE_ALPHAS]
    on_summary = [f"mlp{_ON_SUMMARY}"] if summary else []
    names = {
        "mlp": ["mlp"],
        "ridge": ridge,
        "auto": ["mlp", *ridge],
        "auto_summary": ["mlp", *ridge, *on_summary],
    }[kind]
    if kind.startswith("auto") and group:
        names += [f"{n}{_PER}{group}" for n in names]
    return names


def _fit(name, x, y, settings, group_of=None, columns=(None, None)):
    keep = _subset(len(y), settings)
    return _make(name, settings, group_of, columns).fit(x[keep], y[keep])


def held_out_taus(objective, records, budgets, data, names, settings) -> dict:
    """`{model name: held-out tau}` by K-fold over the records that have rows (see the
    module docstring); NaN where too few held-out candidates score at any budget."""
    x, y, groups = data
    owners = np.unique(groups)
    folds = min(settings.folds, len(owners))
    fold_of = {}
    order = np.random.default_rng([settings.seed, 7]).permutation(owners)
    for position, owner in enumerate(order):
        fold_of[int(owner)] = position % folds
    # Per budget, the held-out candidates that score there, their rows (computed once).
    per_budget = []
    for b in budgets:
        scored = [(i, objective.score(records[i], b)) for i in owners]
        scored = [(int(i), s[0]) for i, s in scored if s is not None]
        if len(scored) < _MIN_PER_BUDGET:
            continue
        archs = [records[i].arch for i, _ in scored]
        qx, qowner = objective.query_rows(archs, b)
        fold = np.array([fold_of[i] for i, _ in scored])
        per_budget.append((qx, qowner, fold, np.array([m for _, m in scored])))
    predicted = {name: [np.full(len(p[3]), -np.inf) for p in per_budget] for name in names}
    row_fold = np.array([fold_of[int(g)] for g in groups])
    for f in range(folds):
        train = row_fold != f
        if not train.any():
            continue
        for name in names:
            model = _fit(name, x[train], y[train], settings, *_layout(objective))
            for k, (qx, qowner, fold, _) in enumerate(per_budget):
                rows = fold[qowner] == f
                if rows.any():
                    values = model.predict(qx[rows])
                    np.maximum.at(predicted[name][k], qowner[rows], values)
    out = {}
    for name in names:
        taus, weights = [], []
        for k, (_, _, _, measured) in enumerate(per_budget):
            tau = kendall_tau(predicted[name][k], measured)
            if math.isfinite(tau):
                taus.append(tau)
                weights.append(len(measured))
        out[name] = float(np.average(taus, weights=weights)) if taus else float("nan")
    return out


def choose_predictor(
    objective, records: Sequence, budgets: Sequence[float], settings: PredictorSettings
) -> PredictorChoice:
    """Fits, scores on held-out candidates, and chooses this generation's predictor.

    Returns:
      The PredictorChoice (`predictor` None when too few rows).
    """
    with one_blas_thread():  # small matrices: see `enas4d_tf.search.blas`
        return _choose(objective, records, budgets, settings)


def _choose(objective, records, budgets, settings: PredictorSettings) -> PredictorChoice:
    start = time.perf_counter()
    data = predictor_data(objective, records, budgets)
    x, y, groups = data
    candidates, rows = len(np.unique(groups)), len(y)
    if rows < settings.min_rows:
        reason = f"{rows} predictor rows, fewer than {settings.min_rows}"
        return PredictorChoice(
            None, "", float("nan"), {}, candidates, rows, False, reason, time.perf_counter() - start
        )
    group = objective.predictor_group
    if len(np.unique(objective.predictor_groups(x))) < 2:
        group = ""  # one group: a model per group is the pooled model
    names = _model_names(settings.kind, group, objective.summary_columns() is not None)
    taus = held_out_taus(objective, records, budgets, data, names, settings)
    shown, contenders = {}, []
    for suffix in [""] + ([f"{_PER}{group}"] if group else []):
        family = [n for n in names if (_PER in n) == bool(suffix)]
        # Among equal taus the larger penalty (max keeps the first it meets).
        best_ridge = max(
            (n for n in reversed(family) if n.startswith("ridge")),
            key=lambda n: _orderable(taus[n]),
            default=None,
        )
        mlp, on_summary = f"mlp{suffix}", f"mlp{_ON_SUMMARY}{suffix}"
        for n in (mlp, best_ridge, on_summary):
            if n in taus:
                shown[n] = taus[n]
        # Ridge on a tie, then the MLP on every column, and the pooled models before the
        # grouped ones (listed first among equals: `max` keeps the first).
        contenders += [n for n in (best_ridge, mlp, on_summary) if n in taus]
    model = max(contenders, key=lambda n: _orderable(taus[n]))
    tau = taus[model]
    used, reason = True, ""
    if settings.min_tau > -1.0 and not (math.isfinite(tau) and tau >= settings.min_tau):
        used = False
        reason = (
            f"held-out tau {_fmt(tau)} below the floor {settings.min_tau:g}"
            if math.isfinite(tau)
            else f"held-out tau undefined (fewer than {_MIN_PER_BUDGET} held-out candidates "
            "score at any budget, or they all tie)"
        )
    predictor = _fit(model, x, y, settings, *_layout(objective))
    return PredictorChoice(
        predictor, model, tau, shown, candidates, rows, used, reason, time.perf_counter() - start
    )


def _layout(objective) -> tuple:
    """`(group_of, (summary columns, plain columns))` of the objective's predictor rows, as
    `_fit` takes them."""
    return objective.predictor_groups, (objective.summary_columns(), objective.plain_columns())


def _orderable(tau: float) -> float:
    return tau if math.isfinite(tau) else -math.inf
