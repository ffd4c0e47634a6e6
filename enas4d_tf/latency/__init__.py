"""Latency as a cost: a lookup table of measured part times and the model that reads it.

- `table`: `LatencyTable`, the JSON file (`load`, `save`), and its `Target`.
- `parts`: the parts of a stage graph as table keys (what a part's time depends on).
- `handoffs`: each stage graph's input and output tensors.
- `coverage`: every key a space needs (what the table tool measures).
- `model`: `LatencyModel`: per-stage, cumulative and truncated latency of an architecture.
- `measure` (imports TensorFlow and LiteRT when used): builds and times the part graphs
  and whole stage graphs on this host.

Nothing here imports TensorFlow at import time except `measure`.
"""
