"""Released supernets: list them, or copy one into a workdir to search and export from.

  python -m tools.pretrained --list
  python -m tools.pretrained --name=fashion_mnist --workdir=runs/fm
  python -m tools.search --workdir=runs/fm ...        # then as with a trained workdir

The copy is checked against the release's sha256 sums; a workdir that exists and is not
empty is refused (nothing is overwritten).
"""

from __future__ import annotations

import json

from absl import app, flags

from enas4d_tf.errors import WorkdirError
from tools._cli import fail, flags_parser

flags.DEFINE_string("name", None, "The release to copy (see --list).")
flags.DEFINE_string("workdir", None, "A new (or empty) folder to copy it into.")
flags.DEFINE_bool("list", False, "List the releases and how each was made.")
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


def main(argv):
    del argv
    from enas4d_tf import pretrained

    try:
        if FLAGS.list:
            _list()
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
