"""ONNX targets on the real digits model: the issue's numbers, the file's shape, options, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.calibration import digits
from edgekit.convert.exporters import _tf2onnx
from edgekit.api import convert
from edgekit.errors import InputError, RecipeError

onnx = pytest.importorskip("onnx")
pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")

TARGETS = ["onnx:fp32", "onnx:fp16", "onnx:dynamic", "onnx:int8", "onnx:int8,calibration=entropy,per_channel=true",
           "onnx:int8,calibration=percentile", "onnx:fp16,io=fp16", "tflite:fp32"]


@pytest.fixture(scope="module")
def onnx_out(tmp_path_factory, digits_model):
    out = tmp_path_factory.mktemp("digits-onnx")
    return out, convert({"model": "digits-cnn", "targets": TARGETS}, out)


def test_digits_onnx_meets_the_issue_numbers(onnx_out):
    _, m = onnx_out
    assert all(a.status == "passed" for a in m.artifacts), [(a.target, a.error) for a in m.artifacts]
    fp32, fp16, dyn, int8 = (m.artifact(t) for t in ("onnx:fp32", "onnx:fp16", "onnx:dynamic", "onnx:int8"))
    assert fp32.validation["max_abs_err"] <= 1e-4  # vs Keras, on the 359 held-out digits
    assert fp32.validation["top1_agreement"] == 1.0
    assert int8.validation["accuracy_drop"] <= 2.0 and int8.validation["reference_accuracy"] >= 95.0
    assert dyn.validation["accuracy_drop"] <= 2.0
    assert fp16.bytes <= 0.55 * fp32.bytes
    assert int8.bytes <= 0.35 * fp32.bytes
    assert int8.options == {"opset": 17, "calibration": "minmax", "per_channel": False}
    assert fp16.options == {"opset": 17, "io": "fp32"}


def test_calibration_methods_and_per_channel_are_selectable(onnx_out):
    _, m = onnx_out
    ent = m.artifact("onnx:int8,calibration=entropy,per_channel=True")
    pct = m.artifact("onnx:int8,calibration=percentile")
    assert ent.options["calibration"] == "entropy" and ent.options["per_channel"] is True
    assert pct.options["calibration"] == "percentile"
    for a in (ent, pct):
        assert a.validation["accuracy_drop"] <= 2.0


def test_onnx_file_names_batch_axis_metadata_and_types(onnx_out):
    out, m = onnx_out
    model = onnx.load(str(out / m.artifact("onnx:fp32").path))
    (inp,), (outp,) = model.graph.input, model.graph.output
    assert inp.name == "image" and outp.name == "logits"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [8, 8, 1]
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["edgekit.precision"] == "fp32" and meta["edgekit.source"] == "digits-cnn"

    half = onnx.load(str(out / m.artifact("onnx:fp16").path))
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O kept float32
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in half.graph.initializer)
    int8 = onnx.load(str(out / m.artifact("onnx:int8").path))
    assert any(n.op_type == "QuantizeLinear" for n in int8.graph.node)  # static QDQ


def test_io_fp16_makes_inputs_float16_and_float32_feeds_still_work(onnx_out):
    import edgekit.runtime as rt

    out, m = onnx_out
    a = m.artifact("onnx:fp16,io=fp16")
    assert a.inputs[0].dtype == "float16" and a.outputs[0].dtype == "float16"
    s = rt.load(out, target="onnx:fp16,io=fp16")
    x = digits("eval").inputs[0][:5]
    assert s.run({"image": x})["logits"].shape == (5, 10)  # the Session casts float32 -> float16


@pytest.mark.parametrize("target, msg", [
    ("onnx:fp32,calibration=entropy", "does not apply to onnx:fp32; it applies to: onnx:int8"),
    ("onnx:fp16,per_channel=true", "it applies to: onnx:dynamic, onnx:int8"),
    ("onnx:int8,opset=11", "opset=11 is not one of 13, 14, 15, 16, 17, 18"),
    ("onnx:int8,calibration=kl", "is not one of minmax, entropy, percentile"),
])
def test_misused_options_are_refused_before_any_work(tmp_path, target, msg):
    with pytest.raises(RecipeError, match=msg):
        convert({"model": "digits-cnn", "targets": [target]}, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_int8_without_calibration_is_refused_like_tflite(tmp_path, digits_model):
    path = tmp_path / "digits.keras"
    digits_model.save(path)
    with pytest.raises(InputError, match=r"needs representative \(calibration\) data: pass --calib"):
        convert({"model": str(path), "targets": ["onnx:fp32", "onnx:int8"]}, tmp_path / "o")


def _tiny():
    from testutil import tiny_keras_model

    return tiny_keras_model(seed=4)


def test_keras_trace_is_the_fallback_when_the_savedmodel_route_fails(tmp_path, monkeypatch):
    def broken(source, opset):
        raise RuntimeError("signature route broke")

    monkeypatch.setattr(_tf2onnx, "_from_signature", broken)
    m = convert({"model": "api", "targets": ["onnx:fp32"]}, tmp_path / "o", model=_tiny())
    a = m.artifacts[0]
    assert a.status == "passed", a.error
    assert a.validation["max_abs_err"] <= 1e-4


def test_both_routes_failing_is_one_export_error_naming_both(tmp_path, monkeypatch):
    def broken(source, opset):
        raise RuntimeError("nope\nmulti-line")

    monkeypatch.setattr(_tf2onnx, "_from_signature", broken)
    monkeypatch.setattr(_tf2onnx, "_from_keras_call", broken)
    m = convert({"model": "api", "targets": ["onnx:fp32", "tflite:fp32"]}, tmp_path / "o", model=_tiny())
    bad, good = m.artifacts
    assert bad.status == "error" and "\n" not in bad.error
    assert bad.error.startswith("tf2onnx could not convert") and "saved_model route: nope" in bad.error
    assert "keras route: nope" in bad.error
    assert good.status == "passed"  # one failed target never discards the others
    assert not [p for p in Path(tmp_path / "o").iterdir() if p.name.startswith(".")]


def test_exporter_refuses_int8_without_calibration_directly():
    from edgekit.convert.exporters.onnx import ONNXExporter

    with pytest.raises(InputError, match="--calib"):
        ONNXExporter().export(object(), "int8", {}, None, Path("never-written.onnx"))
    assert not Path("never-written.onnx").exists()
