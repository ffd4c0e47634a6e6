"""The report of the benchmark of record (`bench/claim.py`): fronts, ratios, verdicts, files.

Pure functions (no TensorFlow) over test-split measurements that stage 7 made. A point is a
dict `{"name", "group", "view", "accuracy", "avg_macs", "latency_ms"}`:

- group: "dynamic" (the search's chosen dynamic networks, cut out of the supernet),
  "supernet_static" (the static front over every exit, cut out), "scratch_static" (static
  networks trained from scratch), "early_exit" (the early-exit baseline's front points),
  "alone" (a chosen dynamic architecture trained alone), "finetuned" (a cut-out fine-tuned);
- view: "one" (trained for the supernet's whole wall time T: one deployment), "many" (for
  T / k: many deployments), or None (no training of its own);
- latency_ms: the LiteRT cascade's average latency per image on 1 thread; None for a Keras-only
  variant.

The rules, as the report states them:

- A front's cost for accuracy `a` is the cheapest of its points with test accuracy `>= a`
  (`cost_needed`); the best baseline of a view is the Pareto front of all the baselines of that
  view (static networks trained from scratch and the early-exit baseline).
- Three accuracy levels both fronts reach (`accuracy_levels`): the highest, `hi` = the smaller
  of the two fronts' best accuracies; the lowest, `lo` = the larger of their cheapest points'
  accuracies (below it a front's cost is just its cheapest point's); and their midpoint.
- The goal (`goal`): the dynamic front reaches the best baseline's test accuracy (its most
  accurate point) at <= 0.5x its average MACs and <= 0.6x its measured latency.
"""

from __future__ import annotations

from collections.abc import Sequence

from enas4d_tf.exit_policy import pareto_front

MACS_GOAL = 0.5
LATENCY_GOAL = 0.6
VIEWS = {"one": "one deployment (T)", "many": "many deployments (T / k)"}
BASELINE_GROUPS = ("scratch_static", "early_exit")


def front(points: Sequence[dict], cost: str) -> list[dict]:
    """The Pareto-optimal points on (`cost`, accuracy), cheapest first; points without a
    `cost` value are left out."""
    usable = [p for p in points if p.get(cost) is not None]
    return [usable[i] for i in pareto_front([(p[cost], p["accuracy"]) for p in usable])]


def cost_needed(points: Sequence[dict], accuracy: float, cost: str) -> dict | None:
    """The cheapest point (by `cost`) whose accuracy is at least `accuracy`; None if none is."""
    reaching = [p for p in points if p.get(cost) is not None and p["accuracy"] >= accuracy]
    return min(reaching, key=lambda p: p[cost]) if reaching else None


def accuracy_levels(dynamic: Sequence[dict], baseline: Sequence[dict]) -> list[float]:
    """Three accuracy levels both fronts reach: `[lo, (lo + hi) / 2, hi]` (module docstring);
    `[hi]` when `lo >= hi`; `[]` when a front is empty."""
    if not dynamic or not baseline:
        return []
    hi = min(max(p["accuracy"] for p in dynamic), max(p["accuracy"] for p in baseline))
    lo = max(_cheapest(dynamic)["accuracy"], _cheapest(baseline)["accuracy"])
    if lo >= hi:
        return [hi]
    return [lo, (lo + hi) / 2.0, hi]


def _cheapest(points: Sequence[dict]) -> dict:
    return min(points, key=lambda p: (p["avg_macs"], -p["accuracy"]))


def ratio_rows(dynamic: Sequence[dict], baseline: Sequence[dict], cost: str) -> list[dict]:
    """At each accuracy level: the cost each front needs and their ratio (dynamic / baseline).

    The levels come from the fronts on `cost` (`accuracy_levels`)."""
    dyn, base = front(dynamic, cost), front(baseline, cost)
    rows = []
    for level in accuracy_levels(dyn, base):
        d, b = cost_needed(dyn, level, cost), cost_needed(base, level, cost)
        rows.append(
            {
                "accuracy": level,
                "dynamic": d["name"],
                "dynamic_cost": d[cost],
                "baseline": b["name"],
                "baseline_cost": b[cost],
                "ratio": d[cost] / b[cost] if b[cost] > 0 else None,
            }
        )
    return rows


def goal(dynamic: Sequence[dict], baseline: Sequence[dict], cost: str, limit: float) -> dict:
    """Whether the dynamic front reaches the best baseline's accuracy at `<= limit` x its cost.

    Returns:
      `{"met", "target_accuracy", "baseline", "baseline_cost", "dynamic", "dynamic_cost",
      "ratio", "limit", "why"}` (`dynamic*`/`ratio` None when the dynamic front does not reach
      the target accuracy; everything None but `met`/`why` without both fronts).
    """
    dyn, base = front(dynamic, cost), front(baseline, cost)
    out = dict.fromkeys(
        ("target_accuracy", "baseline", "baseline_cost", "dynamic", "dynamic_cost", "ratio")
    )
    out.update(met=False, limit=limit)
    if not dyn or not base:
        out["why"] = "no points to compare"
        return out
    best = max(base, key=lambda p: (p["accuracy"], -p[cost]))
    out.update(target_accuracy=best["accuracy"], baseline=best["name"], baseline_cost=best[cost])
    reached = cost_needed(dyn, best["accuracy"], cost)
    if reached is None:
        top = max(p["accuracy"] for p in dyn)
        out["why"] = (
            f"the dynamic front does not reach the best baseline's accuracy "
            f"({100 * top:.2f}% < {100 * best['accuracy']:.2f}%)"
        )
        return out
    ratio = reached[cost] / best[cost] if best[cost] > 0 else float("inf")
    out.update(dynamic=reached["name"], dynamic_cost=reached[cost], ratio=ratio)
    out["met"] = ratio <= limit
    out["why"] = f"{ratio:.3f}x {'<=' if out['met'] else '>'} {limit}x"
    return out


def comparisons(points: dict, quantizations: Sequence[str]) -> dict:
    """For each view and for the supernet's own static front: MACs ratios (float32
    accuracies), latency ratios per quantisation, and the goal in MACs and in latency.

    Args:
      points: `{quantization: [points]}`; "float32" must be there.
      quantizations: the quantisations measured.
    """
    out = {}
    against = {view: _baselines(points, view) for view in VIEWS}
    against["supernet_static"] = lambda q: [p for p in points[q] if p["group"] == "supernet_static"]
    for name, select in against.items():
        dyn = [p for p in points["float32"] if p["group"] == "dynamic"]
        base = select("float32")
        entry = {
            "macs": ratio_rows(dyn, base, "avg_macs"),
            "goal_macs": goal(dyn, base, "avg_macs", MACS_GOAL),
            "latency": {},
            "goal_latency": {},
        }
        for q in quantizations:
            dyn_q = [p for p in points[q] if p["group"] == "dynamic"]
            entry["latency"][q] = ratio_rows(dyn_q, select(q), "latency_ms")
            entry["goal_latency"][q] = goal(dyn_q, select(q), "latency_ms", LATENCY_GOAL)
        out[name] = entry
    return out


def before_after(points: Sequence[dict], before_workdir: str) -> dict | None:
    """The MACs goal (float32) of the dynamic front and of the earlier recipe's dynamic front
    (group "before"), against the same baselines in each view; None without a before run.

    Returns:
      `{"workdir", "views": {view: {"after": goal, "before": goal}}}` (`goal` as `goal()`).
    """
    if not before_workdir:
        return None
    after = [p for p in points if p["group"] == "dynamic"]
    before = [p for p in points if p["group"] == "before"]
    views = {}
    for view in VIEWS:
        base = _baselines({"float32": list(points)}, view)("float32")
        views[view] = {
            "after": goal(after, base, "avg_macs", MACS_GOAL),
            "before": goal(before, base, "avg_macs", MACS_GOAL),
        }
    return {"workdir": before_workdir, "views": views}


def _baselines(points: dict, view: str):
    return lambda q: [p for p in points[q] if p["group"] in BASELINE_GROUPS and p["view"] == view]


def goal_met(entry: dict) -> bool:
    """The goal of one comparison: MACs and float32 latency both within their limits."""
    latency = entry["goal_latency"].get("float32", {"met": False})
    return bool(entry["goal_macs"]["met"] and latency["met"])
