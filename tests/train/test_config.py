"""The training config: validation and reading older run_config.json files."""

import pytest

from enas4d_tf.errors import TrainError
from enas4d_tf.train.config import TrainConfig


def test_config_validation_names_the_bad_field():
    good = TrainConfig(workdir="w", preset="tiny")
    good.validate()
    bad = {
        "epochs": 0,
        "label_smoothing": 1.0,
        "exit_weights": (1.0, 2.0),
        "strategy": "tpu",
        "schedule": "random",
        "learning_rate": 0.0,
        "warmup_epochs": 20.0,
        "random_subnets_every": 0,
        "arch_sampling": "flops",
        "student_batch_fraction": 0.0,
        "student_exit_weights": (1.0, -1.0, 1.0),
        "min_learning_rate": 0.1,  # not below learning_rate (0.1)
        "eval_spread_archs": -1,
    }
    for field, value in bad.items():
        config = TrainConfig(**{**good.to_dict(), field: value})
        with pytest.raises(TrainError, match=field):
            config.validate()


def test_config_from_dict_takes_the_old_name_of_a_renamed_field():
    config = TrainConfig(workdir="w", preset="tiny", num_calibration_images=77, seed=3)
    assert TrainConfig.from_dict(config.to_dict()) == config
    old = {k: v for k, v in config.to_dict().items() if k != "num_calibration_images"}
    assert TrainConfig.from_dict({**old, "calibration_images": 77}) == config


def test_a_fixed_architecture_run_records_no_sandwich_and_no_distillation():
    # The defaults (2 random architectures, kd_ratio 1) do not apply to one architecture: the
    # config, and so run_config.json, says what the run trains.
    config = TrainConfig(workdir="w", preset="tiny", arch_file="a.json", random_subnets_every=3)
    config.validate()
    assert (config.num_random_subnets, config.random_subnets_every, config.kd_ratio) == (0, 1, 0.0)
    assert TrainConfig.from_dict(config.to_dict()) == config
    supernet = TrainConfig(workdir="w", preset="tiny")
    assert (supernet.num_random_subnets, supernet.kd_ratio) == (2, 1.0)


def test_fixed_architecture_and_budget_fields_are_validated():
    good = TrainConfig(workdir="w", preset="tiny", arch_file="a.json", max_train_minutes=1.5)
    good.validate()
    bad = [
        ({"arch_file": ""}, "arch_file"),
        ({"schedule": "progressive"}, "sandwich"),
        ({"max_train_minutes": 0.0}, "max_train_minutes"),
        ({"max_train_minutes": float("nan")}, "max_train_minutes"),
        ({"strategy": "multi_worker"}, "multi_worker"),
        ({"max_train_minutes": None, "fit_epochs_to_budget": True}, "needs max_train_minutes"),
    ]
    for change, needle in bad:
        config = TrainConfig(**{**good.to_dict(), **change})
        with pytest.raises(TrainError, match=needle):
            config.validate()
    TrainConfig(**{**good.to_dict(), "fit_epochs_to_budget": True}).validate()


def test_steps_per_epoch_of_a_config_on_a_dataset():
    import types

    from enas4d_tf.train.config import steps_per_epoch

    info = types.SimpleNamespace(num_train=1000)
    run = types.SimpleNamespace(batch_size=64, steps_per_epoch=None, max_train_examples=None)
    assert steps_per_epoch(run, info) == 15  # whole batches only
    assert (
        steps_per_epoch(types.SimpleNamespace(**{**vars(run), "max_train_examples": 200}), info)
        == 3
    )
    assert steps_per_epoch(types.SimpleNamespace(**{**vars(run), "steps_per_epoch": 7}), info) == 7
    with pytest.raises(TrainError, match="batch_size 2000 is larger than the 1000"):
        steps_per_epoch(types.SimpleNamespace(**{**vars(run), "batch_size": 2000}), info)
