"""The choices of the benchmark of record (`bench/claim.py`), made on the validation split only.

Pure functions over the files the earlier stages wrote (no TensorFlow):

- `supernet_seconds`: T, the supernet's training wall time, from its workdir;
- `make_choices`: from the search's `pareto.json`, k (the dynamic networks the search chose),
  the static front over every exit, the most accurate static network ("static_best") and the
  front point whose cost is nearest a third of static_best's ("static_third");
- `baseline_recipe`: the flags of the training config (`configs/train_benchmark.cfg`) that
  `tools.train_baseline` also takes;
- `probe_timing` / `baseline_epochs`: the early-exit baseline's epochs for a time budget, from
  a short timing probe (train_baseline has no `--fit_epochs_to_budget`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics

from enas4d_tf.errors import Enas4dError
from enas4d_tf.train.budget import PROBE_EPOCH_STEPS as _SUPERNET_PROBE_EPOCH_STEPS
from enas4d_tf.train.budget import LoopCosts, epochs_that_fit, loop_costs

CHOICES_VERSION = 1
# Flags of the training config that tools.train_baseline takes with the same meaning. Not
# taken: the supernet's sampling and distillation (num_random_subnets, random_subnets_every,
# kd_ratio, schedule, phase_starts), its distribution (strategy, cpu_replicas), its
# evaluation's BN recalibration (num_calibration_images: the baseline's flag of that name is
# int8 calibration), and epochs (fitted to the budget).
BASELINE_RECIPE_FLAGS = (
    "preset",
    "dataset",
    "data_dir",
    "batch_size",
    "learning_rate",
    "momentum",
    "warmup_epochs",
    "weight_decay",
    "label_smoothing",
    "clip_norm",
    "exit_weights",
    "zero_init_residual",
    "checkpoint_every_steps",
    "keep_checkpoints",
    "log_every_steps",
    "eval_every_epochs",
    "max_train_examples",
    "max_eval_examples",
    "steps_per_epoch",
    "seed",
)
# Steps of each of the two epochs of the baseline's timing probe (the first step traces and
# is not timed): as many as the supernet recipe's probe
# (`enas4d_tf.train.budget.PROBE_EPOCH_STEPS`), for the same reason: the first steps run on
# prefetched batches and are faster than the run's pace.
PROBE_EPOCH_STEPS = _SUPERNET_PROBE_EPOCH_STEPS


class ClaimError(Enas4dError):
    """The benchmark of record cannot go on: a stage's input is missing or inconsistent."""


def read_json_file(path: str, what: str) -> dict:
    """Reads a JSON object, or raises ClaimError naming `what` and the path."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ClaimError(f"{what} {path} not found") from None
    except (OSError, ValueError) as e:
        raise ClaimError(f"{what} {path} is unreadable: {e}") from None
    if not isinstance(data, dict):
        raise ClaimError(f"{what} {path} is not a JSON object")
    return data


def read_jsonl(path: str) -> list[dict]:
    """The records of a `train_log.jsonl`; a line cut short by a killed process is skipped."""
    records = []
    if not os.path.exists(path):
        return records
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def parse_flagfile(path: str) -> dict[str, str]:
    """`{name: value}` of the lines of an absl flag file (comments skipped): `--name=value`,
    or a boolean's `--name` ("true")."""
    out = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ClaimError(f"cannot read flag file {path}: {e.strerror or e}") from None
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("--") or len(line) == 2:
            raise ClaimError(f"flag file {path}: {line!r} is not a --name=value line")
        if "=" in line:
            name, value = line[2:].split("=", 1)
        elif line.startswith("--no"):
            # absl's --noname, or a flag whose name starts with "no": unknowable here.
            raise ClaimError(f"flag file {path}: write {line!r} as --name=false or --name=true")
        else:
            name, value = line[2:], "true"
        out[name] = value
    return out


def baseline_recipe(train_flags: dict[str, str], num_exits: int) -> tuple[list[str], list[str]]:
    """The training config's flags that `tools.train_baseline` takes, as `--name=value`.

    `exit_weights` applies only when it has one weight per baseline exit (the backbone has
    an exit per unit, the supernet one per stage); otherwise the baseline weighs its exits
    equally (its default).

    Returns:
      `(flags, notes)`: the flags, and one note per training flag left out and why.
    """
    out, notes = [], []
    for name, value in train_flags.items():
        if name == "exit_weights" and len(value.split(",")) != num_exits:
            notes.append(
                f"exit_weights={value} not used: the baseline has {num_exits} exits; its exits "
                "are weighted equally"
            )
        elif name in BASELINE_RECIPE_FLAGS:
            out.append(f"--{name}={value}")
        elif name != "epochs":
            notes.append(f"{name} does not apply to the early-exit baseline")
    return out, notes


def supernet_seconds(run_config: dict, summary: dict, log_records: list[dict]) -> dict:
    """T, the supernet's training wall time, as its workdir records it.

    `train_summary.json`'s `train_seconds` is the wall time of the training loop (tracing,
    steps, checkpoints, evaluations) of the run's sessions that a time budget counted, and of
    the last session alone for a run without one; so a supernet trained in several sessions
    would be undercounted. The sum of the step time of every `train_log.jsonl` window (each
    record's steps at its `images_per_s`; all sessions, evaluations left out) bounds T from
    below either way: T is the larger of the two.

    Args:
      run_config: the workdir's `run_config.json`.
      summary: its `train_summary.json`; the run must have finished.
      log_records: its `train_log.jsonl` records.

    A supernet started from another run's weights (`init_from` in its summary) adds that
    run's training seconds.

    Returns:
      `{"seconds", "summary_seconds", "log_step_seconds", "init_from_seconds", "source"}`.

    Raises:
      ClaimError: the run has not finished, or the batch size is unknown.
    """
    if not summary.get("finished"):
        raise ClaimError(
            f"the supernet's training has not finished (step {summary.get('step')} of "
            f"{summary.get('total_steps')}): run the command again to resume it"
        )
    try:
        batch = int(run_config["train"]["batch_size"])
    except (KeyError, TypeError, ValueError):
        raise ClaimError("the supernet's run_config.json names no train batch_size") from None
    from_log, previous = 0.0, 0
    for r in sorted((r for r in log_records if r.get("kind") == "train"), key=_step):
        rate = r.get("images_per_s")
        steps = _step(r) - previous
        previous = _step(r)
        if isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0 and steps > 0:
            from_log += steps * batch / rate
    from_summary = float(summary.get("train_seconds") or 0.0)
    seconds = max(from_summary, from_log)
    source = (
        "train_summary.json train_seconds"
        if from_summary >= from_log
        else "train_log.jsonl step time (larger than train_summary.json's: a resumed run)"
    )
    # A supernet started from another run's weights (`init_from`, e.g. the largest network
    # trained alone first) cost that run's time too.
    before = (summary.get("init_from") or {}).get("train_seconds")
    init_seconds = float(before) if isinstance(before, (int, float)) else 0.0
    if init_seconds:
        source += " + the init_from run's train_seconds"
    return {
        "seconds": round(seconds + init_seconds, 1),
        "summary_seconds": from_summary,
        "log_step_seconds": round(from_log, 1),
        "init_from_seconds": init_seconds,
        "source": source,
    }


def _step(record: dict) -> int:
    step = record.get("step", 0)
    return step if isinstance(step, int) else 0


def _log_distance(cost: float, target: float) -> float:
    return abs(math.log(cost / target))


def static_choices(static_front: list[dict]) -> tuple[dict, dict | None]:
    """static_best and static_third from the static front over every exit (validation).

    static_best: the highest `val_accuracy` (ties: the cheaper). static_third: among the other
    front points, the one whose cost (`avg_macs`, the truncated network's MACs) is nearest a
    third of static_best's on a log scale, `|log(cost / (best / 3))|` (ties: the more
    accurate); None when the front has one point.

    Raises:
      ClaimError: an empty front.
    """
    if not static_front:
        raise ClaimError("the search's static front is empty: no static network was measured")
    best = max(static_front, key=lambda r: (r["val_accuracy"], -r["avg_macs"]))
    target = best["avg_macs"] / 3.0
    others = [r for r in static_front if r is not best]
    if not others:
        return best, None
    third = min(others, key=lambda r: (_log_distance(r["avg_macs"], target), -r["val_accuracy"]))
    return best, third


def static_exports(static_front: list[dict], keep: list[dict], limit: int) -> list[dict]:
    """The static front points to export: all of them, or with `limit > 0` the `keep` points
    and then evenly spaced ones up to `limit` points, cheapest first."""
    if limit <= 0 or len(static_front) <= limit:
        return list(static_front)
    chosen = {id(r) for r in keep}
    spacing = [static_front[round(i)] for i in _even(len(static_front), limit)]
    for r in spacing:
        if len(chosen) >= max(limit, len(keep)):
            break
        chosen.add(id(r))
    return [r for r in static_front if id(r) in chosen]


def _even(n: int, count: int) -> list[float]:
    if count == 1:
        return [n - 1]
    return [i * (n - 1) / (count - 1) for i in range(count)]


def make_choices(pareto: dict, limit_static: int = 0) -> dict:
    """Everything chosen from the search's `pareto.json` (validation scores only).

    Args:
      pareto: the search report (`--mode=both`).
      limit_static: export at most this many static front points (0: all); static_best and
        static_third are always among them.

    Returns:
      `{"k", "dynamic": [records], "static_best", "static_third", "static_front": [records]}`,
      records as `pareto.json` holds them (architecture-file fields and `key`).

    Raises:
      ClaimError: not a report of a search of both modes, or no dynamic network chosen.
    """
    fronts = pareto.get("fronts") or {}
    if "static" not in fronts or "dynamic" not in fronts:
        raise ClaimError("pareto.json is not from a --mode=both search")
    if int(pareto.get("version", 0)) < 2:
        raise ClaimError("pareto.json is of version 1 (static networks at the last exit only)")
    dynamic = [c for c in pareto.get("chosen", []) if c.get("mode") == "dynamic"]
    if not dynamic:
        raise ClaimError("the search chose no dynamic network: k would be 0")
    front = sorted(fronts["static"], key=lambda r: r["avg_macs"])
    best, third = static_choices(front)
    keep = [best] + ([third] if third is not None else [])
    return {
        "k": len(dynamic),
        "dynamic": dynamic,
        "static_best": best,
        "static_third": third,
        "static_front": static_exports(front, keep, limit_static),
    }


def probe_timing(log_records: list[dict], summary: dict, batch_size: int) -> dict:
    """What the baseline's timing probe measured (`enas4d_tf.train.budget.LoopCosts`).

    The probe trains 2 epochs of `PROBE_EPOCH_STEPS` steps, one progress record each (its
    `train_seconds` read after the step), and evaluates once after the first epoch. The
    baseline trainer times each step from its batch's fetch (the loop's pace): a step takes
    the mean of `batch_size / images_per_s` over the steps other than each epoch's first
    (the first traces, or waits for the new epoch's pipeline). The second epoch's seconds
    less its steps and the evaluation's are an epoch's fixed cost (checkpoint, new
    pipeline); the first epoch's less its steps and that cost are the setup (tracing).

    Returns:
      `{"step_seconds", "epoch_seconds", "eval_seconds", "setup_seconds", "probe_seconds"}`.

    Raises:
      ClaimError: the probe logged too few steps, or not both of its epochs.
    """
    n = PROBE_EPOCH_STEPS
    train = {_step(r): r for r in log_records if r.get("kind") == "train"}
    seconds = [
        batch_size / r["images_per_s"]
        for step, r in train.items()
        if step not in (1, n + 1)
        and isinstance(r.get("images_per_s"), (int, float))
        and r["images_per_s"] > 0
    ]
    if len(seconds) < 2:
        raise ClaimError("the early-exit baseline's timing probe logged fewer than 2 timed steps")
    ends = [train.get(n, {}).get("train_seconds"), train.get(2 * n, {}).get("train_seconds")]
    if not all(isinstance(t, (int, float)) for t in ends):
        raise ClaimError(
            f"the early-exit baseline's timing probe logged no training seconds at step {n} "
            f"or {2 * n} (the ends of its 2 epochs)"
        )
    evals = [r for r in log_records if r.get("kind") == "eval" and _step(r) == n]
    eval_seconds = float(evals[0].get("seconds") or 0.0) if evals else 0.0
    costs = loop_costs(statistics.fmean(seconds), n, ends[0], ends[1], eval_seconds)
    return {
        **dataclasses.asdict(costs),
        "probe_seconds": float(summary.get("train_seconds") or 0.0),
    }


def baseline_epochs(
    timing: dict, minutes: float, max_epochs: int, steps_per_epoch: int, eval_every: int
) -> int:
    """The most whole epochs (1..max_epochs) that fit in `minutes`, planned as
    `tools.train --fit_epochs_to_budget` plans them (`enas4d_tf.train.budget.epochs_that_fit`)
    on the probe's costs; the baseline's final evaluation comes after its budget closes."""
    fields = [f.name for f in dataclasses.fields(LoopCosts)]
    missing = [k for k in fields if not isinstance(timing.get(k), (int, float))]
    if missing:
        raise ClaimError(
            f"the early-exit baseline's timing probe result lacks {', '.join(missing)} (a "
            "result of an older probe: delete its done marker to probe again)"
        )
    costs = LoopCosts(**{k: float(timing[k]) for k in fields})
    return epochs_that_fit(
        minutes, max_epochs, steps_per_epoch, costs, eval_every, last_counts=False
    )
