"""Sources through the whole pipeline: multi-input/-output models, custom layers, Lambda safety,
the source model left untouched by conversion, and zoo models (cached, reproducible).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.calibration import from_arrays, random_like
from edgekit.api import convert
from edgekit.api import load_source
from edgekit.errors import ModelError
from edgekit.manifest import TensorSpec

keras = pytest.importorskip("keras")
tf_keras = pytest.importorskip("tf_keras")

IMAGE = TensorSpec("image", (None, 8, 8, 1), "float32")
META = TensorSpec("meta", (None, 3), "float32")
CLS = TensorSpec("cls", (None, 10), "float32")
REG = TensorSpec("reg", (None, 1), "float32")


def _multi_io(k, seed: int = 0):
    """inputs image (8,8,1) + meta (3,) -> outputs cls (10) + reg (1), with Keras 3 or tf_keras."""
    k.utils.set_random_seed(seed)
    image = k.Input((8, 8, 1), name="image")
    meta = k.Input((3,), name="meta")
    x = k.layers.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = k.layers.Flatten(name="flat")(x)
    x = k.layers.Concatenate(name="join")([x, meta])
    x = k.layers.Dense(16, activation="relu", name="hidden")(x)
    cls = k.layers.Dense(10, name="cls")(x)
    reg = k.layers.Dense(1, name="reg")(x)
    return k.Model([image, meta], [cls, reg], name="multi_io")


def _multi_inputs(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((n, 8, 8, 1), dtype=np.float32), rng.random((n, 3), dtype=np.float32)]


def _only(manifest):
    assert len(manifest.artifacts) == 1
    return manifest.artifacts[0]


# --- 5. multi-input / multi-output -------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_source_multi_io_specs_and_fp32_pipeline(flavour, tmp_path):
    k = keras if flavour == "keras3" else tf_keras
    model = _multi_io(k, seed=2)
    path = tmp_path / "multi.keras"
    model.save(path)

    src = load_source(path)
    assert src.kind == flavour
    assert src.inputs == (IMAGE, META)  # names and model order preserved
    assert src.outputs == (CLS, REG)

    xs = _multi_inputs(12, seed=3)
    cls, reg = src.predict(xs, batch_size=5)
    want_cls, want_reg = (np.asarray(o) for o in model(xs, training=False))
    np.testing.assert_allclose(cls, want_cls, rtol=0, atol=1e-6)
    np.testing.assert_allclose(reg, want_reg, rtol=0, atol=1e-6)

    eval_path = tmp_path / "eval.npz"
    from_arrays(_multi_inputs(40, seed=4)).to_npz(eval_path)
    assert sorted(np.load(eval_path).files) == ["x0", "x1"]

    out = tmp_path / "out"
    manifest = convert({"model": str(path), "targets": ["tflite:fp32"], "eval": str(eval_path)}, out)
    art = _only(manifest)
    assert art.status == "passed", art.error
    assert art.validation["samples"] == 40
    assert art.validation["max_abs_err"] <= 1e-4
    assert set(art.validation["outputs"]) == {"cls", "reg"}
    assert [s.name for s in art.outputs] == ["cls", "reg"]
    assert [s.shape for s in art.outputs] == [(None, 10), (None, 1)]
    assert sorted(s.name for s in art.inputs) == ["image", "meta"]
    assert (out / art.path).is_file()
    assert manifest.source["kind"] == flavour
    assert [s["name"] for s in manifest.source["inputs"]] == ["image", "meta"]
    assert [s["name"] for s in manifest.source["outputs"]] == ["cls", "reg"]


def test_source_multi_input_not_in_alphabetical_order_validates(tmp_path):
    keras.utils.set_random_seed(0)
    zeta = keras.Input((4,), name="zeta")
    alpha = keras.Input((4,), name="alpha")
    diff = keras.layers.Subtract(name="diff")([zeta, alpha])  # not symmetric in its inputs
    model = keras.Model([zeta, alpha], keras.layers.Dense(3, name="out")(diff))
    path = tmp_path / "za.keras"
    model.save(path)
    assert [s.name for s in load_source(path).inputs] == ["zeta", "alpha"]

    rng = np.random.default_rng(0)
    eval_path = tmp_path / "eval.npz"
    from_arrays([rng.random((32, 4), dtype=np.float32), rng.random((32, 4), dtype=np.float32)]).to_npz(eval_path)
    manifest = convert({"model": str(path), "targets": ["tflite:fp32"], "eval": str(eval_path)}, tmp_path / "out")
    art = _only(manifest)
    assert art.status == "passed", art.error
    assert art.validation["max_abs_err"] <= 1e-4


# --- 6. custom layer ----------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="edgekit_test_source")
class ScaleShift(keras.layers.Layer):
    """x * factor + bias, with ``factor`` in the config and ``bias`` a trained weight."""

    def __init__(self, factor: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="random_normal", name="bias")

    def call(self, x):
        return x * self.factor + self.bias

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def test_source_custom_registered_layer_round_trip_and_fp32(tmp_path):
    keras.utils.set_random_seed(7)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Flatten()(inp)
    x = ScaleShift(factor=2.5, name="scale_shift")(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(x))
    path = tmp_path / "custom.keras"
    model.save(path)

    src = load_source(path)
    assert src.kind == "keras3"
    layer = src.model.get_layer("scale_shift")
    assert type(layer) is ScaleShift
    assert layer.factor == 2.5
    np.testing.assert_array_equal(np.asarray(layer.bias), np.asarray(model.get_layer("scale_shift").bias))
    assert src.outputs == (TensorSpec("logits", (None, 10), "float32"),)

    x_eval = np.random.default_rng(8).random((16, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(src.predict([x_eval])[0], np.asarray(model(x_eval)), rtol=0, atol=1e-6)

    manifest = convert({"model": str(path), "targets": ["tflite:fp32"]}, tmp_path / "out")
    art = _only(manifest)
    assert art.status == "passed", art.error
    assert art.validation["max_abs_err"] <= 1e-4
    assert [s.name for s in art.outputs] == ["logits"]


# --- 8. Lambda safety ---------------------------------------------------------------------------------


def _lambda_model(k):
    inp = k.Input((4,), name="x")
    return k.Model(inp, k.layers.Lambda(lambda t: t * 2.0, name="double")(inp))


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_source_lambda_refused_unless_allow_unsafe(flavour, tmp_path):
    k = keras if flavour == "keras3" else tf_keras
    path = tmp_path / "lambda.keras"
    _lambda_model(k).save(path)

    # Both Keras 3 and tf_keras (2.21) honour safe_mode for .keras archives: the Lambda's Python
    # bytecode is refused and edgekit turns that into a ModelError naming the way out.
    with pytest.raises(ModelError) as e:
        load_source(path)
    msg = str(e.value)
    assert "Lambda" in msg and "--allow-unsafe" in msg and str(path) in msg
    assert "\n" not in msg

    src = load_source(path, allow_unsafe=True)
    assert src.kind == flavour
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.0
    np.testing.assert_array_equal(src.predict([x])[0], x * 2.0)


def test_source_lambda_refused_in_pipeline_unless_recipe_allows(tmp_path):
    path = tmp_path / "lambda.keras"
    _lambda_model(keras).save(path)
    with pytest.raises(ModelError, match="--allow-unsafe"):
        convert({"model": str(path), "targets": ["tflite:fp32"]}, tmp_path / "refused")
    assert not (tmp_path / "refused" / "manifest.json").exists()

    manifest = convert({"model": str(path), "targets": ["tflite:fp32"], "allow_unsafe": True}, tmp_path / "ok")
    art = _only(manifest)
    assert art.status == "passed", art.error
    assert manifest.recipe["allow_unsafe"] is True


# --- 9. conversion never modifies the source model ---------------------------------------------------


def test_source_in_memory_model_unchanged_by_int8_conversion(tmp_path):
    keras.utils.set_random_seed(11)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)  # moving stats change if anything runs training=True
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="in_memory")

    before = [np.array(v.numpy(), copy=True) for v in model.weights]
    names_before = [v.path for v in model.weights]
    trainable_before = [v.trainable for v in model.weights]
    probe = np.random.default_rng(12).random((8, 8, 8, 1), dtype=np.float32)
    out_before = np.asarray(model(probe, training=False))

    calib = tmp_path / "calib.npz"
    random_like([TensorSpec("image", (None, 8, 8, 1), "float32")], n=64, seed=1).to_npz(calib)
    manifest = convert({"model": "in-memory", "targets": ["tflite:int8"], "calib": str(calib)}, tmp_path / "out",
                       model=model)
    art = _only(manifest)
    assert art.status in ("passed", "failed"), art.error  # exported and validated (not an error)
    assert (tmp_path / "out" / art.path).is_file()
    assert art.inputs[0].dtype == "int8"
    assert manifest.source["kind"] == "keras3" and manifest.source["name"] == "in_memory"

    after = [v.numpy() for v in model.weights]
    assert [v.path for v in model.weights] == names_before
    assert [v.trainable for v in model.weights] == trainable_before
    assert len(after) == len(before)
    for name, b, a in zip(names_before, before, after):
        assert np.array_equal(b, a), f"weight {name} changed during conversion"
    np.testing.assert_array_equal(np.asarray(model(probe, training=False)), out_before)


# --- 10. zoo: cached and reproducible ----------------------------------------------------------------


def test_source_zoo_name_loads_cached_model(digits_model):
    # digits_model (session fixture) trained digits-cnn into the test cache; load_source reuses it.
    a = load_source("digits-cnn")
    b = load_source("digits-cnn")
    for src in (a, b):
        assert src.zoo == "digits-cnn" and src.name == "digits-cnn"
        assert src.kind == "keras3"
        assert src.sha256 is None
        assert src.inputs == (IMAGE,)
        assert src.outputs == (TensorSpec("logits", (None, 10), "float32"),)
        assert src.describe()["zoo"] == "digits-cnn"
    wa, wb, wf = a.model.get_weights(), b.model.get_weights(), digits_model.get_weights()
    assert len(wa) == len(wb) == len(wf) > 0
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))
    assert all(np.array_equal(x, y) for x, y in zip(wa, wf))


def test_source_zoo_training_is_reproducible():
    from edgekit.zoo import train
    from edgekit.zoo.training import ZOO_VERSION, cache_dir

    first = train("digits-cnn", seed=0, epochs=2, cache=False).get_weights()
    second = train("digits-cnn", seed=0, epochs=2, cache=False).get_weights()
    # Observed bit-identical on CPU (TF 2.21 / Keras 3.15): same seed, same data, same order.
    assert len(first) == len(second) > 0
    for a, b in zip(first, second):
        assert np.array_equal(a, b), f"max diff {np.abs(a - b).max()}"
    assert not Path(cache_dir() / f"digits-cnn-seed0-e2-v{ZOO_VERSION}.keras").exists()  # cache=False writes nothing

    other = train("digits-cnn", seed=1, epochs=2, cache=False).get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))  # the seed matters


def test_zoo_cache_holds_the_weights_without_the_optimizer_state(tmp_path, monkeypatch):
    # Loaded with compile=False, the cache never read Adam's slots: two thirds of each file.
    import zipfile

    import h5py

    from edgekit.zoo.training import cache_path, train_model

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path))
    model = train_model("digits-small-cnn", seed=0, epochs=1)
    assert model.optimizer is not None  # the caller's model is untouched
    path = cache_path("digits-small-cnn", 0, 1)
    assert path.is_file() and str(path).startswith(str(tmp_path))
    with zipfile.ZipFile(path) as z, z.open("model.weights.h5") as f, h5py.File(f, "r") as h5:
        assert "layers" in h5 and "optimizer" not in h5
    loaded = train_model("digits-small-cnn", seed=0, epochs=1)  # from the cache
    assert loaded is not model
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), loaded.get_weights()))
    x = np.random.default_rng(0).random((4, *model.inputs[0].shape[1:]), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), np.asarray(loaded(x, training=False)))


def test_tf_keras_saved_model_tracks_variables_and_falls_back_for_other_resources():
    # A tf_keras export tracks only the variables (tf_keras would otherwise trace every layer's
    # call: EfficientNetB0 .h5 to checked ONNX took 76 s that way, 31 s this way); a model that owns a lookup table as well is
    # refused that way as "untracked" and must still export, the full way, with the same outputs.
    import tensorflow as tf

    tf_keras.utils.set_random_seed(0)
    plain = tf_keras.Sequential([tf_keras.Input((4,), name="x"), tf_keras.layers.Dense(3, name="y")])
    inp = tf_keras.Input((4,), dtype="int64", name="ids")
    ids = tf_keras.layers.IntegerLookup(vocabulary=[3, 5, 7, 11])(inp)
    table = tf_keras.Model(inp, tf_keras.layers.Dense(2, name="y")(tf.cast(ids, tf.float32)))
    tracked = {}
    for name, model, x in (("plain", plain, np.arange(8, dtype=np.float32).reshape(2, 4)),
                           ("table", table, np.array([[3, 5, 7, 11], [11, 9, 5, 0]], np.int64))):
        src = load_source(model)
        loaded = tf.saved_model.load(src.saved_model_dir())
        (got,) = loaded.signatures["serving_default"](**{src.inputs[0].name: tf.constant(x)}).values()
        np.testing.assert_allclose(got.numpy(), model(x).numpy(), rtol=1e-6)
        tracked[name] = "variables_only" if hasattr(loaded, "variables_only") else "model" if hasattr(loaded, "model") else None
    assert tracked == {"plain": "variables_only", "table": "model"}
