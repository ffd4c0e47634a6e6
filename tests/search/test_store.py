"""The search state never loses a measurement silently (enas4d_tf/search/store.py).

No network runs: candidates are measurements of hand-made per-exit predictions.
"""

import os

import numpy as np
import pytest

from enas4d_tf.errors import WorkdirError
from enas4d_tf.exit_policy import ValidationSplit
from enas4d_tf.model.macs import stage_macs
from enas4d_tf.search.measurement import Measurement
from enas4d_tf.search.store import Candidate, SearchStore
from enas4d_tf.space import SearchSpace, arch_key
from enas4d_tf.workdir import Workdir

SPACE = SearchSpace.preset("tiny")
SETTINGS = {"checkpoint": "ckpt-1", "num_val_images": 50, "num_calibration_images": 20}


def measured(seed: int) -> Candidate:
    rng = np.random.default_rng(seed)
    arch = SPACE.sample(seed=seed)
    split = ValidationSplit.from_confidences(
        rng.uniform(0, 1, (3, 50)).astype(np.float32), rng.random((3, 50)) < 0.5
    )
    return Candidate(arch_key(SPACE, arch), Measurement(arch, stage_macs(SPACE, arch, 10), split))


def filled_store(folder) -> tuple[Workdir, list]:
    paths = Workdir(str(folder))
    store = SearchStore(paths, SETTINGS, SPACE, log=lambda line: None)
    candidates = [measured(seed) for seed in range(3)]
    for c in candidates:
        store.add(c)
    return paths, candidates


@pytest.mark.parametrize(
    "damage", [b"", b"PK\x03\x04 not a zip", b"garbage", "truncated", "missing"]
)
def test_an_unreadable_predictions_file_is_measured_again_with_a_log_line(tmp_path, damage):
    paths, candidates = filled_store(tmp_path)
    bad, good = candidates[0], candidates[1]
    path = os.path.join(paths.search_predictions, f"{bad.key}.npz")
    if damage == "missing":
        os.remove(path)
    elif damage == "truncated":
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
    else:
        with open(path, "wb") as f:
            f.write(damage)
    lines = []
    store = SearchStore(paths, SETTINGS, SPACE, log=lines.append)
    assert len(store) == 3
    assert store.get(bad.key) is None  # the search measures it again
    (line,) = lines
    assert bad.key in line and "measuring it again" in line
    loaded = store.get(good.key)
    np.testing.assert_array_equal(loaded.measurement.split.correct, good.measurement.split.correct)
    # Measured again, it replaces the unreadable file.
    store.add(bad)
    again = SearchStore(paths, SETTINGS, SPACE, log=lines.append).get(bad.key)
    np.testing.assert_array_equal(again.measurement.split.correct, bad.measurement.split.correct)


def test_a_state_of_other_settings_is_moved_aside_with_its_predictions(tmp_path):
    paths, candidates = filled_store(tmp_path)
    with open(paths.search_state, "rb") as f:
        state = f.read()
    lines = []
    other = dict(SETTINGS, num_val_images=80)
    store = SearchStore(paths, other, SPACE, log=lines.append)
    assert len(store) == 0 and not os.path.exists(paths.search_state)
    (line,) = lines
    assert "(num_val_images)" in line
    folder = line.split(" to ")[1].split(" and starting")[0]
    with open(os.path.join(folder, "state.json"), "rb") as f:
        assert f.read() == state
    kept = sorted(os.listdir(os.path.join(folder, "predictions")))
    assert kept == sorted(f"{c.key}.npz" for c in candidates)
    # A second change moves the new state (one candidate) to a folder of its own.
    store.add(measured(7))
    lines.clear()
    SearchStore(paths, SETTINGS, SPACE, log=lines.append)
    second = lines[0].split(" to ")[1].split(" and starting")[0]
    assert second != folder and os.path.exists(os.path.join(folder, "state.json"))


def test_a_malformed_state_is_refused_and_kept(tmp_path):
    paths, _ = filled_store(tmp_path)
    with open(paths.search_state, "w") as f:
        f.write('{"version": 2, "candidates": ')
    with pytest.raises(WorkdirError, match="search state"):
        SearchStore(paths, SETTINGS, SPACE)
    with open(paths.search_state) as f:
        assert f.read() == '{"version": 2, "candidates": '


def test_a_checkpoint_of_the_same_name_with_other_weights_is_other_settings(tmp_path):
    """A workdir trained again (or another copied in) keeps the name `ckpt-5`: the settings
    tell them apart by the checkpoint's index, so its measurements are not reused."""
    from types import SimpleNamespace

    from enas4d_tf.search.run import store_settings

    evaluator = SimpleNamespace(
        net=SimpleNamespace(num_classes=10, space=SPACE),
        num_val_images=50,
        num_calibration_images=20,
        batch_size=10,
    )

    def workdir_with_index(name: str, index: bytes) -> str:
        checkpoints = tmp_path / name / "checkpoints"
        checkpoints.mkdir(parents=True)
        (checkpoints / "checkpoint").write_text('model_checkpoint_path: "ckpt-5"\n')
        (checkpoints / "ckpt-5.index").write_bytes(index)
        (checkpoints / "ckpt-5.data-00000-of-00001").write_bytes(b"weights")
        return str(tmp_path / name)

    one = store_settings(workdir_with_index("one", b"index of one run"), "d", None, evaluator)
    same = store_settings(workdir_with_index("same", b"index of one run"), "d", None, evaluator)
    other = store_settings(workdir_with_index("other", b"index of another"), "d", None, evaluator)
    assert one["checkpoint"] == other["checkpoint"] == "ckpt-5"
    assert one == same and one != other
    assert len(one["checkpoint_index_sha256"]) == 64
    # The store moves a state of the other checkpoint aside and measures again.
    paths = Workdir(str(tmp_path / "search_run"))
    store = SearchStore(paths, one, SPACE, log=lambda line: None)
    store.add(measured(0))
    lines = []
    again = SearchStore(paths, other, SPACE, log=lines.append)
    assert len(again) == 0 and any("checkpoint_index_sha256" in line for line in lines)
