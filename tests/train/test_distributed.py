"""Training under MirroredStrategy (two logical CPUs) and MultiWorkerMirroredStrategy.

Both run in subprocesses: logical devices and the multi-worker cluster must be set up before
TensorFlow runs any op, which the test process has long done.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO

MIRRORED_SCRIPT = r"""
import sys
import numpy as np
import tensorflow as tf
from enas4d_tf.train.config import TrainConfig
from enas4d_tf.train.distribution import configure_cpu_replicas, make_strategy
from enas4d_tf.train.trainer import train

configure_cpu_replicas(2)  # before any op
B, STEPS = 16, 3
rng = np.random.default_rng(0)
halves = [
    (rng.normal(size=(B // 2, 28, 28, 1)).astype("float32"),
     rng.integers(0, 10, B // 2).astype("int32"))
    for _ in range(STEPS)
]


def dataset_fn(ctx, epoch):
    # Every global batch is one half-batch twice: under MirroredStrategy each replica gets
    # the half (so per-replica BN statistics equal those of the whole batch), under the
    # default strategy the one replica gets both copies.
    per_replica = ctx.get_per_replica_batch_size(B)
    copies = ctx.num_replicas_in_sync // ctx.num_input_pipelines

    def gen():
        for x, y in halves:
            if per_replica == B // 2:
                for _ in range(copies):
                    yield x, y
            else:
                yield np.concatenate([x, x]), np.concatenate([y, y])

    spec = (tf.TensorSpec((per_replica, 28, 28, 1), tf.float32),
            tf.TensorSpec((per_replica,), tf.int32))
    return tf.data.Dataset.from_generator(gen, output_signature=spec).repeat()


weights, init = {}, {}
for name in ("default", "mirrored"):
    config = TrainConfig(
        workdir=f"{sys.argv[1]}/{name}", preset="tiny", strategy=name, epochs=1,
        batch_size=B, steps_per_epoch=STEPS, eval_every_epochs=0, learning_rate=0.2,
        warmup_epochs=0.0, clip_norm=1.0, log_every_steps=1, checkpoint_every_steps=100,
    )
    strategy = make_strategy(name)
    result = train(config, strategy=strategy, dataset_fn=dataset_fn)
    assert result.step == STEPS and result.traces == 1, result
    print(name, "replicas", strategy.num_replicas_in_sync, flush=True)
    weights[name] = result.net.get_weights()
worst = max(float(np.max(np.abs(a - b))) for a, b in zip(weights["default"], weights["mirrored"]))
# The run's initial weights: train() seeds Keras with config.seed (0) before building.
import keras
from enas4d_tf import Supernet, SearchSpace
keras.utils.set_random_seed(0)
initial = Supernet(SearchSpace.preset("tiny"), num_classes=10).get_weights()
moved = max(float(np.max(np.abs(a - b))) for a, b in zip(weights["default"], initial))
print("RESULT", worst, moved, flush=True)
"""

# The data of the multi-worker test: every global batch of 16 is one half-batch of 8 twice.
# Each of two workers (one replica each) gets the half; a single worker gets both copies. So
# every replica's BN statistics are those of the whole batch, and the two runs must agree.
HALVES_DATA = r"""
import numpy as np
import tensorflow as tf

B, STEPS = 16, 4
rng = np.random.default_rng(0)
halves = [
    (rng.normal(size=(B // 2, 28, 28, 1)).astype("float32"),
     rng.integers(0, 10, B // 2).astype("int32"))
    for _ in range(STEPS)
]


def dataset_fn(ctx, epoch):
    per_replica = ctx.get_per_replica_batch_size(B)

    def gen():
        for x, y in halves:
            if per_replica == B // 2:
                yield x, y
            else:
                yield np.concatenate([x, x]), np.concatenate([y, y])

    spec = (tf.TensorSpec((per_replica, 28, 28, 1), tf.float32),
            tf.TensorSpec((per_replica,), tf.int32))
    return tf.data.Dataset.from_generator(gen, output_signature=spec).repeat()
"""

# argv: workdir, output .npz, strategy, the step after whose progress record the process dies
# (0: none).
WORKER_SCRIPT = (
    HALVES_DATA
    + r"""
import json
import os
import sys
from enas4d_tf.train.config import TrainConfig
from enas4d_tf.train.trainer import Trainer, train

workdir, out, strategy, die_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if die_at:
    log_window = Trainer._log_window

    def log_then_die(self, epoch, phase):
        log_window(self, epoch, phase)
        if self.step == die_at:
            os._exit(9)  # as abrupt as SIGKILL: nothing flushed, nothing cleaned

    Trainer._log_window = log_then_die
config = TrainConfig(
    workdir=workdir, preset="tiny", strategy=strategy, epochs=1, batch_size=B,
    steps_per_epoch=STEPS, eval_every_epochs=0, learning_rate=0.2, warmup_epochs=0.0,
    clip_norm=1.0, checkpoint_every_steps=2, log_every_steps=1,
)
result = train(config, dataset_fn=dataset_fn)
np.savez(out, *result.net.get_weights())
summary = {"step": result.step, "resumed_from": result.resumed_from, "traces": result.traces}
print("RESULT", json.dumps(summary), flush=True)
"""
)


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    env.update(extra)
    return env


def _result_line(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, stdout
    return lines[-1][len("RESULT ") :]


# Slow (about 4.5 min on 2 idle cores: two strategies, each traced); make test-slow runs it.
@pytest.mark.slow
def test_mirrored_two_replicas_match_default_strategy(tmp_path):
    # Two traces of the tiny step (default, then mirrored): about 60 s on an idle machine.
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(),
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mirrored replicas 2" in proc.stdout
    worst, moved = (float(v) for v in _result_line(proc.stdout).split())
    assert moved > 1e-2  # training changed the weights...
    assert worst < 1e-4  # ...and two replicas changed them as one device did


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _run_workers(tmp_path, workdir, session, die_at):
    """Runs the two workers of a fresh cluster; returns their (returncode, stdout, stderr)."""
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        out = tmp_path / f"{session}_w{index}.npz"
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER_SCRIPT,
                    str(workdir),
                    str(out),
                    "multi_worker",
                    str(die_at),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_env(TF_CONFIG=tf_config),
                cwd=REPO,
            )
        )
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=900)
            outputs.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return outputs


# About 5 minutes on 2 cores (five processes each trace the step): run with `make test-slow`.
@pytest.mark.slow
def test_two_workers_killed_and_resumed_match_one_worker(tmp_path):
    """Two workers (MultiWorkerMirroredStrategy on localhost) die after logging step 3 of 4
    (the checkpoint is of step 2), are started again, resume from step 2 and finish: their
    weights are identical to each other and match an uninterrupted single-worker run of the
    same batches, and the log has one record per step (step 3's first record is dropped).
    """
    reference = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER_SCRIPT,
            str(tmp_path / "single"),
            str(tmp_path / "single.npz"),
            "default",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=_env(),
        cwd=REPO,
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert json.loads(_result_line(reference.stdout)) == {"step": 4, "resumed_from": 0, "traces": 1}

    workdir = tmp_path / "multi"
    for rc, _, err in _run_workers(tmp_path, workdir, "killed", die_at=3):
        assert rc == 9, err[-3000:]
    assert sorted(f for f in os.listdir(workdir / "checkpoints") if f.endswith(".index")) == [
        "ckpt-2.index"
    ]
    logged = [json.loads(line)["step"] for line in open(workdir / "train_log.jsonl")]
    assert logged == [1, 2, 3]  # step 3 was logged, not checkpointed
    outputs = _run_workers(tmp_path, workdir, "resumed", die_at=0)
    for rc, out, err in outputs:
        assert rc == 0, err[-3000:]
        assert json.loads(_result_line(out)) == {"step": 4, "resumed_from": 2, "traces": 1}
    w0 = np.load(tmp_path / "resumed_w0.npz")
    w1 = np.load(tmp_path / "resumed_w1.npz")
    single = np.load(tmp_path / "single.npz")
    assert len(w0.files) == len(single.files) > 50
    initial = _initial_weights()
    moved = max(float(np.max(np.abs(single[f"arr_{i}"] - w))) for i, w in enumerate(initial))
    assert moved > 1e-2  # training changed the weights...
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key])  # ...the workers as one...
        # ...and as one worker did (up to the order of float reductions).
        np.testing.assert_allclose(w0[key], single[key], atol=1e-4, err_msg=key)
    # Only the chief (worker 0) wrote the workdir and logged; one record per step.
    assert "ckpt-4.index" in os.listdir(workdir / "checkpoints")
    assert "step 4/4" in outputs[0][1] and "step 4/4" not in outputs[1][1]
    records = [json.loads(line) for line in open(workdir / "train_log.jsonl")]
    assert [r["step"] for r in records] == [1, 2, 3, 4]


def _initial_weights():
    # The run's initial weights: train() seeds Keras with config.seed (0) before building.
    import keras

    from enas4d_tf import SearchSpace, Supernet

    keras.utils.set_random_seed(0)
    return Supernet(SearchSpace.preset("tiny"), num_classes=10).get_weights()
