"""Recurrent models and TFLite: the unrolled zoo default converts with builtins; a while-loop RNN
fails with the fix in the message, or converts with Select TF ops as an explicit, recorded opt-in."""

from __future__ import annotations

import pytest

from edgekit.calibration import from_arrays, open_dataset
from edgekit.convert.exporters import check_target
from edgekit.convert.pipeline import convert
from edgekit.errors import RecipeError
from edgekit.manifest import ERROR, PASSED
from edgekit.zoo import build
from tools.coverage import blame_for

TARGETS = ["tflite:fp32", "tflite:fp32,select_tf_ops=true", "tflite:int8,select_tf_ops=true", "onnx:fp32"]


@pytest.fixture(scope="module")
def loop_lstm(tmp_path_factory):
    """An LSTM with a while loop (unroll=False) over 64 tokens, converted four ways."""
    model = build("text-lstm", seed=0, units=8, embed=4, unroll=False)
    tmp = tmp_path_factory.mktemp("loop-lstm")
    data = open_dataset("digits:calib:tokens", limit=32)
    from_arrays(data.inputs[0], y=data.labels).to_npz(tmp / "tokens.npz")
    recipe = {"model": "loop-lstm", "targets": TARGETS, "calib": str(tmp / "tokens.npz"), "eval": str(tmp / "tokens.npz")}
    manifest = convert(recipe, tmp / "out", model=model)
    return model, data, {a.target: a for a in manifest.artifacts}, tmp / "out"


def test_select_tf_ops_is_a_declared_tflite_option():
    assert check_target("tflite", "fp16", {"select_tf_ops": True}).format == "tflite"
    with pytest.raises(RecipeError, match="tflite option select_tf_ops='maybe' is not one of True, False"):
        check_target("tflite", "fp32", {"select_tf_ops": "maybe"})


def test_while_loop_rnn_fails_in_tflite_with_the_fix(loop_lstm):
    _, _, arts, _ = loop_lstm
    a = arts["tflite:fp32"]
    assert a.status == ERROR and a.path is None
    assert a.error.startswith("TFLite conversion failed: 'tf.TensorListReserve' op requires element_shape to be static")
    assert "build the layer with unroll=True" in a.error and "select_tf_ops=true" in a.error
    assert "loc(" not in a.error  # MLIR's location chain is dropped
    assert blame_for(a.status, a.error_kind) == "converter"


def test_select_tf_ops_converts_records_and_says_litert_needs_flex(loop_lstm):
    _, _, arts, out = loop_lstm
    a = arts["tflite:fp32,select_tf_ops=True"]
    assert a.options == {"select_tf_ops": True} and (out / a.path).is_file()
    assert a.status == ERROR and a.error.startswith("validation could not run: ")
    assert ("uses Select TF ops (Flex), which ai-edge-litert cannot run: it needs a TFLite/LiteRT build with the "
            "Flex delegate") in a.error
    assert blame_for(a.status, a.error_kind) == "engine"
    assert "ai-edge-litert, tflite_runtime and tensorflow pip wheels have none" in a.error
    # The file holds the loop as Flex (TensorFlow) ops, which no pip wheel's interpreter links in.
    assert b"FlexTensorListReserve" in (out / a.path).read_bytes()
    assert [s.name for s in a.inputs] == ["tokens"] and [s.name for s in a.outputs] == ["logits"]


def test_select_tf_ops_cannot_calibrate_int8_and_says_so(loop_lstm):
    a = loop_lstm[2]["tflite:int8,select_tf_ops=True"]
    assert a.status == ERROR and "Flex delegate" in a.error
    assert "Select TF ops work for fp32/fp16/dynamic only" in a.error and "unroll=True" in a.error


def test_tf2onnx_converts_the_while_loop(loop_lstm):
    a = loop_lstm[2]["onnx:fp32"]
    assert a.status == PASSED and a.validation["max_abs_err"] < 1e-4, a.error


def test_qat_on_token_ids_says_what_to_skip(loop_lstm, tmp_path):
    from edgekit.errors import UnsupportedError

    model = build("text-lstm", seed=0, units=8, embed=4, unroll=True)
    data = str(loop_lstm[3].parent / "tokens.npz")
    recipe = {"model": "tiny-lstm", "targets": ["tflite:int8"], "calib": data, "eval": data, "train": data,
              "stages": [{"qat": {}}]}
    with pytest.raises(UnsupportedError) as e:
        convert(recipe, tmp_path / "out", model=model)
    msg = str(e.value)
    assert msg.startswith("qat: tfmot can fake-quantize float tensors only, and a layer is fed int32")
    assert "--qat-skip LAYER" in msg and "convert without --qat" in msg
