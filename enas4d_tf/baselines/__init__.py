"""Baselines trained on their own, for the benchmark of record.

The early-exit baseline: one MobileNetV3-style backbone of the search space's block family,
without the channel split, with an exit after each unit (BranchyNet / Shallow-Deep
Networks), trained from scratch with the project's recipe; its thresholds are fitted with
the same functions as ours and it exports to stage graphs that
`enas4d_tf.export.cascade.Cascade` runs unchanged.

Modules: `backbone` (the network as data and its MACs; no TensorFlow), `config` (the run's
configuration and workdir files; no TensorFlow), `model` (the Keras model and its stage
models), `plan` (steps, workdir config and log files), `step` (the traced training step),
`trainer` (the training loop), `front` (validation probabilities and thresholds), `export`
(stage graphs and manifest). `tools/train_baseline.py` runs them in that order.
"""
