"""Once-for-all's own test: is a network cut out of the supernet as good as the same
network trained alone?

  python -m bench.ofa_check --workdir=runs/bench --out=bench/results/ofa_check

Three architectures of the space, low, middle and high cost (the 2nd, 5th and 9th of the 10
fixed architectures spread over the space's MACs that training-time evaluation and
`bench.train_benchmark` watch), are each trained alone by `tools.train --arch_file` with the
supernet's recipe (`--train_config`, the config the supernet was trained with) for as many
epochs as the supernet trained, every exit weighted as in the recipe. Then, with the BN
statistics of each network recalibrated on the same training images, every exit of the
trained-alone network and of its cut-out from the supernet is measured on the test split:
the one read of the test split, after all training is done. Writes `<out>.json` and
`<out>.md`; the goal line says by how much each cut-out is within 0.5 points or not.

Resumable: the trainings resume from their checkpoints; run the same command again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import app, flags

from enas4d_tf.errors import Enas4dError
from enas4d_tf.files import check_writable_file, write_bytes_atomic, write_json_atomic
from tools._cli import fail, flags_parser

flags.DEFINE_string("workdir", None, "The trained supernet's workdir.")
flags.DEFINE_string("out", None, "Output prefix: <out>.json and <out>.md.")
flags.DEFINE_string(
    "train_config", "configs/train_benchmark.cfg", "The recipe the supernet was trained with."
)
flags.DEFINE_list("picks", ["2", "5", "9"], "Which spread architectures (1-based, of 10).")
flags.DEFINE_integer("num_calibration_images", 2000, "BN recalibration images.", lower_bound=1)
flags.DEFINE_integer("max_test_examples", None, "Measure on this many test images.", lower_bound=1)
flags.DEFINE_integer("num_spread", 10, "Spread architectures the picks index.", lower_bound=1)
flags.DEFINE_list("extra_train_flags", [], "Flags added to each training (smoke runs).")
FLAGS = flags.FLAGS

GOAL_POINTS = 0.5


def _train_alone(name: str, arch, epochs: int, root: str) -> str:
    workdir = os.path.join(root, name)
    arch_file = os.path.join(root, f"{name}.json")
    if not os.path.exists(arch_file):
        write_json_atomic(arch_file, arch.to_dict())
    command = [
        sys.executable,
        "-m",
        "tools.train",
        f"--flagfile={FLAGS.train_config}",
        f"--workdir={workdir}",
        f"--arch_file={arch_file}",
        f"--epochs={epochs}",
        *[f if f.startswith("--") else f"--{f}" for f in FLAGS.extra_train_flags],
    ]
    print(f"[ofa_check] {' '.join(command[2:])}", flush=True)
    if subprocess.run(command).returncode != 0:
        fail("ofa_check", f"training {name} alone failed; run the same command to resume")
    return workdir


def _measure(workdir: str, arch, data) -> list[float]:
    from enas4d_tf.train.evaluate import Evaluator
    from enas4d_tf.workdir import load_supernet

    net, _ = load_supernet(workdir)
    calibration, images, labels = data
    evaluator = Evaluator(net.space, net.num_classes, calibration, images, labels)
    evaluator.copy_weights(net)
    return evaluator.evaluate(arch)["accuracy"]


def markdown(rows: list[dict], epochs: int) -> str:
    S = len(rows[0]["cut_out"])
    head = ["network", "MACs to last exit (M)"]
    head += [f"exit {s + 1}: alone / cut-out (diff)" for s in range(S)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], f"{r['stage_macs'][-1] / 1e6:.2f}"]
        for a, c in zip(r["alone"], r["cut_out"], strict=True):
            cells.append(f"{100 * a:.2f} / {100 * c:.2f} ({100 * (c - a):+.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    worst = min(100 * (c - a) for r in rows for a, c in zip(r["alone"], r["cut_out"], strict=True))
    verdict = (
        f"every cut-out within {GOAL_POINTS} points of its network trained alone"
        if worst >= -GOAL_POINTS
        else f"NOT met: the worst cut-out is {-worst:.2f} points below its network trained alone "
        f"(goal: within {GOAL_POINTS})"
    )
    lines += ["", f"Test split; each network trained alone for {epochs} epochs. Goal: {verdict}."]
    return "\n".join(lines)


def main(argv):
    del argv
    if not FLAGS.workdir or not FLAGS.out:
        fail("ofa_check", "--workdir and --out are required", code=2)
    try:
        picks = [int(p) for p in FLAGS.picks]
    except ValueError:
        fail("ofa_check", f"--picks must be integers, got {FLAGS.picks}", code=2)
    if not all(1 <= p <= FLAGS.num_spread for p in picks):
        fail("ofa_check", f"--picks must be in 1..{FLAGS.num_spread}, got {picks}", code=2)
    try:  # before hours of training, not after
        for suffix in (".json", ".md"):
            check_writable_file(FLAGS.out + suffix, "--out")
    except Enas4dError as e:
        fail("ofa_check", str(e), code=2)
    from enas4d_tf import data as data_lib
    from enas4d_tf.model.macs import stage_macs
    from enas4d_tf.space import SearchSpace
    from enas4d_tf.train import sampling
    from enas4d_tf.workdir import read_run_config

    try:
        config = read_run_config(FLAGS.workdir)
        space = SearchSpace.from_dict(config["space"])
        train = config["train"]
        epochs = int(train["epochs"])
        spread = sampling.spread_archs(space, FLAGS.num_spread)
        root = os.path.join(FLAGS.workdir, "ofa_check")
        os.makedirs(root, exist_ok=True)
        picked = [(f"spread_{p}", spread[p - 1]) for p in picks]
        workdirs = [_train_alone(name, arch, epochs, root) for name, arch in picked]
        dataset, data_dir = train["dataset"], train.get("data_dir")
        calibration, _ = data_lib.load_arrays(
            dataset, "train", data_dir, FLAGS.num_calibration_images
        )
        images, labels = data_lib.load_arrays(dataset, "test", data_dir, FLAGS.max_test_examples)
        data = (calibration, images, labels)
        rows = []
        for (name, arch), alone in zip(picked, workdirs, strict=True):
            rows.append(
                {
                    "name": name,
                    "arch": arch.to_dict(),
                    "stage_macs": [int(m) for m in stage_macs(space, arch, config["num_classes"])],
                    "alone": _measure(alone, arch, data),
                    "cut_out": _measure(FLAGS.workdir, arch, data),
                }
            )
        report = {"epochs": epochs, "test_examples": int(len(labels)), "rows": rows}
        text = markdown(rows, epochs)
        write_json_atomic(FLAGS.out + ".json", report)
        write_bytes_atomic(FLAGS.out + ".md", (text + "\n").encode())
    except (Enas4dError, OSError, KeyError, json.JSONDecodeError) as e:
        fail("ofa_check", str(e))
    print(text)


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("ofa_check"))
