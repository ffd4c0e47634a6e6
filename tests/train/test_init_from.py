"""A run started from another run's weights (TrainConfig.init_from): once-for-all's order,
the largest network trained alone first, then the supernet from it."""

import json
import os

import numpy as np
import pytest

from enas4d_tf.errors import TrainError, WorkdirError
from enas4d_tf.space import SearchSpace
from enas4d_tf.train.config import TrainConfig
from enas4d_tf.train.resume import init_source
from enas4d_tf.workdir import Workdir

TINY = SearchSpace.preset("tiny")


def _quiet(line):
    pass


def test_init_from_must_name_another_workdir(tmp_path):
    run = str(tmp_path / "run")
    with pytest.raises(TrainError, match="own workdir"):
        TrainConfig(workdir=run, preset="tiny", init_from=run + "/").validate()
    with pytest.raises(TrainError, match="must name"):
        TrainConfig(workdir=run, preset="tiny", init_from="").validate()
    TrainConfig(workdir=run, preset="tiny", init_from=str(tmp_path / "other")).validate()


def test_init_source_refuses_what_it_cannot_start_from(tmp_path):
    space = TINY.to_dict()
    with pytest.raises(WorkdirError, match="does not exist"):
        init_source(str(tmp_path / "missing"), space)
    run = Workdir(str(tmp_path / "run"))
    os.makedirs(run.root)
    with pytest.raises(WorkdirError, match="not a training workdir"):
        init_source(run.root, space)
    other = SearchSpace.preset("fashion_mnist").to_dict()
    with open(run.run_config, "w") as f:
        json.dump({"space": other, "num_classes": 10}, f)
    with pytest.raises(WorkdirError, match="trained space 'fashion_mnist', not 'tiny'"):
        init_source(run.root, space)
    with open(run.run_config, "w") as f:
        json.dump({"space": space, "num_classes": 10}, f)
    with pytest.raises(WorkdirError, match="no checkpoint"):
        init_source(run.root, space)


def test_a_supernet_starts_from_the_largest_network_trained_alone(tmp_path):
    import keras

    from enas4d_tf.model.supernet import Supernet
    from enas4d_tf.train.trainer import train

    common = dict(
        preset="tiny", epochs=1, batch_size=32, max_train_examples=96, eval_every_epochs=0
    )
    arch_file = tmp_path / "largest.json"
    arch_file.write_text(json.dumps(TINY.largest().to_dict()))
    teacher = train(
        TrainConfig(workdir=str(tmp_path / "teacher"), arch_file=str(arch_file), **common),
        log=_quiet,
    )
    assert teacher.step == 3
    # A learning rate of 1e-30: what the supernet's run ends with is what it started from,
    # up to steps of ~1e-31 (a weight at exactly 0 still moves by them).
    lines = []
    config = TrainConfig(
        workdir=str(tmp_path / "supernet"),
        init_from=str(tmp_path / "teacher"),
        learning_rate=1e-30,
        weight_decay=0.0,
        num_random_subnets=1,
        **common,
    )
    result = train(config, log=lines.append)
    assert result.step == 3
    assert any(line.startswith("starting from the weights of") for line in lines)
    pairs = zip(teacher.net.trainable_variables, result.net.trainable_variables, strict=True)
    for before, after in pairs:
        np.testing.assert_allclose(
            before.numpy(), after.numpy(), rtol=1e-6, atol=1e-20, err_msg=after.path
        )
    # ... and not the weights its own seed would have drawn.
    keras.utils.set_random_seed(config.seed)
    fresh = Supernet(TINY, num_classes=10)
    pairs = zip(fresh.trainable_variables, result.net.trainable_variables, strict=True)
    assert sum(not np.array_equal(a.numpy(), b.numpy()) for a, b in pairs) > 20
    # The summary names the source and counts its training time.
    with open(Workdir(str(tmp_path / "teacher")).train_summary) as f:
        teacher_seconds = json.load(f)["train_seconds"]
    with open(Workdir(config.workdir).train_summary) as f:
        summary = json.load(f)
    assert summary["init_from"]["workdir"] == str(tmp_path / "teacher")
    assert summary["init_from"]["checkpoint"].endswith("ckpt-3")
    assert summary["init_from"]["train_seconds"] == teacher_seconds > 0
