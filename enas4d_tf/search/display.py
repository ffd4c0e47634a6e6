"""What a search shows its user besides pareto.json: the fronts plotted (pareto.png) and the
log's tables (the chosen networks; the predictor's quality per generation).
"""

from __future__ import annotations

import io

from enas4d_tf.files import write_bytes_atomic
from enas4d_tf.search.scoring import format_cost, format_macs


def plot_fronts(fronts: dict, chosen: list, references: dict, path: str) -> None:
    """Plots validation accuracy vs average cost (MACs, or ms with a latency cost) on the
    ranking scores (dynamic: cross-fitted, held out; static: every exit, nothing fitted):
    both fronts, choices, largest, smallest.

    Written to a temporary file and renamed, so `path` is never a partial image.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = "ms" if references["largest"].get("cost") == "latency" else "MACs"
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    styles = {"dynamic": ("tab:blue", "o", "-"), "static": ("tab:orange", "s", "--")}
    labels = {"dynamic": "dynamic front (cross-fitted)", "static": "static front (every exit)"}
    for mode, front in fronts.items():
        color, marker, line = styles[mode]
        xs = [p["ranking_avg_cost"] for p in front]
        ys = [100 * p["ranking_accuracy"] for p in front]
        ax.plot(xs, ys, linestyle=line, marker=marker, color=color, label=labels[mode])
        for p, x, y in zip(front, xs, ys, strict=True):
            if p.get("exit") is not None:  # which exit each static network is cut at
                ax.annotate(f"e{p['exit']}", (x, y), textcoords="offset points", xytext=(3, -9))
    for entry in chosen:
        ax.scatter(
            [entry["ranking_avg_cost"]],
            [100 * entry["ranking_accuracy"]],
            s=110,
            facecolors="none",
            edgecolors=styles[entry["mode"]][0],
            linewidths=1.5,
        )
    for label, marker in (("largest", "*"), ("smallest", "v")):
        ref = references[label]
        ax.scatter(
            [ref["ranking_avg_cost"]],
            [100 * ref["val_accuracy"]],
            marker=marker,
            s=140,
            color="black",
            label=f"{label} network",
            zorder=5,
        )
    ax.set_xscale("log")
    cost = "MACs" if unit == "MACs" else f"latency ({unit})"
    ax.set_xlabel(f"average {cost} per image")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"Accuracy vs average {cost} (circles: chosen; e<s>: cut at exit s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def log_table(chosen: list, log) -> None:
    """Logs one line per chosen network: budget, exits it has (a static network: the exit it
    is cut at), average cost (and, with latency costs, average MACs), validation accuracy
    with the final thresholds, the held-out (cross-fitted) accuracy it was ranked by, the
    geometric fitter's accuracy, and the rate of each exit, exit 1 first."""
    latency = any(e.get("cost") == "latency" for e in chosen)
    unit = "ms" if latency else "MACs"
    extra = f" {'avg MACs':>9}" if latency else ""
    header = (
        f"{'name':<22} {'budget':>8} {'exits':>5} {'avg ' + unit:>9}{extra} {'val acc':>8} "
        f"{'held-out':>8} {'geometric':>9}  exit rates (1/2/...)"
    )
    log(header)
    log("-" * len(header))
    for e in chosen:
        geometric = e.get("geometric_val_accuracy")
        exits = f"{len(e['thresholds'])}" if e.get("exit") is None else f"={e['exit']}"
        if latency:
            budget, avg = format_cost(e["budget_ms"], unit), format_cost(e["avg_ms"], unit)
            avg += f" {format_macs(e['avg_macs']):>9}"
        else:
            budget, avg = format_macs(e["budget_macs"]), format_macs(e["avg_macs"])
        log(
            f"{e['name']:<22} {budget:>8} {exits:>5} {avg:>9} {e['val_accuracy']:>8.4f} "
            f"{e['ranking_accuracy']:>8.4f} "
            f"{'' if geometric is None else f'{geometric:.4f}':>9}  "
            + "/".join(f"{r:.2f}" for r in e["exit_rates"])
        )


def log_generations(generations: list, log) -> None:
    """Logs the predictor's quality per generation: the model chosen, its held-out Kendall
    tau (K-fold over measured candidates), the prospective tau (its predictions of the
    candidates measured next, against their measurements), and whether it ranked."""
    header = (
        f"{'mode':<8} {'gen':>3} {'model':<18} {'held-out tau':>12} {'prospective':>11} "
        f"{'rows':>5} {'inner CPU':>9}  ranked by"
    )
    log(header)
    log("-" * len(header))
    for g in generations:
        p = g["predictor"] or {}
        tau, nxt = p.get("held_out_tau"), g["prospective_tau"]
        log(
            f"{g['objective']:<8} {g['generation']:>3} {p.get('model') or '-':<18} "
            f"{'-' if tau is None else f'{tau:.3f}':>12} "
            f"{'-' if nxt is None else f'{nxt:.3f}':>11} {p.get('rows', 0):>5} "
            f"{g['inner_cpu_seconds']:>8.1f}s  {g['ranked_by']}"
        )
