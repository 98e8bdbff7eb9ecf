"""Batches sized from bytes (edgekit.convert.batching): the sizes chosen, and metrics that do not move."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgekit.convert.batching import DEFAULT_CAP, OPAQUE_ACTIVATION_FACTOR, batch_for, per_sample_bytes
from edgekit.convert.flags import ConvertFlags
from edgekit.convert.recipe import Recipe
from edgekit.convert.tf_env import keras
from edgekit.errors import RecipeError
from edgekit.manifest import TensorSpec


def _mlp():
    k = keras()
    inp = k.Input((4,), name="x")
    return k.Model(inp, k.layers.Dense(16)(inp))


def _wide_conv():
    k = keras()
    inp = k.Input((32, 32, 3), name="image")
    x = k.layers.Conv2D(64, 3, padding="same")(inp)
    return k.Model(inp, k.layers.Dense(10)(k.layers.GlobalAveragePooling2D()(x)))


def test_per_sample_bytes_sums_input_and_layer_outputs():
    assert per_sample_bytes(_mlp()) == 4 * 4 + 16 * 4
    # image 32x32x3 + conv 32x32x64 + pooled 64 + logits 10, float32
    assert per_sample_bytes(_wide_conv()) == 4 * (32 * 32 * 3 + 32 * 32 * 64 + 64 + 10)


def test_big_activations_get_a_smaller_batch_at_the_same_budget():
    budget = 8 << 20
    mlp, conv = batch_for(_mlp(), budget), batch_for(_wide_conv(), budget)
    assert mlp == DEFAULT_CAP  # 80 bytes a sample: the cap, not the budget, decides
    assert conv == budget // (4 * (32 * 32 * 3 + 32 * 32 * 64 + 64 + 10)) == 30
    assert batch_for(_wide_conv(), 100) == 1  # less than one sample: still one at a time
    assert batch_for(_wide_conv(), 1 << 40, cap=1000) == 1000


def test_max_batch_overrides_the_budget_and_is_checked():
    assert batch_for(_wide_conv(), 100, max_batch=48) == 48
    assert batch_for(_mlp(), 1 << 30, max_batch=7) == 7
    for bad in (0, -1, True, 2.5):
        with pytest.raises(RecipeError, match="max_batch must be a positive integer"):
            batch_for(_mlp(), max_batch=bad)


def test_nested_functional_models_count_their_layers_and_shared_layers_do_not_break_it():
    k = keras()
    inner = _wide_conv()
    inp = k.Input((32, 32, 3), name="image")
    outer = k.Model(inp, k.layers.Softmax()(inner(inp)))
    assert per_sample_bytes(outer) == per_sample_bytes(inner) + 4 * 10
    shared = k.layers.Dense(8)
    a, b = k.Input((4,), name="a"), k.Input((4,), name="b")
    two = k.Model([a, b], k.layers.Add()([shared(a), shared(b)]))
    assert per_sample_bytes(two) >= 2 * 16 + 32  # inputs and the Add; the shared Dense counted as a guess


def test_subclassed_and_saved_model_sources_fall_back_to_a_multiple_of_the_input():
    from edgekit.convert.source import from_keras

    k = keras()

    class Tiny(k.Model):
        def __init__(self):
            super().__init__()
            self.d1, self.d2 = k.layers.Dense(32), k.layers.Dense(3)

        def call(self, x):
            return self.d2(self.d1(x))

    m = Tiny()
    m(np.zeros((1, 6), np.float32))
    src = from_keras(m, inputs=[("x", (6,), "float32")])
    inb = 6 * 4
    assert per_sample_bytes(src) == inb + OPAQUE_ACTIVATION_FACTOR * inb + 3 * 4
    specs = [TensorSpec("x", (None, 224, 224, 3), "float32")]
    assert per_sample_bytes(specs) == 224 * 224 * 3 * 4 * (1 + OPAQUE_ACTIVATION_FACTOR)
    # An unknown spatial size follows the data actually fed.
    free = [TensorSpec("x", (None, None, None, 3), "float32")]
    assert per_sample_bytes(free, samples=[np.zeros((2, 224, 224, 3), np.float32)]) == per_sample_bytes(specs)


def test_max_batch_in_the_recipe_and_the_flag():
    r = Recipe.from_dict({"model": "m.keras", "targets": ["tflite:fp32"], "max_batch": 7})
    assert r.max_batch == 7 and Recipe.from_dict(r.to_dict()) == r
    assert Recipe.from_dict({"model": "m.keras", "targets": ["tflite:fp32"]}).max_batch is None
    assert ConvertFlags(model="m.keras", max_batch=5).merge({"max_batch": 9}).max_batch == 5
    with pytest.raises(RecipeError, match="^max_batch must be a positive integer or null, got 0"):
        Recipe.from_dict({"model": "m.keras", "targets": ["tflite:fp32"], "max_batch": 0})
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", "convert", "m.keras", "--max-batch", "0", "-o", "o"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "max_batch must be a positive integer" in r.stderr, r.stderr


def test_digits_metrics_do_not_depend_on_the_batch(tmp_path, digits_out, digits_model):
    from edgekit.api import convert

    _, default = digits_out
    assert batch_for(digits_model) == DEFAULT_CAP  # the 8x8 model keeps reference batches of 256 (old: 256/64)
    said: list[str] = []
    small = convert({"model": "digits-cnn", "targets": ["tflite:fp32", "tflite:int8"], "max_batch": 7},
                    tmp_path / "b7", progress=said.append)
    assert any("7 per batch" in s for s in said), said
    assert small.recipe["max_batch"] == 7
    for target in ("tflite:fp32", "tflite:int8"):
        a, b = default.artifact(target).validation, small.artifact(target).validation
        assert a["samples"] == b["samples"] == 359
        for key in ("snr_db", "max_abs_err", "rel_max_abs_err", "top1_agreement", "accuracy", "reference_accuracy"):
            if key == "snr_db" and target == "tflite:fp32":
                # Eager Keras (oneDNN) rounds float32 differently per batch size (<= 6e-6 on these
                # logits), and an exact fp32 artifact's SNR measures just that rounding: 134.47 dB
                # at batch 256, 134.31 at 7. It stays in the rounding regime, far above any tolerance.
                assert min(a[key], b[key]) > 120 and b[key] == pytest.approx(a[key], abs=0.5)
                continue
            assert b[key] == pytest.approx(a[key], abs=1e-6), (target, key, a[key], b[key])


def test_onnx_calibration_batch_is_capped_by_max_batch():
    from edgekit.convert.exporters.onnx import CALIB_BATCH, calibration_batch
    from edgekit.convert.source import SourceModel

    def source(max_batch):
        return SourceModel("sm", "saved_model", None, (TensorSpec("image", (None, 8, 8, 1), "float32"),), (),
                           max_batch=max_batch)

    assert calibration_batch(source(None), "minmax") == CALIB_BATCH == 16
    assert calibration_batch(source(5), "minmax") == 5
    assert calibration_batch(source(64), "minmax") == CALIB_BATCH  # a cap, not a size
    assert calibration_batch(source(5), "entropy") == 1  # the histogram methods need equal batches: one each


def test_max_batch_reaches_onnx_calibration_and_the_result_does_not_move(tmp_path, monkeypatch):
    # --max-batch bounds every model call of a conversion, the calibration model's too; MinMax
    # keeps min and max per call, so the quantized model is the same.
    from edgekit.api import convert
    from edgekit.calibration import Dataset

    drawn: list[int] = []
    real = Dataset.batches

    def batches(self, batch_size):  # the real method, recording what each caller asked for
        drawn.append(batch_size)
        return real(self, batch_size)

    monkeypatch.setattr(Dataset, "batches", batches)
    recipe = {"model": "digits-cnn", "targets": ["onnx:int8"], "calib_limit": 40, "eval_limit": 100}
    default = convert(recipe, tmp_path / "default").artifact("onnx:int8")
    drawn_default, drawn[:] = list(drawn), []
    capped = convert({**recipe, "max_batch": 5}, tmp_path / "b5").artifact("onnx:int8")
    assert 16 in drawn_default and 5 not in drawn_default, drawn_default
    assert 5 in drawn and 16 not in drawn, drawn  # calibration (and everything else) at 5 per call
    assert default.status == capped.status == "passed"
    for key in ("snr_db", "max_abs_err", "top1_agreement", "accuracy"):
        assert capped.validation[key] == pytest.approx(default.validation[key], abs=1e-6), key


def test_npy_data_is_memory_mapped_not_read_whole(tmp_path):
    from edgekit.calibration import open_dataset

    np.save(tmp_path / "x.npy", np.arange(24, dtype=np.float32).reshape(6, 4))
    ds = open_dataset(str(tmp_path / "x.npy"))
    x = ds.inputs[0]
    assert isinstance(x, np.memmap) or isinstance(x.base, np.memmap)
    assert not x.flags.writeable and ds.cast(["float32"]).inputs[0] is x  # no copy on the way in


def test_uncompressed_npz_members_are_memory_mapped_compressed_ones_read(tmp_path):
    from edgekit.calibration import open_dataset

    x = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    f = np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3))
    np.savez(tmp_path / "s.npz", x0=x, x1=f, y=np.array([3, 1]))
    np.savez_compressed(tmp_path / "c.npz", x=x, y=np.array([3, 1]))
    stored = open_dataset(str(tmp_path / "s.npz"))
    a, b = stored.inputs
    mapped = lambda arr: isinstance(arr, np.memmap) or isinstance(arr.base, np.memmap)  # noqa: E731
    assert mapped(a) and mapped(b) and not a.flags.writeable
    np.testing.assert_array_equal(a, x)
    np.testing.assert_array_equal(b, f)  # Fortran order honoured
    assert stored.labels.tolist() == [3, 1] and stored.cast(["float32", "int16"]).inputs[0] is a
    packed = open_dataset(str(tmp_path / "c.npz")).inputs[0]
    assert not mapped(packed)
    np.testing.assert_array_equal(packed, x)


def test_a_mapped_npz_member_that_lies_about_its_size_is_read_normally(tmp_path):
    """An entry whose .npy header claims more data than the zip entry holds is not mapped past it."""
    import zipfile

    from edgekit.calibration import open_dataset
    from edgekit.errors import DataError

    np.save(tmp_path / "x.npy", np.zeros((4, 4), np.float32))
    raw = (tmp_path / "x.npy").read_bytes().replace(b"(4, 4)", b"(9, 4)")
    with zipfile.ZipFile(tmp_path / "bad.npz", "w", zipfile.ZIP_STORED) as z:
        z.writestr("x.npy", raw)
    with pytest.raises(DataError, match="cannot read .*bad.npz as .npz"):
        open_dataset(str(tmp_path / "bad.npz"))
