"""bench/recipe_screen.py: the commands a screen runs, and its refusals."""

import os
import subprocess
import sys

import pytest

from bench import recipe_screen as rs
from enas4d_tf.space import SearchSpace
from enas4d_tf.train.fixed_arch import read_fixed_arch
from tests.helpers import REPO

CONFIG = os.path.join(REPO, "configs", "train_benchmark.cfg")


def test_a_budgeted_variant_fits_its_epochs_to_the_minutes_left():
    args = rs.train_command(CONFIG, "w/largest_first", "largest_first", 3, 10, 68.5, "w/t")
    assert args[:2] == ["-m", "tools.train"]
    assert "--max_train_minutes=68.5000" in args and "--fit_epochs_to_budget" in args
    assert f"--epochs={rs.MAX_EPOCHS}" in args and "--init_from=w/t" in args
    assert args[-1] == "--learning_rate=0.1"  # the variant's own flags come last and win
    epochs = rs.train_command(CONFIG, "w/base", "base", 3, 10, None)
    assert "--epochs=3" in epochs and "--eval_every_epochs=3" in epochs
    assert not any(a.startswith(("--max_train_minutes", "--init_from")) for a in epochs)


def test_the_teacher_is_the_largest_network_cut_at_its_last_exit(tmp_path):
    path = rs.write_largest_arch(str(tmp_path), CONFIG)
    space = SearchSpace.preset("fashion_mnist")
    fixed = read_fixed_arch(path, space)
    assert fixed.arch == space.largest() and fixed.exit == space.num_stages
    args = rs.teacher_command(CONFIG, "w/t", path, 22.5)
    assert f"--arch_file={path}" in args and "--max_train_minutes=22.5000" in args


def test_the_supernet_gets_what_the_teacher_left():
    assert rs.minutes_left(90.0, 1258.3) == pytest.approx(90.0 - 1258.3 / 60)
    with pytest.raises(ValueError, match="nothing is left"):
        rs.minutes_left(20.0, 1258.3)


def test_a_teacher_variant_without_minutes_is_refused_in_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.recipe_screen",
            f"--workdir={tmp_path}",
            f"--out={tmp_path / 'r'}",
            "--variants=largest_first",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO),
        timeout=120,
    )
    assert proc.returncode == 2
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "--minutes" in lines[0], proc.stderr
    assert not os.listdir(tmp_path)


def test_the_markdown_of_a_timed_screen_gives_each_rows_minutes_and_the_budget():
    from bench.recipe_screen import markdown

    row = {
        "variant": "base",
        "largest": [0.92, 0.9314, 0.9344],
        "smallest": [0.8558, 0.8914, 0.901],
        "spread_mean_last": 0.90452,
        "spread_below_smallest": [5, 5, 5],
        "spearman": [0.755, 0.867, 0.818],
        "train_seconds": 4540.2,
    }
    lines = markdown([row, {**row, "variant": "x", "train_seconds": None}], 3, 90.0).splitlines()
    assert lines[2] == (
        "| base | 92.00/93.14/93.44 | 85.58/89.14/90.10 | 90.45 | 5/5/5 | 0.76/0.87/0.82 | 75.7 |"
    )
    assert lines[3].endswith("| - |")
    assert "after 90 minutes of training each" in lines[-1]
