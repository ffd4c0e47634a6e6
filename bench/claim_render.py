"""claim.md and claim.png of the benchmark of record, from the report `claim_testsplit` builds."""

from __future__ import annotations

from bench import claim_report
from enas4d_tf.search.evolution import format_macs

_AGAINST = {
    "one": "baselines trained for T (one deployment)",
    "many": "baselines trained for T / k (many deployments)",
    "supernet_static": "the supernet's own static front over every exit",
}
_STYLE = {  # group: (label, marker, colour)
    "dynamic": ("dynamic front (search, cut out)", "o", "C0"),
    "supernet_static": ("static front over every exit (cut out)", "s", "C1"),
    "scratch_static": ("static, trained from scratch", "D", "C2"),
    "early_exit": ("early-exit baseline", "^", "C3"),
    "alone": ("dynamic architecture trained alone (T / k)", "v", "C4"),
    "finetuned": ("cut-out fine-tuned", "P", "C5"),
    "before": ("dynamic front of the earlier recipe's supernet", "x", "C7"),
}
_CONNECTED = ("dynamic", "supernet_static", "early_exit", "before")  # fronts: drawn as lines


def _cost(value, cost: str) -> str:
    if value is None:
        return "-"
    return format_macs(value) if cost == "avg_macs" else f"{value:.3f} ms"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _ratio_table(rows: list, cost: str) -> list[str]:
    if not rows:
        return ["(no accuracy level both fronts reach)", ""]
    out = ["| test accuracy | dynamic | its cost | best baseline | its cost | ratio |"]
    out.append("|---|---|---|---|---|---|")
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}x"
        out.append(
            f"| {_pct(r['accuracy'])} | {r['dynamic']} | {_cost(r['dynamic_cost'], cost)} | "
            f"{r['baseline']} | {_cost(r['baseline_cost'], cost)} | {ratio} |"
        )
    return out + [""]


def _goal_line(g: dict, what: str, cost: str) -> str:
    verdict = "MET" if g["met"] else "NOT MET"
    if g["target_accuracy"] is None:
        return f"- {what}: {verdict} ({g['why']})"
    return (
        f"- {what}: {verdict}: best baseline {g['baseline']} {_pct(g['target_accuracy'])} at "
        f"{_cost(g['baseline_cost'], cost)}; dynamic {g['dynamic'] or '-'} at "
        f"{_cost(g['dynamic_cost'], cost)}: {g['why']}"
    )


def _comparison(name: str, entry: dict, quantizations) -> list[str]:
    out = [f"## Against {_AGAINST[name]}", ""]
    met = claim_report.goal_met(entry)
    out.append(
        f"**Goal (<= {claim_report.MACS_GOAL}x MACs and <= {claim_report.LATENCY_GOAL}x float32 "
        f"latency at the best baseline's test accuracy): {'met' if met else 'NOT met'}.**"
    )
    out.append("")
    out.append(_goal_line(entry["goal_macs"], "average MACs", "avg_macs"))
    for q in quantizations:
        out.append(_goal_line(entry["goal_latency"][q], f"latency ({q})", "latency_ms"))
    out += ["", "Average MACs:", ""] + _ratio_table(entry["macs"], "avg_macs")
    for q in quantizations:
        out += [f"LiteRT latency, {q}, 1 thread:", ""]
        out += _ratio_table(entry["latency"][q], "latency_ms")
    return out


def _point(p) -> str:
    if p is None:
        return "- | - "
    return f"{_pct(p['accuracy'])} | {format_macs(p['avg_macs'])} "


def _per_network(rows: list) -> list[str]:
    out = [
        "## What the search buys, and what weight sharing buys",
        "",
        "Per chosen dynamic network, test accuracy and average MACs of: its cut-out (weights "
        "shared, nothing trained per network), the same architecture trained alone for T / k "
        "(what a user pays per network without weight sharing), and the cut-out fine-tuned "
        "briefly. Thresholds of each are fitted on validation for the network's budget.",
        "",
        "| network | budget | cut-out acc | MACs | alone acc | MACs | fine-tuned acc | MACs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        budget = "-" if r["budget_macs"] is None else format_macs(r["budget_macs"])
        out.append(
            f"| {r['name']} | {budget} | {_point(r['cut_out'])}| {_point(r['alone'])}| "
            f"{_point(r['finetuned'])}|"
        )
    return out + [""]


def _before_after(before: dict | None) -> list[str]:
    if not before:
        return []
    out = [
        "## Before and after the training recipe",
        "",
        f"The supernet of the earlier recipe ({before['workdir']}) searched with the same "
        "settings, its chosen dynamic networks measured on test like the others, against the "
        "same baselines (float32, average MACs):",
        "",
    ]
    for view, pair in before["views"].items():
        out.append(f"Against {_AGAINST[view]}:")
        out.append(_goal_line(pair["before"], "before (earlier recipe)", "avg_macs"))
        out.append(_goal_line(pair["after"], "after (this supernet)", "avg_macs"))
        out.append("")
    return out


def _points_table(points: list) -> list[str]:
    out = ["## Every network on test (float32)", ""]
    out += ["| network | group | view | test acc | avg MACs | latency | exit rates |"]
    out += ["|---|---|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: (p["group"], p["avg_macs"])):
        rates = "/".join(f"{r:.2f}" for r in p["exit_rates"] or [])
        out.append(
            f"| {p['name']} | {p['group']} | {p['view'] or '-'} | {_pct(p['accuracy'])} | "
            f"{format_macs(p['avg_macs'])} | {_cost(p['latency_ms'], 'latency_ms')} | {rates} |"
        )
    return out + [""]


def _mean_gain(rows: list, key: str) -> float | None:
    gains = [r[key]["accuracy"] - r["cut_out"]["accuracy"] for r in rows if r[key] and r["cut_out"]]
    return sum(gains) / len(gains) if gains else None


def _changes(entry: dict) -> list[str]:
    """What would have to change for one comparison whose goal is not met."""
    macs, latency = entry["goal_macs"], entry["goal_latency"].get("float32", {})
    out = []
    if macs["ratio"] is None and macs["target_accuracy"] is not None:
        out.append(
            "the dynamic front never reaches the best baseline's accuracy: its most accurate "
            "networks must gain accuracy (a longer supernet training, or closing the weight "
            "sharing gap)"
        )
    elif macs["ratio"] is not None and not macs["met"]:
        out.append(
            "the early exits are not cheap enough for their accuracy: the first stages must "
            "classify more images confidently for fewer MACs (wider early groups, better "
            "distillation into the early exits)"
        )
    if macs["met"] and latency and not latency["met"]:
        out.append(
            "latency falls behind the MACs: every stage adds an interpreter call, hand-off "
            "tensors and a head, so fewer or fused stage graphs would be needed"
        )
    return out


def _closing(report: dict) -> list[str]:
    """What the numbers say about where the loss (or the gain) comes from."""
    lines = ["## Closing note", ""]
    rows = report["per_network"]
    alone, tuned = _mean_gain(rows, "alone"), _mean_gain(rows, "finetuned")
    if alone is not None:
        lines.append(
            f"- Weight sharing: the chosen architectures trained alone for T / k are "
            f"{100 * alone:+.2f} points more accurate than their cut-outs on average"
            + (
                "; the shared weights cost accuracy."
                if alone > 0
                else "; the cut-outs lose nothing to weight sharing at this budget."
            )
        )
    if tuned is not None:
        lines.append(f"- A brief fine-tuning changes the cut-outs by {100 * tuned:+.2f} points.")
    for name, entry in report["comparisons"].items():
        if claim_report.goal_met(entry):
            lines.append(f"- Against {_AGAINST[name]}: the goal is met.")
            continue
        changes = _changes(entry) or ["see the ratios above"]
        lines.append(
            f"- Against {_AGAINST[name]}: the goal is not met; to meet it, "
            + "; and ".join(changes)
            + "."
        )
    return lines + [""]


def markdown(report: dict) -> str:
    """claim.md: the verdicts, ratio tables, per-network comparison and every point."""
    ch = report["choices"]
    qs = report["settings"]["quantizations"]
    out = [
        f"# The benchmark of record: {report['workdir']}",
        "",
        f"T = {ch['minutes']['one']:.1f} min (the supernet's training wall time, "
        f"{ch['supernet']['source']}); k = {ch['k']} dynamic networks chosen, so T / k = "
        f"{ch['minutes']['many']:.1f} min. Every choice (architectures, thresholds, epochs) "
        f"was made on validation; the {report['num_test_images']} test images were read once, "
        "here.",
        "",
        "Rules: a front's cost for test accuracy a is the cheapest of its points reaching a; "
        "the best baseline of a view is the Pareto front of all its baselines (statics trained "
        "from scratch and the early-exit baseline). The three accuracy levels: the highest "
        "both fronts reach (the smaller of their best accuracies), the larger of their "
        "cheapest points' accuracies, and the midpoint.",
        "",
    ]
    for name, entry in report["comparisons"].items():
        out += _comparison(name, entry, qs)
    out += _per_network(report["per_network"])
    out += _before_after(report.get("before"))
    out += _closing(report)
    out += _points_table(report["points"]["float32"])
    return "\n".join(out)


def plot(report: dict, path: str) -> None:
    """claim.png: test accuracy against average MACs, every group; one deployment filled,
    many deployments hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from enas4d_tf.files import write_bytes_atomic

    fig, ax = plt.subplots(figsize=(10, 5.5))
    pts = report["points"]["float32"]
    for group, (label, marker, colour) in _STYLE.items():
        for view in (None, "one", "many"):
            mine = sorted(
                (p for p in pts if p["group"] == group and p["view"] == view),
                key=lambda p: p["avg_macs"],
            )
            if not mine:
                continue
            text = label + {None: "", "one": ", T", "many": ", T / k"}[view]
            text = label if group == "alone" else text
            ax.plot(
                [p["avg_macs"] for p in mine],
                [100 * p["accuracy"] for p in mine],
                marker=marker,
                color=colour,
                linestyle="-" if group in _CONNECTED else "",
                markerfacecolor="none" if view == "many" else colour,
                label=text,
            )
    ax.set_xscale("log")
    ax.set_xlabel("average MACs per image (test)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Dynamic networks against the alternatives (float32)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
