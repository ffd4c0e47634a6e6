"""How well can any accuracy predictor rank candidates measured on so few images? (issue 18)

  python -m bench.predictor_ceiling --store=runs/bench/search_efficiency/measured
  python -m bench.predictor_ceiling --store=runs/bench/search_efficiency/measured --offset=200

Reads the measurements `bench.search_efficiency` kept (`<store>/search/state.json` and one
predictions file per candidate; nothing is measured) and takes `--candidates` of them in the
order they were measured, from `--offset`. Their validation images are split into the
benchmark's two halves. For each budget of the search's grid and each candidate that scores
there, two accuracies are compared:
- on half A, the cross-fitted accuracy the search ranks by;
- on half B, the held-out accuracy of thresholds fitted on A.

Their Kendall tau is how well one noisy measurement of a network ranks another one.

The normal model: each half measures the true accuracy T plus independent noise of the same
size, A = T + e_A and B = T + e_B. Then tau(A, B) = (2 / pi) asin(rho(A, B)) and
rho(A, B) = var(T) / var(A), so rho(T, A) = sqrt(rho(A, B)). A perfect predictor of T would
rank half A at tau(T, A) = (2 / pi) asin(sqrt(sin(pi tau(A, B) / 2))). Weighted over the
budgets by their candidates, as `enas4d_tf.search.selection.held_out_taus` weights them,
that is the ceiling of the held-out tau in the benchmark's predictor table. The model takes
the noise as the same for every candidate; the image-sampling noise, which varies little
between networks of similar accuracy, dominates it.

Bad input (no store, too few candidates) ends with one line and a non-zero exit.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from tools._cli import fail, flags_parser  # noqa: E402

FLAGS = flags.FLAGS
# Candidates a budget needs before its tau counts (as `selection._MIN_PER_BUDGET`).
MIN_PER_BUDGET = 3


def define_flags() -> None:
    flags.DEFINE_string("store", None, "bench.search_efficiency's <out>/measured folder.")
    flags.DEFINE_integer("candidates", 100, "Candidates to compare.", lower_bound=MIN_PER_BUDGET)
    flags.DEFINE_integer("offset", 0, "Skip this many stored candidates first.", lower_bound=0)
    flags.DEFINE_integer(
        "budget_points", 4, "Budgets of the grid (as the search's).", lower_bound=2
    )


def perfect_predictor_tau(tau_ab: float) -> float:
    """The tau against half A of a perfect predictor of the true accuracy, from the tau
    between the two halves, under the normal model (the module docstring); 0 for tau <= 0."""
    if not math.isfinite(tau_ab) or tau_ab <= 0:
        return 0.0
    rho_ab = math.sin(math.pi * min(tau_ab, 1.0) / 2)
    return 2 / math.pi * math.asin(math.sqrt(rho_ab))


def half_taus(records: list, full: dict, objective, half_b, budgets) -> list[dict]:
    """Per budget: the candidates scoring there, tau(A, B) and the perfect predictor's tau.

    Args:
      records: the candidates on half A (`Candidate`s whose measurement is half A's).
      full: key -> the candidate's measurement on every image.
      objective: the `DynamicObjective` whose `score` is the search's (cross-fit on A).
      half_b: the indices of half B's images.
      budgets: the grid.
    """
    import numpy as np

    from bench.search_efficiency import held_out_points
    from enas4d_tf.search.predictor import kendall_tau

    rows = []
    for b in budgets:
        on_a, on_b = [], []
        for r in records:
            score = objective.score(r, b)
            if score is None:
                continue
            on_a.append(score[0])
            on_b.append(held_out_points(full[r.key], r.measurement, half_b, [b])[1][1])
        if len(on_a) < MIN_PER_BUDGET:
            continue
        tau = kendall_tau(np.asarray(on_a), np.asarray(on_b))
        if not math.isfinite(tau):
            continue  # every score tied: no ranking to compare (as held_out_taus skips it)
        rows.append(
            {
                "budget": b,
                "candidates": len(on_a),
                "tau_a_b": tau,
                "perfect_predictor_tau": perfect_predictor_tau(tau),
            }
        )
    return rows


def ceiling(rows: list[dict]) -> float:
    """The perfect predictor's tau, weighted over budgets by their candidates."""
    total = sum(r["candidates"] for r in rows)
    if not total:
        return float("nan")
    return sum(r["perfect_predictor_tau"] * r["candidates"] for r in rows) / total


def load(store_folder: str, offset: int, count: int, budget_points: int):
    """`(records on half A, full measurements by key, objective, half B, budgets of a
    `budget_points` grid)` of `count` stored candidates from `offset`.

    Raises:
      Enas4dError: no store there, or fewer candidates than asked for.
    """
    from bench.search_efficiency import SPLIT_SEED, on_half
    from enas4d_tf.errors import WorkdirError
    from enas4d_tf.search.measurement import cross_fit_folds
    from enas4d_tf.search.objectives import CostModel, DynamicObjective, pareto_budgets
    from enas4d_tf.search.store import Candidate, SearchStore, read_state
    from enas4d_tf.space import SearchSpace
    from enas4d_tf.workdir import Workdir

    paths = Workdir(store_folder)
    if not os.path.isfile(paths.search_state):
        raise WorkdirError(
            f"{store_folder} holds no measurements ({paths.search_state} is missing)"
        )
    # Upgraded as the store reads it: with these settings the store never moves it aside.
    state = read_state(paths.search_state)
    settings = state.get("settings")
    try:
        space = SearchSpace.from_dict(settings["space"])
        num_images = int(settings["num_val_images"])
        num_classes = int(settings.get("num_classes", space.default_num_classes))
    except (KeyError, TypeError, ValueError) as e:
        raise WorkdirError(
            f"{paths.search_state}: its settings lack a valid space, num_val_images or "
            f"num_classes ({type(e).__name__}: {e})"
        ) from None
    store = SearchStore(paths, settings, space, log=lambda m: None)
    keys = list(state.get("candidates") or {})[offset : offset + count]
    if len(keys) < count:
        raise WorkdirError(
            f"{store_folder} holds {len(state.get('candidates') or {})} candidates: "
            f"fewer than --offset {offset} plus --candidates {count}"
        )
    costs = CostModel(space, num_classes)
    half_a, half_b = cross_fit_folds(num_images, SPLIT_SEED)
    records, full = [], {}
    for key in keys:
        candidate = store.get(key)
        if candidate is None:
            raise WorkdirError(f"candidate {key}: its predictions file is missing or unreadable")
        full[key] = candidate.measurement
        records.append(Candidate(key, on_half(candidate.measurement, half_a)))
    objective = DynamicObjective(space, costs, seed=0)
    return records, full, objective, half_b, pareto_budgets(costs, budget_points)


def markdown(rows: list[dict], offset: int, count: int) -> str:
    lines = [
        f"Candidates {offset}..{offset + count - 1} of the store; half A against half B.",
        "",
        "| budget | candidates | tau(A, B) | perfect predictor's tau on A |",
        "|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['budget']:.3g} | {r['candidates']} | {r['tau_a_b']:.3f} "
            f"| {r['perfect_predictor_tau']:.3f} |"
        )
    lines += ["", f"Ceiling of the held-out tau (weighted by candidates): {ceiling(rows):.3f}"]
    return "\n".join(lines)


def main(argv) -> None:
    del argv
    if not FLAGS.store:
        fail(
            "predictor_ceiling", "--store is required: bench.search_efficiency's measured/", code=2
        )
    from enas4d_tf.errors import Enas4dError

    try:
        records, full, objective, half_b, budgets = load(
            FLAGS.store, FLAGS.offset, FLAGS.candidates, FLAGS.budget_points
        )
        rows = half_taus(records, full, objective, half_b, budgets)
    except Enas4dError as e:
        fail("predictor_ceiling", str(e))
    print(markdown(rows, FLAGS.offset, FLAGS.candidates))


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=flags_parser("predictor_ceiling"))
