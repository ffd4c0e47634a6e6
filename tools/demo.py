"""The main job, end to end: train, search, export, run the cascade, print a table.

  python -m tools.demo --workdir=runs/demo            # what `make demo` runs
  python -m tools.demo --workdir=/tmp/d --smoke       # a reduced run (tests use it)

Each step runs the package's own command line, printed before it runs, so the demo is the
same thing a user would type. By default the search stands on the released supernet
(`--pretrained=fashion_mnist_v2`, committed under enas4d_tf/released/), and the training step is
a short run of its own to watch:

  1. python -m tools.pretrained --name=fashion_mnist_v2 --workdir=W
  2. python -m tools.train --flagfile=configs/train_watch.cfg --workdir=W/train_watch
  3. python -m tools.search --workdir=W --pareto ...
  4. python -m tools.export --workdir=W --from_search ...
  5. python -m tools.cascade --export_dir=W/export/<name> --split=test ...

With `--pretrained=` (empty; `--smoke` too, unless it names a release) the search stands on
the supernet the demo trains, in W itself (step 2 with --workdir=W and
configs/train_quick.cfg, no step 1). A W that holds a supernet the demo trained, or a copy of
another release (a runs/demo made when `fashion_mnist` was the default), is not searched as
if it were the release: the demo stops and says so, and W is left as it was.

Steps whose outputs exist are not redone (training resumes or says it has finished; the
search continues from its state; existing export folders are reused), so running the demo
again is cheap. The table at the end reads the cascade reports: measured on the test split
with the thresholds the search fitted on the validation split.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time

from absl import app, flags

from tools._cli import fail, flags_parser, quiet_stderr

flags.DEFINE_string("workdir", "runs/demo", "Where the run writes everything.")
flags.DEFINE_bool(
    "smoke",
    False,
    "A reduced run for tests: the tiny space, a few dozen training steps, a small search, "
    "float32 graphs and a few hundred test images.",
)
flags.DEFINE_string(
    "train_config",
    None,
    "Training flagfile; default configs/train_watch.cfg beside a release, "
    "configs/train_quick.cfg without one (smoke: train_smoke).",
)
flags.DEFINE_string(
    "quantization",
    None,
    "Stage-graph quantisations to export; default int8, the graphs the table measures "
    "(smoke: float32).",
)
flags.DEFINE_integer(
    "max_images", None, "Test images the cascade runs; default all (smoke: 300).", lower_bound=1
)
DEFAULT_RELEASE = "fashion_mnist_v2"
flags.DEFINE_string(
    "pretrained",
    None,
    "Released supernet to search on (python -m tools.pretrained --list); default "
    f"{DEFAULT_RELEASE} (smoke: none). Empty: search on the supernet the demo trains.",
)

FLAGS = flags.FLAGS


def _run(args: list[str]) -> None:
    print("\n$ " + " ".join(shlex.quote(a) for a in args), flush=True)
    t = time.time()
    result = subprocess.run(args)
    if result.returncode != 0:
        fail("demo", f"step {args[2]} failed (exit {result.returncode})")
    print(f"  ({time.time() - t:.0f} s)", flush=True)


def _check_same_release(workdir: str, release: str) -> None:
    """A workdir holding a copy of another release (an earlier default, say, or an earlier
    make of this one) is not searched as if it were `release`: its search state and exports
    are of the other supernet."""
    from enas4d_tf import pretrained

    held = pretrained.held_release(workdir)
    if held == release:
        return
    if held is None:
        what = f"a copy of a release that is not the current {release!r}"
        advice = "give another --workdir or remove it"
    else:
        what = f"the release {held!r}, not {release!r}"
        advice = f"give another --workdir, remove it, or pass --pretrained={held} to search it"
    fail("demo", f"{workdir} holds {what}: {advice}")


def _fmt_macs(m: float) -> str:
    return f"{m / 1e6:.2f}M"


def _exits(entry: dict) -> str:
    """A dynamic network's exits, or the one exit a static network is cut at."""
    if entry.get("exit") is None:
        return f"1-{len(entry['thresholds'])}"
    return f"{entry['exit']} only"


def _table(pareto: dict, reports: dict[str, dict], quantization: str) -> str:
    lines = []
    chosen = sorted(pareto["chosen"], key=lambda e: (e["mode"], e["avg_macs"]))
    lines.append(
        f"Chosen networks: test split, {quantization} stage graphs on the LiteRT interpreter, "
        "thresholds fitted on validation. Static networks are cut at any exit; held-out: the "
        "validation score each was ranked by (dynamic: thresholds fitted on the other half)"
    )
    lines.append("")
    lines.append(
        "| network | mode | exits | budget | test acc | avg MACs | val acc | held-out val acc "
        "| exit: threshold, rate, MACs |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for e in chosen:
        r = reports.get(e["name"])
        if r is None:
            continue
        exits = []
        # The report names each graph's exit (a network cut at exit s has one graph: exit s).
        numbers = r.get("exits") or range(1, len(r["thresholds"]) + 1)
        for number, t, rate, macs in zip(
            numbers, r["thresholds"], r["exit_rates"], r["stage_macs"], strict=True
        ):
            t_txt = "never" if t is None else f"{t:.3f}"
            exits.append(f"{number}: {t_txt}, {rate * 100:.1f}%, {_fmt_macs(macs)}")
        budget = "-" if e.get("budget_macs") is None else _fmt_macs(e["budget_macs"])
        held_out = e.get("ranking_accuracy", e["val_accuracy"])
        lines.append(
            f"| {e['name']} | {e['mode']} | {_exits(e)} | {budget} | {r['accuracy'] * 100:.2f}% "
            f"| {_fmt_macs(r['avg_macs'])} | {e['val_accuracy'] * 100:.2f}% "
            f"| {held_out * 100:.2f}% | {'; '.join(exits)} |"
        )
    return "\n".join(lines + [""] + _comparison(chosen, reports))


def _comparison(chosen: list, reports: dict[str, dict]) -> list[str]:
    """One line per budget: the dynamic network against the best static network (over every
    exit) chosen for the same budget, on the test split."""
    by_budget: dict = {}
    for e in chosen:
        if e["name"] in reports and e.get("budget_macs") is not None:
            by_budget.setdefault(e["budget_macs"], {})[e["mode"]] = e
    lines = ["Dynamic vs static (cut at any exit) at each budget, test split:"]
    for budget in sorted(by_budget):
        pair = by_budget[budget]
        if set(pair) != {"dynamic", "static"}:
            continue
        d, s = reports[pair["dynamic"]["name"]], reports[pair["static"]["name"]]
        lines.append(
            f"  budget {_fmt_macs(budget)}: dynamic {d['accuracy'] * 100:.2f}% at "
            f"{_fmt_macs(d['avg_macs'])}, static (exit {pair['static'].get('exit', '-')}) "
            f"{s['accuracy'] * 100:.2f}% at {_fmt_macs(s['avg_macs'])}"
        )
    return lines


def _search_args(workdir: str, smoke: bool) -> list[str]:
    args = ["-m", "tools.search", f"--workdir={workdir}", "--pareto", "--mode=both"]
    if smoke:
        args += ["--pareto_points=2", "--population=6", "--generations=2"]
        return args + ["--num_val_images=500", "--num_calibration_images=200"]
    args += ["--pareto_points=3", "--population=12", "--generations=4"]
    # A quarter of the default inner evolution: it was ~20 s of each ~45 s generation.
    args += ["--inner_population=50", "--inner_generations=25"]
    return args + ["--num_val_images=2000", "--num_calibration_images=1000"]


def _export_missing(paths, names: list[str], quantization: str, smoke: bool) -> None:
    """Exports the chosen networks that have no complete export folder yet."""
    if all(os.path.exists(paths.export_dir(n).manifest) for n in names):
        return
    # The exporter refuses to overwrite; export into a fresh folder and move what is new.
    _run(
        [
            sys.executable,
            "-m",
            "tools.export",
            f"--workdir={paths.root}",
            "--from_search",
            f"--out={paths.exports}",
            f"--quantization={quantization}",
            "--overwrite",
            f"--num_calibration_images={500 if smoke else 1000}",
            f"--threshold_images={500 if smoke else 2000}",  # the search's validation images
        ]
    )


def _cascade_reports(paths, names: list[str], quantization: str, max_images) -> dict:
    """Runs the cascade on the test split for each network (unless its report exists)."""
    reports = {}
    for name in names:
        out = paths.cascade_report(name, quantization)
        if not os.path.exists(out):
            cmd = [
                sys.executable,
                "-m",
                "tools.cascade",
                f"--export_dir={paths.export_dir(name).root}",
                f"--quantization={quantization}",
                "--split=test",
                "--num_threads=1",
                f"--report={out}",
            ]
            if max_images:
                cmd.append(f"--max_images={max_images}")
            os.makedirs(os.path.dirname(out), exist_ok=True)
            _run(cmd)
        with open(out) as f:
            reports[name] = json.load(f)
    return reports


def main(argv: list[str]) -> None:
    smoke = FLAGS.smoke
    workdir = FLAGS.workdir
    quantization = FLAGS.quantization or ("float32" if smoke else "int8")
    max_images = FLAGS.max_images or (300 if smoke else None)
    started = time.time()

    release = FLAGS.pretrained
    if release is None:
        release = "" if smoke else DEFAULT_RELEASE
    config = FLAGS.train_config or (
        "configs/train_smoke.cfg"
        if smoke
        else "configs/train_watch.cfg"
        if release
        else "configs/train_quick.cfg"
    )
    if release:
        with quiet_stderr():
            from enas4d_tf import pretrained
            from enas4d_tf.errors import WorkdirError
        try:  # before any training: a missing or damaged release is one line
            pretrained.release_dir(release)
        except WorkdirError as e:
            fail("demo", str(e))
        # The search stands on the release, copied into W; training is shown on a short
        # run of its own beside it.
        if not os.path.exists(os.path.join(workdir, "run_config.json")):
            _run(
                [
                    sys.executable,
                    "-m",
                    "tools.pretrained",
                    f"--name={release}",
                    f"--workdir={workdir}",
                ]
            )
        elif not os.path.exists(os.path.join(workdir, "release.json")):
            fail(
                "demo",
                f"{workdir} holds a supernet the demo trained, not the release {release!r}: "
                "give another --workdir, remove it, or pass --pretrained= to search it",
            )
        else:
            _check_same_release(workdir, release)
        watch = os.path.join(workdir, "train_watch")
        _run([sys.executable, "-m", "tools.train", f"--flagfile={config}", f"--workdir={watch}"])
    else:
        _run([sys.executable, "-m", "tools.train", f"--flagfile={config}", f"--workdir={workdir}"])
    _run([sys.executable, *_search_args(workdir, smoke)])

    with quiet_stderr():
        from enas4d_tf.workdir import Workdir
    paths = Workdir(workdir)
    with open(paths.pareto_json) as f:
        pareto = json.load(f)
    names = [e["name"] for e in pareto["chosen"]]
    _export_missing(paths, names, quantization, smoke)
    cascade_q = "int8" if "int8" in quantization.split(",") else quantization.split(",")[0]
    reports = _cascade_reports(paths, names, cascade_q, max_images)

    print()
    print(_table(pareto, reports, cascade_q))
    print()
    print(f"plot:    {paths.pareto_png}")
    print(f"exports: {paths.exports}/<network>/ (subnet.keras, stage graphs, manifest.json)")
    print(f"reports: {paths.cascade_reports}/")
    print(f"demo finished in {(time.time() - started) / 60:.1f} minutes")


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("demo"))
