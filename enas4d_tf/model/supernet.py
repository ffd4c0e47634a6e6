"""`Supernet`: the multi-stage once-for-all network."""

from __future__ import annotations

import keras
import tensorflow as tf

from enas4d_tf.model.layers.common import activation
from enas4d_tf.model.layers.exit_head import ExitHead
from enas4d_tf.model.layers.multi_stage_block import MultiStageBlock
from enas4d_tf.model.layers.multi_stage_conv import MultiStageConv
from enas4d_tf.model.layers.sliced_batch_norm import SlicedBatchNorm
from enas4d_tf.space import SearchSpace
from enas4d_tf.space.arch import Arch
from enas4d_tf.space.blocks import blocks


@keras.saving.register_keras_serializable(package="enas4d_tf")
class Supernet(keras.Model):
    """Every multi-stage architecture of a search space, sharing weights.

    `net(images, arch=arch)` returns the logits of the `S` exits of `arch`. The architecture
    is data: pass an `Arch`, or `net.arch_tensors(arch)` (a dict of int tensors with fixed
    shapes) inside a `tf.function` so that one trace serves every architecture. Images are
    resized to the architecture's resolution when they are not at it already. The README's
    opening section says what stages, groups and exits are; BUILD_NOTES.md "The model, and
    what it costs to trace" says how the weights are sliced.

    Args:
      space: the search space.
      num_classes: classifier outputs of every exit.

    Example:
      >>> space = SearchSpace.preset("fashion_mnist")
      >>> net = Supernet(space, num_classes=10)
      >>> logits = net(images, arch=space.sample(seed=0), training=False)  # S tensors
    """

    def __init__(self, space: SearchSpace, num_classes: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(space, dict):
            space = SearchSpace.from_dict(space)
        self.space = space
        self.num_classes = int(space.default_num_classes if num_classes is None else num_classes)
        with keras.name_scope(self.name):
            S = space.num_stages
            self.stem = MultiStageConv(
                [space.image_channels],
                [space.stem_width] * S,
                kernel_size=space.stem_kernel,
                strides=space.stem_stride,
                shared_input=True,
                name="stem",
            )
            self.stem_bns = [
                SlicedBatchNorm(space.stem_width, name=f"stem_bn_g{s}") for s in range(S)
            ]
            # One layer per block position of the walk, in its order (variable order).
            self.blocks = [
                MultiStageBlock(
                    in_widths=[spec.in_width] * S,
                    out_widths=[spec.out_width] * S,
                    hidden_widths=[spec.max_hidden] * S,
                    kernel_choices=space.kernel_choices,
                    strides=spec.stride,
                    se_widths=[spec.max_se] * S if spec.se else None,
                    activation_name=spec.activation,
                    residual=spec.residual,
                    always_active=spec.always_active,
                    name=spec.name,
                )
                for spec in blocks(space)
            ]
            self.head = ExitHead(
                [space.unit_widths[-1]] * S,
                space.head_width,
                self.num_classes,
                activation_name=space.head_activation,
                name="head",
            )

    def arch_tensors(self, arch: Arch) -> dict:
        """`arch` as a dict of int32 tensors (validated against the space)."""
        return {k: tf.constant(v) for k, v in self.space.sizes(arch).as_tensors().items()}

    def call(
        self,
        images,
        arch=None,
        training=False,
        calibrate: bool = False,
        num_stages: int | None = None,
    ):
        """Runs every exit of `arch`, or the first `num_stages` only.

        Args:
          images: `(batch, H, W, C)` float images, already scaled as the data pipeline does.
          arch: an `Arch` or `arch_tensors(arch)`.
          training: batch statistics and moving-average updates in BN.
          calibrate: batch statistics plus BN calibration sums (see `recalibrate_bn`).
          num_stages: a Python int `s` in `1..S`: compute stages `1..s` only, so a network cut
            at exit `s` costs what it computes (groups `> s` are not touched); None: all `S`.

        Returns:
          A list of `S` (or `num_stages`) logits tensors `(batch, num_classes)`, exit 1 first.
        """
        if arch is None:
            raise ValueError("Supernet needs an architecture: net(images, arch=...)")
        sizes = self.arch_tensors(arch) if isinstance(arch, Arch) else arch
        space = self.space
        S = space.num_stages if num_stages is None else int(num_stages)
        if not 1 <= S <= space.num_stages:
            raise ValueError(f"num_stages must be in 1..{space.num_stages}, got {num_stages}")
        x = tf.convert_to_tensor(images, tf.float32)
        res = sizes["resolution"]
        x = tf.image.resize(x, tf.stack([res, res]), method="bilinear")

        act = activation(space.stem_activation)
        xs = []
        for s in range(S):
            y = self.stem(x, group=s, width=space.stem_width)
            xs.append(act(self.stem_bns[s](y, training=training, calibrate=calibrate)))

        for spec, block in zip(blocks(space), self.blocks, strict=True):
            u, b = spec.unit, spec.block
            block_sizes = {
                "hidden": sizes["hidden"][:, u, b],
                "kernel_index": sizes["kernel_index"][:, u, b],
                "se": sizes["se"][:, u, b],
                "width": sizes["width"][:, u],
            }
            block_sizes = {k: [v[s] for s in range(S)] for k, v in block_sizes.items()}
            xs = block(xs, sizes=block_sizes, training=training, calibrate=calibrate)

        logits, pooled = [], []
        for s in range(S):
            z, p = self.head(xs[: s + 1], pooled, exit=s, training=training, calibrate=calibrate)
            logits.append(z)
            pooled.append(p)
        return logits

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        # Keras 3 shows variables held in Python lists to SavedModel only, not to
        # tf.train.Checkpoint, and the layers here keep their per-group weights in lists:
        # without this a checkpoint of the network holds no weights at all. Each weight is
        # added under its path inside the network, without the model's own name (Keras makes
        # that unique per process), so a checkpoint restores into any instance.
        children = super()._trackable_children(save_type, **kwargs)
        if save_type == "checkpoint":
            for w in self.weights:
                children["weights/" + w.path.split("/", 1)[-1]] = w
        return children

    def batch_norms(self) -> list[SlicedBatchNorm]:
        """Every `SlicedBatchNorm` of the network."""
        out = list(self.stem_bns)
        for block in self.blocks:
            out += block.expand_bns + block.depthwise_bns + block.project_bns
        return out + list(self.head.bns)

    def zero_residual_gammas(self) -> int:
        """Sets the gamma of every residual block's last batch norm (its projection's, every
        group) to 0, so each residual block computes the identity until it learns otherwise;
        a deep architecture then starts as the shallow one it contains. Returns how many
        batch norms were set."""
        count = 0
        for block in self.blocks:
            if block.residual:
                for bn in block.project_bns:
                    bn.gamma.assign(tf.zeros_like(bn.gamma))
                    count += 1
        return count

    def get_config(self):
        return {"space": self.space.to_dict(), "num_classes": self.num_classes, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(SearchSpace.from_dict(config.pop("space")), **config)
