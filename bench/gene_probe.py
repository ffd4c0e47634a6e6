"""Which gene values a supernet trains badly: one gene kind changed at a time.

  python -m bench.gene_probe --workdir=runs/v2 --out=bench/results/gene_probe_v2

Issue 17's spread networks fall below the smallest network although they compute more.
This probe asks which choices are to blame. Around the smallest network it measures, for
each gene kind (resolution, kernel, expand, width, depth) and each of its other values, the
smallest network with that gene set to the value everywhere; around the largest, the largest
with that gene set to each smaller value. Every network is a superset (or subset) of its
anchor in compute, so a variant of the smallest that scores below the smallest at some exit
points at weights the recipe leaves undertrained (they are trained only when a random
network draws them), not at a lack of capacity.

Validation split only (BN recalibrated on training images first); the test split is never
read, so a recipe may be chosen from what it shows. Writes `<out>.json` and `<out>.md`.
About 10-20 s a network on 2 cores, 22 networks on `fashion_mnist`.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402

from enas4d_tf.errors import DataError, WorkdirError  # noqa: E402
from tools._cli import fail, flags_parser, quiet_stderr  # noqa: E402

PROGRAM = "gene_probe"
GENES = ("resolution", "kernel", "expand", "width", "depth")
KEPT = ("arch", "stage_macs", "accuracy")  # what a row keeps of `measure_archs`' record

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the program's flags: called when it runs, not on import, so tests can import
    it beside other programs that define flags of the same names (tools.demo's --workdir)."""
    flags.DEFINE_string("workdir", None, "The trained supernet's workdir (or pretrained:NAME).")
    flags.DEFINE_string("out", None, "Output prefix: <out>.json and <out>.md.")
    flags.DEFINE_integer("num_val_images", None, "Validation images (default: all).", lower_bound=1)
    flags.DEFINE_integer("num_calibration_images", 2000, "BN recalibration images.", lower_bound=1)


def _set_everywhere(value, like):
    """`like` (nested tuples of gene values) with every leaf replaced by `value`."""
    if isinstance(like, tuple):
        return tuple(_set_everywhere(value, x) for x in like)
    return value


def _choices(space, gene: str) -> tuple:
    return tuple(sorted(getattr(space, f"{gene}_choices")))


def with_gene(arch, gene: str, value):
    """`arch` with gene kind `gene` set to `value` in every stage, unit and block."""
    if gene == "resolution":
        return dataclasses.replace(arch, resolution=value)
    return dataclasses.replace(arch, **{gene: _set_everywhere(value, getattr(arch, gene))})


def probe_archs(space) -> list[tuple[str, str, object]]:
    """`(name, anchor, arch)`: the smallest and the largest network, then each gene kind set
    to each of its other values around the smallest (`anchor` "smallest") and around the
    largest ("largest"); every architecture is valid in `space`."""
    smallest, largest = space.smallest(), space.largest()
    out = [("smallest", "smallest", smallest), ("largest", "largest", largest)]
    for anchor, base in (("smallest", smallest), ("largest", largest)):
        for gene in GENES:
            choices = _choices(space, gene)
            others = choices[1:] if anchor == "smallest" else choices[:-1]
            for value in others:
                arch = with_gene(base, gene, value)
                space.validate(arch)
                out.append((f"{anchor} {gene}={value}", anchor, arch))
    return out


def below_anchor(rows: list[dict]) -> None:
    """Marks, per exit, the variants of the smallest network that score below it (they
    compute more, so they should not): `row["below_smallest"]`, a list of S booleans."""
    smallest = next(r for r in rows if r["name"] == "smallest")["accuracy"]
    for r in rows:
        if r["anchor"] == "smallest" and r["name"] != "smallest":
            r["below_smallest"] = [a < s for a, s in zip(r["accuracy"], smallest, strict=True)]


def markdown(report: dict) -> str:
    rows = report["networks"]
    stages = len(rows[0]["accuracy"])
    head = " | ".join(f"exit {s + 1} (%)" for s in range(stages))
    lines = [
        f"| network | MACs to each exit (M) | {head} |",
        "|---|---|" + "---|" * stages,
    ]
    for r in rows:
        marks = r.get("below_smallest", [False] * stages)
        accs = " | ".join(
            f"**{100 * a:.2f}**" if m else f"{100 * a:.2f}"
            for a, m in zip(r["accuracy"], marks, strict=True)
        )
        macs = "/".join(f"{m / 1e6:.2f}" for m in r["stage_macs"])
        lines.append(f"| {r['name']} | {macs} | {accs} |")
    lines += [
        "",
        f"{report['val_images']} validation images of {report['dataset']}, BN recalibrated on "
        f"{report['calibration_images']} training images per network; **bold**: a variant of "
        "the smallest network below the smallest at that exit.",
    ]
    return "\n".join(lines) + "\n"


def run(workdir: str, num_val_images, num_calibration_images: int) -> dict:
    """Measures `probe_archs` on the validation split of `workdir`'s dataset."""
    with quiet_stderr():  # TensorFlow's start-up banner would bury a one-line error
        from enas4d_tf.train.report import measure_archs

    anchors = {}

    def archs_of(space):
        rows = probe_archs(space)
        anchors.update((name, anchor) for name, anchor, _ in rows)
        return [(name, arch) for name, _, arch in rows]

    def show(network):
        accs = " ".join(f"{100 * a:.2f}" for a in network["accuracy"])
        print(f"{network['name']}: {accs}", flush=True)

    measured = measure_archs(
        workdir,
        "validation",
        archs_of,
        num_calibration_images,
        num_val_images,
        on_network=show,
    )
    rows = [
        {"name": n["name"], "anchor": anchors[n["name"]], **{k: n[k] for k in KEPT}}
        for n in measured["networks"]
    ]
    below_anchor(rows)
    return {
        "workdir": measured["workdir"],
        "checkpoint": measured["checkpoint"],
        "dataset": measured["dataset"],
        "split": "validation",
        "val_images": measured["examples"],
        "calibration_images": measured["calibration_images"],
        "networks": rows,
    }


def main(argv) -> None:
    del argv
    if not FLAGS.workdir or not FLAGS.out:
        fail(PROGRAM, "--workdir and --out are required", code=2)
    logging.set_verbosity(logging.WARNING)
    from enas4d_tf.files import check_writable_dir, write_bytes_atomic, write_json_atomic

    try:
        check_writable_dir(os.path.dirname(FLAGS.out) or ".", "--out folder", WorkdirError)
        report = run(FLAGS.workdir, FLAGS.num_val_images, FLAGS.num_calibration_images)
        write_json_atomic(FLAGS.out + ".json", report, error=WorkdirError)
        write_bytes_atomic(FLAGS.out + ".md", markdown(report).encode(), error=WorkdirError)
    except (WorkdirError, DataError) as e:
        fail(PROGRAM, e)
    print(markdown(report))


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=flags_parser(PROGRAM))
