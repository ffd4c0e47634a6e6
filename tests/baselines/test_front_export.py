"""The baseline's thresholds (the search's fitter) and its export, run by the cascade."""

import json

import keras
import numpy as np
import pytest

from enas4d_tf import thresholds
from enas4d_tf.baselines import front
from enas4d_tf.baselines.backbone import BackboneGenes, backbone_spec, exit_macs
from enas4d_tf.baselines.export import BaselineExportConfig, export_points
from enas4d_tf.baselines.model import EarlyExitNetwork
from enas4d_tf.data import load_arrays
from enas4d_tf.exit_policy import ValidationSplit, evaluate_policy, exit_indices, pareto_front
from enas4d_tf.export.cascade import Cascade, preprocess
from enas4d_tf.export.exporter import load_export_data
from enas4d_tf.model.macs import keras_model_macs
from enas4d_tf.space import SearchSpace

SPEC = backbone_spec(SearchSpace.preset("tiny"), BackboneGenes(depth=2, resolution=24))


def _probs(rng, num_exits, n, classes=10):
    """Softmax outputs whose confidence and correctness vary image to image."""
    logits = rng.normal(size=(num_exits, n, classes)) * rng.uniform(0.3, 4.0, (num_exits, n, 1))
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return (z / z.sum(-1, keepdims=True)).astype(np.float32)


def test_budget_grid_golden():
    # geomspace(69160, 123896, 4) = 69160, 83996, 102013, 123896; 3 significant digits, the
    # first rounded up and the others down so every budget is feasible.
    assert front.budget_grid([69160, 123896], 4) == [69200.0, 83900.0, 102000.0, 123000.0]


def test_thresholds_are_the_searchs_fitted_on_validation():
    rng = np.random.default_rng(0)
    probs = _probs(rng, 2, 400)
    labels = rng.integers(0, 10, 400)
    macs = exit_macs(SPEC)
    budgets = [macs[0] * 1.05, 0.5 * (macs[0] + macs[1]), float(macs[1])]
    fits = front.fit_front(probs, labels, macs, budgets)
    split = ValidationSplit(probs, labels)
    for fit, budget in zip(fits, budgets, strict=True):
        assert fit == thresholds.fit_thresholds(split, macs, budget)
        policy = evaluate_policy(probs, labels, macs, fit.thresholds)
        assert (policy.accuracy, policy.exit_rates) == (fit.accuracy, fit.exit_rates)
        assert fit.avg_macs <= budget
    record = front.front_record(SPEC, macs, probs, labels, fits)
    on_front = pareto_front([(p["avg_macs"], p["val_accuracy"]) for p in record["points"]])
    assert [p["on_front"] for p in record["points"]] == [i in on_front for i in range(3)]
    assert record["exit_accuracy"] == [float(np.mean(p.argmax(-1) == labels)) for p in probs]
    assert [p["name"] for p in record["points"]][-1] == "early_exit_" + f"{macs[1] / 1e3:.3g}K"
    # Budgets given: all points; none given: the front's.
    assert len(front.points_to_export(record, True)) == 3
    assert len(front.points_to_export(record, False)) == len(on_front)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An untrained network with spread-out weights, fitted on 200 validation images and
    exported for two budgets (float32)."""
    keras.utils.set_random_seed(1)
    network = EarlyExitNetwork(SPEC)
    model = network.model()
    rng = np.random.default_rng(1)
    for w in model.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.3, 1.5, w.shape).astype("float32"))
        elif w.path.startswith("exit") and "kernel" in w.path:
            w.assign(6.0 * np.asarray(w))  # confidences from ~0.1 to ~1
    images, labels = load_arrays("fashion_mnist", "validation", max_examples=200)
    probs = front.exit_probabilities(model, images)
    macs = exit_macs(SPEC)
    fits = front.fit_front(probs, labels, macs, front.budget_grid(macs, 3)[1:])
    points = front.front_record(SPEC, macs, probs, labels, fits)["points"]
    data = load_export_data("fashion_mnist", None, 64)
    config = BaselineExportConfig(out=str(tmp_path_factory.mktemp("ee")), check_xnnpack=False)
    folders = export_points(network, points, data, config, log=lambda line: None)
    return network, images, labels, probs, points, folders


def test_export_runs_through_the_cascade_like_the_keras_model(exported):
    network, images, labels, probs, points, folders = exported
    conf = probs.max(-1)
    assert conf[0].max() - conf[0].min() > 0.2  # exit 1's thresholds have something to choose
    for point, folder in zip(points, folders, strict=True):
        t = point["thresholds"]
        keras_exits = exit_indices(conf, t)
        cascade = Cascade(folder, "float32")
        lite_exits = []
        for i in range(len(images)):
            x = images[i : i + 1].astype(np.float32)
            lite_exits.append(cascade.run_one(preprocess(x, SPEC.resolution))[0])
        differ = np.nonzero(np.asarray(lite_exits) != keras_exits)[0]
        # Only an image whose exit-1 confidence is the threshold itself (a tie the fitter
        # puts there) may go the other way, by float rounding in the converted graph.
        assert all(abs(conf[0, i] - t[0]) < 1e-4 for i in differ), differ
        assert len(differ) <= 1
        report = cascade.evaluate(images, labels, warmup=0)
        n = len(images)
        assert report["exit_rates"] == pytest.approx(point["exit_rates"], abs=len(differ) / n)
        assert report["accuracy"] == pytest.approx(point["val_accuracy"], abs=len(differ) / n)
        spread = (report["stage_macs"][1] - report["stage_macs"][0]) * len(differ) / n
        assert report["avg_macs"] == pytest.approx(point["avg_macs"], abs=spread + 1e-6)
        assert 0.0 < point["exit_rates"][0] < 1.0  # both stages ran


def test_manifest_and_subnet(exported):
    network, images, _, _, points, folders = exported
    manifest = json.load(open(f"{folders[0]}/manifest.json"))
    assert manifest["num_stages"] == 2 and manifest["network"] == "early_exit_baseline"
    assert manifest["stage_macs"] == exit_macs(SPEC) == keras_model_macs(network.model(), 2)
    assert [s["reads"] for s in manifest["stages"]] == [[], ["unit1_out"]]
    assert [s["hands_on"] for s in manifest["stages"]] == [["unit1_out"], []]
    assert manifest["thresholds"] == points[0]["thresholds"]
    assert manifest["arch"] == SPEC.to_dict()
    loaded = keras.models.load_model(f"{folders[0]}/subnet.keras")
    x = images[:4]
    x = keras.ops.image.resize(x, (SPEC.resolution, SPEC.resolution))
    for a, b in zip(loaded(x), network.model()(x), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_each_quantisation_gets_thresholds_fitted_on_its_own_graphs(tmp_path):
    """With validation images, the export keeps the front's float32 thresholds and refits the
    int8 graphs' for the point's budget on their own outputs, as the supernet's exports do."""
    keras.utils.set_random_seed(1)
    network = EarlyExitNetwork(SPEC)
    model = network.model()
    for w in model.weights:
        if w.path.startswith("exit") and "kernel" in w.path:
            w.assign(6.0 * np.asarray(w))
    images, labels = load_arrays("fashion_mnist", "validation", max_examples=150)
    probs = front.exit_probabilities(model, images)
    macs = exit_macs(SPEC)
    budget = 0.5 * (macs[0] + macs[1])
    (point,) = front.front_record(
        SPEC, macs, probs, labels, front.fit_front(probs, labels, macs, [budget])
    )["points"]
    data = load_export_data("fashion_mnist", None, 64, num_val_images=150)
    config = BaselineExportConfig(
        out=str(tmp_path),
        quantizations=("float32", "int8"),
        representative_images=32,
        check_xnnpack=False,
    )
    (folder,) = export_points(network, [point], data, config, log=lambda line: None)
    per_q = json.load(open(f"{folder}/manifest.json"))["per_quantization"]
    assert per_q["float32"]["origin"] == "search"
    assert per_q["float32"]["thresholds"] == point["thresholds"]
    int8 = per_q["int8"]
    assert int8["origin"] == "refit" and int8["budget"] == pytest.approx(budget)
    assert int8["avg_macs"] <= budget and int8["num_images"] == 150
    # The cascade runs the int8 graphs with the int8 thresholds.
    assert Cascade(folder, "int8").thresholds == int8["thresholds"]
