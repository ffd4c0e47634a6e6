"""Search efficiency: what each search finds for the same number of measured candidates.

Run from the repository root (validation split only; the test split is never read):

  python -m bench.search_efficiency --workdir=runs/bench --measurements=200 --out=runs/eff
  python -m bench.search_efficiency --workdir=/tmp/tiny --smoke --out=/tmp/eff  # minutes
  python -m bench.search_efficiency --reread=R/search_efficiency.json --store=runs/eff --out=R

Three strategies, each allowed exactly `--measurements` measured candidates (the new search
`--new_measurements`, when given, to screen a variant of it against random and old searches
already in the store), each seeded by `--seeds`; `--strategies=random,new` leaves the old
search out:

* random: architectures drawn uniformly among those meeting each budget's constraint (the
  budgets in turn);
* old: the search before issue 18 (`--inner_generations=0 --predictor=mlp
  --min_predictor_tau=-1`: children of the best measured, ranked by the MLP);
* new: the search with its defaults (held-out-checked predictor: MLP, ridge or the MLP on
  the architecture's summary; the floor; an inner evolution on predicted scores whose top k
  are measured), or the variant that `--predictor`, `--inner_generations`,
  `--min_predictor_tau` and `--inner_min_predictor_tau` make.

The validation images are split in two halves once (fixed): the searches see half A only
(they rank candidates there, by their own cross-fit inside A); every measured candidate is
then scored on half B, which no search saw. For each candidate and each budget of a
geometric grid spanning the space (`--score_points`, the same for every strategy),
thresholds are fitted on A and applied to B; with its no-early-exit point, that gives the
held-out (average cost, accuracy) points.

Which points make a strategy's front after `n` measurements is decided on half A, as a
search decides: the Pareto front of its first `n` candidates' points as half A estimates them
(each budget's (average cost, accuracy) by the 2-fold cross-fit inside A with the search
seed's halves, the search's own ranking score; the no-early-exit point by its last exit's
accuracy on A). The front is then scored by those points' half-B values. Choosing the
front on B instead (the Pareto front of the B points, this benchmark's reading until
2026-12-06, still reported beside it) selects on the scoring images: the front becomes the
maximum of many noisy held-out accuracies, so a strategy gains hypervolume from the number
of candidates near the front, not from better ones, and random sampling's 200 gain most.

Hypervolume of a front: the area it dominates in (u, accuracy), u = log(C_max / cost) /
log(C_max / C_min) clipped to [0, 1], where C_min is the smallest network's first-exit cost
and C_max the largest network's full cost; the reference point is (cost C_max, accuracy 0).
A log scale, because dynamic networks span orders of magnitude of cost.

`--cost=latency --latency_table=T` does the same in the table's milliseconds.

Scoring noise (`--bootstrap=R`, default 200): every accuracy on half B is off by about
sqrt(p(1-p)/n) (0.65 points for 88% on 2,500 images), and the strategies' fronts differ by
about that much. So half B's images are resampled with replacement R times and every final
front (the points chosen on A), and the new search's front at the goal's count, scored
again; the report gives their 5th-95th percentiles and how often the new search reaches
random's front. A verdict that flips between resamples is not one the benchmark can make on
these images.

Where the hypervolume lies: the u axis starts at C_min, but the lowest budget any strategy
searches or is scored at is the grid's first (`pareto_budgets`: the geometric mean of the
smallest network's first-exit and full costs, 2.2x C_min on fashion_mnist). The report splits
each final front's hypervolume there (`hypervolume_parts`): the area under the lowest
budget, reached only by fits that came in under it, and the area over the budgets' range.

`--reread=REPORT --store=S --out=O` makes an earlier report's readings again from the
measurements in S/measured/ (its `orders`, nothing measured, no supernet loaded, seconds to
minutes), with what this version reports; the readings it shares with the report are
reproduced exactly.

Goal (issue 18): the new search reaches the hypervolume random sampling has after N = 200
measurements in at most N / 4 = 50. Written to <out>/search_efficiency.json and .md.
The real run needs the benchmark supernet (~10 s per candidate measured on 2 cores, up to
3N candidates). Every measurement is kept in <out>/measured/ as it is made: the same command
run again resumes (the strategies replay over what was measured and go on).
"""

from __future__ import annotations

import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from enas4d_tf.search.evolution import EvolutionConfig  # noqa: E402  (no TensorFlow)
from enas4d_tf.search.selection import PREDICTOR_KINDS  # noqa: E402
from tools._cli import fail, flags_parser  # noqa: E402

# The new search's predictor settings when the flags do not say (tools.search's defaults).
EVOLUTION_DEFAULTS = {
    name: getattr(EvolutionConfig(), name)
    for name in ("min_predictor_tau", "inner_min_predictor_tau", "predictor")
}


def define_flags() -> None:
    """Defines the program's flags: called when it runs, not on import, so tests can import
    it beside other programs that define flags of the same names."""
    flags.DEFINE_string("workdir", None, "The training workdir whose supernet is searched.")
    flags.DEFINE_string("out", None, "Output folder (default <workdir>/search_efficiency).")
    flags.DEFINE_integer("measurements", 200, "Candidates each strategy measures.", lower_bound=4)
    flags.DEFINE_integer("step", 10, "Hypervolume every this many measurements.", lower_bound=1)
    flags.DEFINE_integer("population", 20, "Candidates per generation (old, new).", lower_bound=2)
    flags.DEFINE_integer("budget_points", 4, "Budgets the searches search (a grid).", lower_bound=2)
    flags.DEFINE_integer("score_points", 8, "Budgets fronts are scored at.", lower_bound=2)
    flags.DEFINE_list("seeds", ["0"], "Search seeds; curves are averaged over them.")
    flags.DEFINE_list(
        "strategies",
        list(STRATEGIES),
        "The strategies measured: random and new always, old (the search before issue 18) "
        "unless left out, e.g. to screen a change of the new search when the old one's "
        "candidates are not in the store (its report from another run stands beside it).",
    )
    flags.DEFINE_integer(
        "num_val_images", 5000, "Validation images (split in halves).", lower_bound=4
    )
    flags.DEFINE_integer("num_calibration_images", 2000, "BN recalibration images.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 500, "Images per forward pass.", lower_bound=1)
    flags.DEFINE_integer(
        "inner_population", 100, "The new search's inner population.", lower_bound=2
    )
    flags.DEFINE_integer(
        "inner_generations", 50, "The new search's inner generations.", lower_bound=1
    )
    flags.DEFINE_float(
        "min_predictor_tau",
        EVOLUTION_DEFAULTS["min_predictor_tau"],
        "The new search's predictor floor (tools.search --min_predictor_tau).",
        lower_bound=-1.0,
        upper_bound=1.0,
    )
    flags.DEFINE_float(
        "inner_min_predictor_tau",
        EVOLUTION_DEFAULTS["inner_min_predictor_tau"],
        "The held-out tau the new search's predictor needs before its inner evolution runs "
        "(tools.search --inner_min_predictor_tau).",
        lower_bound=-1.0,
        upper_bound=1.0,
    )
    flags.DEFINE_enum(
        "predictor",
        EVOLUTION_DEFAULTS["predictor"],
        list(PREDICTOR_KINDS),
        "The new search's accuracy predictors (tools.search --predictor).",
    )
    flags.DEFINE_integer(
        "new_measurements",
        0,
        "Candidates the new search measures (0: --measurements). Fewer, but at least "
        "--measurements / 4, to screen a variant against random and old searches already "
        "measured: the goal needs the new search's curve only up to a quarter.",
        lower_bound=0,
    )
    flags.DEFINE_integer(
        "bootstrap",
        200,
        "Resamples of the scoring half's images that measure the scoring noise (0: none).",
        lower_bound=0,
    )
    flags.DEFINE_string("data_dir", None, "Where the dataset is, if not where the run config says.")
    flags.DEFINE_enum("cost", "macs", ["macs", "latency"], "Costs: MACs or a latency table's ms.")
    flags.DEFINE_string("latency_table", None, "The latency table, with --cost=latency.")
    flags.DEFINE_bool("smoke", False, "A tiny run (12 measurements, small images counts): checks.")
    flags.DEFINE_string(
        "reread",
        None,
        "An earlier report (search_efficiency.json) to read again from its measurements in "
        "<--store>/measured/, with what this version reports: no supernet, no search, nothing "
        "measured. The report goes to --out.",
    )
    flags.DEFINE_string(
        "store", None, "With --reread: the --out of the run that measured (default --out)."
    )


FLAGS = flags.FLAGS
STRATEGIES = ("random", "old", "new")
# How a strategy's front is chosen among its candidates' points: on half A, as the search
# would (the goal's reading), or on half B, the scoring half (the reading until 2026-12-06).
CHOSEN_ON = ("search half", "scoring half")
GOAL_FRACTION = 0.25
# Fixes the halves A (search) and B (score) of the validation images for every strategy.
SPLIT_SEED = 20261130
# `<out>/measured/`: every candidate measured, reused by the next run (a resumed run).
MEASURED_FOLDER = "measured"


class _Enough(Exception):
    """Raised by a strategy's measure function once it has its measurements."""


def hypervolume(points, c_min: float, c_max: float) -> float:
    """The area `(cost, accuracy)` points dominate in (u, accuracy), u = log(c_max / cost) /
    log(c_max / c_min) clipped to [0, 1], above accuracy 0 (the module docstring)."""
    scale = math.log(c_max / c_min)
    us = sorted(
        ((min(1.0, max(0.0, math.log(c_max / c) / scale)), a) for c, a in points if c > 0),
        reverse=True,
    )
    area, best = 0.0, 0.0
    for i, (u, a) in enumerate(us):
        best = max(best, a)
        nxt = us[i + 1][0] if i + 1 < len(us) else 0.0
        area += (u - nxt) * best
    return area


def hypervolume_parts(points, c_min: float, c_max: float, c_floor: float) -> tuple:
    """`hypervolume(points, c_min, c_max)` as `(below, in_range)`: the area at costs under
    `c_floor` (the lowest budget: no strategy is asked for a point there, so what lands there
    is a fit that came in under its budget) and the area from `c_floor` to `c_max`. A point
    cheaper than `c_floor` counts in the range as if it cost `c_floor`: it dominates the
    whole range."""
    clipped = [(max(c, c_floor), a) for c, a in points if c > 0]
    in_range = hypervolume(clipped, c_min, c_max)
    # A difference of sums: without anything under the floor it is 0 up to rounding.
    return max(0.0, hypervolume(points, c_min, c_max) - in_range), in_range


def held_out_images(full, half_a, half_b, budgets) -> tuple:
    """Per image of half B, `(cost, correct)`, each `(P, len(half_b))`, of one candidate's
    P held-out points: the no-early-exit point, then each budget whose thresholds fitted on
    half A (`half_a.fit`) exist. Their row means are the points (`held_out_points`)."""
    import numpy as np

    from enas4d_tf.exit_policy import exit_indices

    c = np.asarray(half_a.costs, np.float64)
    conf, correct = full.split.confidence[:, half_b], full.split.correct[:, half_b]
    n = conf.shape[1]
    exits = [np.full(n, len(c) - 1, np.int64)]
    for b in budgets:
        fit = half_a.fit(b)
        if fit is not None:
            exits.append(exit_indices(conf, fit.thresholds))
    exits = np.stack(exits)
    return c[exits], np.asarray(correct, bool)[exits, np.arange(n)]


def on_half(full, half, costs=None):
    """The `Measurement` of `full`'s candidate on the images `half` alone (its costs in the
    cost model's unit with `costs`, else its MACs)."""
    from enas4d_tf.exit_policy import ValidationSplit
    from enas4d_tf.search.measurement import Measurement

    s = full.split
    part = ValidationSplit.from_confidences(s.confidence[:, half], s.correct[:, half])
    return Measurement(full.arch, full.stage_macs, part, 0.0, costs)


def search_half_points(half_a, budgets, seed: int) -> list:
    """`(average cost, accuracy)` of one candidate's points as half A estimates them, in
    `held_out_images`' order: the no-early-exit point (its last exit's accuracy on A), then
    each budget whose thresholds fit on A, by the 2-fold cross-fit inside A with the halves
    of the search `seed` (the strategy's own ranking score, `DynamicObjective(seed=seed)`)."""
    points = [(float(half_a.costs[-1]), float(half_a.exit_accuracy[-1]))]
    for b in budgets:
        if half_a.fit(b) is not None:
            result = half_a.cross_fit(b, seed)
            points.append((float(result.avg_macs), float(result.accuracy)))
    return points


def chosen_rows(search_points: list, scored_points: list, chosen_on: str) -> list:
    """Indices of the points that make a front: the Pareto front of `search_points` (half
    A's estimates) or of `scored_points` (half B's), the two lists aligned."""
    from enas4d_tf.exit_policy import pareto_front

    if chosen_on == CHOSEN_ON[0]:
        return pareto_front(search_points)
    if chosen_on == CHOSEN_ON[1]:
        return pareto_front(scored_points)
    raise ValueError(f"chosen_on must be one of {CHOSEN_ON}, got {chosen_on!r}")


def held_out_points(full, half_a, half_b, budgets) -> list:
    """`(average cost, accuracy)` on half B of one candidate: thresholds fitted on half A for
    each budget (`half_a.fit`), and the no-early-exit point."""
    cost, correct = held_out_images(full, half_a, half_b, budgets)
    return [(float(c), float(a)) for c, a in zip(cost.mean(1), correct.mean(1), strict=True)]


class Bench:
    """Measures candidates once (all validation images) and serves each strategy half A.

    With a `store` (`enas4d_tf.search.store.SearchStore`), every measurement is saved as it is
    made and one saved by an earlier run is loaded instead of measured again: a run stopped
    part way resumes, replaying the strategies over what it had measured.
    """

    def __init__(self, evaluator, costs, space, store=None):
        from enas4d_tf.search.measurement import cross_fit_folds

        self.evaluator, self.costs, self.space, self.store = evaluator, costs, space, store
        self.half_a, self.half_b = cross_fit_folds(evaluator.num_val_images, SPLIT_SEED)
        self.full, self.on_a, self.points, self.images = {}, {}, {}, {}
        self.search_points = {}
        self.measured_this_run = 0

    def candidate(self, arch):
        """The search's record of `arch` on half A (measured on first use)."""
        from enas4d_tf.search.store import Candidate
        from enas4d_tf.space import arch_key

        key = arch_key(self.space, arch)
        if key not in self.full:
            saved = self.store.get(key) if self.store is not None else None
            if saved is not None:
                m = saved.measurement
            else:
                m = self.evaluator.measure(arch)
                self.measured_this_run += 1
                if self.store is not None:
                    self.store.add(Candidate(key, m))
            self.full[key] = m
            latency = self.costs.kind == "latency"
            costs = self.costs(arch) if latency else None
            self.on_a[key] = Candidate(key, on_half(m, self.half_a, costs))
        return self.on_a[key]

    def scored(self, key, budgets) -> list:
        self.scored_images(key, budgets)
        return self.points[key]

    def estimated(self, key, budgets, seed: int) -> list:
        """`search_half_points` of a measured candidate for search `seed`, aligned with
        `scored`."""
        if (key, seed) not in self.search_points:
            points = search_half_points(self.on_a[key].measurement, budgets, seed)
            if len(points) != len(self.scored(key, budgets)):
                raise AssertionError(f"candidate {key}: half A and B points are not aligned")
            self.search_points[(key, seed)] = points
        return self.search_points[(key, seed)]

    def scored_images(self, key, budgets) -> tuple:
        """`held_out_images` of a measured candidate (kept: the bootstrap reads them)."""
        if key not in self.images:
            cost, correct = held_out_images(
                self.full[key], self.on_a[key].measurement, self.half_b, budgets
            )
            self.images[key] = (cost.astype("float32"), correct)
            self.points[key] = [
                (float(c), float(a)) for c, a in zip(cost.mean(1), correct.mean(1), strict=True)
            ]
        return self.images[key]


def settings_strategies(settings: dict) -> tuple:
    """The strategies a run measures, in `STRATEGIES` order (all three unless
    `--strategies` leaves the old search out)."""
    wanted = settings.get("strategies") or STRATEGIES
    return tuple(name for name in STRATEGIES if name in wanted)


def strategy_limits(settings: dict) -> dict:
    """Candidates each strategy measures: `measurements`, the new search's
    `new_measurements` when set."""
    limits = {name: settings["measurements"] for name in settings_strategies(settings)}
    limits["new"] = settings.get("new_measurements") or settings["measurements"]
    return limits


def run_strategy(name, bench, objective, budgets, settings, seed, generations=None) -> list:
    """The keys `name` measured, in order, `settings["measurements"]` of them. With a list
    `generations`, each finished generation's predictor record (`predictor_row`) is added to
    it."""
    import numpy as np

    from enas4d_tf.search.evolution import EvolutionConfig, evolve
    from enas4d_tf.space.ops import sample_within

    limit, order = strategy_limits(settings)[name], []

    def measure(archs):
        out = []
        for arch in archs:
            if len(order) == limit:
                raise _Enough
            out.append(bench.candidate(arch))
            if out[-1].key not in order:
                order.append(out[-1].key)
        return out

    space = bench.space
    if name == "random":
        rng = np.random.default_rng([seed, 1])
        for i in range(limit * 50):
            b = budgets[i % len(budgets)]
            arch = sample_within(space, lambda a, b=b: objective.fits(a, b), rng)
            try:
                measure([arch])
            except _Enough:
                break
        return order
    extra = (
        dict(inner_generations=0, predictor="mlp", min_predictor_tau=-1.0)
        if name == "old"
        else dict(
            inner_population=settings["inner_population"],
            inner_generations=settings["inner_generations"],
            min_predictor_tau=settings.get(
                "min_predictor_tau", EVOLUTION_DEFAULTS["min_predictor_tau"]
            ),
            inner_min_predictor_tau=settings.get(
                "inner_min_predictor_tau", EVOLUTION_DEFAULTS["inner_min_predictor_tau"]
            ),
            predictor=settings.get("predictor", EVOLUTION_DEFAULTS["predictor"]),
        )
    )
    config = EvolutionConfig(
        population=settings["population"], generations=10**6, seed=seed, **extra
    )
    idle = []

    def on_generation(summary: dict) -> None:
        # A crowded space can run out of new children: stop rather than loop.
        idle.append(summary["measured"] == 0)
        if generations is not None:
            generations.append(predictor_row(summary, len(order)))
        if idle[-5:] == [True] * 5:
            raise _Enough

    try:
        evolve(space, objective, budgets, config, measure, on_generation=on_generation)
    except _Enough:
        pass
    return order


def predictor_row(summary: dict, measured: int) -> dict:
    """One generation's predictor, from its `GenerationLog.summary()`: the rows it was fitted
    on, its held-out Kendall tau (cross-validated over the measured candidates), whether it
    ranked, and the prospective tau (its predictions of the children it chose against their
    measured scores); `measured` is the strategy's count after the generation."""
    predictor = summary.get("predictor") or {}
    return {
        "generation": summary["generation"],
        "measured": measured,
        "rows": predictor.get("rows"),
        "model": predictor.get("model"),
        "held_out_tau": predictor.get("held_out_tau"),
        "used": predictor.get("used"),
        "prospective_tau": summary.get("prospective_tau"),
    }


def curves(
    bench, orders, score_budgets, step, chosen_on: str = CHOSEN_ON[0], seed: int = 0
) -> dict:
    """`{strategy: [(n, hypervolume on half B of its first n candidates' front)]}`, the
    front's points chosen on `chosen_on` (`CHOSEN_ON`; on the search half, by the cross-fit
    of search `seed`)."""
    c_min, c_max = float(bench.costs.smallest[0]), float(bench.costs.largest[-1])
    out = {}
    for name, order in orders.items():
        counts = [n for n in range(1, len(order) + 1) if n % step == 0 or n == len(order)]
        out[name] = []
        for n in counts:
            front = front_at(bench, order, n, score_budgets, seed, chosen_on)
            out[name].append((n, hypervolume(front, c_min, c_max)))
    return out


def hypervolume_batch(cost, accuracy, c_min: float, c_max: float):
    """`hypervolume` of many point sets at once: `cost` and `accuracy` are `(R, P)`, one
    set of P points per row; returns `(R,)`."""
    import numpy as np

    scale = math.log(c_max / c_min)
    u = np.clip(np.log(c_max / np.maximum(cost, 1e-300)) / scale, 0.0, 1.0)
    u = np.where(cost > 0, u, 0.0)
    order = np.argsort(-u, axis=1, kind="stable")
    u = np.take_along_axis(u, order, 1)
    best = np.maximum.accumulate(np.take_along_axis(accuracy, order, 1), axis=1)
    nxt = np.concatenate([u[:, 1:], np.zeros((u.shape[0], 1))], axis=1)
    return ((u - nxt) * best).sum(1)


def bootstrap(
    bench,
    per_seed_orders,
    score_budgets,
    measurements,
    resamples,
    seed=0,
    chosen_on: str = CHOSEN_ON[0],
    search_seeds=None,
    limits=None,
) -> dict:
    """How much of the verdict the choice of scoring images decides: half B's images are
    resampled with replacement `resamples` times; each time every strategy's front after all
    its measurements, and the new search's after `GOAL_FRACTION` of them, are scored again
    (mean over the search seeds, which share the images). A front chosen on the search half
    keeps its points in every resample (chosen by the cross-fit of each order's search seed:
    `search_seeds`, aligned with `per_seed_orders`; all 0 when None); one chosen on the
    scoring half is chosen again in each. `seed` seeds the resampling. `limits`: each
    strategy's count of measurements (`strategy_limits`; default `measurements` for all).
    Returns 5/50/95th percentiles of each, and of the goal's margin (new at the allowed count
    minus random at the end)."""
    import numpy as np

    c_min, c_max = float(bench.costs.smallest[0]), float(bench.costs.largest[-1])
    allowed = int(measurements * GOAL_FRACTION)
    limits = limits or {name: measurements for name in per_seed_orders[0]}
    cuts = front_cuts(limits, allowed, ("new",))
    stacked = {label: [] for label in cuts}
    if search_seeds is None:
        search_seeds = [0] * len(per_seed_orders)
    for orders, search_seed in zip(per_seed_orders, search_seeds, strict=True):
        for label, (name, n) in cuts.items():
            keys = orders[name][:n]
            rows = [bench.scored_images(k, score_budgets) for k in keys]
            cost = np.concatenate([r[0] for r in rows]).astype(np.float64)
            correct = np.concatenate([r[1] for r in rows]).astype(np.float64)
            if chosen_on == CHOSEN_ON[0]:
                estimated = [
                    p for k in keys for p in bench.estimated(k, score_budgets, search_seed)
                ]
                chosen = chosen_rows(estimated, None, chosen_on)
                cost, correct = cost[chosen], correct[chosen]
            stacked[label].append((cost, correct))
    n_images = len(bench.half_b)
    rng = np.random.default_rng(seed)
    hv = {label: np.zeros(resamples) for label in cuts}
    for r in range(resamples):
        # A resample as weights: how often each image was drawn, over the image count.
        w = np.bincount(rng.integers(n_images, size=n_images), minlength=n_images) / n_images
        for label, per in stacked.items():
            values = [
                hypervolume_batch((cost @ w)[None], (correct @ w)[None], c_min, c_max)[0]
                for cost, correct in per
            ]
            hv[label][r] = float(np.mean(values))

    def pct(x):
        p05, p50, p95 = (float(v) for v in np.percentile(x, [5, 50, 95]))
        return {"p05": p05, "p50": p50, "p95": p95}

    margin = hv[f"new@{allowed}"] - hv[f"random@{measurements}"]
    return {
        "resamples": resamples,
        "hypervolume": {label: pct(v) for label, v in hv.items()},
        "goal_margin": pct(margin),
        # Equal fronts summed in another order differ by rounding: that is reaching it.
        "goal_met_share": float((margin >= -1e-12).mean()),
    }


def goal(mean_curves: dict, measurements: int) -> dict:
    """When the new search's mean hypervolume first reaches random's after all
    measurements; met when that is within `GOAL_FRACTION` of them."""
    target = mean_curves["random"][-1][1]
    reached = next((n for n, hv in mean_curves["new"] if hv >= target), None)
    allowed = int(measurements * GOAL_FRACTION)
    return {
        "random_hypervolume": target,
        "new_reaches_it_after": reached,
        "allowed": allowed,
        "met": reached is not None and reached <= allowed,
    }


def front_cuts(limits: dict, allowed: int, early: tuple) -> dict:
    """`{label: (strategy, count)}` of the fronts a reading compares: each strategy after
    all its measurements (`limits`), and the `early` ones after the goal's `allowed`."""
    cuts = {f"{name}@{limits[name]}": (name, limits[name]) for name in limits}
    cuts.update({f"{name}@{allowed}": (name, allowed) for name in early})
    return cuts


def front_at(bench, order, n: int, score_budgets, seed: int, chosen_on: str = CHOSEN_ON[0]) -> list:
    """The front of a strategy's first `n` candidates of `order`, scored on half B: chosen
    on `chosen_on` (`CHOSEN_ON`; on the search half, by search `seed`'s cross-fit, as a
    search returns it)."""
    estimated, scored = [], []
    for key in order[:n]:
        scored.extend(bench.scored(key, score_budgets))
        estimated.extend(bench.estimated(key, score_budgets, seed))
    return [scored[i] for i in chosen_rows(estimated, scored, chosen_on)]


def parts(bench, all_orders, score_budgets, settings) -> dict:
    """Where each final front's hypervolume (the goal's reading) lies: under the lowest
    scoring budget, or in the budgets' range (`hypervolume_parts`), per seed and their mean,
    for every strategy after all its measurements, random and the new search after the
    goal's count."""
    c_min, c_max = float(bench.costs.smallest[0]), float(bench.costs.largest[-1])
    floor = float(min(score_budgets))
    allowed = int(settings["measurements"] * GOAL_FRACTION)
    cuts = front_cuts(strategy_limits(settings), allowed, ("random", "new"))
    per_seed, counts = [], []
    for orders, seed in zip(all_orders, settings["seeds"], strict=True):
        row, count = {}, {}
        for label, (name, n) in cuts.items():
            front = front_at(bench, orders[name], n, score_budgets, seed)
            row[label] = list(hypervolume_parts(front, c_min, c_max, floor))
            # A strategy that stopped early (a crowded space) has fewer than its label says.
            count[label] = min(n, len(orders[name]))
        per_seed.append(row)
        counts.append(count)
    mean = {
        label: [sum(r[label][i] for r in per_seed) / len(per_seed) for i in (0, 1)]
        for label in cuts
    }
    return {"floor": floor, "per_seed": per_seed, "mean": mean, "counts": counts}


SMOKE = dict(
    measurements=12,
    step=4,
    population=4,
    budget_points=2,
    score_points=3,
    num_val_images=200,
    num_calibration_images=100,
    batch_size=100,
    inner_population=10,
    inner_generations=3,
    bootstrap=20,
)


def parse_seeds(values) -> list[int]:
    """`--seeds` as distinct integers >= 0 (numpy's generators refuse negative seeds).

    Raises:
      ValueError: an empty list, or a value that is not such an integer (one line naming it).
    """
    seeds = []
    for v in values:
        try:
            seed = int(v)
        except ValueError:
            raise ValueError(f"--seeds: {v!r} is not an integer") from None
        if seed < 0 or seed in seeds:
            raise ValueError(f"--seeds: {seed} is {'negative' if seed < 0 else 'given twice'}")
        seeds.append(seed)
    if not seeds:
        raise ValueError("--seeds is empty: give at least one, e.g. --seeds=0,1,2")
    return seeds


def parse_strategies(values) -> list[str]:
    """`--strategies` as names of `STRATEGIES`, random and new always among them (the goal
    compares them).

    Raises:
      ValueError: an unknown name, or random or new left out (one line naming it).
    """
    names = [v.strip() for v in values if v.strip()]
    for name in names:
        if name not in STRATEGIES:
            raise ValueError(f"--strategies: {name!r} is not one of {', '.join(STRATEGIES)}")
    for name in ("random", "new"):
        if name not in names:
            raise ValueError(f"--strategies must include {name}: the goal compares random and new")
    return [name for name in STRATEGIES if name in names]


def settings_from_flags() -> dict:
    """The run's settings from the flags.

    Raises:
      ValueError: bad `--seeds`.
    """
    names = (
        "measurements step population budget_points score_points num_val_images "
        "num_calibration_images batch_size inner_population inner_generations bootstrap "
        "min_predictor_tau inner_min_predictor_tau predictor new_measurements"
    ).split()
    settings = {n: FLAGS[n].value for n in names}
    if FLAGS.smoke:
        settings.update(SMOKE)
    allowed = int(settings["measurements"] * GOAL_FRACTION)
    if settings["new_measurements"] and not (
        allowed <= settings["new_measurements"] <= settings["measurements"]
    ):
        raise ValueError(
            f"--new_measurements={settings['new_measurements']} must be 0 or between "
            f"--measurements / 4 ({allowed}) and --measurements ({settings['measurements']})"
        )
    settings["seeds"] = parse_seeds(FLAGS.seeds)
    settings["strategies"] = parse_strategies(FLAGS.strategies)
    settings["cost"] = FLAGS.cost
    settings["latency_table"] = FLAGS.latency_table or ""
    return settings


def search_config(settings: dict):
    """The `SearchConfig` every strategy's costs and data come from, validated (a latency
    cost without a table, ...: one line)."""
    from enas4d_tf.search.config import SearchConfig

    config = SearchConfig(
        pareto=True,
        cost=settings["cost"],
        latency_table=settings["latency_table"],
        num_val_images=settings["num_val_images"],
        num_calibration_images=settings["num_calibration_images"],
    )
    config.validate()
    return config


def output_paths(out: str) -> dict:
    """`{"json": path, "md": path}` of the report in `out`, checked writable before any
    work (a bad `--out` is refused in one line, not after an hours-long run).

    Raises:
      Enas4dError: `out` or a report file in it cannot be written.
    """
    from enas4d_tf.files import check_writable_dir, check_writable_file

    check_writable_dir(out, "--out folder")
    paths = {ext: os.path.join(out, f"search_efficiency.{ext}") for ext in ("json", "md")}
    for path in paths.values():
        check_writable_file(path, "report")
    return paths


def mean_curves(per_seed: list) -> dict:
    """The strategies' hypervolume curves averaged over seeds, at the counts all seeds have."""
    out = {}
    for name in per_seed[0]:
        counts = set.intersection(*({n for n, _ in c[name]} for c in per_seed))
        out[name] = [
            (n, sum(dict(c[name])[n] for c in per_seed) / len(per_seed)) for n in sorted(counts)
        ]
    return out


def measurement_store(out: str, workdir: str, dataset: str, data_dir, evaluator, log):
    """The store of this report's measurements: `<out>/measured/search/` (state.json and
    one predictions file per candidate), kept only while the search's `store_settings` are
    the same: the supernet's checkpoint (its name and its index's sha256), the data and the
    image counts (otherwise moved aside, with a log line)."""
    from enas4d_tf.search.run import store_settings
    from enas4d_tf.search.store import SearchStore
    from enas4d_tf.workdir import Workdir

    settings = store_settings(workdir, dataset, data_dir, evaluator)
    paths = Workdir(os.path.join(out, MEASURED_FOLDER))
    store = SearchStore(paths, settings, evaluator.net.space, log)
    if len(store):
        log(f"continuing from {store.path}: {len(store)} candidates measured before")
    return store


def run(workdir: str, settings: dict, out: str | None = None, log=print) -> dict:
    """Measures the strategies (`settings_strategies`) on `workdir` and returns the report;
    with `out`, every measurement is kept in `<out>/measured/` and reused by the next run."""
    from enas4d_tf.evaluation import CandidateEvaluator
    from enas4d_tf.search.objectives import DynamicObjective, make_cost_model, pareto_budgets
    from enas4d_tf.search.run import load_search_data
    from enas4d_tf.workdir import load_supernet

    config = search_config(settings)
    net, run_config = load_supernet(workdir)
    # The latency table is checked before the data are read.
    costs = make_cost_model(net.space, net.num_classes, config)
    data_dir = FLAGS.data_dir or run_config.get("data_dir")
    dataset = run_config.get("dataset", "fashion_mnist")
    data = load_search_data(dataset, data_dir, config, log)
    evaluator = CandidateEvaluator(
        net,
        data.val_images,
        data.val_labels,
        data.calibration_images,
        settings["num_calibration_images"],
        settings["batch_size"],
    )
    store = None
    if out is not None:
        store = measurement_store(out, workdir, dataset, data_dir, evaluator, log)
    bench = Bench(evaluator, costs, net.space, store)
    budgets = pareto_budgets(costs, settings["budget_points"])
    score_budgets = pareto_budgets(costs, settings["score_points"])
    names = settings_strategies(settings)
    all_orders, seconds = [], {name: 0.0 for name in names}
    predictors = []
    for seed in settings["seeds"]:
        orders, generations = {}, {name: [] for name in names if name != "random"}
        for name in names:
            objective = DynamicObjective(net.space, costs, seed=seed)
            start = time.perf_counter()
            orders[name] = run_strategy(
                name, bench, objective, budgets, settings, seed, generations.get(name)
            )
            seconds[name] += time.perf_counter() - start
            log(
                f"seed {seed}: {name} measured {len(orders[name])}; {len(bench.full)} in all, "
                f"{bench.measured_this_run} of them by this run"
            )
        all_orders.append(orders)
        predictors.append(generations)
    readings = {
        chosen_on: reading(bench, all_orders, score_budgets, settings, chosen_on)
        for chosen_on in CHOSEN_ON
    }
    return {
        "workdir": os.path.abspath(workdir),
        "settings": settings,
        "validation_halves": {"search": len(bench.half_a), "score": len(bench.half_b)},
        "cost_unit": costs.unit,
        "search_budgets": budgets,
        "score_budgets": score_budgets,
        "reference_point": {"cost": float(costs.largest[-1]), "accuracy": 0.0},
        "log_cost_floor": float(costs.smallest[0]),
        # The goal's reading: fronts chosen on the search half (the module docstring).
        "chosen_on": CHOSEN_ON[0],
        **readings[CHOSEN_ON[0]],
        # Fronts chosen on the scoring half, as this benchmark read them until 2026-12-06.
        "chosen_on_scoring_half": readings[CHOSEN_ON[1]],
        "predictor": predictors,
        # Per seed, each strategy's measured candidates (`arch_key`s) in the order measured.
        "orders": all_orders,
        "hypervolume_parts": parts(bench, all_orders, score_budgets, settings),
        # What a later --reread checks its store against.
        "measured_with": {
            k: v for k, v in (store.settings if store else {}).items() if k in _MEASURED_WITH
        },
        "wall_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "distinct_measured": len(bench.full),
        "measured_this_run": bench.measured_this_run,
    }


class _StoredOnly:
    """The evaluator of a re-read: it knows the image count, and measures nothing."""

    def __init__(self, num_val_images: int):
        self.num_val_images = num_val_images

    def measure(self, arch):
        raise AssertionError("a re-read measures nothing")


# What a re-read needs of a report's settings: (name, type).
_REREAD_SETTINGS = (
    ("seeds", list),
    ("step", int),
    ("measurements", int),
    ("bootstrap", int),
    ("score_points", int),
    ("num_val_images", int),
    ("num_calibration_images", int),
)
# Store settings that must match the report's measuring run, when it recorded them.
_MEASURED_WITH = ("checkpoint", "checkpoint_index_sha256", "dataset", "num_val_images")


def _reread_report(report_path: str) -> dict:
    """The report at `report_path`, checked to hold what a re-read needs (one line if not)."""
    from enas4d_tf.errors import SearchError
    from enas4d_tf.files import read_json

    report = read_json(report_path, SearchError, "report")
    needed = ("settings", "orders", "score_budgets", "workdir")
    if not isinstance(report, dict) or any(k not in report for k in needed):
        raise SearchError(f"report {report_path} lacks one of {', '.join(needed)}")
    settings, orders = report["settings"], report["orders"]
    if not isinstance(settings, dict):
        raise SearchError(f"report {report_path}: its settings are not a mapping")
    for name, kind in _REREAD_SETTINGS:
        if not isinstance(settings.get(name), kind) or isinstance(settings.get(name), bool):
            raise SearchError(
                f"report {report_path}: settings.{name} is missing or not {kind.__name__}"
            )
    strategies = settings_strategies(settings)
    if (
        not isinstance(orders, list)
        or len(orders) != len(settings["seeds"])
        or not all(isinstance(o, dict) and all(k in o for k in strategies) for o in orders)
    ):
        raise SearchError(
            f"report {report_path}: orders must be one mapping per seed "
            f"({len(settings['seeds'])}) with the candidates of {', '.join(strategies)}"
        )
    return report


def reread(report_path: str, store: str, log=print) -> dict:
    """An earlier report's readings made again from the measurements in `<store>/measured/`,
    with everything this version reads (`hypervolume_parts`): no supernet is loaded, nothing
    is measured and no search runs; each seed's candidates are the report's `orders`.

    The store must be the one the report was measured into: the same image count, space
    and cost model (the score budgets) and, where the report recorded them
    (`measured_with`), the same checkpoint and data.

    Raises:
      SearchError: the report is unreadable or lacks what a reading needs, the store is
        missing, unreadable or of another run, or a candidate of the report's orders is not
        in the store (one line).
    """
    from enas4d_tf.errors import SearchError
    from enas4d_tf.search.objectives import make_cost_model, pareto_budgets
    from enas4d_tf.search.store import SearchStore, read_state
    from enas4d_tf.space import SearchSpace
    from enas4d_tf.workdir import Workdir

    report = _reread_report(report_path)
    settings = dict(report["settings"])
    settings.setdefault("cost", "macs")
    settings.setdefault("latency_table", "")
    paths = Workdir(os.path.join(store, MEASURED_FOLDER))
    if not os.path.exists(paths.search_state):
        raise SearchError(f"no measurements to re-read: {paths.search_state} not found")
    stored = read_state(paths.search_state)["settings"]
    if not isinstance(stored, dict) or "space" not in stored or "num_classes" not in stored:
        raise SearchError(f"{paths.search_state} records no space or class count")
    recorded = {**report.get("measured_with", {}), "num_val_images": settings["num_val_images"]}
    for name in _MEASURED_WITH:
        if name in recorded and stored.get(name) != recorded[name]:
            raise SearchError(
                f"report {report_path} was measured with {name} {recorded[name]!r}, the store "
                f"{paths.search_state} with {stored.get(name)!r}: another run's measurements"
            )
    try:
        space = SearchSpace.from_dict(stored["space"])
    except (TypeError, ValueError, KeyError) as e:
        raise SearchError(f"{paths.search_state}: its space is malformed: {e}") from None
    # The state's own settings: a store is never moved aside by a re-read.
    saved = SearchStore(paths, stored, space, log)
    costs = make_cost_model(space, int(stored["num_classes"]), search_config(settings))
    score_budgets = pareto_budgets(costs, settings["score_points"])
    if score_budgets != report["score_budgets"]:
        raise SearchError(
            f"report {report_path} scored at {report['score_budgets']}, but the store's space "
            f"and cost model give {score_budgets}: another space's measurements"
        )
    bench = Bench(_StoredOnly(settings["num_val_images"]), costs, space, saved)
    for orders in report["orders"]:
        for name, keys in orders.items():
            for key in keys:
                candidate = saved.get(key)
                if candidate is None:
                    raise SearchError(
                        f"candidate {key} ({name}) of report {report_path} is not in {store}"
                    )
                bench.candidate(candidate.arch)
    readings = {
        chosen_on: reading(bench, report["orders"], score_budgets, settings, chosen_on)
        for chosen_on in CHOSEN_ON
    }
    return {
        **report,
        **readings[CHOSEN_ON[0]],
        "chosen_on_scoring_half": readings[CHOSEN_ON[1]],
        "hypervolume_parts": parts(bench, report["orders"], score_budgets, settings),
        # The report's own measured_this_run stays: it is of the run that measured.
        "reread": {"from": report_path, "measured": 0},
    }


def reading(bench, all_orders, score_budgets, settings, chosen_on: str) -> dict:
    """`{per_seed, mean, goal, bootstrap}` of the strategies' measured orders (one per seed),
    their fronts chosen on `chosen_on`."""
    seeds = settings["seeds"]
    per_seed = [
        curves(bench, orders, score_budgets, settings["step"], chosen_on, seed)
        for orders, seed in zip(all_orders, seeds, strict=True)
    ]
    mean = mean_curves(per_seed)
    spread = None
    if settings["bootstrap"]:
        spread = bootstrap(
            bench,
            all_orders,
            score_budgets,
            settings["measurements"],
            settings["bootstrap"],
            chosen_on=chosen_on,
            search_seeds=seeds,
            limits=strategy_limits(settings),
        )
    return {
        "per_seed": per_seed,
        "mean": mean,
        "goal": goal(mean, settings["measurements"]),
        "bootstrap": spread,
    }


def markdown(report: dict) -> str:
    """The report as tables of mean hypervolume per measurement count (fronts chosen on the
    search half: the goal's reading; then chosen on the scoring half), and the goal."""
    s = report["settings"]
    lines = [
        "# Search efficiency (held-out validation half)",
        "",
        f"Workdir `{report['workdir']}`; {s['measurements']} measured candidates per "
        f"strategy (the new search's below), seeds {s['seeds']}; searched on "
        f"{report['validation_halves']['search']} "
        f"validation images, fronts scored on the other {report['validation_halves']['score']}.",
        f"Hypervolume in (log cost, accuracy), reference point (cost "
        f"{report['reference_point']['cost']:.4g} {report['cost_unit']}, accuracy 0), "
        f"log-cost floor {report['log_cost_floor']:.4g} {report['cost_unit']}.",
        f"The new search: {strategy_limits(s)['new']} measured candidates, inner evolution "
        f"of {s['inner_generations']} generations, predictor floor "
        f"{_recorded(s, 'min_predictor_tau')}, inner evolution from held-out tau "
        f"{_recorded(s, 'inner_min_predictor_tau')}, "
        # Reports made before --predictor existed searched with "auto".
        f"predictors {s.get('predictor', 'auto')}.",
        "",
        "## Fronts chosen on the search half, scored on the other (the goal's reading)",
        "",
        "Each strategy's front is the Pareto front of its candidates' points as half A "
        "estimates them (cross-fit), as a search would return it; the table scores those "
        "points on half B.",
        "",
    ]
    if "old" not in settings_strategies(s):
        lines[-1:-1] = [
            "",
            "The old search was not measured by this run (`--strategies`).",
        ]
    lines += _reading_markdown(report, s)
    if report.get("hypervolume_parts"):
        lines += _parts_markdown(report["hypervolume_parts"], report["cost_unit"], s)
    scoring = report.get("chosen_on_scoring_half")
    if scoring:
        lines += [
            "",
            "## Fronts chosen on the scoring half (the reading until 2026-12-06)",
            "",
            "The Pareto front of the candidates' half-B points: the front is chosen on the "
            "images that score it, so it is the maximum of many noisy held-out accuracies and "
            "grows with the number of candidates near it.",
            "",
        ]
        lines += _reading_markdown(scoring, s)
    return "\n".join(lines + _predictor_markdown(report)) + "\n"


def _recorded(settings: dict, name: str) -> str:
    """A report's setting as written, or "not recorded" (reports older than the flag: their
    value was that day's default, not today's)."""
    value = settings.get(name)
    return "not recorded" if value is None else f"{value:g}"


def _reading_markdown(reading: dict, s: dict) -> list[str]:
    """One reading's table, goal line and bootstrap."""
    g = reading["goal"]
    names = [name for name in STRATEGIES if name in reading["mean"]]
    rows = {name: dict(reading["mean"][name]) for name in names}
    counts = sorted(set().union(*rows.values()))
    titles = {"random": "random", "old": "old search", "new": "new search"}
    lines = [
        "| measured | " + " | ".join(titles[name] for name in names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for n in counts:
        cells = [f"{rows[k][n]:.4f}" if n in rows[k] else "" for k in names]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    verdict = "met" if g["met"] else "NOT met"
    reached = g["new_reaches_it_after"]
    lines += [
        "",
        f"Goal: the new search reaches random's hypervolume after {s['measurements']} "
        f"({g['random_hypervolume']:.4f}) in <= {g['allowed']} measurements: {verdict} "
        f"(reached after {reached if reached is not None else 'never, within the run'}).",
    ]
    b = reading.get("bootstrap")
    if b:
        lines += [
            "",
            f"Scoring noise: half B's images resampled "
            f"with replacement {b['resamples']} times, each front scored again "
            "(hypervolume, 5th / 50th / 95th percentile):",
            "",
            "| front | p05 | p50 | p95 |",
            "|---|---:|---:|---:|",
        ]
        for label, q in b["hypervolume"].items():
            lines.append(f"| {label} | {q['p05']:.4f} | {q['p50']:.4f} | {q['p95']:.4f} |")
        m = b["goal_margin"]
        lines += [
            "",
            f"Goal margin (new at {g['allowed']} minus random at {s['measurements']}): "
            f"{m['p50']:+.4f} ({m['p05']:+.4f} to {m['p95']:+.4f}); the new search reaches "
            f"random's front in {b['goal_met_share'] * 100:.0f}% of the resamples.",
        ]
    return lines


def _parts_markdown(parts: dict, unit: str, s: dict) -> list[str]:
    """Where the final fronts' hypervolume lies (`parts`), mean over seeds, then per seed."""
    labels = list(parts["mean"])
    lines = [
        "",
        "### Where the hypervolume lies",
        "",
        f"Each front's hypervolume (this reading) split at the lowest budget "
        f"({parts['floor']:.4g} {unit}): the area under it, where no strategy is asked for a "
        "point (what lands there is a fit that came in under its budget), and the area over "
        "the budgets' range. Mean over seeds; per seed, the two parts.",
        "",
        "| front | under the lowest budget | the budgets' range | total | per seed |",
        "|---|---:|---:|---:|---|",
    ]
    counts = parts.get("counts") or [{} for _ in parts["per_seed"]]
    for label in labels:
        below, in_range = parts["mean"][label]
        seeds = "; ".join(
            f"{seed}: {row[label][0]:.4f} + {row[label][1]:.4f}" + _short(count.get(label), label)
            for seed, row, count in zip(s["seeds"], parts["per_seed"], counts, strict=True)
        )
        lines.append(
            f"| {label} | {below:.4f} | {in_range:.4f} | {below + in_range:.4f} | {seeds} |"
        )
    return lines


def _short(count, label: str) -> str:
    """ " (k candidates)" when a front had fewer candidates than its label's count."""
    wanted = int(label.rsplit("@", 1)[1])
    return "" if count is None or count >= wanted else f" ({count} candidates)"


def _predictor_markdown(report: dict) -> list[str]:
    """The new search's predictor per generation (first seed): what it was fitted on and
    how well it ranked candidates it had not seen."""
    seeds = report.get("predictor") or []
    rows = seeds[0].get("new", []) if seeds else []
    if not rows:
        return []

    def tau(x):
        return "-" if x is None else f"{x:.3f}"

    lines = [
        "",
        f"The new search's predictor per generation (seed {report['settings']['seeds'][0]}): "
        "held-out Kendall tau over the measured candidates it was fitted on (5-fold), and "
        "prospective tau (its predictions of the children it chose against their measured "
        "scores):",
        "",
        "| generation | measured after | rows | model | held-out tau | used | prospective tau |",
        "|---:|---:|---:|---|---:|---|---:|",
    ]
    for r in rows:
        used = "-" if r["used"] is None else ("yes" if r["used"] else "no")
        fitted = "-" if r["rows"] is None else r["rows"]
        lines.append(
            f"| {r['generation']} | {r['measured']} | {fitted} "
            f"| {r['model'] or '-'} | {tau(r['held_out_tau'])} | {used} "
            f"| {tau(r['prospective_tau'])} |"
        )
    return lines


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.reread:
        if not FLAGS.out:
            fail("search_efficiency", "--reread needs --out: where the report is written", code=2)
        store = FLAGS.store or FLAGS.out
        _report_to(FLAGS.out, lambda: reread(FLAGS.reread, store, log=_log))
        return
    if not FLAGS.workdir:
        fail("search_efficiency", "--workdir is required: the training workdir", code=2)
    try:
        settings = settings_from_flags()
    except ValueError as e:
        fail("search_efficiency", e, code=2)

    def measure() -> dict:
        search_config(settings)  # cheap checks before TensorFlow starts and the run begins
        return run(FLAGS.workdir, settings, out, log=_log)

    out = FLAGS.out or os.path.join(FLAGS.workdir, "search_efficiency")
    _report_to(out, measure)


def _log(message: str) -> None:
    print(message, flush=True)


def _report_to(out: str, make) -> None:
    """Checks `out` writable, makes the report (`make()`), writes its JSON and markdown
    there and prints the markdown; a bad input or output ends in one line."""
    from enas4d_tf.errors import Enas4dError
    from enas4d_tf.files import write_bytes_atomic, write_json_atomic

    try:
        paths = output_paths(out)
        report = make()
        write_json_atomic(paths["json"], report)  # first: an hours-long run's result is kept
        text = markdown(report)
        write_bytes_atomic(paths["md"], text.encode())
    except Enas4dError as e:
        fail("search_efficiency", str(e))
    except OSError as e:
        fail("search_efficiency", f"{e.filename or out}: {e.strerror or e}")
    print(text)


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=flags_parser("search_efficiency"))
