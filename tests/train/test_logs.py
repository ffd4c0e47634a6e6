"""What a run reports: the metric window's means, the progress line, the ETA."""

import numpy as np
import pytest

from enas4d_tf.errors import WorkdirError
from enas4d_tf.train.logs import (
    MetricWindow,
    TrainLog,
    format_eta,
    progress_line,
    progress_record,
    read_train_log,
)
from enas4d_tf.workdir import Workdir


def test_metric_window_means_per_example_step_and_architecture():
    # Two steps of 2 examples: 3 architectures (timed, 0.5 s), then 2 (traced, not timed).
    window = MetricWindow(max_archs=3, num_stages=2)
    first = {
        "objective": np.array([1.0, 2.0, 3.0]),
        "loss": np.array([[2.0, 4.0], [6.0, 8.0], [1.0, 1.0]]),
        "correct": np.array([[1.0, 2.0], [0.0, 1.0], [2.0, 2.0]]),
        "count": np.float32(2),
    }
    second = {
        "objective": np.array([3.0, 4.0]),
        "loss": np.array([[2.0, 0.0], [2.0, 0.0]]),
        "correct": np.array([[1.0, 0.0], [1.0, 1.0]]),
        "count": np.float32(2),
    }
    window.add(first, num_archs=3, seconds=0.5)
    window.add(second, num_archs=2, seconds=None)
    record = progress_record(window, step=8, epoch=1, phase=3, learning_rate=0.05, batch_size=10)
    # Sums over the 4 examples: largest losses (4, 4), smallest (8, 8).
    assert record["largest"] == {"loss": [1.0, 1.0], "accuracy": [0.5, 0.5]}
    assert record["smallest"] == {"loss": [2.0, 2.0], "accuracy": [0.25, 0.5]}
    # 13 summed over 2 steps of 2.5 architectures on average.
    assert record["objective"] == pytest.approx(13 / 2.5 / 2)
    assert record["images_per_s"] == 20.0 and record["subnet_images_per_s"] == 50.0
    line = progress_line(record, total_steps=10, batch_size=10, session_rate=20.0)
    assert line == (
        "step 8/10 epoch 2 loss 2.6000 (largest 1.000, smallest 2.000) lr 0.05 20 img/s ETA 0:00:01"
    )
    window.reset()
    assert window.records == 0 and not window.sums["loss"].any()


def test_format_eta():
    assert format_eta(3 * 3600 + 5 * 60 + 7.9) == "3:05:07"
    assert format_eta(-4) == "0:00:00"


def test_drop_records_after_keeps_one_record_per_step(tmp_path):
    # A run killed after logging step 12 whose newest checkpoint is of step 8: the resumed
    # run logs steps 9.. again, so the records after 8 (and a line cut short) go.
    log = TrainLog(Workdir(str(tmp_path)), chief=True)
    for record in (
        {"kind": "train", "step": 4},
        {"kind": "eval", "step": 8},
        {"kind": "train", "step": 8},
        {"kind": "train", "step": 12},
    ):
        log.write(record)
    path = tmp_path / "train_log.jsonl"
    with open(path, "a") as f:
        f.write('{"kind": "train", "st')  # cut short by the kill
    log.drop_records_after(8)
    assert [(r["kind"], r["step"]) for r in read_train_log(str(tmp_path))] == [
        ("train", 4),
        ("eval", 8),
        ("train", 8),
    ]
    assert path.read_text().endswith("}\n")
    before = path.stat().st_mtime_ns
    log.drop_records_after(8)  # nothing to drop: the file is not rewritten
    assert path.stat().st_mtime_ns == before
    TrainLog(Workdir(str(tmp_path / "none")), chief=True).drop_records_after(0)  # no log: fine


def test_summaries_that_cannot_be_written_are_one_line(tmp_path):
    (tmp_path / "tensorboard").write_text("a file where the folder goes")
    with pytest.raises(WorkdirError) as e:
        TrainLog(Workdir(str(tmp_path)), chief=True).open_summaries()
    assert str(e.value) == (
        f"cannot write TensorBoard summaries to {tmp_path}/tensorboard: Not a directory; "
        "nothing was trained in this session"
    )


def test_students_accuracy_is_over_the_examples_they_saw():
    # The largest saw 8 examples, the students (rows 1-2) 4 of them.
    window = MetricWindow(max_archs=3, num_stages=1)
    out = {
        "objective": np.array([1.0, 1.0, 1.0]),
        "loss": np.array([[8.0], [4.0], [2.0]]),
        "correct": np.array([[6.0], [3.0], [1.0]]),
        "count": np.float32(8),
        "student_count": np.float32(4),
    }
    window.add(out, num_archs=3, seconds=1.0)
    record = progress_record(window, step=1, epoch=0, phase=3, learning_rate=0.1, batch_size=8)
    assert record["largest"] == {"loss": [1.0], "accuracy": [0.75]}
    assert record["smallest"] == {"loss": [1.0], "accuracy": [0.75]}
    # 8 images a second through the largest, 4 + 4 through the students.
    assert record["subnet_images_per_s"] == pytest.approx(16.0)


def test_timing_keeps_the_step_functions_seconds_and_the_loops():
    from enas4d_tf.train.logs import Timing

    timing = Timing()
    assert timing.step_wall_seconds() is None
    timing.add(0.25, 0.5)
    timing.add(0.35, 0.7)
    assert timing.steps == 2 and abs(timing.seconds - 0.6) < 1e-12
    assert abs(timing.step_wall_seconds() - 0.6) < 1e-12
    assert abs(timing.images_per_s(32) - 32 * 2 / 0.6) < 1e-9
    timing.add(0.4)  # no wall time given: the step's own
    assert abs(timing.wall_seconds - 1.6) < 1e-12
