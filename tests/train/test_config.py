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
