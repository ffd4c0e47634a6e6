"""The stages of the benchmark of record (`bench/claim.py`), each made of resumable steps.

1. supernet   `tools.train --flagfile=<train config> --workdir=W` (resumes; a finished run
              exits at once)
2. search     `tools.search --mode=both --pareto ...` (validation only; continues its state)
3. choices    `choices.json`: T, k, the dynamic networks, static_best, static_third, the
              static front, the early-exit configurations (`claim_choices.make_choices`);
              written once, before any baseline trains, and never rewritten
4. baselines  static_best / static_third trained from scratch by `tools.train --arch_file
              --max_train_minutes --fit_epochs_to_budget`; the early-exit baseline by
              `tools.train_baseline`, its epochs fitted to the budget from a timing probe;
              each for T (view "one") and T / k (view "many")
5. alone      each chosen dynamic architecture trained alone for T / k, thresholds refitted
              on validation; its cut-out fine-tuned (`tools.finetune`), thresholds refitted
6. export     the supernet's chosen dynamic networks and static front, the from-scratch
              statics, the networks trained alone (the early-exit front is exported by
              `tools.train_baseline --out` in stage 4)

Stage 7, the report, is `claim_testsplit.py`'s: the only one that reads the test split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil

from bench import claim_choices as choices_lib
from bench.claim_choices import ClaimError
from bench.claim_steps import ClaimPaths, Steps, run_tool
from enas4d_tf.files import write_json_atomic

VIEWS = ("one", "many")
STATIC_ROLES = ("static_best", "static_third")
# The cheaper early-exit configuration compared with --cheap_baseline (tools.train_baseline's
# docstring: 1.6 / 2.1 / 2.5 M MACs to its exits on fashion_mnist, the cheap end of the
# dynamic front).
CHEAP_BASELINE_FLAGS = ("--depth=1", "--kernel=3", "--expand=3", "--resolution=24")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a benchmark of record runs with (`bench/claim.py`'s flags); kept in
    `settings.json` so that a resumed run uses the same."""

    workdir: str
    train_flagfile: str
    pareto_points: int
    population: int
    generations: int
    num_val_images: int
    num_calibration_images: int
    quantizations: tuple
    baseline_pareto_points: int
    max_epochs: int
    cheap_baseline: bool
    finetune_epochs: int
    finetune_steps: int
    finetune_learning_rate: float
    max_static_front: int
    num_test_images: int
    export_calibration_images: int
    # A supernet trained with an earlier recipe (issue 17's "before"): searched with the same
    # settings, its dynamic front measured against the same baselines. May be added later.
    before_workdir: str = ""

    def record(self) -> dict:
        """JSON-safe (the settings file's contents)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}


@dataclasses.dataclass
class Claim:
    """One run of the benchmark: its settings, folders, steps and progress log."""

    settings: Settings
    paths: ClaimPaths
    steps: Steps
    log: object
    _validation: tuple | None = None

    @property
    def workdir(self) -> str:
        return self.settings.workdir

    def validation(self, search_settings: dict) -> tuple:
        """The validation and calibration images the search used (loaded once)."""
        if self._validation is None:
            from bench.claim_measure import validation_data

            self._validation = validation_data(search_settings)
        return self._validation

    def export_config(self, out: str):
        from enas4d_tf.export.plan import ExportConfig

        s = self.settings
        return ExportConfig(
            out=out,
            quantizations=s.quantizations,
            num_calibration_images=s.export_calibration_images,
            representative_images=min(300, s.export_calibration_images),
        )


def stage_supernet(c: Claim) -> None:
    """Stage 1: trains (or resumes) the supernet."""
    args = [f"--flagfile={c.settings.train_flagfile}", f"--workdir={c.workdir}"]
    c.steps.tool("supernet", "tools.train", args)


def stage_search(c: Claim) -> None:
    """Stage 2: the search, both modes, a Pareto grid of budgets (validation only)."""
    c.steps.tool("search", "tools.search", _search_args(c, c.workdir))


def _search_args(c: Claim, workdir: str) -> list[str]:
    """tools.search's flags for the benchmark's search of `workdir` (both modes, a grid)."""
    s = c.settings
    return [
        f"--workdir={workdir}",
        "--mode=both",
        "--pareto",
        f"--pareto_points={s.pareto_points}",
        f"--population={s.population}",
        f"--generations={s.generations}",
        f"--num_val_images={s.num_val_images}",
        f"--num_calibration_images={s.num_calibration_images}",
    ]


def search_digest(pareto: dict) -> str:
    """The sha256 of what the choices are made from: the search report less its run
    statistics (running the same search again, which measures nothing twice, rewrites the
    report with other wall times but the same networks)."""
    content = {k: v for k, v in pareto.items() if k != "stats"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def stage_choices(c: Claim) -> dict:
    """Stage 3: `choices.json` (made once; later runs check that the search is the same)."""
    from enas4d_tf.export import formats
    from enas4d_tf.workdir import Workdir

    w = Workdir(c.workdir)
    pareto = choices_lib.read_json_file(w.pareto_json, "search report")
    digest = search_digest(pareto)
    if os.path.exists(c.paths.choices):
        choices = choices_lib.read_json_file(c.paths.choices, "choices")
        if choices.get("search_sha256") != digest:
            raise ClaimError(
                f"{w.pareto_json} changed after the choices were made ({c.paths.choices}): "
                f"move {c.paths.root} away to start the benchmark over"
            )
        return choices
    run_config = choices_lib.read_json_file(w.run_config, "run config")
    summary = choices_lib.read_json_file(w.train_summary, "training summary")
    T = choices_lib.supernet_seconds(run_config, summary, choices_lib.read_jsonl(w.train_log))
    picked = choices_lib.make_choices(pareto, c.settings.max_static_front)
    for record in picked["dynamic"] + picked["static_front"]:
        formats.write_arch_file(c.paths.arch(record["name"]), record)
    for role in STATIC_ROLES:
        if picked[role] is not None:
            formats.write_arch_file(c.paths.arch(role), {**picked[role], "name": role})
    baselines = [{"name": "early_exit", "flags": []}]
    if c.settings.cheap_baseline:
        baselines.append({"name": "early_exit_cheap", "flags": list(CHEAP_BASELINE_FLAGS)})
    minutes = T["seconds"] / 60.0
    choices = {
        "version": choices_lib.CHOICES_VERSION,
        "pareto_json": w.pareto_json,
        "search_sha256": digest,
        "search_settings": pareto["settings"],
        "supernet": T,
        "steps_per_epoch": int(run_config["steps_per_epoch"]),
        "k": picked["k"],
        "minutes": {"one": minutes, "many": minutes / picked["k"]},
        **{key: picked[key] for key in ("dynamic", "static_best", "static_third")},
        "static_front": picked["static_front"],
        "early_exit": baselines,
    }
    write_json_atomic(c.paths.choices, choices, error=ClaimError)  # last: the stage is done
    c.log(
        f"[claim] choices: T = {minutes:.1f} min ({T['source']}), k = {picked['k']}, "
        f"static_best {picked['static_best']['name']}, static_third "
        f"{(picked['static_third'] or {}).get('name')}"
    )
    return choices


def _minutes(choices: dict, view: str) -> str:
    return f"{choices['minutes'][view]:.4f}"


def stage_static_baselines(c: Claim, choices: dict) -> None:
    """Stage 4a: static_best and static_third trained from scratch, both views."""
    for role in STATIC_ROLES:
        if choices[role] is None:
            continue
        for view in VIEWS:
            run = f"{role}_{view}"
            args = [
                f"--flagfile={c.settings.train_flagfile}",
                f"--workdir={c.paths.run(run)}",
                f"--arch_file={c.paths.arch(role)}",
                f"--max_train_minutes={_minutes(choices, view)}",
                "--fit_epochs_to_budget",
                f"--epochs={c.settings.max_epochs}",
            ]
            c.steps.tool(f"train_{run}", "tools.train", args)


def _baseline_recipe(c: Claim) -> tuple[list[str], dict]:
    from enas4d_tf.baselines.backbone import exit_macs
    from enas4d_tf.baselines.config import BaselineConfig

    train_flags = choices_lib.parse_flagfile(c.settings.train_flagfile)
    preset = train_flags.get("preset", "fashion_mnist")
    num_exits = len(exit_macs(BaselineConfig(workdir="", preset=preset).backbone()))
    recipe, _ = choices_lib.baseline_recipe(train_flags, num_exits)
    return recipe, train_flags


def _probe(c: Claim, name: str, flags: list[str], batch_size: int) -> dict:
    """Times 2 epochs of `PROBE_EPOCH_STEPS` steps of the baseline, with an evaluation after
    the first as the run evaluates, in a scratch workdir (removed after)."""
    folder = c.paths.probe(name)
    shutil.rmtree(folder, ignore_errors=True)  # a probe cut short would resume, not re-time
    n = choices_lib.PROBE_EPOCH_STEPS
    probe_flags = [
        f"--workdir={folder}",
        "--epochs=2",
        f"--steps_per_epoch={n}",
        "--warmup_epochs=0",
        "--log_every_steps=1",
        f"--checkpoint_every_steps={n}",
        "--eval_every_epochs=1",
        "--num_val_images=100",
        "--pareto_points=2",
    ]
    run_tool(c.steps.python, "tools.train_baseline", flags + probe_flags, c.log)
    records = choices_lib.read_jsonl(os.path.join(folder, "train_log.jsonl"))
    summary = choices_lib.read_json_file(
        os.path.join(folder, "train_summary.json"), "probe summary"
    )
    timing = choices_lib.probe_timing(records, summary, batch_size)
    shutil.rmtree(folder, ignore_errors=True)
    return timing


def stage_early_exit(c: Claim, choices: dict) -> None:
    """Stage 4b: each early-exit configuration, both views, its thresholds fitted on
    validation and its front exported (`tools.train_baseline --out`)."""
    from enas4d_tf.baselines.config import BaselineConfig

    recipe, train_flags = _baseline_recipe(c)
    batch = int(train_flags.get("batch_size", 256))
    default_every = BaselineConfig(workdir="").eval_every_epochs
    eval_every = int(train_flags.get("eval_every_epochs", default_every))
    s = c.settings
    for baseline in choices["early_exit"]:
        name, flags = baseline["name"], recipe + baseline["flags"]
        timing = c.steps.run(f"probe_{name}", _probe, c, name, flags, batch)
        for view in VIEWS:
            minutes = float(_minutes(choices, view))
            epochs = choices_lib.baseline_epochs(
                timing, minutes, s.max_epochs, choices["steps_per_epoch"], eval_every
            )
            args = flags + [
                f"--workdir={c.paths.run(f'{name}_{view}')}",
                f"--epochs={epochs}",
                f"--max_train_minutes={minutes:.4f}",
                f"--pareto_points={s.baseline_pareto_points}",
                f"--num_val_images={choices['search_settings']['num_val_images']}",
                f"--out={c.paths.exports(f'{name}_{view}')}",
                f"--quantization={','.join(s.quantizations)}",
                "--overwrite",
            ]
            c.steps.tool(f"train_{name}_{view}", "tools.train_baseline", args)


def measure_module():
    """`bench.claim_measure`, imported (with TensorFlow) without TensorFlow's start-up lines."""
    from tools._cli import quiet_stderr

    with quiet_stderr():
        import keras  # noqa: F401  (TensorFlow's start-up lines go here)

        from bench import claim_measure
        from enas4d_tf.data import load_arrays  # noqa: F401
    return claim_measure


def stage_alone(c: Claim, choices: dict) -> None:
    """Stage 5a: each chosen dynamic architecture trained alone for T / k, thresholds
    refitted on validation for its budget (an architecture file for its export)."""
    refit_alone = measure_module().refit_alone

    for record in choices["dynamic"]:
        run = f"alone_{record['name']}"
        args = [
            f"--flagfile={c.settings.train_flagfile}",
            f"--workdir={c.paths.run(run)}",
            f"--arch_file={c.paths.arch(record['name'])}",
            f"--max_train_minutes={_minutes(choices, 'many')}",
            "--fit_epochs_to_budget",
            f"--epochs={c.settings.max_epochs}",
        ]
        c.steps.tool(f"train_{run}", "tools.train", args)
        data = c.validation(choices["search_settings"])
        c.steps.run(
            f"refit_{run}",
            refit_alone,
            c.paths.run(run),
            record,
            c.paths.arch(run),
            data,
        )


def stage_export_supernet(c: Claim, choices: dict) -> None:
    """Stage 6a: the supernet's chosen dynamic networks and its static front."""
    export_networks = measure_module().export_networks
    names = [r["name"] for r in choices["dynamic"] + choices["static_front"]]
    files = [c.paths.arch(n) for n in names]
    config = c.export_config(c.paths.exports("supernet"))
    c.steps.run("export_supernet", export_networks, c.workdir, files, config, c.log)


def stage_before(c: Claim, choices: dict) -> None:
    """Stage 6c (with `before_workdir`): the earlier recipe's supernet, searched with the same
    settings (validation only), and its chosen dynamic networks exported, so the report can
    state the dynamic front's ratio to the same baselines before and after."""
    from enas4d_tf.export import formats
    from enas4d_tf.workdir import Workdir

    before = c.settings.before_workdir
    if not before:
        return
    w = Workdir(before)
    _check_before(c, w)
    c.steps.tool("before_search", "tools.search", _search_args(c, before))
    pareto = choices_lib.read_json_file(w.pareto_json, "the before supernet's search report")
    picked = choices_lib.make_choices(pareto, c.settings.max_static_front)["dynamic"]
    files = []
    for record in picked:
        files.append(c.paths.arch(f"before_{record['name']}"))
        if not os.path.exists(files[-1]):
            formats.write_arch_file(files[-1], record)
    export_networks = measure_module().export_networks
    config = c.export_config(c.paths.exports("before"))
    c.steps.run("export_before", export_networks, before, files, config, c.log)


def _check_before(c: Claim, w) -> None:
    """The before supernet must have finished, on this run's data and search space; the first
    one measured is the only one (its steps, exports and test results are not redone)."""
    from enas4d_tf.workdir import Workdir

    summary = choices_lib.read_json_file(w.train_summary, "the before supernet's summary")
    if not isinstance(summary, dict) or not summary.get("finished"):
        raise ClaimError(f"--before_workdir {w.root}: its training has not finished")
    ours = choices_lib.read_json_file(Workdir(c.workdir).run_config, "run config")
    theirs = choices_lib.read_json_file(w.run_config, "the before supernet's run config")
    for key in ("dataset", "space", "num_classes"):
        if ours.get(key) != theirs.get(key):
            raise ClaimError(
                f"--before_workdir {w.root} trained another {key} than {c.workdir}: the "
                "before/after comparison needs the same data and search space"
            )
    where = os.path.realpath(w.root)
    if os.path.exists(c.paths.before):
        measured = choices_lib.read_json_file(c.paths.before, "before record").get("workdir")
        if measured != where:
            raise ClaimError(
                f"{c.paths.root} measured {measured} as the before supernet, not {where}: "
                f"remove {c.paths.before}, {c.paths.exports('before')} and the claim's "
                "done/*before*, archs/before_* and test/before_* files to measure another"
            )
    else:
        write_json_atomic(c.paths.before, {"workdir": where}, error=ClaimError)


def stage_finetune(c: Claim, choices: dict) -> None:
    """Stage 5b: each chosen dynamic network's cut-out fine-tuned briefly, thresholds
    refitted on validation for its budget."""
    refit_finetuned = measure_module().refit_finetuned
    s, search = c.settings, choices["search_settings"]
    for record in choices["dynamic"]:
        name = record["name"]
        model = c.export_config(c.paths.exports("supernet")).export_dir(name).subnet
        args = [
            f"--model={model}",
            f"--dataset={search['dataset']}",
            f"--epochs={s.finetune_epochs}",
            f"--learning_rate={s.finetune_learning_rate}",
            f"--out={c.paths.finetuned(name)}",
            "--overwrite",
        ]
        args += [f"--data_dir={search['data_dir']}"] if search.get("data_dir") else []
        args += [f"--steps_per_epoch={s.finetune_steps}"] if s.finetune_steps else []
        c.steps.tool(f"finetune_{name}", "tools.finetune", args)
        data = c.validation(search)
        c.steps.run(
            f"refit_finetuned_{name}",
            refit_finetuned,
            c.paths.finetuned(name),
            record,
            record["stage_macs"],
            c.paths.finetuned_fit(name),
            data,
        )


def stage_export_trained(c: Claim, choices: dict) -> None:
    """Stage 6b: the from-scratch statics and the dynamic architectures trained alone."""
    export_networks = measure_module().export_networks
    for role in STATIC_ROLES:
        if choices[role] is None:
            continue
        for view in VIEWS:
            run = f"{role}_{view}"
            config = c.export_config(c.paths.exports(run))
            files = [c.paths.arch(role)]
            c.steps.run(
                f"export_{run}",
                export_networks,
                c.paths.run(run),
                files,
                config,
                c.log,
            )
    for record in choices["dynamic"]:
        run = f"alone_{record['name']}"
        config = c.export_config(c.paths.exports("alone"))
        files = [c.paths.arch(run)]
        c.steps.run(
            f"export_{run}",
            export_networks,
            c.paths.run(run),
            files,
            config,
            c.log,
        )
