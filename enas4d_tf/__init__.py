"""enas4d_tf: multi-stage once-for-all supernets and their search for dynamic inference."""

from enas4d_tf.data import DataError, DatasetInfo, dataset_info, load_arrays, make_dataset
from enas4d_tf.model.bn_calibration import recalibrate_bn
from enas4d_tf.model.macs import stage_macs
from enas4d_tf.model.subnet import extract_stage_models, extract_subnet
from enas4d_tf.model.supernet import Supernet
from enas4d_tf.space import Arch, ArchSizes, SearchSpace

__all__ = [
    "Arch",
    "ArchSizes",
    "DataError",
    "DatasetInfo",
    "SearchSpace",
    "Supernet",
    "dataset_info",
    "extract_stage_models",
    "extract_subnet",
    "load_arrays",
    "make_dataset",
    "recalibrate_bn",
    "stage_macs",
]
__version__ = "0.1.0"
