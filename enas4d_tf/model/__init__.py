"""The elastic model: the multi-stage once-for-all supernet and what is taken out of it.

- `layers/`: the elastic Keras layers; each also emits its static standard-Keras form for
  an architecture (`static_form`).
- `supernet`: `Supernet`, every architecture of a search space sharing weights.
- `subnet`: `extract_subnet` / `extract_stage_models`, static models wired from the layers'
  static forms, with the names of the tensors stages hand on.
- `macs`: multiply-accumulates to each exit (`stage_macs`).
- `bn_calibration`: `recalibrate_bn` / `BNCalibrator`, BN statistics of one architecture.
"""
