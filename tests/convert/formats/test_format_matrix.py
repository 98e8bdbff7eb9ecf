"""The format x precision x model matrix, derived from the registries so coverage cannot drift.

Every supported cell converts, loads in its backend and validates; the verdict must be the one this
machine can honestly give: ``passed`` where the backend runs here, ``not_validated`` where the
artifact was written but the engine cannot run here (CoreML off macOS), ``unsupported`` where the
converter itself cannot run here (TF-TRT / TensorRT without a GPU). Every unsupported pair raises
UnsupportedError naming the supported precisions. One convert() per model keeps it fast.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgekit.calibration import from_arrays
from edgekit.convert.exporters import check_target, exporter_names, get_exporter
from edgekit.formats import FORMATS
from edgekit.convert.pipeline import convert
from edgekit.errors import UnsupportedError
from edgekit.manifest import NOT_VALIDATED, PASSED, UNSUPPORTED
from edgekit.runtime.backends import get_backend
from tools.models import multi_io  # tf_keras image + meta -> cls + reg (outputs not alphabetical)

keras = pytest.importorskip("keras")
tf_keras = pytest.importorskip("tf_keras")


@keras.saving.register_keras_serializable(package="edgekit_test_formats")
class Affine(keras.layers.Layer):
    """x * scale + shift with trained per-feature weights: a custom layer every converter must trace."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")
        self.shift = self.add_weight(shape=(input_shape[-1],), initializer="random_normal", name="shift")

    def call(self, x):
        return x * self.scale + self.shift


def sequential():
    """Keras 3 Sequential conv net on 8x8x1."""
    keras.utils.set_random_seed(1)
    return keras.Sequential([
        keras.Input((8, 8, 1), name="image"),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, name="logits"),
    ], name="seq")




def custom_layer():
    """Keras 3 functional model with a registered custom layer."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 1), name="image")
    x = Affine(name="affine")(keras.layers.Flatten()(inp))
    x = keras.layers.Dense(16, activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x))


MODELS = {"sequential": sequential, "multi_io": multi_io, "custom_layer": custom_layer}
CELLS = [(fmt, p) for fmt in exporter_names() for p in get_exporter(fmt).precisions]
ALL_PRECISIONS = sorted({p for _, p in CELLS} | {"int4", "bf16"})
TARGET_OPTIONS = {("onnx", "int8"): ",reduce_range=true"}


def expected_status(fmt: str) -> str:
    """What this machine can honestly say about a cell of ``fmt``."""
    if get_exporter(fmt).unavailable_reason():
        return UNSUPPORTED
    if get_backend(fmt).unavailable_reason():
        return NOT_VALIDATED
    return PASSED


def _data(model, n: int, seed: int):
    rng = np.random.default_rng(seed)
    xs = [rng.random((n, *tuple(t.shape)[1:]), dtype=np.float32) for t in model.inputs]
    return from_arrays(xs if len(xs) > 1 else xs[0])


@pytest.fixture(scope="module", params=list(MODELS))
def converted(request, tmp_path_factory):
    model = MODELS[request.param]()
    tmp = tmp_path_factory.mktemp(f"matrix-{request.param}")
    _data(model, 48, 10).to_npz(tmp / "calib.npz")
    _data(model, 48, 11).to_npz(tmp / "eval.npz")
    # Untrained models on random inputs have near-tied logits, so top-1 agreement of int8 says
    # little here (fp16 flips a near-tie too); the digits tests hold every precision to the real
    # accuracy bar. SNR and max-abs-error checks stay at their defaults.
    # ONNX int8 with 7-bit weights: onnxruntime's u8s8 kernels saturate on x86 CPUs without VNNI
    # (multi_io fell to 11.9 dB SNR on an AVX2 EPYC, 30 dB with reduce_range), so the verdict would
    # depend on the CPU the suite runs on rather than on the converter.
    recipe = {"model": request.param, "targets": [f"{f}:{p}" + TARGET_OPTIONS.get((f, p), "") for f, p in CELLS],
              "calib": str(tmp / "calib.npz"),
              "eval": str(tmp / "eval.npz"),
              "tolerances": {"int8": {"min_top1_agreement": 0.6}, "dynamic": {"min_top1_agreement": 0.8},
                             "fp16": {"min_top1_agreement": 0.9}}}
    return request.param, convert(recipe, tmp / "out", model=model), tmp / "out"


def test_matrix_is_derived_from_the_registry():
    assert {"tflite", "onnx", "coreml", "tftrt", "tensorrt"} <= set(FORMATS) == set(exporter_names())
    assert len(CELLS) == sum(len(get_exporter(f).precisions) for f in FORMATS)
    assert ("onnx", "int8") in CELLS and ("coreml", "palettized") in CELLS and ("tensorrt", "fp16") in CELLS


@pytest.mark.slow
def test_every_supported_cell_converts_loads_and_validates(converted):
    import edgekit.runtime as rt

    name, manifest, out = converted
    assert [f"{a.format}:{a.precision}" for a in manifest.artifacts] == [f"{f}:{p}" for f, p in CELLS]
    for a in manifest.artifacts:
        want = expected_status(a.format)
        assert a.status == want, (name, a.target, a.status, a.error)
        if want == UNSUPPORTED:
            assert a.path is None and a.error and ("pip install" in a.error or "GPU" in a.error or "TensorRT" in a.error)
            continue
        assert (out / a.path).exists() and a.bytes > 0 and a.sha256
        if (a.format, a.precision) == ("onnx", "int8"):
            assert a.options["reduce_range"] is True  # the option reached the quantizer and the manifest
        assert sorted(s.name for s in a.outputs) == sorted(s["name"] for s in manifest.source["outputs"])
        if want == NOT_VALIDATED:
            assert a.error.startswith("not validated: ") and not a.validation
            continue
        assert a.validation["samples"] == 48 and a.validation["nonfinite"] == 0
        session = rt.load(out, target=a.target)  # by the manifest, through the format's own backend
        assert session.format == a.format
        feeds = {s["name"]: np.zeros((3, *s["shape"][1:]), np.float32) for s in manifest.source["inputs"]}
        outs = session.run(feeds)
        assert all(v.shape[0] == 3 for v in outs.values())  # dynamic batch


@pytest.mark.slow
def test_fp32_cells_match_the_reference_closely(converted):
    _, manifest, _ = converted
    for a in manifest.artifacts:
        if a.precision == "fp32" and a.status == PASSED:
            assert a.validation["max_abs_err"] <= 1e-4, (a.target, a.validation["max_abs_err"])


@pytest.mark.parametrize("fmt, precision", [(f, p) for f, p in itertools.product(exporter_names(), ALL_PRECISIONS)
                                            if p not in get_exporter(f).precisions])
def test_every_unsupported_cell_names_the_supported_ones(fmt, precision):
    with pytest.raises(UnsupportedError) as e:
        check_target(fmt, precision)
    msg = str(e.value)
    assert f"{fmt} does not support precision {precision!r}" in msg
    assert "supported: " + ", ".join(get_exporter(fmt).precisions) in msg
