"""`tools.train --arch_file`: one architecture trained alone, then exported like any other.

The one end-to-end cover of issue 16's "the from-scratch tool trains a truncated `tiny`
architecture whose exported graphs have one exit and the MACs of C_s": a network cut at exit 2
is trained for 2 steps by the tool and exported (float32) by `tools.export` from the workdir
the training wrote, unchanged. Exit 2, not 1: its cost leaves out exit 1's classifier, which
a multi-exit network's cost to exit 2 includes.
"""

from __future__ import annotations

import json

import pytest

from enas4d_tf.space import SearchSpace
from tests.faults.harness import run_program

TINY = SearchSpace.preset("tiny")


def _search_file(path, arch, exit: int) -> str:
    """An architecture file as the search writes it for a network cut at `exit`."""
    record = {
        "format_version": 2,
        "name": "cut",
        "mode": "static",
        "arch": arch.to_dict(),
        "thresholds": [None] * (exit - 1) + [0.0],
        "stage_macs": [0] * TINY.num_stages,  # not read by training or export
        "avg_macs": 0.0,
        "val_accuracy": 0.0,
        "exit_rates": [0.0] * (exit - 1) + [1.0],
        "budget_macs": None,
        "exit": exit,
    }
    path.write_text(json.dumps(record))
    return str(path)


# Slow (a training and an export in subprocesses); tests/train/test_alone.py covers the mode fast.
@pytest.mark.slow
def test_a_cut_tiny_architecture_trains_alone_and_exports_with_one_exit_at_its_cost(tmp_path):
    import keras

    from enas4d_tf.model.macs import keras_model_macs, stage_macs, truncated_macs

    arch = TINY.sample(seed=5)
    arch_file = _search_file(tmp_path / "cut.json", arch, exit=2)
    workdir, out = tmp_path / "run", tmp_path / "export"
    train_args = [
        "--preset=tiny",
        f"--workdir={workdir}",
        f"--arch_file={arch_file}",
        "--epochs=1",
        "--batch_size=32",
        "--max_train_examples=64",
        "--eval_every_epochs=0",
        "--log_every_steps=1",
    ]
    result = run_program("tools.train", train_args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step 2/2 epoch 1" in result.stdout and "(exit 2 " in result.stdout
    run_config = json.loads((workdir / "run_config.json").read_text())
    assert run_config["fixed_arch"] == {"arch": arch.to_dict(), "exit": 2, "source": arch_file}
    assert run_config["train"]["kd_ratio"] == 0.0
    assert run_config["train"]["num_random_subnets"] == 0
    summary = json.loads((workdir / "train_summary.json").read_text())
    assert summary["finished"] and summary["subnets_per_step"] == 1

    export_args = [
        f"--workdir={workdir}",
        f"--arch={arch_file}",
        f"--out={out}",
        "--quantization=float32",
        "--num_calibration_images=64",
    ]
    result = run_program("tools.export", export_args)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "cut" / "manifest.json").read_text())
    cost = truncated_macs(TINY, arch, 2, 10)
    # Exit 1's classifier (head width 16 -> 10 classes) is not part of the network.
    assert cost == stage_macs(TINY, arch, 10)[1] - 16 * 10
    assert manifest["exit"] == 2 and len(manifest["stages"]) == 1
    (stage,) = manifest["stages"]
    assert stage["exit"] == 2 and stage["cumulative_macs"] == cost
    assert [o["name"] for o in stage["outputs"]] == ["logits"]
    assert len(list((out / "cut").glob("*.tflite"))) == 1
    model = keras.models.load_model(out / "cut" / "subnet.keras")
    assert len(model.outputs) == 1
    assert keras_model_macs(model, 2)[-1] == cost
