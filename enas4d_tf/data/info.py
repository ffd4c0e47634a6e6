"""What a dataset yields (`DatasetInfo`) and the constants every source shares."""

from __future__ import annotations

import dataclasses
import re

from enas4d_tf.errors import DataError

DEFAULT_DATASET = "fashion_mnist"
SPLITS = ("train", "validation", "test")

# The side a dataset with images of no fixed square size is yielded at (ImageNet-like data:
# the largest resolution of the imagenet_mbv3 space; the supernet resizes down itself).
LARGE_IMAGE_SIZE = 224
# Datasets with images up to this side get the small-image treatment (pad-and-crop
# translation); larger ones get ImageNet-style random-resized crops.
SMALL_IMAGE_MAX = 64
# Eval crops of large images: resize the shorter side to size / 0.875, take the centre.
EVAL_CROP_FRACTION = 0.875
# The usual ImageNet constants (torchvision / once-for-all), in units of pixel / 255.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a pipeline yields for one dataset.

    Attributes:
      name: the dataset name as given (``fashion_mnist``, a tfds name, ``folder:<root>``).
      num_classes: number of classes; labels are ``0 .. num_classes - 1``.
      image_channels: 1 (grayscale) or 3 (colour).
      image_size: the side of the square images the pipelines yield.
      mean: per-channel mean of ``pixel / 255``, subtracted when normalising.
      std: per-channel standard deviation of ``pixel / 255``, divided by when normalising.
      num_train: examples in the "train" split.
      num_validation: examples in the "validation" split (held out of the training data).
      num_test: examples in the "test" split (0 when the dataset has none).
      class_names: the class names when known, in label order.
    """

    name: str
    num_classes: int
    image_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_train: int
    num_validation: int
    num_test: int
    class_names: tuple[str, ...] = ()

    def num_examples(self, split: str) -> int:
        """Returns the size of `split` ("train", "validation" or "test").

        Raises:
          DataError: `split` is not one of the three.
        """
        check_split(split)
        return {
            "train": self.num_train,
            "validation": self.num_validation,
            "test": self.num_test,
        }[split]


def check_split(split: str) -> None:
    """Raises DataError unless `split` is one of `SPLITS`."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")


def one_line(error: BaseException) -> str:
    """The message of `error` on one line of at most 300 characters, for a DataError."""
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


# TensorFlow's decorations of an op error's message: "{{function_node ...}}", " [Op:Name]",
# the graph node lines ("\t [[{{node ...}}]]") and, for an error inside a tf.data map, the
# transformation and iterator that ran it.
_OP_DECORATION = re.compile(
    r"\{\{function_node [^}]*\}\}|\[Op:[^\]]*\](?: name: \S*)?"
    r"|\[\[\{?\{?node [^\]]*\]\]|\[\[[A-Za-z]+\]\]"
    r"|Error in user-defined function passed to .*? transformation with iterator: \S+: "
)
# Lines of an op error's message that carry no reason.
_OP_CONTEXT = re.compile(r"^(Graph execution error:|Detected at node|<stack traces unavailable>)")


def op_error_reason(error: BaseException) -> str:
    """The reason of a TensorFlow op error (`tf.errors.OpError`) on one line, without
    TensorFlow's decorations (function, node and iterator names, stack context); `one_line`
    of any other error."""
    text = getattr(error, "message", None) or str(error)
    lines = [_OP_DECORATION.sub(" ", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not _OP_CONTEXT.match(line)]
    # In graph errors the reason comes last, after the context lines dropped above.
    return one_line(lines[-1] if lines else type(error).__name__)
