"""enas4d_tf: multi-stage once-for-all supernets and their search for dynamic inference.

The names below load on first use, so that `import enas4d_tf.errors` (or `.space`, `.files`)
does not import TensorFlow: the command-line tools check their input before paying for it.
"""

import importlib

# Public name -> the module that defines it.
_EXPORTS = {
    "Arch": "enas4d_tf.space",
    "ArchSizes": "enas4d_tf.space",
    "DataError": "enas4d_tf.errors",
    "DatasetInfo": "enas4d_tf.data",
    "SearchSpace": "enas4d_tf.space",
    "Supernet": "enas4d_tf.model.supernet",
    "dataset_info": "enas4d_tf.data",
    "extract_stage_models": "enas4d_tf.model.subnet",
    "extract_subnet": "enas4d_tf.model.subnet",
    "load_arrays": "enas4d_tf.data",
    "load_pretrained": "enas4d_tf.pretrained",
    "make_dataset": "enas4d_tf.data",
    "recalibrate_bn": "enas4d_tf.model.bn_calibration",
    "stage_macs": "enas4d_tf.model.macs",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'enas4d_tf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
