"""Elastic Keras 3 layers of the multi-stage supernet."""

from enas4d_tf.model.layers.elastic_depthwise_conv import ElasticDepthwiseConv
from enas4d_tf.model.layers.exit_head import ExitHead
from enas4d_tf.model.layers.multi_stage_block import MultiStageBlock
from enas4d_tf.model.layers.multi_stage_conv import MultiStageConv
from enas4d_tf.model.layers.multi_stage_se import MultiStageSE
from enas4d_tf.model.layers.sliced_batch_norm import SlicedBatchNorm

__all__ = [
    "ElasticDepthwiseConv",
    "ExitHead",
    "MultiStageBlock",
    "MultiStageConv",
    "MultiStageSE",
    "SlicedBatchNorm",
]
