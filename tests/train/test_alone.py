"""Training one architecture alone (TrainConfig.arch_file): the architecture it reads, the
time budget, the forward pass cut at an exit, and what a run trains."""

import json

import numpy as np
import pytest

from enas4d_tf.errors import TrainError
from enas4d_tf.space import SearchSpace
from enas4d_tf.train import budget
from enas4d_tf.train.fixed_arch import FixedArch, read_fixed_arch
from enas4d_tf.train.logs import Timing

TINY = SearchSpace.preset("tiny")


def _write(path, data):
    path.write_text(json.dumps(data))
    return str(path)


def _search_file(arch, exit=None):
    """An architecture file as the search writes it (format 2)."""
    num_exits = TINY.num_stages if exit is None else exit
    record = {
        "format_version": 2,
        "name": "static_x",
        "mode": "static",
        "arch": arch.to_dict(),
        "thresholds": [None] * (num_exits - 1) + [0.0],
        "stage_macs": [1, 2, 3],
        "avg_macs": 3.0,
        "val_accuracy": 0.5,
        "exit_rates": [0.0] * (num_exits - 1) + [1.0],
        "budget_macs": None,
    }
    if exit is not None:
        record["exit"] = exit
    return record


def test_reads_a_bare_architecture_with_or_without_an_exit(tmp_path):
    arch = TINY.sample(seed=1)
    fixed = read_fixed_arch(_write(tmp_path / "a.json", arch.to_dict()), TINY)
    assert (fixed.arch, fixed.exit) == (arch, None)
    assert fixed.num_stages(TINY) == 3 and fixed.exits(TINY) == [1, 2, 3]
    assert fixed.source == str(tmp_path / "a.json")
    cut = read_fixed_arch(_write(tmp_path / "b.json", {**arch.to_dict(), "exit": 2}), TINY)
    assert (cut.arch, cut.exit) == (arch, 2)
    assert cut.num_stages(TINY) == 2 and cut.exits(TINY) == [2]


def test_reads_an_architecture_file_of_the_search_with_its_exit(tmp_path):
    arch = TINY.sample(seed=2)
    fixed = read_fixed_arch(_write(tmp_path / "s.json", _search_file(arch, exit=1)), TINY)
    assert (fixed.arch, fixed.exit) == (arch, 1)
    multi = read_fixed_arch(_write(tmp_path / "m.json", _search_file(arch)), TINY)
    assert (multi.arch, multi.exit) == (arch, None)


_ARCH = TINY.sample(seed=0).to_dict()
_BAD_FILES = {
    # name: (file content, None for no file; a str is written as it is), needle
    "missing": (None, "does not exist"),
    "not_json": ("{not json", "not JSON"),
    "a_list": ([1, 2], "architecture must be a JSON object"),
    "no_genes": ({"depth": 1}, "missing gene"),
    "exit_0": ({**_ARCH, "exit": 0}, "outside 1..3"),
    "exit_4": ({**_ARCH, "exit": 4}, "outside 1..3"),
    "exit_str": ({**_ARCH, "exit": "1"}, "exit must be an int"),
    "exit_bool": ({**_ARCH, "exit": True}, "exit must be an int"),
    "other_space": (SearchSpace.preset("fashion_mnist").largest().to_dict(), "preset 'tiny'"),
}


@pytest.mark.parametrize("case", sorted(_BAD_FILES))
def test_a_bad_architecture_file_is_one_train_error_naming_the_file(tmp_path, case):
    content, needle = _BAD_FILES[case]
    path = tmp_path / "bad.json"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        _write(path, content)
    with pytest.raises(TrainError) as e:
        read_fixed_arch(str(path), TINY)
    message = str(e.value)
    assert needle in message and str(path) in message and "\n" not in message


def test_a_cut_network_learns_from_its_exit_alone():
    recipe = np.array([0.2, 0.2, 0.6], np.float32)
    arch = TINY.largest()
    assert FixedArch(arch, None, "f").exit_weights(recipe).tolist() == recipe.tolist()
    assert FixedArch(arch, 2, "f").exit_weights(recipe).tolist() == [0.0, 1.0]
    assert FixedArch(arch, 1, "f").exit_weights(recipe).tolist() == [1.0]


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_time_budget_counts_every_session_and_stops_once_reached():
    clock = _Clock()
    b = budget.TimeBudget(1.0, seconds_before=45.0, clock=clock)  # 60 s, 45 s spent before
    assert not b.spent and b.elapsed() == 45.0
    b.start()
    clock.now += 10.0
    assert not b.check() and b.elapsed() == 55.0
    assert b.record(7) == {"kind": "budget", "step": 7, "train_seconds": 55.0}
    clock.now += 5.0
    assert b.check() and b.stopped
    clock.now -= 100.0  # a check after stopping keeps it stopped
    assert b.check()
    summary = b.summary(step=30, steps_per_epoch=12)
    assert summary["stopped_by_budget"] and summary["epochs_done"] == 2.5
    assert summary["max_train_minutes"] == 1.0
    assert budget.TimeBudget(1.0, seconds_before=60.0).spent
    unlimited = budget.TimeBudget(None, clock=clock)
    unlimited.start()
    clock.now += 1e6
    assert not unlimited.check() and unlimited.record(3) is None


def test_a_resumed_session_takes_the_time_of_the_checkpoint_it_resumes_from():
    records = [
        {"kind": "train", "step": 4},
        {"kind": "budget", "step": 5, "train_seconds": 12.0},
        {"kind": "budget", "step": 10, "train_seconds": 30.0},
        {"kind": "budget", "step": 12, "train_seconds": 33.0},
    ]
    assert budget.seconds_before(records, 0) == 0.0
    assert budget.seconds_before(records, 10) == 30.0
    assert budget.seconds_before(records, 11) == 30.0  # checkpoint 11 has no record of its own
    assert budget.seconds_before(records, 99) == 33.0


def test_epochs_that_fit_the_budget():
    costs = budget.LoopCosts(
        step_seconds=0.5, epoch_seconds=10.0, eval_seconds=30.0, setup_seconds=5.0
    )
    assert budget.MARGIN == 0.05
    # 10 minutes = 600 s; an epoch is 100 steps of 0.5 s + 10 s = 60 s; evaluations every 3
    # epochs and after the last. 8 epochs: 1.05 * (5 + 480 + 3 * 30) = 603.75 s, too long;
    # 7 epochs: 1.05 * (5 + 420 + 3 * 30) = 540.75 s.
    assert budget.epochs_that_fit(10.0, 20, 100, costs, eval_every=3) == 7
    # A share of the steps (the old plan) would have allowed more: the fixed seconds count.
    assert costs.seconds(8, 100, 3) > 600.0 >= costs.seconds(7, 100, 3)
    # Without evaluations: 1.05 * (5 + 9 * 60) = 572.25 s fits, 10 epochs (635.25 s) do not.
    assert budget.epochs_that_fit(10.0, 20, 100, costs, eval_every=0) == 9
    assert budget.epochs_that_fit(10.0, 8, 100, costs, eval_every=3) == 7
    assert budget.epochs_that_fit(10.0, 5, 100, costs, eval_every=3) == 5  # at most the cap
    assert budget.epochs_that_fit(0.1, 8, 100, costs, eval_every=3) == 1  # at least one


def test_evaluations_a_budget_pays_for():
    # tools.train evaluates every `every` epochs and after the last, inside its budget.
    assert [budget.evaluations_in(e, 3, True) for e in (1, 2, 3, 4, 6, 7)] == [1, 1, 1, 2, 2, 3]
    # The early-exit baseline's last evaluation comes after its budget closes.
    assert [budget.evaluations_in(e, 3, False) for e in (1, 3, 4, 6, 7)] == [0, 0, 1, 1, 2]
    assert budget.evaluations_in(9, 0, True) == 0


def test_loop_costs_from_a_two_epoch_probe():
    # 21 steps of 1 s an epoch. Epoch 1 ends at 60 s (tracing inside); epoch 2 at 60 + 21 +
    # 7 (its end) + 30 (the evaluation) = 118 s.
    costs = budget.loop_costs(1.0, 21, 60.0, 118.0, 30.0)
    assert costs == budget.LoopCosts(1.0, 7.0, 30.0, 32.0)  # setup: 60 - 21 - 7
    # tools.train's probe evaluates after both epochs; the first evaluation (which traces)
    # ends epoch 1 at 69 s: the rest of it beyond a later evaluation's 30 s is setup.
    traced = budget.loop_costs(1.0, 21, 69.0, 127.0, 30.0, first_evaluated=True)
    assert traced == budget.LoopCosts(1.0, 7.0, 30.0, 11.0)  # setup: 69 - 21 - 7 - 30
    # Measured costs are never negative, whatever the noise.
    noisy = budget.loop_costs(1.0, 21, 10.0, 40.0, 30.0)
    assert noisy.epoch_seconds == 0.0 and noisy.setup_seconds == 0.0


# -- the forward pass cut at an exit, and what a run trains (TensorFlow) --------------------


def _images(n, seed=0):
    side = TINY.native_resolution
    return np.random.default_rng(seed).normal(size=(n, side, side, 1)).astype(np.float32)


def test_a_forward_pass_cut_at_exit_s_computes_the_first_s_exits_and_nothing_after():
    import tensorflow as tf

    from enas4d_tf.model.supernet import Supernet

    net = Supernet(TINY, num_classes=10)
    arch = TINY.sample(seed=3)
    images = _images(4)
    full = net(images, arch=arch)
    for s in (1, 2):
        cut = net(images, arch=arch, num_stages=s)
        assert len(cut) == s
        for a, b in zip(cut, full[:s], strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="num_stages"):
        net(images, arch=arch, num_stages=4)

    # The traced graph of exit 1 holds about a third of the convolutions of every exit's: the
    # later groups are not computed (masked or weighted by 0 they would still be there).
    sizes = net.arch_tensors(arch)
    spec = tf.TensorSpec([2, 28, 28, 1], tf.float32)

    def convolutions(num_stages):
        fn = tf.function(lambda x: net(x, arch=sizes, training=True, num_stages=num_stages))
        ops = fn.get_concrete_function(spec).graph.get_operations()
        return sum(op.type in ("Conv2D", "DepthwiseConv2dNative") for op in ops)

    one, every = convolutions(1), convolutions(None)
    assert 0 < one and 2.5 * one <= every


def test_a_fixed_architecture_run_changes_only_the_weights_its_network_uses(tmp_path):
    import keras
    import tensorflow as tf

    from enas4d_tf import data as data_lib
    from enas4d_tf.model.supernet import Supernet
    from enas4d_tf.train.config import TrainConfig
    from enas4d_tf.train.trainer import train

    arch, exit = TINY.sample(seed=5), 2
    config = TrainConfig(
        workdir=str(tmp_path / "run"),
        preset="tiny",
        arch_file=_write(tmp_path / "a.json", {**arch.to_dict(), "exit": exit}),
        epochs=1,
        batch_size=32,
        max_train_examples=96,
        weight_decay=0.0,  # decay would shrink every weight, used or not
        eval_every_epochs=0,
        checkpoint_every_steps=100,
    )
    result = train(config, log=lambda line: None)
    assert result.step == 3 and result.traces == 1
    # The weights the run started from: the trainer seeds Keras with the run's seed first.
    keras.utils.set_random_seed(config.seed)
    initial = Supernet(TINY, num_classes=10)
    # What exit 2 of the network can reach: the gradient of its logits (training-mode BN
    # keeps every channel alive) on the run's images, at the initial weights.
    images, _ = data_lib.load_arrays("fashion_mnist", "train", max_examples=96)
    reach = [np.zeros(v.shape, bool) for v in initial.trainable_variables]
    for batch in np.split(images, 3):
        with tf.GradientTape() as tape:
            logits = initial(batch, arch=arch, training=True, num_stages=exit)[-1]
            probe = tf.reduce_sum(logits * tf.random.normal(logits.shape, seed=1))
        for r, g in zip(reach, tape.gradient(probe, initial.trainable_variables), strict=True):
            if g is not None:
                r |= tf.convert_to_tensor(g).numpy() != 0
    changed_any = {}
    pairs = zip(initial.trainable_variables, result.net.trainable_variables, strict=True)
    for r, (before, after) in zip(reach, pairs, strict=True):
        path = after.path.split("/", 1)[-1]  # without the model's own (per-process) name
        assert before.path.split("/", 1)[-1] == path
        changed = before.numpy() != after.numpy()
        assert not (changed & ~r).any(), f"{path} changed outside the network's slices"
        changed_any[path] = bool(changed.any())
    assert sum(changed_any.values()) > 20
    # Group 3 (exit 3) is not part of a network cut at exit 2, nor exit 1's classifier.
    for path in ("stem_bn_g2/gamma", "head/head/classifier_kernel_g2"):
        assert not changed_any[path], path
    assert not changed_any["head/head/classifier_kernel_g0"]
    assert changed_any["head/head/classifier_kernel_g1"]


@pytest.mark.slow
def test_a_run_stops_at_its_time_budget_checkpoints_and_stays_stopped(tmp_path):
    from enas4d_tf.train.config import TrainConfig
    from enas4d_tf.train.logs import read_train_log
    from enas4d_tf.train.trainer import train

    # A budget of 0.06 s: the first step (which traces) crosses it, so the run stops there.
    # The architecture keeps every exit: they are all trained and logged.
    config = TrainConfig(
        workdir=str(tmp_path / "run"),
        preset="tiny",
        arch_file=_write(tmp_path / "a.json", TINY.sample(seed=5).to_dict()),
        epochs=2,
        batch_size=32,
        max_train_examples=96,
        eval_every_epochs=0,
        checkpoint_every_steps=100,
        max_train_minutes=0.001,
    )
    lines = []
    result = train(config, log=lines.append)
    assert result.step == 1 and result.total_steps == 6
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["stopped_by_budget"] and not summary["finished"]
    assert summary["step"] == 1 and summary["epochs_done"] == pytest.approx(1 / 3, abs=1e-3)
    assert summary["train_seconds"] >= 0.06
    assert "training stopped by its time budget: step 1 of 6" in lines[-1]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.index")) == [
        "ckpt-1.index"
    ]
    records = read_train_log(config.workdir)
    (record,) = [r for r in records if r["kind"] == "budget"]
    assert record["step"] == 1 and record["train_seconds"] >= 0.06
    (progress,) = [r for r in records if r["kind"] == "train"]  # the step that stopped it
    assert progress["step"] == 1 and progress["network"]["exits"] == [1, 2, 3]
    assert all(0 < loss < 10 for loss in progress["network"]["loss"])
    # Started again, the run knows its budget is spent: nothing trains.
    lines.clear()
    again = train(config, log=lines.append)
    assert again.steps_run == 0 and again.step == 1
    assert "already stopped by its time budget" in lines[-1]


def test_epochs_are_fitted_once_to_the_budget_from_a_timed_probe(tmp_path, monkeypatch):
    import dataclasses

    from enas4d_tf.train import plan, trainer
    from enas4d_tf.train.config import TrainConfig

    probes = []

    def fake_train(config, strategy=None, dataset_fn=None, log=None):
        probes.append(config)
        # The probe's timed steps take 0.5 s each in the loop (0.25 s of it in the step
        # function: 128 images/s). Epoch 1 ends at 25 s after its first evaluation (9 s: it
        # traces); epoch 2 at 25 + 21 steps (10.5 s) + its end (2 s) + its evaluation (5 s).
        # The setup is epoch 1 less its steps, its end and an evaluation: 7.5 s. Without
        # evaluations, the epochs end at 16 and 28.5 s: setup 3.5 s.
        clock[0] += 50.0
        timing = Timing(steady_steps=40, steady_wall_seconds=20.0)
        if config.eval_every_epochs:
            timing.epoch_ends.extend([25.0, 42.5])
            timing.eval_seconds.extend([9.0, 5.0])
        else:
            timing.epoch_ends.extend([16.0, 28.5])
        fields = ["images_per_s", "timing"]
        return dataclasses.make_dataclass("R", fields)(images_per_s=128.0, timing=timing)

    clock = [0.0]
    monkeypatch.setattr(budget.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(trainer, "train", fake_train)
    monkeypatch.setattr(
        plan,
        "_plan",
        lambda config, strategy: dataclasses.make_dataclass("P", ["steps_per_epoch"])(20),
    )
    config = TrainConfig(
        workdir=str(tmp_path / "run"),
        preset="tiny",
        batch_size=32,
        epochs=50,
        max_train_minutes=2.0,
        fit_epochs_to_budget=True,
    )
    lines = []
    fitted = budget.fit_epochs(config, strategy=None, log=lines.append)
    # An epoch: 20 steps * 0.5 s + 2 s = 12 s; an evaluation every epoch (the config's
    # default) 5 s, not the first's 9 s; setup 7.5 s. 6 epochs: 1.05 * (7.5 + 6 * 17) =
    # 115.0 s <= 120 s; 7: 132.8 s. Had every evaluation cost the first's 9 s, 5 would fit.
    assert config.eval_every_epochs == 1
    assert fitted.epochs == 6 and fitted == dataclasses.replace(config, epochs=6)
    (probe,) = probes
    assert probe.workdir != config.workdir and probe.max_train_minutes is None
    assert probe.epochs == 2 and probe.steps_per_epoch == budget.PROBE_EPOCH_STEPS
    assert probe.eval_every_epochs == 1 and probe.arch_file == config.arch_file
    assert "planning 6 epochs of 20 steps and 6 evaluations" in lines[0]
    assert "an epoch's end 2.0 s, an evaluation 5.0 s and setting up 7.5 s" in lines[0]
    assert "not even one" not in lines[0]
    # A workdir fitted before keeps its epochs: no second probe.
    (tmp_path / "run").mkdir()
    run_config = {"train": fitted.to_dict()}
    (tmp_path / "run" / "run_config.json").write_text(json.dumps(run_config))
    assert budget.fit_epochs(config, strategy=None).epochs == 6 and len(probes) == 1
    not_fitted = dataclasses.replace(config, fit_epochs_to_budget=False)
    assert budget.fit_epochs(not_fitted, None) is not_fitted
    # A run that never evaluates: its probe does not either, and none is planned. 9 epochs:
    # 1.05 * (3.5 + 9 * 12) = 117.1 s; 10: 129.7 s.
    quiet = dataclasses.replace(config, workdir=str(tmp_path / "quiet"), eval_every_epochs=0)
    assert budget.fit_epochs(quiet, None, log=lines.append).epochs == 9
    assert probes[-1].eval_every_epochs == 0
    assert "planning 9 epochs of 20 steps and 0 evaluations" in lines[-1]


@pytest.mark.slow
def test_an_interrupted_fixed_architecture_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from enas4d_tf.train.alone import AloneTrainer
    from enas4d_tf.train.config import TrainConfig
    from enas4d_tf.train.trainer import train

    arch_file = _write(tmp_path / "a.json", {**TINY.sample(seed=5).to_dict(), "exit": 2})

    def config(name):
        return TrainConfig(
            workdir=str(tmp_path / name),
            preset="tiny",
            arch_file=arch_file,
            epochs=2,
            batch_size=32,
            max_train_examples=64,
            eval_every_epochs=0,
            checkpoint_every_steps=1,
        )

    whole = train(config("whole"), log=lambda line: None)
    step_archs = AloneTrainer._step_archs

    def killed_at_step_3(self, step, phase):
        if step == 2:
            raise KeyboardInterrupt  # as a killed process: checkpoints 1 and 2 are on disk
        return step_archs(self, step, phase)

    monkeypatch.setattr(AloneTrainer, "_step_archs", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(config("killed"), log=lambda line: None)
    monkeypatch.setattr(AloneTrainer, "_step_archs", step_archs)
    resumed = train(config("killed"), log=lambda line: None)
    assert (resumed.resumed_from, resumed.step, resumed.steps_run) == (2, 4, 2)
    for a, b in zip(whole.net.weights, resumed.net.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
