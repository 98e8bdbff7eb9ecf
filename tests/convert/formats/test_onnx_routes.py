"""tf2onnx routes on real models, no mocks: captured constants stay constants, and the fallback is real.

The saved_model route's ONNX graph must take exactly the model's inputs even when the traced
function captures tensors (a ``Normalization`` layer's mean and variance: every EfficientNet). A
route that genuinely fails (a tf_keras model whose variable no layer tracks cannot be written as a
SavedModel) falls back to the keras trace, and the artifact says which route made it and why the
first was passed over. When every route fails (an op tf2onnx cannot convert), one error names each.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.api import convert
from edgekit.convert.exporters._tf2onnx import onnx_model, skipped_routes
from edgekit.convert.source import load_source
from edgekit.errors import ConverterError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")


def _run(proto, feeds):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _normalized_cnn(keras_module):
    """Normalization (constants captured by the trace) -> conv -> dense: the EfficientNet stem in small."""
    layers = keras_module.layers
    inp = keras_module.Input((8, 8, 3), name="image")
    x = layers.Normalization(axis=-1, mean=[0.4, 0.5, 0.6], variance=[0.1, 0.2, 0.3])(inp)
    x = layers.Conv2D(4, 3, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras_module.Model(inp, layers.Dense(3, name="logits")(x))


@pytest.mark.parametrize("flavour", ["keras", "tf_keras"])
def test_captured_normalization_constants_are_not_graph_inputs(tmp_path, flavour):
    k = pytest.importorskip(flavour)
    k.utils.set_random_seed(0)
    path = tmp_path / ("m.keras" if flavour == "keras" else "m.h5")
    _normalized_cnn(k).save(path)
    src = load_source(str(path))
    proto, route = onnx_model(src)
    assert route == "saved_model" and skipped_routes(src) == ()
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    x = np.random.default_rng(1).random((5, 8, 8, 3), dtype=np.float32)
    (got,) = _run(proto, {"image": x})
    want = np.asarray(src.model(x, training=False))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))


def _efficientnet_b0(k):
    # Logits (no softmax) at 32x32: outputs that still differ across inputs, so the comparison means something.
    k.utils.set_random_seed(0)
    return k.applications.EfficientNetB0(input_shape=(32, 32, 3), weights=None, classes=10,
                                         classifier_activation=None)


def _check_efficientnet(src):
    proto, route = onnx_model(src)
    name = src.inputs[0].name
    assert route == "saved_model"
    assert [i.name for i in proto.graph.input] == [name]  # no '171296:0'-style captured constants
    x = np.random.default_rng(2).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    (got,) = _run(proto, {name: x})
    want = np.asarray(src.model(x, training=False))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


@pytest.mark.slow
def test_tf_keras_efficientnet_b0_h5_converts_by_the_saved_model_route(tmp_path):
    tf_keras = pytest.importorskip("tf_keras")
    path = tmp_path / "b0.h5"
    _efficientnet_b0(tf_keras).save(path)
    _check_efficientnet(load_source(str(path)))


def _untracked_variable_model(op=None):
    """A tf_keras model whose layer multiplies by a tf.Variable that no layer tracks.

    ``tf.saved_model.save`` refuses it ("references an 'untracked' resource"), so the saved_model
    route genuinely fails, while tracing ``model(x)`` and freezing the capture works.
    """
    import tensorflow as tf

    tf_keras = pytest.importorskip("tf_keras")
    gain = tf.Variable(np.array([2.0, -1.0, 0.5, 3.0], np.float32))

    class Scale(tf_keras.layers.Layer):
        def call(self, x):
            y = x * gain
            return tf.math.lgamma(y) if op == "lgamma" else y

    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input((4,), name="features")
    return tf_keras.Model(inp, tf_keras.layers.Dense(3, name="logits")(Scale()(inp)))


def test_failing_saved_model_route_falls_back_to_the_keras_trace_and_says_so(tmp_path):
    m = convert({"model": "api", "targets": ["onnx:fp32"]}, tmp_path / "o", model=_untracked_variable_model())
    a = m.artifacts[0]
    assert a.status == "passed", a.error
    assert a.validation["max_abs_err"] <= 1e-5
    assert a.notes[0] == "tf2onnx route: keras"
    assert len(a.notes) == 2 and a.notes[1].startswith("tf2onnx passed over the saved_model route: ")
    assert "untracked" in a.notes[1] and "\n" not in a.notes[1]
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "o" / a.path)).metadata_props}
    assert meta["edgekit.tf2onnx_route"] == "keras"
    assert "tf2onnx_route" not in a.options  # an outcome, not a setting


def test_every_route_failing_is_one_line_naming_each_routes_reason(tmp_path):
    src = load_source(_untracked_variable_model(op="lgamma"))
    with pytest.raises(ConverterError) as info:
        onnx_model(src)
    msg = str(info.value)
    assert info.value.tool == "tf2onnx" and "\n" not in msg
    assert msg.startswith(f"tf2onnx could not convert {src.name}: saved_model route: ")
    assert "untracked" in msg.split("; keras route: ")[0]  # the SavedModel export's reason
    assert "Lgamma" in msg.split("; keras route: ")[1]  # the keras trace's reason
    assert "replace the op" in msg  # the fix
    # Remembered: the next ONNX target of this source gets the same error without tracing again.
    with pytest.raises(ConverterError, match="tf2onnx could not convert") as again:
        onnx_model(src, 17)
    assert str(again.value) == msg
