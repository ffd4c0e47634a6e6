"""Screening of training-recipe changes on the validation split (issue: every subnet good).

Each variant is the old benchmark config (`configs/train_benchmark_v1.cfg`) shortened to
`--epochs` epochs, plus the variant's flags, trained into `<workdir>/<variant>/` by
`tools.train`. Its last training-time evaluation (validation split, BN recalibrated) measures
the largest, the smallest and `--spread` fixed architectures spread over the space's MACs
(`enas4d_tf.train.sampling.spread_archs`). The report ranks the variants on what the recipe
must deliver: no spread architecture below the smallest at any exit, MACs-accuracy rank
correlation at every exit, and the largest and smallest networks' last exits.

  python -m bench.recipe_screen --workdir=runs/screen --out=bench/results/recipe_screen \\
      --variants=base,every_step,macs

With `--minutes=M`, each variant instead trains for M minutes of wall time, its epochs fitted
to them (`tools.train --max_train_minutes --fit_epochs_to_budget`), as the issue's goals are
set: the whole training in <= 90 minutes on the 2 cores. A variant of `TEACHERS` first trains
the largest network alone (cut at its last exit) for its share of M into
`<workdir>/<variant>_teacher/`, then the supernet from those weights (`--init_from`) for the
rest of M, counted from the teacher's recorded training seconds:

  python -m bench.recipe_screen --config=configs/train_benchmark.cfg --minutes=90 \\
      --workdir=runs/screen90 --out=bench/results/recipe_screen90 --variants=base,largest_first

Resumable: run the same command again; a finished variant is read, an interrupted one
resumes from its checkpoint. The test split is not read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app, flags

from enas4d_tf.files import write_bytes_atomic, write_json_atomic
from tools._cli import fail, flags_parser

# Flags each variant adds to the shortened benchmark config. Cumulative where the name
# says so: a change is kept only if it beats the variant it was added to.
VARIANTS = {
    # Today's benchmark recipe: a random architecture every 4th step, gene-uniform.
    "base": [],
    # A random architecture every step, paid for by students on half the batch.
    "every_step": ["--random_subnets_every=1", "--student_batch_fraction=0.5"],
    # ... with random architectures drawn evenly over the space's MACs.
    "macs": [
        "--random_subnets_every=1",
        "--student_batch_fraction=0.5",
        "--arch_sampling=macs",
    ],
    # ... with every residual block starting as the identity.
    "macs_zero": [
        "--random_subnets_every=1",
        "--student_batch_fraction=0.5",
        "--arch_sampling=macs",
        "--zero_init_residual",
    ],
    # ... with the students' exits weighted equally (the largest keeps 1,1,3).
    "macs_studentw": [
        "--random_subnets_every=1",
        "--student_batch_fraction=0.5",
        "--arch_sampling=macs",
        "--student_exit_weights=1,1,1",
    ],
    # ... with a learning-rate floor of 2.5% of the peak.
    "macs_floor": [
        "--random_subnets_every=1",
        "--student_batch_fraction=0.5",
        "--arch_sampling=macs",
        "--min_learning_rate=0.005",
    ],
    # Once-for-all's order (with --minutes): the largest network alone first, then the
    # supernet from it, warmed up again to half the peak learning rate.
    "largest_first": ["--learning_rate=0.1"],
}
# Variants that first train the largest network alone, and the share of --minutes it gets.
TEACHERS = {"largest_first": 0.25}
# Epochs a budgeted run may plan at most (the budget decides).
MAX_EPOCHS = 200


def define_flags() -> None:
    """Defines the program's flags: called when it runs, not on import, so tests can import
    it beside other programs that define flags of the same names."""
    flags.DEFINE_string("workdir", None, "Where each variant's training workdir goes.")
    flags.DEFINE_string("out", None, "Output prefix: writes <out>.json and <out>.md.")
    flags.DEFINE_list("variants", ["base", "every_step", "macs"], "Variants to run, in order.")
    flags.DEFINE_integer("epochs", 3, "Epochs of each screening run.", lower_bound=1)
    flags.DEFINE_float(
        "minutes",
        None,
        "Train each variant for this many minutes of wall time instead, its epochs fitted to them "
        "(a teacher variant's teacher included).",
        lower_bound=1.0,
    )
    flags.DEFINE_integer("spread", 10, "Spread architectures measured at the end.", lower_bound=2)
    flags.DEFINE_string(
        "config",
        "configs/train_benchmark_v1.cfg",
        "The config the variants shorten (the old recipe).",
    )


FLAGS = flags.FLAGS


def _last_eval(workdir: str) -> dict | None:
    from enas4d_tf.train.logs import read_train_log

    evals = [r for r in read_train_log(workdir) if r.get("kind") == "eval"]
    return evals[-1] if evals else None


def _train_seconds(workdir: str) -> float | None:
    path = os.path.join(workdir, "train_summary.json")
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return summary.get("train_seconds")


def _macs_of(workdir: str, count: int) -> tuple[list, dict]:
    """Last-exit MACs of the workdir's space's spread architectures, and of its smallest and
    largest networks (the space the run trained, not a preset named here)."""
    from enas4d_tf.space import SearchSpace
    from enas4d_tf.train import sampling
    from enas4d_tf.workdir import read_run_config

    space = SearchSpace.from_dict(read_run_config(workdir)["space"])
    spread = [sampling.last_exit_macs(space, a) for a in sampling.spread_archs(space, count)]
    ends = {n: sampling.last_exit_macs(space, getattr(space, n)()) for n in ("smallest", "largest")}
    return spread, ends


def summarize(name: str, record: dict, spread_macs: list[float], end_macs: dict) -> dict:
    from enas4d_tf.train.report import spearman

    """One variant's row: per exit, the accuracies, how many spread architectures fall below
    the smallest, and the Spearman correlation of last-exit MACs and accuracy over the
    smallest, the spread architectures and the largest."""
    spread = sorted(k for k in record if k.startswith("spread_"))
    spread.sort(key=lambda k: int(k.split("_")[1]))
    smallest = record["smallest"]["accuracy"]
    largest = record["largest"]["accuracy"]
    S = len(smallest)
    names = ["smallest", *spread, "largest"]
    macs = [end_macs["smallest"], *spread_macs[: len(spread)], end_macs["largest"]]
    rows = {n: record[n]["accuracy"] for n in names}
    below = [sum(rows[n][s] < smallest[s] for n in spread) for s in range(S)]
    rho = [spearman(macs, [rows[n][s] for n in names]) for s in range(S)]  # last-exit MACs
    return {
        "variant": name,
        "flags": VARIANTS[name],
        "step": record.get("step"),
        "largest": largest,
        "smallest": smallest,
        "spread": [rows[n] for n in spread],
        "spread_below_smallest": below,
        "spearman": rho,
        "spread_mean_last": sum(rows[n][-1] for n in spread) / max(len(spread), 1),
    }


def markdown(rows: list[dict], epochs: int, minutes: float | None = None) -> str:
    head = (
        "| variant | largest exits (%) | smallest exits (%) | spread mean, last exit (%) | "
        "spread below smallest per exit | Spearman per exit | train min |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        pct = "/".join(f"{100 * a:.2f}" for a in r["largest"])
        small = "/".join(f"{100 * a:.2f}" for a in r["smallest"])
        train_min = "-" if r.get("train_seconds") is None else f"{r['train_seconds'] / 60:.1f}"
        lines.append(
            f"| {r['variant']} | {pct} | {small} | {100 * r['spread_mean_last']:.2f} | "
            f"{'/'.join(str(b) for b in r['spread_below_smallest'])} | "
            f"{'/'.join(f'{x:.2f}' for x in r['spearman'])} | {train_min} |"
        )
    lines.append("")
    if minutes is None:
        lines.append(
            f"Validation split (5,000 images), after {epochs} epochs of the benchmark config; "
            "train min is wall time on a shared machine (not comparable across rows)."
        )
    else:
        lines.append(
            f"Validation split (5,000 images), after {minutes:g} minutes of training each "
            "(epochs fitted to them; a teacher's minutes included in train min)."
        )
    return "\n".join(lines)


def train_command(
    config: str,
    workdir: str,
    variant: str,
    epochs: int,
    spread: int,
    minutes: float | None,
    init_from: str | None = None,
) -> list[str]:
    """The `tools.train` arguments of one variant's supernet: `epochs` epochs, or with
    `minutes` the epochs that fit them; from `init_from`'s weights when given."""
    args = ["-m", "tools.train", f"--flagfile={config}", f"--workdir={workdir}"]
    if minutes is None:
        args += [f"--epochs={epochs}", f"--eval_every_epochs={epochs}"]
    else:
        args += [
            f"--max_train_minutes={minutes:.4f}",
            "--fit_epochs_to_budget",
            f"--epochs={MAX_EPOCHS}",
        ]
    args.append(f"--eval_spread_archs={spread}")
    if init_from is not None:
        args.append(f"--init_from={init_from}")
    return args + VARIANTS[variant]


def teacher_command(config: str, workdir: str, arch_file: str, minutes: float) -> list[str]:
    """The `tools.train` arguments of a teacher: the largest network alone for `minutes`."""
    return [
        "-m",
        "tools.train",
        f"--flagfile={config}",
        f"--workdir={workdir}",
        f"--arch_file={arch_file}",
        f"--max_train_minutes={minutes:.4f}",
        "--fit_epochs_to_budget",
        f"--epochs={MAX_EPOCHS}",
    ]


def minutes_left(total: float, teacher_seconds: float) -> float:
    """The supernet's minutes after a teacher that trained `teacher_seconds`.

    Raises:
      ValueError: the teacher used the whole budget (or more).
    """
    left = total - teacher_seconds / 60
    if left <= 0:
        raise ValueError(
            f"the teacher trained {teacher_seconds / 60:.1f} of the {total:g} minutes: nothing "
            "is left for the supernet"
        )
    return left


def write_largest_arch(folder: str, config: str) -> str:
    """`<folder>/largest.json`: the config's preset's largest network, cut at its last exit."""
    from bench.claim_choices import parse_flagfile
    from enas4d_tf.space import SearchSpace

    space = SearchSpace.preset(parse_flagfile(config).get("preset", "fashion_mnist"))
    path = os.path.join(folder, "largest.json")
    os.makedirs(folder, exist_ok=True)
    record = {**space.largest().to_dict(), "exit": space.num_stages}
    write_bytes_atomic(path, (json.dumps(record, indent=1) + "\n").encode())
    return path


def _run(name: str, args: list[str]) -> None:
    print(f"[recipe_screen] {name}: {' '.join(args[2:])}", flush=True)
    if subprocess.run([sys.executable, *args]).returncode != 0:
        fail("recipe_screen", f"variant {name} failed; run the same command to resume")


def _variant(name: str) -> dict:
    """Trains (or resumes, or reads) one variant; returns its row."""
    workdir = os.path.join(FLAGS.workdir, name)
    t0 = time.time()
    minutes, init_from, teacher_seconds = FLAGS.minutes, None, None
    if name in TEACHERS:
        init_from = workdir + "_teacher"
        arch_file = write_largest_arch(FLAGS.workdir, FLAGS.config)
        _run(
            f"{name} (teacher)",
            teacher_command(FLAGS.config, init_from, arch_file, TEACHERS[name] * FLAGS.minutes),
        )
        teacher_seconds = _train_seconds(init_from)
        try:
            minutes = minutes_left(FLAGS.minutes, teacher_seconds or 0.0)
        except ValueError as e:
            fail("recipe_screen", f"variant {name}: {e}")
    _run(
        name,
        train_command(FLAGS.config, workdir, name, FLAGS.epochs, FLAGS.spread, minutes, init_from),
    )
    record = _last_eval(workdir)
    if record is None or "spread_1" not in record:
        fail("recipe_screen", f"variant {name} has no evaluation with spread architectures")
    row = summarize(name, record, *_macs_of(workdir, FLAGS.spread))
    row["train_seconds"] = (_train_seconds(workdir) or 0.0) + (teacher_seconds or 0.0)
    row["teacher_seconds"] = teacher_seconds
    row["wall_seconds_this_call"] = time.time() - t0
    return row


def main(argv):
    del argv
    if not FLAGS.workdir or not FLAGS.out:
        fail("recipe_screen", "--workdir and --out are required", code=2)
    unknown = [v for v in FLAGS.variants if v not in VARIANTS]
    if unknown:
        fail("recipe_screen", f"unknown variants {unknown}; use some of {list(VARIANTS)}", code=2)
    needs_minutes = [v for v in FLAGS.variants if v in TEACHERS]
    if needs_minutes and FLAGS.minutes is None:
        fail(
            "recipe_screen",
            f"variants {needs_minutes} train a teacher first: give --minutes",
            code=2,
        )
    rows = []
    for name in FLAGS.variants:
        row = _variant(name)
        rows.append(row)
        print(f"[recipe_screen] {name}: {json.dumps(row)}", flush=True)
        # After every variant, so the rows measured so far are kept if a later one is stopped.
        setting = {"epochs": FLAGS.epochs, "minutes": FLAGS.minutes, "config": FLAGS.config}
        write_json_atomic(FLAGS.out + ".json", {**setting, "rows": rows})
        write_bytes_atomic(
            FLAGS.out + ".md", (markdown(rows, FLAGS.epochs, FLAGS.minutes) + "\n").encode()
        )


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=flags_parser("recipe_screen"))
