"""The benchmark of record (issue 16), as one resumable command.

  python -m bench.claim --workdir=runs/bench --out=bench/results/claim
  python -m bench.claim --smoke --workdir=/tmp/claim_smoke --out=/tmp/claim_smoke/report

Runs, in order (`bench/claim_stages.py`, `bench/claim_testsplit.py`):
1. the supernet: `tools.train --flagfile=configs/train_benchmark.cfg --workdir=W`; T = its
   training wall time as the workdir records it;
2. the search of both modes over a Pareto grid (validation only);
3. the choices, written to `W/claim/choices.json` before any baseline trains: k (the dynamic
   networks chosen), the static front over every exit, static_best and static_third, the
   early-exit configurations;
4. the baselines, trained from scratch for T (one deployment) and T / k (many deployments);
5. each chosen dynamic architecture trained alone for T / k, and its cut-out fine-tuned,
   thresholds refitted on validation;
6. exports (LiteRT stage graphs) of every network to be timed; with `--before_workdir=B` (a
   supernet of the earlier recipe), B searched with the same settings and its chosen dynamic
   networks exported;
7. the report, the only stage that reads the test split: `<out>/claim.json`, `claim.md`,
   `claim.png`.

Wall time on 2 idle cores (estimates made with the v1 recipe's T = 88 min, k = 4): supernet 88
min, search ~12 min, static_best and static_third ~113 min each (T + T / k and their timing
probes), the early-exit baseline ~116 min (with its front's exports), the dynamic architectures
alone ~98 min, the fine-tuning ~15 min, the exports ~20 min, the report ~20 min: about 10 hours
in all, 8.5 after the supernet. The smoke run takes ~25 min on 2 busy cores.

Stop it at any point and run the same command again: each step that completed left a marker
(`W/claim/done/`), long trainings resume through the tools' own resume. `--smoke` runs the
whole pipeline on the `tiny` preset with tiny budgets (for the test). Bad input, or a step that
fails, ends with one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from tools._cli import fail, flags_parser  # noqa: E402

PROGRAM = "claim"

flags.DEFINE_string(
    "workdir",
    None,
    "The supernet's training workdir; the benchmark's work goes to <workdir>/claim/.",
)
flags.DEFINE_string("out", None, "Folder of the report: claim.json, claim.md, claim.png.")
flags.DEFINE_bool(
    "smoke",
    False,
    "The tiny preset with tiny budgets, for the test (flags given explicitly still apply).",
)
flags.DEFINE_string(
    "train_flagfile",
    "configs/train_benchmark.cfg",
    "The supernet's training config; its recipe trains the baselines.",
)
flags.DEFINE_integer("pareto_points", 4, "Budgets of the search's Pareto grid.", lower_bound=2)
flags.DEFINE_integer("population", 12, "The search's candidates per generation.", lower_bound=1)
flags.DEFINE_integer("generations", 5, "The search's generations.", lower_bound=1)
flags.DEFINE_integer("num_val_images", 5000, "Validation images of the search.", lower_bound=2)
flags.DEFINE_integer(
    "num_calibration_images", 2000, "BN recalibration images of the search.", lower_bound=1
)
flags.DEFINE_list(
    "quantization",
    ["float32", "int8"],
    "Stage-graph quantisations exported and timed (float32 first).",
)
flags.DEFINE_integer(
    "baseline_pareto_points",
    8,
    "Budgets of the early-exit baseline's threshold grid.",
    lower_bound=2,
)
flags.DEFINE_integer(
    "max_epochs", 200, "Cap of the epochs fitted to a baseline's time budget.", lower_bound=1
)
flags.DEFINE_bool(
    "cheap_baseline",
    False,
    "Also train a cheaper early-exit configuration (depth 1, kernel 3, expand 3, resolution 24).",
)
flags.DEFINE_integer("finetune_epochs", 1, "Epochs of a cut-out's fine-tuning.", lower_bound=1)
flags.DEFINE_integer(
    "finetune_steps", 0, "Steps per fine-tuning epoch (0: the whole split).", lower_bound=0
)
flags.DEFINE_float(
    "finetune_learning_rate", 1e-4, "Adam learning rate of the fine-tuning.", lower_bound=0.0
)
flags.DEFINE_integer(
    "max_static_front",
    0,
    "Export at most this many static front points (0: all); static_best and static_third always.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "num_test_images", 0, "Test images of the report (0: the whole split).", lower_bound=0
)
flags.DEFINE_integer(
    "export_calibration_images",
    2000,
    "Training images of an export (BN recalibration, int8 calibration).",
    lower_bound=16,
)

flags.DEFINE_string(
    "before_workdir",
    "",
    "A finished supernet of an earlier recipe (configs/train_benchmark_v1.cfg): searched with "
    "the same settings, its dynamic front is measured against the same baselines (may be "
    "added to a finished benchmark; the report is regenerated).",
)

FLAGS = flags.FLAGS

# --smoke: what the test runs (tiny preset, a few dozen steps, a few hundred images).
SMOKE = {
    "train_flagfile": "configs/train_smoke.cfg",
    "pareto_points": 2,
    "population": 4,
    "generations": 1,
    "num_val_images": 300,
    "num_calibration_images": 200,
    "quantization": ["float32"],
    "baseline_pareto_points": 2,
    "max_epochs": 3,
    "finetune_steps": 3,
    "max_static_front": 2,
    "num_test_images": 300,
    "export_calibration_images": 64,
}


def _flag(name: str):
    if FLAGS.smoke and name in SMOKE and not FLAGS[name].present:
        return SMOKE[name]
    return FLAGS[name].value


def settings():
    """The run's `Settings` from the flags (and --smoke)."""
    from bench.claim_choices import ClaimError
    from bench.claim_stages import Settings

    quantizations = tuple(q.strip() for q in _flag("quantization") if q.strip())
    if not quantizations or quantizations[0] != "float32":
        raise ClaimError(f"--quantization must start with float32, got {','.join(quantizations)}")
    flagfile = _flag("train_flagfile")
    if not os.path.isfile(flagfile):
        raise ClaimError(f"--train_flagfile {flagfile} is not a file")
    names = (
        "pareto_points", "population", "generations", "num_val_images",
        "num_calibration_images", "baseline_pareto_points", "max_epochs", "cheap_baseline",
        "finetune_epochs", "finetune_steps", "finetune_learning_rate", "max_static_front",
        "num_test_images", "export_calibration_images",
    )  # fmt: skip
    before = FLAGS.before_workdir
    if before and not os.path.isfile(os.path.join(before, "run_config.json")):
        raise ClaimError(f"--before_workdir {before} is not a training workdir")
    return Settings(
        workdir=os.path.normpath(FLAGS.workdir),
        before_workdir=os.path.normpath(before) if before else "",
        train_flagfile=os.path.abspath(flagfile),
        quantizations=quantizations,
        **{n: _flag(n) for n in names},
    )


def run(settings, out: str, log=print) -> dict:
    """Runs every stage (each skips what is complete) and returns the report."""
    from bench import claim_stages as st
    from bench.claim_steps import ClaimPaths, Steps, check_settings
    from bench.claim_testsplit import stage_report
    from enas4d_tf.locking import WorkdirLock

    paths = ClaimPaths(os.path.join(settings.workdir, "claim"))
    os.makedirs(paths.root, exist_ok=True)
    with WorkdirLock(paths.root, PROGRAM):
        check_settings(paths, settings.record())
        c = st.Claim(settings, paths, Steps(paths, log), log)
        st.stage_supernet(c)
        st.stage_search(c)
        choices = st.stage_choices(c)
        st.stage_static_baselines(c, choices)
        st.stage_early_exit(c, choices)
        st.stage_alone(c, choices)
        st.stage_export_supernet(c, choices)
        st.stage_finetune(c, choices)
        st.stage_export_trained(c, choices)
        st.stage_before(c, choices)
        return stage_report(c, choices, out)


def main(argv) -> None:
    if not FLAGS.workdir or not FLAGS.out:
        fail(PROGRAM, "--workdir and --out are required", code=2)
    from enas4d_tf.errors import Enas4dError

    log = lambda line: print(line, flush=True)  # noqa: E731
    try:
        report = run(settings(), FLAGS.out, log)
    except Enas4dError as e:
        fail(PROGRAM, str(e))
    except KeyboardInterrupt:
        fail(PROGRAM, "interrupted: run the same command again to resume", code=130)
    verdicts = ", ".join(
        f"{name}: {'met' if _met(entry) else 'not met'}"
        for name, entry in report["comparisons"].items()
    )
    log(f"[claim] wrote {FLAGS.out}/claim.json, claim.md, claim.png; goal {verdicts}")


def _met(entry) -> bool:
    from bench.claim_report import goal_met

    return goal_met(entry)


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser(PROGRAM))
