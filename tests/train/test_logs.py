"""What a run reports: the metric window's means, the progress line, the ETA."""

import numpy as np
import pytest

from enas4d_tf.train.logs import MetricWindow, format_eta, progress_line, progress_record


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
