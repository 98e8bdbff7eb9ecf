"""Pruning stage with real tfmot: sparsity reached and recorded, layers skipped not fatal, source untouched."""

from __future__ import annotations

import numpy as np
import pytest
from stage_helpers import (convert_api, kernel, recipe, run_stages, same_weights, tiny_prelu,  # noqa: F401
                           tiny_trained, weights_of)

from edgekit.calibration import digits
from edgekit.errors import RecipeError, UnsupportedError
from edgekit.manifest import Manifest


def test_prune_keras3_model_through_convert(tmp_path, tiny_prelu):
    model = tiny_prelu
    before = weights_of(model)
    source_acc = float(np.mean(np.argmax(model.predict(digits("eval").inputs[0], verbose=0), 1) == digits("eval").labels))
    m = convert_api(tmp_path / "out", model, [{"prune": {"sparsity": 0.6, "fit": {"epochs": 2}}}],
                    targets=["tflite:fp32", "tflite:int8"], tolerances={"*": {"max_accuracy_drop": 3.0}}, train_limit=None)

    # The user's Keras 3 model is untouched: same weights, still Keras 3, no tfmot wrappers.
    assert same_weights(before, weights_of(model))
    assert type(model).__module__.startswith("keras") and [l.name for l in model.layers][-2] == "act"

    st = m.stages
    assert st["order"] == ["prune"] and st["model"]["from"] == "keras3" and st["model"]["max_abs_diff"] <= 1e-5
    assert st["train_data"]["samples"] == 1258
    rep = st["prune"]
    assert rep["pruned"] == ["conv", "d1", "logits"]
    # PReLU has weights tfmot cannot prune: skipped and listed, not fatal.
    assert rep["skipped"] == [{"layer": "act", "type": "PReLU", "reason": "tfmot cannot prune PReLU (no pruning rule for it)"}]
    assert rep["loss"] == {"loss": "sparse_categorical_crossentropy", "from_logits": True, "from": "model compile state"}
    # 2 epochs x 40 steps: the schedule ends at 70 %, on a whole number of 5-step updates.
    assert (rep["config"]["end_step"], rep["config"]["frequency"]) == (55, 5)
    for name in ("conv", "d1", "logits"):
        assert rep["sparsity"]["layers"][name]["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert rep["sparsity"]["total"]["sparsity"] == pytest.approx(0.6, abs=0.005)

    fp32, int8 = m.artifacts
    assert fp32.status == "passed" and int8.status == "passed", (fp32.error, int8.error)
    # The files carry the zeros: fp32 exactly the model's kernels, int8 at least those.
    assert fp32.sparsity["weights"] == rep["sparsity"]["total"]["weights"]
    assert fp32.sparsity["zeros"] == rep["sparsity"]["total"]["zeros"]
    assert int8.sparsity["sparsity"] >= fp32.sparsity["sparsity"]
    assert fp32.gzip_bytes < 0.75 * fp32.bytes
    # Fidelity is judged against the pruned model, accuracy against the untouched source.
    v = fp32.validation
    assert v["max_abs_err"] <= 1e-4 and v["top1_agreement"] == 1.0
    assert v["reference_accuracy"] == pytest.approx(source_acc * 100, abs=1e-3)
    assert v["staged_accuracy"] == v["accuracy"] and v["accuracy_drop"] <= 3.0
    assert v["vs_source"]["top1_agreement"] < 1.0 and v["vs_source"]["max_abs_err"] > 1e-3
    assert Manifest.load(tmp_path / "out").stages == st


def test_prune_2_of_4_structure_on_selected_types(tiny_trained):
    staged, report = run_stages(tiny_trained, [{"prune": {"structure": "2:4", "layer_types": ["Dense"],
                                                          "fit": {"epochs": 1}}}])
    rep = report["prune"]
    assert rep["pruned"] == ["d1", "logits"]
    assert rep["skipped"] == [{"layer": "conv", "type": "Conv2D", "reason": "not selected (layers / layer_types)"}]
    for name in ("d1", "logits"):
        k = kernel(staged.model, name)
        # TFLite stores Dense kernels [out, in]: every 4 consecutive input weights hold >= 2 zeros.
        groups = k.T.reshape(k.shape[1], -1, 4)
        assert (np.count_nonzero(groups == 0, axis=-1) >= 2).all(), name
        assert rep["sparsity"]["layers"][name]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert np.count_nonzero(kernel(staged.model, "conv") == 0) == 0
    assert rep["config"]["structure"] == "2:4"


def test_prune_selection_by_name_and_skip(tiny_trained):
    staged, report = run_stages(tiny_trained, [{"prune": {"sparsity": 0.5, "layers": ["d1"], "fit": {"epochs": 1}}}])
    assert report["prune"]["pruned"] == ["d1"]
    assert [s["layer"] for s in report["prune"]["skipped"]] == ["conv", "logits"]
    assert np.mean(kernel(staged.model, "d1") == 0) == pytest.approx(0.5, abs=0.01)
    assert np.count_nonzero(kernel(staged.model, "logits") == 0) == 0

    staged, report = run_stages(tiny_trained, [{"prune": {"sparsity": 0.5, "skip": ["d1"], "fit": {"epochs": 1}}}])
    assert report["prune"]["pruned"] == ["conv", "logits"]
    assert report["prune"]["skipped"] == [{"layer": "d1", "type": "Dense", "reason": "skipped by the recipe (skip)"}]
    assert np.count_nonzero(kernel(staged.model, "d1") == 0) == 0


@pytest.mark.parametrize("cfg, msg", [
    ({"layers": ["d2"]}, r"prune layers: no layer named 'd2' in the model; did you mean 'd1'\?"),
    ({"layer_types": ["Dens"]}, r"no layer of type 'Dens' in the model; did you mean 'Dense'\?"),
])
def test_prune_unknown_layer_is_refused_with_a_hint(tiny_trained, cfg, msg):
    with pytest.raises(RecipeError, match=msg):
        run_stages(tiny_trained, [{"prune": cfg}])


def test_prune_nothing_prunable_is_one_clear_error():
    import keras

    from edgekit.calibration import from_arrays
    from edgekit.convert.source import from_keras
    from edgekit.convert.stages import apply_stages

    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, keras.layers.PReLU(name="p")(inp))
    train = from_arrays(np.random.default_rng(0).random((16, 4), dtype=np.float32), np.arange(16) % 4)
    with pytest.raises(UnsupportedError, match=r"prune: no layer of the model can be pruned.*p \(PReLU\): tfmot cannot prune"):
        apply_stages(from_keras(model), recipe([{"prune": {}}]), train)


def test_prune_under_mirrored_strategy_on_cpu(tiny_trained):
    staged, report = run_stages(tiny_trained, [{"prune": {"sparsity": 0.5, "fit": {"epochs": 1, "strategy": "mirrored"}}}])
    rep = report["prune"]
    assert rep["strategy"]["name"] == "mirrored" and rep["strategy"]["class"] == "MirroredStrategy"
    assert rep["strategy"]["replicas"] >= 1
    assert rep["sparsity"]["total"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    # Detached from the strategy afterwards: plain variables, ready to export.
    assert all("Mirrored" not in type(v).__name__ for v in staged.model.variables)
    assert staged.predict([digits("eval").inputs[0][:8]])[0].shape == (8, 10)


def test_stages_are_seeded_and_reproducible(tiny_trained):
    stages = [{"prune": {"sparsity": 0.5, "fit": {"epochs": 1}}}]
    a, ra = run_stages(tiny_trained, stages, seed=3)
    b, rb = run_stages(tiny_trained, stages, seed=3)
    c, _ = run_stages(tiny_trained, stages, seed=4)
    assert same_weights(a.model.get_weights(), b.model.get_weights())
    assert ra["prune"]["history"] == rb["prune"]["history"]
    assert not same_weights(a.model.get_weights(), c.model.get_weights())


def test_tf_keras_source_is_cloned_not_changed():
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input((8, 8, 1), name="image")
    x = tf_keras.layers.Flatten()(inp)
    model = tf_keras.Model(inp, tf_keras.layers.Dense(10, name="logits")(tf_keras.layers.Dense(16, name="d")(x)))
    before = weights_of(model)
    staged, report = run_stages(model, [{"prune": {"sparsity": 0.5, "fit": {"epochs": 1}}}])
    assert report["model"]["from"] == "tf_keras" and report["prune"]["loss"]["from"] == "labels and model output"
    assert same_weights(before, weights_of(model))
    assert not any(type(l).__name__ == "PruneLowMagnitude" for l in model.layers)
    assert staged.model is not model and staged.kind == "tf_keras"
    assert np.mean(kernel(staged.model, "d") == 0) == pytest.approx(0.5, abs=0.01)
