"""Latency as a cost: a lookup table of measured part times and the model that reads it.

- `table`: `LatencyTable`, the JSON file (`load`, `save`), its `Target` and `graph_ms`.
- `parts`: the parts of a stage graph as table keys (what a part's time depends on).
- `handoffs`: each stage graph's input and output tensors.
- `coverage`: every key a space needs (what the table tool measures).
- `model`: `LatencyModel`: per-stage, cumulative and truncated latency of an architecture.
- `calibrate`: the fit of whole stage graphs against the sum of their parts.
- `android`: a phone's kit folder of part graphs, and the table from its recorded outputs.
- `build`, `part_graphs`, `timing`: measuring a table on this host (TensorFlow and LiteRT
  are imported when they run, not at import).

`tools/latency_table.py` is the command line; BUILD_NOTES.md "Latency table keys" says why
the keys are what they are.
"""
