"""QAT stage with real tfmot: int8 export, selective annotation, clear errors, prune -> QAT keeps zeros."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from stage_helpers import (convert_api, run_stages, same_weights, tiny_keras3, tiny_trained,  # noqa: F401
                           weights_of)

from edgekit.convert.stages import FitConfig
from edgekit.errors import RecipeError, UnsupportedError


def _quant_vars(model, suffix: str) -> dict[str, np.ndarray]:
    return {v.name: np.asarray(v) for v in model.variables if v.name.split("/")[-1].startswith(suffix)}


def test_qat_keras3_model_exports_int8(tmp_path, tiny_trained):
    before = weights_of(tiny_trained)
    m = convert_api(tmp_path / "out", tiny_trained, ["qat"], targets=["tflite:int8", "tflite:int8,io=float"])
    assert same_weights(before, weights_of(tiny_trained))
    rep = m.stages["qat"]
    assert rep["scheme"] == "default_8bit" and rep["quantized"] == ["conv", "flat", "d1", "logits"]
    assert rep["skipped"] == [] and rep["calibrated_batches"] == 8
    assert rep["config"]["fit"] == FitConfig(epochs=1, learning_rate=1e-5).to_value()
    for a in m.artifacts:
        assert a.status == "passed", a.error
        v = a.validation
        # The int8 file computes what the fake-quant model simulated, and keeps the source's accuracy.
        assert v["snr_db"] >= 25.0 and v["top1_agreement"] >= 0.98
        assert v["accuracy_drop"] <= 2.0 and v["reference_accuracy"] >= 90.0
    assert m.artifacts[0].inputs[0].dtype == "int8" and m.artifacts[1].inputs[0].dtype == "float32"
    assert m.artifacts[0].outputs[0].name == "logits"  # the source's names, not tfmot's "quant_logits"


def test_int8_export_takes_the_fake_quant_ranges(tmp_path, tiny_trained):
    """The TFLite exporter, unchanged, reads the QAT model's ranges (via SavedModel) instead of re-calibrating."""
    from edgekit.calibration import digits
    from edgekit.convert.exporters.tflite import TFLiteExporter

    staged, _ = run_stages(tiny_trained, ["qat"])
    result = TFLiteExporter().export(staged, "int8", {}, digits("calib").take(20), tmp_path / "q.tflite")
    lo = float(_quant_vars(staged.model, "post_activation_min")["quant_logits/post_activation_min:0"])
    hi = float(_quant_vars(staged.model, "post_activation_max")["quant_logits/post_activation_max:0"])
    out = result.outputs[0]
    assert out.dtype == "int8" and out.scale == pytest.approx((hi - lo) / 255, rel=1e-4)
    assert out.zero_point == round(-128 - lo / out.scale)


def test_qat_ranges_are_calibrated_before_fine_tuning(tiny_trained):
    staged, _ = run_stages(tiny_trained, ["qat"])
    lows = _quant_vars(staged.model, "post_activation_min")
    highs = _quant_vars(staged.model, "post_activation_max")
    assert lows and highs
    # tfmot starts every range at [-6, 6] and moves it 0.1 % per step; calibrated ranges are the data's.
    for name, hi in highs.items():
        assert abs(float(hi.max()) - 6.0) > 0.5, name
    d1 = next(v for k, v in highs.items() if "d1" in k)
    logits = next(v for k, v in highs.items() if "logits" in k)
    assert float(d1.max()) != pytest.approx(float(logits.max()), abs=1e-3)


def test_qat_unsupported_layers_are_named_in_one_line(tiny_trained):
    model = tiny_keras3("ln+prelu")
    with pytest.raises(UnsupportedError) as e:
        run_stages(model, ["qat"], limit=64)
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    assert msg.startswith("qat: tfmot cannot quantize layer(s) 'ln' (LayerNormalization), 'act' (PReLU); skip them:")
    assert "--qat-skip ln" in msg and "qat: {skip: [ln, act]}" in msg


def test_qat_skip_leaves_layers_float_and_int8_still_exports(tmp_path):
    model = tiny_keras3("ln")
    m = convert_api(tmp_path / "out", model, [{"qat": {"skip": ["ln"]}}], tolerances={"int8": {"max_accuracy_drop": None}})
    rep = m.stages["qat"]
    assert rep["skipped"] == [{"layer": "ln", "type": "LayerNormalization", "reason": "skipped by the recipe (skip)"}]
    assert "ln" not in rep["quantized"]
    a = m.artifacts[0]
    assert a.status == "passed", a.error  # the converter quantizes the float layer from calibration data
    assert a.inputs[0].dtype == "int8"


def test_qat_selected_by_type_wraps_only_those(tiny_trained):
    staged, report = run_stages(tiny_trained, [{"qat": {"layer_types": ["Dense"]}}])
    assert report["qat"]["quantized"] == ["d1", "logits"]
    wrapped = {getattr(l, "layer", l).name for l in staged.model.layers if type(l).__name__.startswith("QuantizeWrapper")}
    # tfmot also wraps the layer feeding an annotated one (output-only), so d1 gets int8 inputs.
    assert {"d1", "logits"} <= wrapped and "conv" not in wrapped
    assert {s["layer"] for s in report["qat"]["skipped"]} == {"conv"}


def test_prune_then_qat_keeps_sparsity(tmp_path, tiny_trained):
    m = convert_api(tmp_path / "out", tiny_trained,
                    [{"prune": {"sparsity": 0.7, "fit": {"epochs": 2}}}, {"qat": {}}],
                    tolerances={"int8": {"max_accuracy_drop": 3.0}}, train_limit=None)
    st = m.stages
    assert st["order"] == ["prune", "qat"] and st["qat"]["scheme"] == "prune_preserve_8bit"
    before, after = st["qat"]["sparsity_before"], st["qat"]["sparsity_after"]
    assert before["total"]["sparsity"] == pytest.approx(0.7, abs=0.01) == st["prune"]["sparsity"]["total"]["sparsity"]
    # Masked inside the quantizer: every pruned zero is still zero after fine-tuning (rounding may add some).
    for name, layer in before["layers"].items():
        assert after["layers"][name]["zeros"] >= layer["zeros"], name
    a = m.artifacts[0]
    assert a.status == "passed", a.error
    assert a.sparsity["sparsity"] >= 0.69 and a.sparsity["weights"] == before["total"]["weights"]


def test_multi_worker_needs_tf_config(monkeypatch):
    from edgekit.convert.stages.fit import strategy_for

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(RecipeError, match="strategy multi_worker needs TF_CONFIG describing the cluster"):
        strategy_for(FitConfig(strategy="multi_worker"))
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(RecipeError, match="TF_CONFIG is not JSON with 'cluster' and 'task' keys"):
        strategy_for(FitConfig(strategy="multi_worker"))
    # TensorFlow refuses the strategy once it has run anything: say how to fix it, no traceback.
    from edgekit.convert.tf_env import tf

    float(tf().reduce_sum(tf().ones(2)))
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 0}}))
    with pytest.raises(RecipeError, match="must be created before TensorFlow runs anything.*in a fresh process"):
        strategy_for(FitConfig(strategy="multi_worker"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_stage_in_a_fresh_process(tmp_path, tiny_trained):
    """A one-worker cluster from TF_CONFIG: the strategy is made before TF runs, the stage trains."""
    tiny_trained.save(tmp_path / "m.keras")
    env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": {"worker": [f"localhost:{_free_port()}"]},
                                                   "task": {"type": "worker", "index": 0}}))
    code = (
        "import json, sys; from edgekit.convert.pipeline import convert; "
        f"m = convert({{'model': {str(tmp_path / 'm.keras')!r}, 'targets': ['tflite:fp32'], 'train': 'digits:train', "
        "'train_limit': 128, 'eval': 'digits:eval', 'tolerances': {'*': {'max_accuracy_drop': None}}, "
        "'stages': [{'prune': {'sparsity': 0.5, 'fit': {'epochs': 1, 'strategy': 'multi_worker'}}}]}, "
        f"{str(tmp_path / 'out')!r}); print(json.dumps([m.stages['prune']['strategy'], m.artifacts[0].status]))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    strategy, status = json.loads(r.stdout.strip().splitlines()[-1])
    assert strategy["name"] == "multi_worker" and strategy["replicas"] == 1
    assert strategy["class"] in ("MultiWorkerMirroredStrategy", "CollectiveAllReduceStrategy")  # TF's alias
    assert status == "passed"
