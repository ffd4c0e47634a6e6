"""tools/finetune.py as a user runs it: --overwrite replaces an earlier --out, quietly."""

from __future__ import annotations

import json
import os
import shutil
import stat

import keras
import numpy as np
import pytest

from tests.data.images import write_image_folder
from tests.faults.harness import run_program
from tests.test_finetune import tiny_multi_exit_model


# A training run through a subprocess (tens of seconds on 2 cores); the tool's plain success
# path is in the fast suite (tests/export/test_export.py), its refusals in tests/faults.
@pytest.mark.slow
def test_overwrite_replaces_the_earlier_out_quietly(tmp_path):
    write_image_folder(tmp_path / "images", {"a": 8, "b": 8})
    model = str(tmp_path / "subnet.keras")
    tiny_multi_exit_model().save(model)
    out = str(tmp_path / "ft.keras")
    shutil.copy(model, out)
    os.chmod(out, 0o640)
    done = run_program(
        "tools.finetune",
        [
            f"--model={model}",
            f"--out={out}",
            "--overwrite",
            f"--dataset=folder:{tmp_path / 'images'}",
            "--batch_size=4",
            "--steps_per_epoch=2",
            "--learning_rate=1e-2",
        ],
    )
    # TF_CPP_MIN_LOG_LEVEL unset (run_program drops it): still nothing on stderr.
    assert done.returncode == 0 and done.stderr == "", done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["out"] == out and np.isfinite(summary["final"]["val_loss"])
    assert sorted(os.listdir(tmp_path)) == ["ft.keras", "images", "subnet.keras"]  # no .tmp_
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640  # a replaced file keeps its mode
    tuned, source = keras.models.load_model(out), keras.models.load_model(model)
    moved = [
        float(np.max(np.abs(a - b)))
        for a, b in zip(tuned.get_weights(), source.get_weights(), strict=True)
    ]
    assert max(moved) > 1e-4  # trained and written, not the copy left in place
