"""Released supernets: list them, or copy one into a workdir to search and export from.

  python -m tools.pretrained --list
  python -m tools.pretrained --name=fashion_mnist --workdir=runs/fm
  python -m tools.search --workdir=runs/fm ...        # then as with a trained workdir

The copy is checked against the release's sha256 sums; a workdir that exists and is not
empty is refused (nothing is overwritten).

Making one (what the maintainers ran for `fashion_mnist`; see README "Released supernets"):

  python -m tools.pretrained --make_from=runs/bench --name=fashion_mnist \
    --command="python -m tools.train --flagfile=configs/train_benchmark.cfg --workdir=runs/bench" \
    --benchmark=bench/results/train_benchmark.json

writes `enas4d_tf/released/<name>/` (or under `ENAS4D_RELEASES_DIR`): the newest
checkpoint's model weights, the run config, and release.json with the command, commit, date,
machine, training summary, last validation evaluation and the benchmark's test accuracies.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from enas4d_tf.errors import WorkdirError
from tools._cli import fail, flags_parser, quiet_stderr

flags.DEFINE_string("name", None, "The release to copy (see --list).")
flags.DEFINE_string("workdir", None, "A new (or empty) folder to copy it into.")
flags.DEFINE_bool("list", False, "List the releases and how each was made.")
flags.DEFINE_string("make_from", None, "Make release --name from this finished training workdir.")
flags.DEFINE_string("command", None, "With --make_from: the command that trained the workdir.")
flags.DEFINE_string(
    "benchmark", None, "With --make_from: bench.train_benchmark's --out JSON of the workdir."
)
flags.DEFINE_string(
    "commit", None, "With --make_from: the commit that trained the workdir (default: this one)."
)
FLAGS = flags.FLAGS


def _list() -> None:
    from enas4d_tf import pretrained

    names = pretrained.release_names()
    if not names:
        print("no released supernets in this installation")
    for name in names:
        info = pretrained.release_info(name)
        print(f"{name}: {info.get('summary', '')}")
        print(f"  made by: {info.get('command', '?')} (commit {info.get('commit', '?')})")


def _same(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _make() -> None:
    from enas4d_tf import pretrained
    from enas4d_tf.files import read_json

    if not FLAGS.name or not FLAGS.command:
        fail("pretrained", "--make_from needs --name and --command", code=2)
    if "/" in FLAGS.name or FLAGS.name.startswith("."):
        fail("pretrained", f"--name {FLAGS.name!r} must be a plain folder name", code=2)
    benchmark = None
    if FLAGS.benchmark:
        benchmark = read_json(FLAGS.benchmark, WorkdirError, "benchmark report")
        # The report must be of this workdir's newest checkpoint, not of another run.
        measured = str(benchmark.get("workdir")) if isinstance(benchmark, dict) else None
        if measured is None or os.path.realpath(measured) != os.path.realpath(FLAGS.make_from):
            raise WorkdirError(f"{FLAGS.benchmark} measures {measured}, not {FLAGS.make_from}")
        with quiet_stderr():
            from enas4d_tf.workdir import latest_checkpoint
        newest = latest_checkpoint(FLAGS.make_from)
        measured = benchmark.get("checkpoint")
        if not newest or not isinstance(measured, str) or not _same(measured, newest):
            raise WorkdirError(
                f"{FLAGS.benchmark} measures checkpoint {benchmark.get('checkpoint')}, but the "
                f"newest in {FLAGS.make_from} is {newest}: measure it again"
            )
    provenance = pretrained.workdir_provenance(
        FLAGS.make_from, FLAGS.command, benchmark, FLAGS.commit
    )
    folder = os.path.join(pretrained.RELEASES_DIR, FLAGS.name)
    with quiet_stderr():
        info = pretrained.make_release(FLAGS.make_from, folder, provenance)
    print(f"released {FLAGS.make_from} as {FLAGS.name!r} in {folder}: {info['summary']}")


def main(argv):
    del argv
    from enas4d_tf import pretrained

    try:
        if FLAGS.list:
            _list()
            return
        if FLAGS.make_from:
            _make()
            return
        if not FLAGS.name or not FLAGS.workdir:
            fail("pretrained", "give --name and --workdir (or --list)", code=2)
        workdir = pretrained.copy_release(FLAGS.name, FLAGS.workdir)
    except WorkdirError as e:
        fail("pretrained", str(e))
    info = pretrained.release_info(FLAGS.name)
    print(f"copied released supernet {FLAGS.name!r} into {workdir}")
    print(json.dumps({k: info[k] for k in ("summary", "commit") if k in info}))
    print(f"next: python -m tools.search --workdir={workdir} --budgets=...")


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("pretrained"))
