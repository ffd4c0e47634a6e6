"""The named search spaces, one table (`SearchSpace.preset(name)` reads it).

Widths are per group (see `SearchSpace`). A new space is one more entry here; the
`--preset` flag of tools/train.py lists these names.
"""

from __future__ import annotations

from enas4d_tf.space.search_space import SearchSpace

PRESETS = {
    # CPU-sized. Widths are per group (S = 3 groups). Largest network: 19.6 M MACs at
    # resolution 32, smallest 1.13 M at 24 (tests/model/test_macs.py checks the bounds).
    "fashion_mnist": SearchSpace(
        name="fashion_mnist",
        num_stages=3,
        num_units=3,
        max_depth=3,
        image_channels=1,
        native_resolution=28,
        depth_choices=(1, 2, 3),
        kernel_choices=(3, 5, 7),
        expand_choices=(3, 4, 6),
        width_choices=(0.5, 0.75, 1.0),
        resolution_choices=(24, 28, 32),
        stem_width=8,
        stem_kernel=3,
        stem_stride=1,
        stem_activation="relu",
        unit_widths=(8, 16, 24),
        unit_strides=(2, 2, 2),
        unit_activations=("relu", "relu", "relu"),
        unit_se=(False, False, False),
        head_width=48,
        head_activation="relu",
        default_num_classes=10,
    ),
    # A small space over 28x28x1 images for tests and smoke runs: it traces and runs in a
    # fraction of the time of `fashion_mnist`. Not meant for results.
    "tiny": SearchSpace(
        name="tiny",
        num_stages=3,
        num_units=2,
        max_depth=2,
        image_channels=1,
        native_resolution=28,
        depth_choices=(1, 2),
        kernel_choices=(3, 5),
        expand_choices=(2, 3),
        width_choices=(0.5, 1.0),
        resolution_choices=(20, 24),
        stem_width=4,
        stem_kernel=3,
        stem_stride=2,
        stem_activation="relu",
        unit_widths=(8, 12),
        unit_strides=(2, 2),
        unit_activations=("relu", "hard_swish"),
        unit_se=(False, True),
        head_width=16,
        head_activation="relu",
        default_num_classes=10,
    ),
    # Once-for-all MobileNetV3 split into S = 4 stages: four groups of (8, 12, 24, 32, 48)
    # channels give the largest network units of (32, 48, 96, 128, 192) channels, 1.2x the
    # MobileNetV3-Large widths (24, 40, 80, 112, 160) as in OFA's w1.2 supernet. Largest:
    # 560 M MACs at 224; smallest: 15 M at 128.
    "imagenet_mbv3": SearchSpace(
        name="imagenet_mbv3",
        num_stages=4,
        num_units=5,
        max_depth=4,
        image_channels=3,
        native_resolution=224,
        depth_choices=(2, 3, 4),
        kernel_choices=(3, 5, 7),
        expand_choices=(3, 4, 6),
        width_choices=(0.5, 0.75, 1.0),
        resolution_choices=(128, 160, 192, 224),
        stem_width=4,
        stem_kernel=3,
        stem_stride=2,
        stem_activation="hard_swish",
        unit_widths=(8, 12, 24, 32, 48),
        unit_strides=(2, 2, 2, 1, 2),
        unit_activations=("relu", "relu", "hard_swish", "hard_swish", "hard_swish"),
        unit_se=(False, True, False, True, True),
        head_width=240,
        head_activation="hard_swish",
        default_num_classes=1000,
    ),
}
