"""The fault matrix of tools.finetune: each case ends with one stderr line naming the problem,
the expected exit code, and the files it guards unchanged (tests/faults/harness.py): the
model being fine-tuned and any --out file already there.

Every case but one is refused before TensorFlow is imported (flags, --model, --out) and
takes about a second. The diverging run needs TensorFlow and a few training steps; it is
marked slow (tests/test_finetune.py covers the non-finite guard in the fast suite).
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.data.images import write_image_folder
from tests.faults.harness import check_fault
from tests.test_finetune import tiny_multi_exit_model


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny two-exit, two-class .keras model and a two-class 8x8 image folder."""
    root = tmp_path_factory.mktemp("finetune_faults")
    model = str(root / "subnet.keras")
    tiny_multi_exit_model(num_classes=2).save(model)
    write_image_folder(root / "images", {"a": 8, "b": 8})
    return {"model": model, "images": str(root / "images")}


@pytest.fixture
def work(base, tmp_path):
    """Per case: a copy of the model, an earlier fine-tuned model at `done` to guard."""
    model = str(tmp_path / "subnet.keras")
    shutil.copy(base["model"], model)
    done = tmp_path / "done.keras"
    shutil.copy(base["model"], done)
    return {"model": model, "done": str(done), "tmp": tmp_path, "images": base["images"]}


def _check(work, args, *needles, code=1):
    args = [f"--dataset=folder:{work['images']}", "--batch_size=4", *args]
    guarded = [work["model"], work["done"], work["images"]]
    return check_fault("tools.finetune", args, *needles, guarded=guarded, code=code)


def _out(work, name="ft.keras"):
    return os.path.join(str(work["tmp"]), name)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_learning_rate(work, value):
    # (-inf is below the flag's bound; absl refuses it in its own words.)
    needle = "finite" if value != "-inf" else "learning_rate"
    args = [f"--model={work['model']}", f"--out={_out(work)}", f"--learning_rate={value}"]
    _check(work, args, needle, code=2)
    assert not os.path.exists(_out(work))


def test_out_equal_to_model_is_refused(work):
    _check(work, [f"--model={work['model']}", f"--out={work['model']}"], "is the --model file")


def test_out_naming_the_model_another_way_is_refused(work):
    # The same file through a symbolic link, and through a path with "..".
    link = _out(work, "link.keras")
    os.symlink(work["model"], link)
    _check(work, [f"--model={work['model']}", f"--out={link}"], "is the --model file")
    roundabout = os.path.join(str(work["tmp"]), "..", work["tmp"].name, "subnet.keras")
    _check(work, [f"--model={work['model']}", f"--out={roundabout}"], "is the --model file")


def test_existing_out_needs_overwrite(work):
    args = [f"--model={work['model']}", f"--out={work['done']}"]
    _check(work, args, f"--out {work['done']} exists", "--overwrite")


def test_out_that_is_a_folder(work):
    folder = _out(work, "folder.keras")
    os.mkdir(folder)
    _check(work, [f"--model={work['model']}", f"--out={folder}"], "is a folder, not a file")


def test_out_under_a_file(work):
    out = os.path.join(work["done"], "ft.keras")
    _check(work, [f"--model={work['model']}", f"--out={out}"], f"{work['done']} is a file")


def test_missing_model(work):
    missing = _out(work, "missing.keras")
    _check(work, [f"--model={missing}", f"--out={_out(work)}"], missing, "does not exist")


@pytest.mark.parametrize("content", [b"", b"not a zip archive", b"PK\x03\x04truncated"])
def test_model_that_is_not_a_keras_archive(work, content):
    bad = _out(work, "bad.keras")
    with open(bad, "wb") as f:
        f.write(content)
    _check(work, [f"--model={bad}", f"--out={_out(work)}"], "cannot load", bad)
    assert not os.path.exists(_out(work))


@pytest.mark.parametrize(
    "args, needle",
    [
        ([], "--model and --out are required"),
        (["--out=ft.h5"], "--out must end with .keras"),
        (["--epochs=0"], "epochs"),
        (["--bogus=1"], "bogus"),
    ],
)
def test_bad_flags(work, args, needle):
    base_args = [f"--model={work['model']}"] + ([] if not args else [f"--out={_out(work)}"])
    _check(work, [*base_args, *args], needle, code=2)


@pytest.mark.slow
def test_diverging_run_writes_nothing(work):
    # An Adam step of 1e30 makes the loss non-finite within a few steps; the earlier model at
    # --out (replaced only on success, --overwrite given) and the source model are kept.
    args = [
        f"--model={work['model']}",
        f"--out={work['done']}",
        "--overwrite",
        "--learning_rate=1e30",
        "--epochs=3",
    ]
    _check(work, args, "fine-tuning stopped", "loss became", "nothing was saved")
    assert sorted(os.listdir(work["tmp"])) == ["done.keras", "subnet.keras"]
