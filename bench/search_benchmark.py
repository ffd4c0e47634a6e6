"""Benchmark of the search: dynamic vs static MACs at equal test accuracy (README.md "Search").

Run from the repository root:

  python -m bench.search_benchmark --workdir=runs/demo --pareto --population=16 \
      --generations=8
  python -m bench.search_benchmark --workdir=runs/demo --norun_search   # reuse search/

1. Runs the search (`enas4d_tf.search.run`, both modes) or, with --norun_search, reads its
   `<workdir>/search/pareto.json`. Everything is chosen there, on the validation split.
2. Only then loads the TEST split. Every network of both fronts is BN-recalibrated (the
   search's calibration images) and run once on validation and once on test. A static network
   (an architecture cut at exit `s`) gets exit `s`'s test accuracy at its truncated cost
   (`enas4d_tf.model.macs.truncated_macs`). Each dynamic network gets thresholds fitted on
   VALIDATION for a grid of budgets (the accuracy-maximising fitter, and MSDNet's geometric
   schedule for comparison) and applied unchanged to test.
3. Reference: the most accurate static network of the static front (chosen on validation);
   its test accuracy `A` at MACs `M`. Dynamic MACs needed for `A`: the smallest test average
   MACs among the dynamic test points with test accuracy >= `A` (reading the dynamic test
   curve, as early-exit papers do), and, chosen on validation alone, the cheapest dynamic
   point whose validation accuracy reaches the reference's validation accuracy. Ratio =
   dynamic MACs / `M` (goal <= 0.6, target 0.5).

Prints a markdown report (also written to --markdown) and writes a JSON (--out).
"""

from __future__ import annotations

import dataclasses
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from tools._cli import config_from_flags, fail, flags_parser  # noqa: E402

flags.DEFINE_string("workdir", None, "The training workdir whose supernet is searched.")
flags.DEFINE_bool(
    "run_search",
    True,
    "Run the search first (it continues from <workdir>/search/state.json); with "
    "--norun_search, read the outputs of an earlier search instead.",
)
flags.DEFINE_list("budgets", [], "Average-MACs budgets for the search, comma-separated.")
flags.DEFINE_bool("pareto", False, "Search a grid of budgets spanning the space.")
flags.DEFINE_integer("pareto_points", 6, "Budgets in the --pareto grid.", lower_bound=2)
flags.DEFINE_integer("population", 16, "Candidates measured per generation.", lower_bound=1)
flags.DEFINE_integer("generations", 8, "Generations of the evolution in all.", lower_bound=1)
flags.DEFINE_integer("num_val_images", 5000, "Validation images per candidate.", lower_bound=1)
flags.DEFINE_integer(
    "num_calibration_images", 2000, "Training images for BN recalibration.", lower_bound=1
)
flags.DEFINE_integer("batch_size", 500, "Images per forward pass.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seeds the search.", lower_bound=0)
flags.DEFINE_integer(
    "inner_population", 100, "The search's inner evolution population.", lower_bound=2
)
flags.DEFINE_integer(
    "inner_generations", 50, "Its generations (0: the search without it).", lower_bound=0
)
flags.DEFINE_integer(
    "num_test_images", 0, "Test images to evaluate on (0: the whole test split).", lower_bound=0
)
flags.DEFINE_integer(
    "budget_points",
    16,
    "Budgets per dynamic network, between its first-exit and full cost, for the test curve.",
    lower_bound=2,
)
flags.DEFINE_string("out", None, "JSON results (default <workdir>/search/benchmark.json).")
flags.DEFINE_string("markdown", None, "Markdown report (default <workdir>/search/benchmark.md).")

FLAGS = flags.FLAGS


@dataclasses.dataclass
class NetworkEval:
    key: str
    arch: object
    stage_macs: list
    val: object  # exit_policy.ValidationSplit
    test_confidence: object
    test_correct: object


def evaluate_networks(net, entries, val, test, calibration, batch_size=500):
    """Recalibrates and runs each distinct network of `entries` on validation and test."""
    import numpy as np

    from enas4d_tf import exit_policy
    from enas4d_tf.evaluation import CandidateEvaluator
    from enas4d_tf.space import Arch

    evaluator = CandidateEvaluator(net, val[0], val[1], calibration, len(calibration), batch_size)
    out = {}
    for entry in entries:
        key = entry["key"]
        if key in out:
            continue
        arch = Arch.from_dict(entry["arch"])
        m = evaluator.measure(arch)  # BN recalibrated for `arch` and kept for the test pass
        probs = evaluator.runner.probabilities(arch, test[0], batch_size)
        confidence, correct = exit_policy.confidences_and_correct(probs, np.asarray(test[1]))
        out[key] = NetworkEval(key, arch, m.stage_macs, m.split, confidence, correct)
    return out


def dynamic_points(evals, budget_points):
    """Validation-fitted thresholds for a budget grid, applied to test, for each network."""
    import numpy as np

    from enas4d_tf import exit_policy, thresholds

    points = []
    for e in evals.values():
        c = e.stage_macs
        for budget in np.geomspace(c[0], c[-1], budget_points):
            for method, fitter in thresholds.FITTERS.items():
                fit = fitter(e.val, c, float(budget))
                test = exit_policy.evaluate_confidences(
                    e.test_confidence, e.test_correct, c, fit.thresholds
                )
                points.append(
                    {
                        "key": e.key,
                        "method": method,
                        "budget_macs": float(budget),
                        "thresholds": fit.thresholds,
                        "val_accuracy": fit.accuracy,
                        "val_avg_macs": fit.avg_macs,
                        "test_accuracy": test.accuracy,
                        "test_avg_macs": test.avg_macs,
                        "test_exit_rates": test.exit_rates,
                    }
                )
    return points


def front_of(points, cost, accuracy):
    from enas4d_tf.exit_policy import pareto_front

    index = pareto_front([(p[cost], p[accuracy]) for p in points])
    return [points[i] for i in index]


def macs_needed(points, target, accuracy_key, cost_key):
    reaching = [p for p in points if p[accuracy_key] >= target]
    return min(reaching, key=lambda p: p[cost_key]) if reaching else None


def search_report(workdir: str) -> dict:
    """Runs the search (unless --norun_search) and returns its pareto.json."""
    from enas4d_tf.errors import SearchError
    from enas4d_tf.files import read_json
    from enas4d_tf.locking import WorkdirLock
    from enas4d_tf.search.config import SearchConfig, parse_budgets
    from enas4d_tf.search.run import run_search
    from enas4d_tf.workdir import Workdir

    pareto_path = Workdir(workdir).pareto_json
    if FLAGS.run_search:
        config = config_from_flags(
            SearchConfig,
            mode="both",
            budgets=parse_budgets(FLAGS.budgets),
            pareto=FLAGS.pareto or not FLAGS.budgets,
        )
        with WorkdirLock(workdir, "search"):
            run_search(workdir, config, log=lambda line: print(line, flush=True))
    if not os.path.exists(pareto_path):
        raise SearchError(f"{pareto_path} not found: run the search first")
    report = read_json(pareto_path, SearchError, "search report")
    if "static" not in report["fronts"] or "dynamic" not in report["fronts"]:
        raise SearchError(f"{pareto_path} is not from a --mode=both search")
    return report


def method_results(points, reference) -> dict:
    """Per fitter: the dynamic MACs that reach the static reference's accuracy, read on the
    test curve and matched on validation, and the dynamic front on test."""
    results = {}
    for method in ("greedy", "geometric"):
        mine = [p for p in points if p["method"] == method]
        on_test = macs_needed(mine, reference["test_accuracy"], "test_accuracy", "test_avg_macs")
        on_val = macs_needed(mine, reference["val_accuracy"], "val_accuracy", "val_avg_macs")
        results[method] = {
            "test_curve": on_test,
            "test_curve_ratio": None
            if on_test is None
            else on_test["test_avg_macs"] / reference["macs"],
            "validation_matched": on_val,
            "validation_matched_ratio": None
            if on_val is None
            else on_val["test_avg_macs"] / reference["macs"],
            "test_front": front_of(mine, "test_avg_macs", "test_accuracy"),
        }
    return results


def static_rows_of(static_front, evals) -> list:
    """Each static front network (an architecture cut at exit s) on validation and test: exit
    s's accuracy at the cut network's cost."""
    rows = []
    for entry in static_front:
        e = evals[entry["key"]]
        s = entry.get("exit") or len(e.stage_macs)  # a report of version 1: the last exit
        rows.append(
            {
                "key": e.key,
                "exit": s,
                "macs": float(entry["avg_macs"]),
                "val_accuracy": float(e.val.correct[s - 1].mean()),
                "test_accuracy": float(e.test_correct[s - 1].mean()),
            }
        )
    return rows


def run(workdir: str) -> dict:
    from enas4d_tf import data as data_lib
    from enas4d_tf.search.evolution import format_macs
    from enas4d_tf.workdir import load_supernet

    report = search_report(workdir)
    settings = report["settings"]
    # pareto.json of searches before the flag was renamed name it num_calib_images.
    num_calibration = settings.get("num_calibration_images", settings.get("num_calib_images"))

    # The choice is made. Only now is the test split read.
    net, _ = load_supernet(workdir)
    dataset, data_dir = settings["dataset"], settings["data_dir"]
    val = data_lib.load_arrays(dataset, "validation", data_dir, settings["num_val_images"])
    calibration, _ = data_lib.load_arrays(dataset, "train", data_dir, num_calibration)
    test = data_lib.load_arrays(dataset, "test", data_dir, FLAGS.num_test_images or None)
    start = time.perf_counter()
    static_front = report["fronts"]["static"]
    dynamic_entries = report["fronts"]["dynamic"] + [
        c for c in report["chosen"] if c["mode"] == "dynamic"
    ]
    evals = evaluate_networks(
        net, static_front + dynamic_entries, val, test, calibration, FLAGS.batch_size
    )
    static_rows = static_rows_of(static_front, evals)
    dynamic_keys = {entry["key"] for entry in dynamic_entries}
    points = dynamic_points(
        {k: v for k, v in evals.items() if k in dynamic_keys}, FLAGS.budget_points
    )
    reference = max(static_rows, key=lambda r: (r["val_accuracy"], -r["macs"]))
    results = {
        "workdir": workdir,
        "dataset": dataset,
        "num_val_images": int(len(val[1])),
        "num_test_images": int(len(test[1])),
        "static_reference": reference,
        "search_stats": report["stats"],
        "evaluation_seconds": round(time.perf_counter() - start, 1),
        **method_results(points, reference),
        "static_front": static_rows,
    }
    results["markdown"] = markdown(results, format_macs)
    return results


def _ratio(value):
    return "not reached" if value is None else f"{value:.3f}x"


def markdown(r, fmt) -> str:
    ref = r["static_reference"]
    stats = r["search_stats"]
    lines = [
        f"# Search benchmark: {r['workdir']} ({r['dataset']})",
        "",
        f"Validation images {r['num_val_images']}, test images {r['num_test_images']}. "
        "Networks and thresholds chosen on validation; the test split is read only here.",
        "",
        f"Static reference (most accurate static network on validation): {fmt(ref['macs'])} "
        f"MACs, val {ref['val_accuracy']:.4f}, test {ref['test_accuracy']:.4f}.",
        "",
        "| fitter | dynamic MACs for the static test accuracy | ratio | "
        "validation-matched MACs (test acc) | ratio |",
        "|---|---|---|---|---|",
    ]
    for method in ("greedy", "geometric"):
        m = r[method]
        t, v = m["test_curve"], m["validation_matched"]
        lines.append(
            f"| {method} | {'-' if t is None else fmt(t['test_avg_macs'])} | "
            f"{_ratio(m['test_curve_ratio'])} | "
            + ("-" if v is None else f"{fmt(v['test_avg_macs'])} ({v['test_accuracy']:.4f})")
            + f" | {_ratio(m['validation_matched_ratio'])} |"
        )
    lines += [
        "",
        "Goal: ratio <= 0.6x, target 0.5x.",
        "",
        "## Static front (every exit: an architecture cut at exit s, its truncated cost)",
        "",
        "| network | exit | MACs | val acc | test acc |",
        "|---|---|---|---|---|",
    ]
    for row in r["static_front"]:
        lines.append(
            f"| {row['key']} | {row['exit']} | {fmt(row['macs'])} | {row['val_accuracy']:.4f} | "
            f"{row['test_accuracy']:.4f} |"
        )
    lines += [
        "",
        "## Dynamic front on test (thresholds fitted on validation, accuracy-maximising fitter)",
        "",
        "| network | budget | val avg MACs | val acc | test avg MACs | test acc | test exits |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in r["greedy"]["test_front"]:
        lines.append(
            f"| {p['key']} | {fmt(p['budget_macs'])} | {fmt(p['val_avg_macs'])} | "
            f"{p['val_accuracy']:.4f} | {fmt(p['test_avg_macs'])} | {p['test_accuracy']:.4f} | "
            + "/".join(f"{x:.2f}" for x in p["test_exit_rates"])
            + " |"
        )
    per_second = stats.get("candidates_per_second")
    lines += [
        "",
        "## Search",
        "",
        f"Wall time of the last search run: {stats['wall_seconds']:.1f} s; candidates measured "
        f"in it: {stats['measured_this_run']} ({stats['known_candidates']} in the state); "
        "measurement rate: "
        + ("-" if per_second is None else f"{per_second:.3f} candidates/s")
        + f". Test evaluation here: {r['evaluation_seconds']:.1f} s.",
    ]
    return "\n".join(lines) + "\n"


def main(argv):
    if not FLAGS.workdir:
        fail("search_benchmark", "--workdir is required", code=2)
    from enas4d_tf.errors import Enas4dError
    from enas4d_tf.files import write_bytes_atomic, write_json_atomic
    from enas4d_tf.workdir import Workdir

    try:
        results = run(FLAGS.workdir)
    except Enas4dError as e:
        fail("search_benchmark", str(e))
    folder = Workdir(FLAGS.workdir).search
    out = FLAGS.out or os.path.join(folder, "benchmark.json")
    md = FLAGS.markdown or os.path.join(folder, "benchmark.md")
    write_json_atomic(out, {k: v for k, v in results.items() if k != "markdown"})
    write_bytes_atomic(md, results["markdown"].encode())
    print(results["markdown"])
    print(f"wrote {out} and {md}")


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("search_benchmark"))
