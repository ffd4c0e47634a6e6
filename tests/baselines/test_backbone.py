"""The early-exit baseline as data: its configuration, its MACs and its run config (no TF)."""

import dataclasses

import pytest

from enas4d_tf.baselines import config as config_lib
from enas4d_tf.baselines.backbone import (
    BackboneGenes,
    BackboneSpec,
    backbone_spec,
    exit_macs,
    middle_choice,
)
from enas4d_tf.baselines.config import BaselineConfig
from enas4d_tf.errors import SpaceError, TrainError, WorkdirError
from enas4d_tf.space import SearchSpace
from enas4d_tf.train.config import TrainConfig


def test_defaults_take_the_middle_choices_and_the_largest_widths():
    space = SearchSpace.preset("fashion_mnist")
    spec = backbone_spec(space, BackboneGenes())
    assert [u.depth for u in spec.units] == [2, 2, 2]
    assert [u.kernel for u in spec.units] == [5, 5, 5]
    assert [u.expand for u in spec.units] == [4, 4, 4]
    assert spec.resolution == 28
    # No channel split: S = 3 groups of (8, 16, 24) channels give (24, 48, 72) channels.
    assert [u.width for u in spec.units] == [24, 48, 72]
    assert spec.stem_width == 24 and spec.head_width == 48
    assert [u.stride for u in spec.units] == list(space.unit_strides)
    assert middle_choice((3, 4, 6)) == 4 and middle_choice((1, 2)) == 1


def test_per_unit_values_and_width_rounding():
    space = SearchSpace.preset("tiny")
    genes = BackboneGenes(depth=(2, 1), kernel=(5, 3), expand=3, width=(0.5, 0.75), resolution=24)
    spec = backbone_spec(space, genes)
    assert [(u.depth, u.kernel, u.expand) for u in spec.units] == [(2, 5, 3), (1, 3, 3)]
    # 3 groups x 8 = 24 channels at 0.5 -> 12; 3 x 12 = 36 at 0.75 -> 27.
    assert [u.width for u in spec.units] == [12, 27]
    assert [b.residual for b in spec.blocks()] == [False, True, False]
    assert BackboneSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "genes, needle",
    [
        (BackboneGenes(depth=0), "depth of unit 1"),
        (BackboneGenes(kernel=(3, 4)), "kernel of unit 2"),
        (BackboneGenes(expand=(2, 2, 2)), "expand needs 1 or 2 values"),
        (BackboneGenes(width=0.0), "width of unit 1"),
        (BackboneGenes(resolution=-3), "resolution"),
    ],
)
def test_bad_configuration_is_one_space_error(genes, needle):
    with pytest.raises(SpaceError, match=needle):
        backbone_spec(SearchSpace.preset("tiny"), genes)


def test_exit_macs_golden_tiny():
    # tiny defaults: resolution 20, stem 3x3 stride 2 -> side 10, 12 channels; unit 1: one
    # block 12 -> 24 hidden (expand 2), 3x3 stride 2 -> side 5, 24 out; head 1x1 to 16; 10
    # classes. Exit 1 = stem 9*1*12*100 + expand 12*24*100 + dw 9*24*25 + project 24*24*25
    #   + head 24*16*25 + classifier 16*10 = 10800 + 28800 + 5400 + 14400 + 9600 + 160.
    # Unit 2 (SE, hard_swish): 24 -> 48 hidden at side 5, 3x3 stride 2 -> side 3, SE 48/4 =
    # 12, 36 out: 24*48*25 + 9*48*9 + 2*48*12 + 48*36*9 + head 36*16*9 + 160 = 54736.
    spec = backbone_spec(SearchSpace.preset("tiny"), BackboneGenes())
    assert exit_macs(spec) == [69160, 69160 + 54736]


def test_recipe_defaults_are_the_supernets():
    ours, theirs = BaselineConfig(workdir="w"), TrainConfig(workdir="w")
    for field in (
        "preset",
        "dataset",
        "epochs",
        "batch_size",
        "learning_rate",
        "momentum",
        "warmup_epochs",
        "weight_decay",
        "label_smoothing",
        "clip_norm",
        "exit_weights",
        "checkpoint_every_steps",
        "keep_checkpoints",
        "log_every_steps",
        "eval_every_epochs",
        "seed",
    ):
        assert getattr(ours, field) == getattr(theirs, field), field


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"preset": "nope"}, "unknown preset"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"max_train_minutes": 0.0}, "max_train_minutes"),
        ({"exit_weights": (1.0, 1.0, 1.0)}, "exit_weights needs 2"),
        ({"exit_weights": (0.0, 0.0)}, "positive sum"),
        ({"warmup_epochs": 20.0}, "warmup_epochs"),
    ],
)
def test_bad_config_is_one_train_error(changes, needle):
    config = dataclasses.replace(BaselineConfig(workdir="w", preset="tiny"), **changes)
    with pytest.raises(TrainError, match=needle):
        config.validate()


def test_saved_config_refuses_other_settings_but_not_session_fields(tmp_path):
    config = BaselineConfig(workdir=str(tmp_path), preset="tiny", epochs=2)
    record = {"kind": config_lib.KIND, "train": config.to_dict()}
    (tmp_path / config_lib.CONFIG_FILE).write_text(__import__("json").dumps(record))
    session_change = dataclasses.replace(config, max_train_minutes=5.0, log_every_steps=1)
    assert config_lib.check_saved_config(str(tmp_path), session_change) is not None
    with pytest.raises(WorkdirError, match=r"epochs: 2 -> 3"):
        config_lib.check_saved_config(str(tmp_path), dataclasses.replace(config, epochs=3))
    with pytest.raises(WorkdirError, match=r"kernel: None -> \[5\]"):
        config_lib.check_saved_config(str(tmp_path), dataclasses.replace(config, kernel=(5,)))
    # A config saved before zero_init_residual existed trained without it: it resumes as such.
    del record["train"]["zero_init_residual"]
    (tmp_path / config_lib.CONFIG_FILE).write_text(__import__("json").dumps(record))
    assert config_lib.check_saved_config(str(tmp_path), config) is not None
    with pytest.raises(WorkdirError, match=r"zero_init_residual: False -> True"):
        zero = dataclasses.replace(config, zero_init_residual=True)
        config_lib.check_saved_config(str(tmp_path), zero)
    assert config.normalized_exit_weights(2) == [0.5, 0.5]
    assert dataclasses.replace(config, exit_weights=(1, 3)).normalized_exit_weights(2) == [
        0.25,
        0.75,
    ]
