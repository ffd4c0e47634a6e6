"""Stage 7 of the benchmark of record (`bench/claim.py`): the report, the ONLY stage that
reads the test split, run after every choice above is made (`choices.json`, thresholds in the
exports and the refit files).

Every exported network runs through the LiteRT cascade (`enas4d_tf.export.cascade.Cascade`,
what `tools.cascade --split=test --num_threads=1` runs) once per quantisation: accuracy, exit
rates, average MACs and average latency per image. The fine-tuned cut-outs (Keras models)
get their test accuracy and average MACs at their validation-fitted thresholds. Each result is
kept in `claim/test/<id>.json` as soon as it is measured, so a report cut short resumes.
"""

from __future__ import annotations

import os

from bench import claim_render, claim_report
from bench.claim_choices import ClaimError, read_json_file
from bench.claim_stages import STATIC_ROLES, VIEWS, Claim
from enas4d_tf.files import write_bytes_atomic, write_json_atomic

REPORT_VERSION = 1


def networks(c: Claim, choices: dict) -> list[dict]:
    """Every network the report measures: `{"id", "name", "group", "view", "export_dir"}` or,
    for a fine-tuned cut-out, `"model"` and `"fit"` instead of `"export_dir"`."""
    p = c.paths
    supernet = p.exports("supernet")
    out = [
        _net(f"supernet_{r['name']}", r["name"], "dynamic", None, os.path.join(supernet, r["name"]))
        for r in choices["dynamic"]
    ]
    out += [
        _net(
            f"supernet_{r['name']}",
            r["name"],
            "supernet_static",
            None,
            os.path.join(supernet, r["name"]),
        )
        for r in choices["static_front"]
    ]
    for role in STATIC_ROLES:
        if choices[role] is not None:
            for view in VIEWS:
                run = f"{role}_{view}"
                out.append(
                    _net(run, run, "scratch_static", view, os.path.join(p.exports(run), role))
                )
    for baseline in choices["early_exit"]:
        for view in VIEWS:
            parent = p.exports(f"{baseline['name']}_{view}")
            for folder in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
                if os.path.exists(os.path.join(parent, folder, "manifest.json")):
                    name = f"{baseline['name']}_{view}_{folder}"
                    out.append(_net(name, name, "early_exit", view, os.path.join(parent, folder)))
    for r in choices["dynamic"]:
        name = r["name"]
        alone = os.path.join(p.exports("alone"), name)
        out.append(_net(f"alone_{name}", f"alone_{name}", "alone", "many", alone))
        finetuned = _net(f"finetuned_{name}", f"finetuned_{name}", "finetuned", None, None)
        finetuned.update(model=p.finetuned(name), fit=p.finetuned_fit(name))
        out.append(finetuned)
    before = p.exports("before")
    if c.settings.before_workdir and os.path.isdir(before):
        for folder in sorted(os.listdir(before)):
            if os.path.exists(os.path.join(before, folder, "manifest.json")):
                name = f"before_{folder}"
                out.append(_net(name, name, "before", None, os.path.join(before, folder)))
    return out


def _net(id_, name, group, view, export_dir) -> dict:
    return {"id": id_, "name": name, "group": group, "view": view, "export_dir": export_dir}


def measure(c: Claim, nets: list[dict], test: tuple) -> dict:
    """`{id: {quantization: result}}`, measuring what `claim/test/` does not hold yet."""
    from bench.claim_stages import measure_module

    test_cascade, test_keras = measure_module().test_cascade, measure_module().test_keras
    images, labels = test
    out = {}
    for net in nets:
        results = {}
        kinds = ["keras"] if net["export_dir"] is None else list(c.settings.quantizations)
        for q in kinds:
            path = c.paths.test_result(f"{net['id']}__{q}")
            if not os.path.exists(path):
                c.log(f"[claim] test: {net['id']} ({q})")
                if net["export_dir"] is None:
                    fit = read_json_file(net["fit"], "fine-tuned thresholds")
                    result = test_keras(net["model"], fit, images, labels)
                else:
                    result = test_cascade(net["export_dir"], q, images, labels)
                write_json_atomic(path, result, error=ClaimError)
            results[q] = read_json_file(path, "test result")
        out[net["id"]] = results
    return out


def points(nets: list[dict], results: dict, quantizations) -> dict:
    """`{quantization: [points]}` (`claim_report`); a fine-tuned cut-out's Keras result is in
    every quantisation's list, without latency."""
    out = {q: [] for q in quantizations}
    for net in nets:
        for q in quantizations:
            r = results[net["id"]].get(q) or results[net["id"]].get("keras")
            out[q].append(
                {
                    "name": net["name"],
                    "group": net["group"],
                    "view": net["view"],
                    "accuracy": float(r["accuracy"]),
                    "avg_macs": float(r["avg_macs"]),
                    "latency_ms": r.get("avg_latency_ms"),
                    "exit_rates": r.get("exit_rates"),
                }
            )
    return out


def per_network(choices: dict, pts: list[dict]) -> list[dict]:
    """For each chosen dynamic network: its cut-out, the same architecture trained alone (T / k)
    and the cut-out fine-tuned, on test (float32 points)."""
    by_name = {p["name"]: p for p in pts}
    rows = []
    for r in choices["dynamic"]:
        name = r["name"]
        rows.append(
            {
                "name": name,
                "budget_macs": r.get("budget_macs"),
                "cut_out": by_name.get(name),
                "alone": by_name.get(f"alone_{name}"),
                "finetuned": by_name.get(f"finetuned_{name}"),
            }
        )
    return rows


def stage_report(c: Claim, choices: dict, out_dir: str) -> dict:
    """Stage 7: measures every network on test and writes `<out>/claim.json|md|png`."""
    from bench.claim_stages import measure_module
    from tools._cli import quiet_stderr

    measure_module()  # TensorFlow, imported quietly
    with quiet_stderr():
        from enas4d_tf.data import load_arrays
    search = choices["search_settings"]
    test = load_arrays(
        search["dataset"],
        "test",
        search.get("data_dir") or None,
        c.settings.num_test_images or None,
    )
    nets = networks(c, choices)
    results = measure(c, nets, test)
    qs = list(c.settings.quantizations)
    pts = points(nets, results, qs)
    report = {
        "version": REPORT_VERSION,
        "workdir": c.workdir,
        "num_test_images": int(len(test[1])),
        "settings": c.settings.record(),
        "choices": {k: v for k, v in choices.items() if k not in ("dynamic", "static_front")},
        "chosen_dynamic": [r["name"] for r in choices["dynamic"]],
        "points": pts,
        "comparisons": claim_report.comparisons(pts, qs),
        "before": claim_report.before_after(pts["float32"], c.settings.before_workdir),
        "per_network": per_network(choices, pts["float32"]),
        "steps": step_times(c),
    }
    os.makedirs(out_dir, exist_ok=True)
    write_json_atomic(os.path.join(out_dir, "claim.json"), report, error=ClaimError)
    markdown = claim_render.markdown(report)
    write_bytes_atomic(os.path.join(out_dir, "claim.md"), markdown.encode(), error=ClaimError)
    claim_render.plot(report, os.path.join(out_dir, "claim.png"))
    return report


def step_times(c: Claim) -> dict:
    """`{step: seconds}` of every completed step (the markers)."""
    folder = os.path.dirname(c.paths.done("x"))
    out = {}
    for f in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if f.endswith(".json"):
            out[f[: -len(".json")]] = read_json_file(os.path.join(folder, f), "marker")["seconds"]
    return out
