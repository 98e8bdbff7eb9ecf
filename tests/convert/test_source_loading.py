"""load_source on real files: Keras 3 / tf_keras ``.keras``, ``.h5``, SavedModel folders, and bad inputs.

Every model here is built, saved and loaded with the real TensorFlow / Keras in ``tmp_path``; the
reference outputs come from the in-memory model that wrote the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgekit.api import load_source
from edgekit.errors import ModelError
from edgekit.manifest import TensorSpec

keras = pytest.importorskip("keras")
tf_keras = pytest.importorskip("tf_keras")


def _k3_model(seed: int = 0):
    """Keras 3 functional model: image (8,8,1) -> logits (10)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="k3_small")


def _tfk_model(seed: int = 0):
    """tf_keras (Keras 2) functional model: image (8,8,1) -> logits (10)."""
    tf_keras.utils.set_random_seed(seed)
    inp = tf_keras.Input((8, 8, 1), name="image")
    x = tf_keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = tf_keras.layers.Flatten(name="flat")(x)
    return tf_keras.Model(inp, tf_keras.layers.Dense(10, name="logits")(x), name="tfk_small")


def _images(n: int = 10, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 8, 8, 1), dtype=np.float32)


IMAGE = TensorSpec("image", (None, 8, 8, 1), "float32")
LOGITS = TensorSpec("logits", (None, 10), "float32")


@pytest.fixture(scope="module")
def k3_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("k3") / "model.keras"
    model = _k3_model()
    model.save(path)
    return path, model


# --- 1. Keras 3 .keras ---------------------------------------------------------------------------


def test_source_keras3_file_kind_specs_hash_and_predict(k3_file):
    path, model = k3_file
    src = load_source(path)

    assert src.kind == "keras3"
    assert src.is_keras
    assert src.name == str(path)
    assert src.inputs == (IMAGE,)
    assert src.outputs == (LOGITS,)
    assert src.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert src.zoo is None

    x = _images(10)
    # batch_size=4 makes predict stitch three chunks (4 + 4 + 2) back together.
    (got,) = src.predict([x], batch_size=4)
    want = np.asarray(model(x, training=False))
    assert got.dtype == np.float32 and got.shape == (10, 10)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)

    d = src.describe()
    assert d["kind"] == "keras3" and d["sha256"] == src.sha256
    assert d["params"] == model.count_params()
    assert d["inputs"] == [IMAGE.to_dict()] and d["outputs"] == [LOGITS.to_dict()]


def test_source_keras3_saved_model_dir_is_exported_once(k3_file):
    path, _ = k3_file
    src = load_source(path)
    first = src.saved_model_dir()
    assert (Path(first) / "saved_model.pb").is_file()
    assert src.saved_model_dir() == first  # cached, not re-exported

    # The exported signature keeps the model's own names, so a converted file says "logits".
    reloaded = load_source(first)
    assert reloaded.kind == "saved_model"
    assert reloaded.inputs == (IMAGE,) and reloaded.outputs == (LOGITS,)
    x = _images(6)
    np.testing.assert_allclose(reloaded.predict([x])[0], src.predict([x])[0], rtol=0, atol=1e-6)


# --- 2. tf_keras .keras ------------------------------------------------------------------------------


def test_source_tf_keras_dot_keras_file(tmp_path):
    model = _tfk_model()
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zf:  # the file really is a Keras 2 archive
        assert json.loads(zf.read("metadata.json"))["keras_version"].startswith("2.")

    src = load_source(path)
    assert src.kind == "tf_keras"
    assert type(src.model).__module__.startswith("tf_keras")
    assert src.inputs == (IMAGE,) and src.outputs == (LOGITS,)
    assert src.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    x = _images(7)
    np.testing.assert_allclose(src.predict([x])[0], np.asarray(model(x, training=False)), rtol=0, atol=1e-6)


# --- 3. .h5 --------------------------------------------------------------------------------------------


def test_source_h5_written_by_tf_keras(tmp_path):
    model = _tfk_model(seed=3)
    path = tmp_path / "m.h5"
    model.save(path)
    assert path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"

    src = load_source(path)
    # For .h5 the Keras 3 loader is tried first and reads tf_keras' legacy HDF5 files itself, so the
    # source reports "keras3" here (observed with keras 3.15 / tf_keras 2.21).
    assert src.kind == "keras3"
    assert src.inputs == (IMAGE,) and src.outputs == (LOGITS,)
    assert src.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    x = _images(5)
    np.testing.assert_allclose(src.predict([x])[0], np.asarray(model(x, training=False)), rtol=0, atol=1e-6)


def test_source_h5_written_by_keras3_and_hdf5_suffix(tmp_path):
    model = _k3_model(seed=4)
    path = tmp_path / "m.h5"
    model.save(path)  # Keras 3 still writes legacy HDF5 for a .h5 name
    assert path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    alias = tmp_path / "m.hdf5"
    shutil.copy(path, alias)

    x = _images(5)
    want = np.asarray(model(x, training=False))
    for p in (path, alias):
        src = load_source(p)
        assert src.kind == "keras3"
        assert src.inputs == (IMAGE,) and src.outputs == (LOGITS,)
        np.testing.assert_allclose(src.predict([x])[0], want, rtol=0, atol=1e-6)


def test_source_upper_case_suffix_loads(k3_file, tmp_path):
    path, model = k3_file
    upper = tmp_path / "MODEL.KERAS"
    shutil.copy(path, upper)
    src = load_source(upper)
    x = _images(3)
    np.testing.assert_allclose(src.predict([x])[0], np.asarray(model(x, training=False)), rtol=0, atol=1e-6)


# --- 4. SavedModel folders -------------------------------------------------------------------------


def _folder_sha256(root: Path) -> str:
    # The documented rule: every file under the folder, in sorted relative-path order, path then bytes.
    h = hashlib.sha256()
    for f in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_source_saved_model_from_keras3_export(tmp_path):
    model = _k3_model(seed=5)
    sm = tmp_path / "exported"
    model.export(str(sm), verbose=False)

    src = load_source(sm)
    assert src.kind == "saved_model"
    assert not src.is_keras
    assert src.name == str(sm)
    assert src.saved_model_dir() == str(sm)  # converted as is, not re-exported
    # Specs come from the serving_default signature: Keras' export names the input after the
    # keras.Input and the output "output_0".
    fn = src.model.signatures["serving_default"]
    _, kw = fn.structured_input_signature
    assert sorted(kw) == ["image"]
    assert src.inputs == (IMAGE,)
    assert src.outputs == (TensorSpec("output_0", (None, 10), "float32"),)
    assert src.sha256 == _folder_sha256(sm)
    assert "params" not in src.describe()

    x = _images(9)
    (got,) = src.predict([x], batch_size=4)
    np.testing.assert_allclose(got, np.asarray(model(x, training=False)), rtol=0, atol=1e-6)


def test_source_folder_without_saved_model_pb(tmp_path):
    folder = tmp_path / "not_a_model"
    folder.mkdir()
    (folder / "variables").mkdir()
    (folder / "README.txt").write_text("hello")
    with pytest.raises(ModelError) as e:
        load_source(folder)
    msg = str(e.value)
    assert "not a SavedModel" in msg and "saved_model.pb" in msg and str(folder) in msg
    assert "\n" not in msg


# --- 7. Bad inputs: one clear line each -------------------------------------------------------------


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    assert len(msg) < 800
    return msg


def test_source_missing_path(tmp_path):
    missing = tmp_path / "nope" / "model.keras"
    with pytest.raises(ModelError) as e:
        load_source(missing)
    msg = _one_line(e)
    assert "does not exist" in msg and str(missing) in msg
    assert ".keras" in msg and "SavedModel" in msg and "zoo" in msg


def test_source_unknown_suffix_lists_supported(tmp_path):
    txt = tmp_path / "model.txt"
    txt.write_text("not a model")
    with pytest.raises(ModelError) as e:
        load_source(txt)
    msg = _one_line(e)
    assert "'.txt'" in msg and "model.txt" in msg
    for suffix in (".keras", ".h5", ".hdf5", "SavedModel"):
        assert suffix in msg


def test_source_random_bytes_named_keras(tmp_path):
    path = tmp_path / "junk.keras"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelError) as e:
        load_source(path)
    msg = _one_line(e)
    assert "not a Keras model" in msg and "zip" in msg and str(path) in msg


def test_source_zip_without_config_named_keras(tmp_path):
    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.0"}))
        zf.writestr("weights.bin", b"\x00" * 16)
    with pytest.raises(ModelError) as e:
        load_source(path)
    msg = _one_line(e)
    assert "zip archive but not a Keras model" in msg and "config.json" in msg


def test_source_truncated_keras_file(k3_file, tmp_path):
    path, _ = k3_file
    data = path.read_bytes()
    cut = tmp_path / "cut.keras"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as e:
        load_source(cut)
    msg = _one_line(e)
    assert "not a Keras model" in msg and "truncated" in msg and str(cut) in msg


@pytest.fixture
def unknown_class_keras(k3_file, tmp_path):
    """A real archive whose config names a class nobody registered (as when a model with a custom
    layer is loaded without importing the layer's code)."""
    path, _ = k3_file
    with zipfile.ZipFile(path) as zf:
        items = {n: zf.read(n) for n in zf.namelist()}
    cfg = json.loads(items["config.json"])
    for layer in cfg["config"]["layers"]:
        if layer["class_name"] == "Dense":
            layer["class_name"] = "NoSuchLayerXyz"
            layer["module"] = None
            layer["registered_name"] = "NoSuchLayerXyz"
    items["config.json"] = json.dumps(cfg).encode()
    bad = tmp_path / "unknown_class.keras"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, blob in items.items():
            zf.writestr(name, blob)
    return bad


def test_source_keras_archive_with_unknown_layer_class(unknown_class_keras):
    with pytest.raises(ModelError) as e:
        load_source(unknown_class_keras)
    msg = _one_line(e)
    assert msg.startswith(f"cannot load {unknown_class_keras}: Could not locate class 'NoSuchLayerXyz'")
    assert "register_keras_serializable" in msg


def test_source_unknown_layer_class_is_named_in_error(unknown_class_keras):
    with pytest.raises(ModelError) as e:
        load_source(unknown_class_keras)
    assert "NoSuchLayerXyz" in _one_line(e)


def test_source_keras_archive_with_non_object_metadata(tmp_path):
    path = tmp_path / "odd.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("metadata.json", "[1, 2, 3]")
    with pytest.raises(ModelError) as e:
        load_source(path)
    _one_line(e)


def test_source_random_bytes_named_h5(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(ModelError) as e:
        load_source(path)
    msg = _one_line(e)
    assert "HDF5" in msg and "not a Keras model" in msg and str(path) in msg


def test_source_empty_h5(tmp_path):
    path = tmp_path / "empty.h5"
    path.write_bytes(b"")
    with pytest.raises(ModelError) as e:
        load_source(path)
    msg = _one_line(e)
    assert "HDF5" in msg and str(path) in msg


def test_source_unknown_zoo_name_suggests_close_match():
    with pytest.raises(ModelError) as e:
        load_source("digits-cnnn")
    msg = _one_line(e)
    assert "unknown zoo model 'digits-cnnn'" in msg
    assert "did you mean 'digits-cnn'?" in msg


def test_source_empty_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError) as e:
        load_source(empty)
    msg = _one_line(e)
    assert "not a SavedModel" in msg and str(empty) in msg


def test_source_engine_errors_are_flattened_to_one_line(tmp_path):
    # A config.json that is not JSON: each loader's (multi-part) error is folded into one line.
    path = tmp_path / "badjson.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", "{not json\n\n at all")
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.0"}))
    with pytest.raises(ModelError) as e:
        load_source(path)
    msg = _one_line(e)
    assert msg.startswith(f"cannot load {path}: keras3: ")
    assert "tf_keras: " in msg
    assert os.fspath(path) in msg
