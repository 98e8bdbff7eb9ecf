"""Accuracy-aware int8 end to end, on a model built to break plain int8 (and on one that does not).

The outlier model is a digits MLP, trained for real, in which one hidden unit is scaled up 2000x
and its outgoing weights down 2000x: the float function is unchanged (ReLU is positively
homogeneous), but per-tensor int8 activations now spend their 256 steps on that one unit, the way
outlier channels wreck int8 in real models.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import numpy as np
import pytest

from edgekit.calibration import digits, from_arrays
from edgekit.api import convert
from edgekit.manifest import Manifest

BUDGET = 1.0  # accuracy points


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory):
    import keras

    train = digits("train", flat=True)
    keras.utils.set_random_seed(0)
    inp = keras.Input((64,), name="x")
    h = inp
    for i, width in enumerate((64, 64, 64, 48, 32), 1):
        h = keras.layers.Dense(width, activation="relu", name=f"d{i}")(h)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(h))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(train.inputs[0], train.labels, epochs=30, batch_size=32, verbose=0)
    # Scale the d3 unit that is most active on real data (a dead unit would hide the outlier).
    acts = keras.Model(inp, model.get_layer("d3").output).predict(train.inputs[0], verbose=0)
    j = int(np.argmax(acts.mean(axis=0)))
    w3, b3 = model.get_layer("d3").get_weights()
    w4, b4 = model.get_layer("d4").get_weights()
    w3[:, j] *= 2000.0
    b3[j] *= 2000.0
    w4[j, :] /= 2000.0
    model.get_layer("d3").set_weights([w3, b3])
    model.get_layer("d4").set_weights([w4, b4])
    path = tmp_path_factory.mktemp("outlier") / "outlier.keras"
    model.save(path)
    return path


def _recipe(model, targets, **kw):
    return {"model": str(model), "calib": "digits:calib:flat", "eval": "digits:eval:flat", "targets": targets,
            "tolerances": {"*": {"max_accuracy_drop": BUDGET}}, **kw}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_outlier_model_meets_the_budget_with_most_layers_int8(outlier_model, tmp_path, fmt):
    plain = convert(_recipe(outlier_model, [f"{fmt}:int8"]), tmp_path / "plain").artifacts[0]
    assert plain.status == "failed" and plain.validation["accuracy_drop"] > 20  # plain int8 collapses

    out = tmp_path / "aware"
    m = convert(_recipe(outlier_model, [f"{fmt}:int8"], accuracy_aware=True), out)
    (a,) = m.artifacts
    aware = a.validation["accuracy_aware"]
    assert a.status == "passed", a.error
    assert a.validation["accuracy_drop"] <= BUDGET
    n = aware["layers_total"]
    assert n == 6
    best = aware["tried"][-1] if aware["tried"][-1]["accuracy_drop"] is not None else None
    chosen = next(t for t in aware["tried"] if t["keep_float"] == list(a.options["keep_float"]))
    assert chosen["layers_int8_pct"] >= 50.0, chosen  # most layers stay int8
    assert aware["conversions"] <= 1 + math.ceil(math.log2(n))
    assert aware["tried"][0]["note"] == "plain int8" and aware["tried"][0]["accuracy_drop"] > 20
    assert best is not None
    # Per-layer report: every quantized layer, ranked, with its metric; d4 (fed by the outlier) near the top.
    ranks = {layer["name"]: layer["rank"] for layer in aware["layers"]}
    assert sorted(ranks.values()) == list(range(1, n + 1))
    d4 = next(name for name in ranks if "d4" in name)
    assert ranks[d4] <= 2
    # Only the chosen artifact is left on disk (candidates cleaned up).
    assert sorted(p.name for p in out.iterdir()) == sorted(["manifest.json", "eval.npz", a.path])
    # The saved recipe records keep_float and reproduces the artifact without searching again.
    saved = Manifest.load(out).recipe
    assert saved["targets"][0]["keep_float"] == list(a.options["keep_float"])
    again = convert(saved, tmp_path / "again").artifacts[0]
    assert again.status == "passed" and "accuracy_aware" not in again.validation
    assert again.options["keep_float"] == a.options["keep_float"] and again.bytes == a.bytes
    if fmt == "tflite":
        digest = hashlib.sha256((tmp_path / "again" / again.path).read_bytes()).hexdigest()
        assert digest == a.sha256


@pytest.mark.slow
def test_explicit_int8_io_is_never_silently_turned_float_by_the_search(outlier_model, tmp_path):
    # Keeping layers float makes a float-I/O model: with io=int8 asked for explicitly, the search says
    # so instead of handing back a model with other inputs than the recipe asked for.
    m = convert(_recipe(outlier_model, ["tflite:int8,io=int8"], accuracy_aware=True), tmp_path / "o")
    (a,) = m.artifacts
    assert a.status == "failed" and a.options == {"io": "int8"} and a.inputs[0].dtype == "int8"
    msg = a.validation["accuracy_aware"]["message"]
    assert msg.startswith("accuracy-aware search cannot keep layers in float here: ") and "io=int8" in msg


@pytest.mark.slow
def test_digits_cnn_int8_already_meets_the_budget_so_nothing_changes(tmp_path, digits_model):
    m = convert({"model": "digits-cnn", "targets": ["tflite:int8", "onnx:int8"], "accuracy_aware": True,
                 "tolerances": {"*": {"max_accuracy_drop": BUDGET}}}, tmp_path / "o")
    for a in m.artifacts:
        assert a.status == "passed" and "keep_float" not in a.options
        assert "accuracy_aware" not in a.validation  # no sensitivity run, no extra conversion
    assert m.recipe["targets"] == ["tflite:int8", "onnx:int8"]


def test_calibration_set_checks_warn_with_names(tmp_path, digits_model):
    calib = digits("calib")
    from_arrays(calib.inputs[0] * 0.3).to_npz(tmp_path / "dim.npz")  # preprocessed differently from real inputs
    from_arrays(calib.inputs[0][:40]).to_npz(tmp_path / "small.npz")
    dim = convert({"model": "digits-cnn", "calib": str(tmp_path / "dim.npz"), "targets": ["tflite:int8"]},
                  tmp_path / "dim").artifacts[0]
    warnings = dim.validation["calibration_warnings"]
    assert any(w.startswith("input 'image': ") and "outside the calibration data's range [0, 0.3]" in w for w in warnings)
    assert any("saturated on eval" in w and "serving_default_image" in w for w in warnings)
    small = convert({"model": "digits-cnn", "calib": str(tmp_path / "small.npz"), "targets": ["tflite:int8"]},
                    tmp_path / "small").artifacts[0]
    assert small.validation["calibration_warnings"] == [
        "calibration set has only 40 samples (< 100): activation ranges may miss real inputs; TFLite's guidance is "
        "100-500 representative samples"]
    good = convert({"model": "digits-cnn", "targets": ["tflite:int8"]}, tmp_path / "good").artifacts[0]
    assert "calibration_warnings" not in good.validation


@pytest.mark.slow
def test_cli_budget_flag_and_report_table(outlier_model, tmp_path):
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", "convert", str(outlier_model), "--calib", "digits:calib:flat",
                        "--eval", "digits:eval:flat", "-t", "tflite:int8", "--max-accuracy-drop", "1.0", "-o", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "misses the budget; ranking layers" in r.stderr and "quantized layers in float" in r.stderr
    report = tmp_path / "r.html"
    b = subprocess.run([sys.executable, "-m", "edgekit.cli", "bench", str(out), "--runs", "5", "--no-cold-start",
                        "--report", str(report)], capture_output=True, text=True, timeout=300)
    assert b.returncode == 0, b.stderr[-2000:]
    html = report.read_text()
    assert "Per-layer int8 sensitivity: tflite:int8,keep_float=" in html
    assert "<th>rank</th><th>layer</th><th>op</th>" in html and "FULLY_CONNECTED" in html and ">float<" in html
    assert "Candidates tried" in html and "plain int8" in html
