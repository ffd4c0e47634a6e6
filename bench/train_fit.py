"""Under- or overfitting? Accuracy of every exit on clean training images against validation.

  python -m bench.train_fit --workdir=W

loads the newest checkpoint of W, recalibrates BN of the largest and the smallest network on
the first 2,000 training images and measures every exit on the first `--num_train_images`
training images (no augmentation) and on the whole validation split.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from tools._cli import fail, flags_parser, quiet_stderr  # noqa: E402

flags.DEFINE_string("workdir", None, "The training workdir to measure.")
flags.DEFINE_integer("num_train_images", 6000, "Training images measured.", lower_bound=2000)
FLAGS = flags.FLAGS


def main(argv):
    if not FLAGS.workdir:
        fail("train_fit", "--workdir is required", code=2)
    with quiet_stderr():  # TensorFlow's start-up banner would bury a one-line error
        from enas4d_tf.data import DEFAULT_DATASET, DataError, load_arrays
        from enas4d_tf.evaluation import exit_probabilities
        from enas4d_tf.model.bn_calibration import recalibrate_bn
        from enas4d_tf.workdir import WorkdirError, load_supernet

    try:
        net, config = load_supernet(FLAGS.workdir)
        dataset, data_dir = config.get("dataset", DEFAULT_DATASET), config.get("data_dir")
        train = load_arrays(dataset, "train", data_dir, max_examples=FLAGS.num_train_images)
        val = load_arrays(dataset, "validation", data_dir)
    except (WorkdirError, DataError) as e:
        fail("train_fit", str(e))
    print("| network | split | accuracy per exit (%) |\n|---|---|---|")
    for name in ("largest", "smallest"):
        arch = getattr(net.space, name)()
        recalibrate_bn(net, arch, train[0][:2000])
        for split, (images, labels) in (("train (clean)", train), ("validation", val)):
            probs = exit_probabilities(net, arch, images)
            accs = [100.0 * float((p.argmax(-1) == labels).mean()) for p in probs]
            print(f"| {name} | {split} | {' / '.join(f'{a:.2f}' for a in accs)} |")


if __name__ == "__main__":
    app.run(main, flags_parser=flags_parser("train_fit"))
