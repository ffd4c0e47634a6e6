"""Released supernets: trained weights committed with the package, loaded by name.

A release is the folder `enas4d_tf/released/<name>/`, laid out like a training workdir so
every reader of a workdir reads it:

  run_config.json     the training run's config (space, dataset, recipe)
  checkpoints/        one checkpoint of the model's weights (no optimizer state)
  release.json        how it was made: the command, commit, date, machine, the training
                      summary and validation results, and the sha256 of every file above

Use it by name:

  >>> net, run_config = enas4d_tf.load_pretrained("fashion_mnist")   # Python
  $ python -m tools.pretrained --name=fashion_mnist --workdir=runs/fm   # a workdir to search

`load_supernet("pretrained:fashion_mnist")` reads it too. Tools that write into their
workdir (search, export) take a copy, so the package's files are never written.

Nothing here imports TensorFlow except `make_release` and `load_pretrained`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

from enas4d_tf.errors import WorkdirError
from enas4d_tf.files import read_json, sha256

PREFIX = "pretrained:"
# ENAS4D_RELEASES_DIR points the names at another folder of releases (your own, or a test's).
RELEASES_DIR = os.environ.get("ENAS4D_RELEASES_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "released"
)
RELEASE_FILE = "release.json"


def release_names(root: str | None = None) -> list[str]:
    """Names of the releases this package holds (or `root` holds)."""
    root = root or RELEASES_DIR
    if not os.path.isdir(root):
        return []
    return sorted(
        n for n in os.listdir(root) if os.path.exists(os.path.join(root, n, RELEASE_FILE))
    )


def is_pretrained(spec: str) -> bool:
    """Whether a workdir argument names a release (`pretrained:<name>`)."""
    return isinstance(spec, str) and spec.startswith(PREFIX)


def _files(root: str) -> list[str]:
    """The release's files besides release.json, relative to `root`, sorted."""
    out = []
    for folder, _, names in os.walk(root):
        for n in names:
            rel = os.path.relpath(os.path.join(folder, n), root)
            if rel != RELEASE_FILE:
                out.append(rel)
    return sorted(out)


def release_dir(name: str, root: str | None = None) -> str:
    """The folder of release `name` (or of `pretrained:<name>`), its files checked against
    the sha256 sums of its release.json.

    Raises:
      WorkdirError: unknown name (the known ones listed), or a file missing or changed.
    """
    if is_pretrained(name):
        name = name[len(PREFIX) :]
    folder = os.path.join(root or RELEASES_DIR, name)
    info_path = os.path.join(folder, RELEASE_FILE)
    if not name or os.sep in name or not os.path.exists(info_path):
        known = ", ".join(release_names(root)) or "none"
        raise WorkdirError(f"no released supernet named {name!r}; released: {known}")
    try:
        with open(info_path) as f:
            info = json.load(f)
        sums = dict(info["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise WorkdirError(f"{info_path} is unreadable or malformed ({e})") from None
    for rel, expected in sorted(sums.items()):
        path = os.path.join(folder, rel)
        if not os.path.isfile(path):
            raise WorkdirError(f"released supernet {name!r} lacks {rel}: reinstall the package")
        if sha256(path) != expected:
            raise WorkdirError(
                f"released supernet {name!r}: {rel} does not match its sha256 in "
                f"{RELEASE_FILE}: reinstall the package"
            )
    return folder


def resolve_workdir(spec: str) -> str:
    """A workdir argument as a folder: `pretrained:<name>` becomes the release's (checked)
    folder; anything else is returned unchanged."""
    return release_dir(spec) if is_pretrained(spec) else spec


def release_info(name: str, root: str | None = None) -> dict:
    """The release.json of a checked release."""
    with open(os.path.join(release_dir(name, root), RELEASE_FILE)) as f:
        return json.load(f)


def held_release(workdir: str, root: str | None = None) -> str | None:
    """The name of the release `workdir` holds a copy of (`copy_release`), matched by the
    sha256 sums its release.json records; None when it holds none of the releases there
    (no release.json, an unreadable one, or a release since re-made or removed)."""
    try:
        with open(os.path.join(workdir, RELEASE_FILE)) as f:
            held = json.load(f).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None
    for name in release_names(root):
        try:
            if held is not None and held == release_info(name, root).get("sha256"):
                return name
        except (OSError, ValueError, AttributeError):
            continue
    return None


def copy_release(name: str, workdir: str, root: str | None = None) -> str:
    """Copies a release into `workdir` (absent or empty), ready for search and export.

    The copy is a finished training workdir: it also gets the `train_summary.json` of the run
    that trained the release, so `tools.train` with the release's config says it has finished
    and benchmarks read the training wall time from it.

    The copy is assembled in a scratch folder beside `workdir` and renamed into place, so a
    workdir that exists holds a whole release.

    Returns:
      The workdir.

    Raises:
      WorkdirError: unknown or damaged release, or `workdir` exists and is not empty.
    """
    source = release_dir(name, root)
    workdir = os.path.abspath(workdir)
    if os.path.exists(workdir) and (not os.path.isdir(workdir) or os.listdir(workdir)):
        raise WorkdirError(
            f"{workdir} exists and is not an empty folder: copy the release into a new one"
        )
    parent = os.path.dirname(workdir)
    try:
        os.makedirs(parent, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix=".tmp_release_", dir=parent)
    except OSError as e:
        raise WorkdirError(f"cannot copy the release into {workdir}: {e.strerror or e}") from None
    try:
        target = os.path.join(scratch, "release")
        shutil.copytree(source, target)
        _write_train_summary(source, target, name)
        if os.path.isdir(workdir):
            os.rmdir(workdir)  # empty
        os.rename(target, workdir)
    except OSError as e:
        raise WorkdirError(f"cannot copy the release into {workdir}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return workdir


def _write_train_summary(source: str, target: str, name: str) -> None:
    """Gives a copied release the `train_summary.json` of the run that trained it.

    A copy is then a finished training workdir to every reader: `tools.train` says it has
    finished, and the claim benchmark reads its training wall time (T) from it. The summary is
    release.json's `training` record, marked with the release's name.
    """
    with open(os.path.join(source, RELEASE_FILE)) as f:
        training = json.load(f).get("training")
    if not isinstance(training, dict):
        return  # a release made without a training summary: nothing to restore
    summary = {**training, "released_as": name}
    with open(os.path.join(target, "train_summary.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")


def load_pretrained(name: str, root: str | None = None):
    """The released supernet with its weights, and its run config.

    Returns:
      `(net, run_config)`, as `enas4d_tf.workdir.load_supernet` returns them.
    """
    from enas4d_tf.workdir import load_supernet

    return load_supernet(release_dir(name, root))


def _git_commit() -> str:
    """The package checkout's commit (with "+changes" when its files differ), or "unknown"."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        run = lambda *a: subprocess.run(  # noqa: E731
            ["git", *a], cwd=here, capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no", "--", "enas4d_tf", "tools")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+changes" if dirty else "")


def workdir_provenance(
    workdir: str, command: str, benchmark: dict | None = None, commit: str | None = None
) -> dict:
    """How a finished training workdir was made, for `make_release`.

    Args:
      workdir: the training workdir; its `train_summary.json` must say it finished.
      command: the command that trained it, as a user would type it.
      benchmark: `bench/train_benchmark.py`'s report of it (test accuracies), if measured.
      commit: the commit the workdir was trained at; None: this checkout's.

    Returns:
      `{command, commit, date, machine, step, training, validation, test, summary}`: the
      training summary (epochs, wall time, images/s), its last validation evaluation, and
      the test accuracy of every network the benchmark measured (`None` without one).

    Raises:
      WorkdirError: the workdir has no summary, or its training has not finished.
    """
    import datetime
    import platform

    summary = read_json(os.path.join(workdir, "train_summary.json"), WorkdirError, "summary")
    if not isinstance(summary, dict) or not summary.get("finished"):
        raise WorkdirError(f"{workdir}: training has not finished; release a finished run")
    evaluations = summary.get("evaluations") or []
    training = {k: v for k, v in summary.items() if k != "evaluations"}
    try:
        minutes = float(summary.get("train_seconds", 0.0)) / 60
        step = int(summary.get("step", 0))
    except (TypeError, ValueError):
        message = f"{workdir}/train_summary.json: step or train_seconds is not a number"
        raise WorkdirError(message) from None
    test = None
    if benchmark is not None:
        try:
            test = {
                str(n["name"]): {
                    "accuracy": [float(a) for a in n["test_accuracy"]],
                    "stage_macs": [int(m) for m in n["stage_macs"]],
                }
                for n in benchmark["networks"]
            }
        except (KeyError, TypeError, ValueError):
            raise WorkdirError(
                "the benchmark report is not bench.train_benchmark's (networks with name, "
                "test_accuracy and stage_macs)"
            ) from None
    line = f"{summary.get('epochs_done')} epochs, {minutes:.0f} min of training"
    if test and "largest" in test and "smallest" in test:
        line += (
            f"; test, last exit: largest {100 * test['largest']['accuracy'][-1]:.2f}%, "
            f"smallest {100 * test['smallest']['accuracy'][-1]:.2f}%"
        )
    return {
        "command": command,
        "commit": commit or _git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "step": step,
        "training": training,
        "validation": evaluations[-1] if evaluations else None,
        "test": test,
        "summary": line,
    }


def make_release(workdir: str, folder: str, provenance: dict) -> dict:
    """Writes a release of a trained workdir into `folder` (which must not exist).

    Keeps the model's weights of the newest checkpoint only (no optimizer state), the run
    config and `provenance` (JSON-safe: command, commit, date, machine, results), and records
    every file's sha256 in release.json.

    Returns:
      The release.json written.

    Raises:
      WorkdirError: the workdir cannot be loaded, or `folder` exists.
    """
    import tensorflow as tf

    from enas4d_tf.workdir import Workdir, load_supernet

    if os.path.exists(folder):
        raise WorkdirError(f"{folder} exists: a release is never overwritten")
    net, _ = load_supernet(workdir)
    parent = os.path.dirname(folder) or "."
    try:
        os.makedirs(parent, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix=".tmp_release_", dir=parent)
    except OSError as e:
        raise WorkdirError(f"cannot write a release into {parent}: {e.strerror or e}") from None
    try:
        shutil.copy(Workdir(workdir).run_config, os.path.join(scratch, "run_config.json"))
        checkpoints = os.path.join(scratch, "checkpoints")
        step = int(provenance.get("step", 0))
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=net), checkpoints, 1)
        name = os.path.basename(manager.save(checkpoint_number=step))
        # The pointer names the checkpoint relative to its folder, so the release can move.
        with open(os.path.join(checkpoints, "checkpoint"), "w") as f:
            f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
        info = dict(provenance)
        info["sha256"] = {rel: sha256(os.path.join(scratch, rel)) for rel in _files(scratch)}
        with open(os.path.join(scratch, RELEASE_FILE), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
            f.write("\n")
        os.rename(scratch, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return info
