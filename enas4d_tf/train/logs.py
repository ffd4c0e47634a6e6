"""What a training run writes for a person to read: TensorBoard scalar summaries."""

from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

# TensorBoard's scalar plugin metadata (what `tf.summary.scalar` writes), built from TF's own
# protos so that writing summaries does not need the `tensorboard` package installed.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
).SerializeToString()


def summary_scalar(name: str, value: float, step: int | None = None) -> None:
    """Writes a scalar summary to the default writer, readable by TensorBoard's scalars tab.

    Args:
      name: the tag.
      value: the number.
      step: the step (default: the writer's default step).
    """
    tf.summary.write(
        name, tf.constant(float(value), tf.float32), step=step, metadata=_SCALAR_METADATA
    )
