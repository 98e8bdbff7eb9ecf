"""The fast float/uint8 feed paths give exactly the reference numbers, through real engines.

The reference is today's documented formula (``quantize``: float32, divide, round half to even,
add the zero point, clip); every faster path (one pass into scratch or into LiteRT's own input
tensor, the uint8 table / shift) is held bit-identical to it. The int8 model is the committed
``tests/data/digits-int8`` folder (no TensorFlow needed); float-input checks use an ONNX Identity
graph built here, so the output *is* what the engine was fed.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

import edgekit.runtime as rt
from edgekit.errors import InputError
from edgekit.manifest import TensorSpec
from edgekit.runtime.quantize import Pixels, Quantizer, Scratch

DIGITS_INT8 = Path(__file__).resolve().parents[1] / "data" / "digits-int8"

# (dtype, scale, zero point): the image input (scale 1/255, zp -128: uint8 twin + shift), a real
# output spec (odd zp: the generic float path), symmetric (int8 twin), uint8 with zp 128 (int8
# twin), uint8 zp 0, int16 symmetric, int16 with an offset (generic), power-of-two scales (exact ties).
SPECS = [
    ("int8", 1 / 255, -128), ("int8", 0.14167706668376923, -9), ("int8", 0.02, 0), ("int8", 0.5, -3),
    ("uint8", 0.05, 128), ("uint8", 1 / 255, 0), ("uint8", 0.25, 7), ("int16", 0.001, 0), ("int16", 0.125, 5),
]


def reference_quantize(x, spec):
    """Today's formula, written out independently of the runtime."""
    info = np.iinfo(np.dtype(spec.dtype))
    q = np.round(np.asarray(x, np.float32) / np.float32(spec.scale)) + spec.zero_point
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def reference_dequantize(q, spec):
    return ((q.astype(np.float32) - np.float32(spec.zero_point)) * np.float32(spec.scale)).astype(np.float32)


def edge_values(spec: TensorSpec, n: int = 20_000, seed: int = 0) -> np.ndarray:
    """Random values over and beyond the range, exact ties, saturating and special values."""
    info = np.iinfo(np.dtype(spec.dtype))
    s, zp = spec.scale, spec.zero_point
    lo, hi = s * (info.min - zp), s * (info.max - zp)
    rng = np.random.default_rng(seed)
    k = rng.integers(info.min - zp - 3, info.max - zp + 3, 4000)
    ties = ((k + 0.5) * s).astype(np.float32)  # exact .5 after the division where s is a power of two
    near = np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, np.float32(-np.inf))
    special = np.array([0.0, -0.0, np.inf, -np.inf, 3e38, -3e38, 1e-45, -1e-45, lo, hi, lo - s, hi + s], np.float32)
    return np.concatenate([rng.uniform(lo - 2 * (hi - lo), hi + 2 * (hi - lo), n).astype(np.float32),
                           rng.uniform(lo, hi, n).astype(np.float32), ties, *near, special])


def fast_quantize(x, spec, into_view: bool = False):
    """The Session's quantizer on ``x``: into its scratch, or (``into_view``) into a caller's array."""
    q = Quantizer(spec, Scratch())
    if not into_view:
        return q(x).copy()
    out = np.full(x.shape, 99, np.dtype(spec.dtype))
    q.store(out, q.prepare(x))
    return out


# ------------------------------------------------------------------ the quantizer itself


@pytest.mark.parametrize("dtype, scale, zp", SPECS)
@pytest.mark.parametrize("into_view", [False, True])
def test_fast_quantize_is_bit_identical(dtype, scale, zp, into_view):
    spec = TensorSpec("x", (None,), dtype, scale, zp)
    x = edge_values(spec)
    with np.errstate(over="ignore"):  # 3e38 / scale overflows to inf before clipping, in both
        want = reference_quantize(x, spec)
        got = fast_quantize(x, spec, into_view)
        np.testing.assert_array_equal(rt.quantize(x, spec), want)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_ties_round_half_to_even():
    spec = TensorSpec("x", (None,), "int8", 0.5, 0)
    x = np.array([0.25, 0.75, 1.25, -0.25, -0.75, 0.2, 0.3], np.float32)  # x / 0.5 = .5, 1.5, 2.5, ...
    assert fast_quantize(x, spec).tolist() == [0, 2, 2, 0, -2, 0, 1] == reference_quantize(x, spec).tolist()


@pytest.mark.parametrize("dtype, scale, zp", [("int8", 1 / 255, -128), ("int8", 0.14167706668376923, -9)])
def test_float64_float16_and_strided_feeds(dtype, scale, zp):
    spec = TensorSpec("x", (None, 6, 5), dtype, scale, zp)
    rng = np.random.default_rng(1)
    # float64 values that round differently when divided in float64: the reference casts first.
    x64 = rng.uniform(-0.2, 1.2, (8, 5, 6)).astype(np.float64) + 1e-9
    for x in (x64.transpose(0, 2, 1), x64.astype(np.float16).transpose(0, 2, 1), x64.astype(np.float32)[::2].transpose(0, 2, 1)):
        np.testing.assert_array_equal(fast_quantize(x, spec), reference_quantize(x, spec))
        np.testing.assert_array_equal(fast_quantize(x, spec, into_view=True), reference_quantize(x, spec))


def test_scratch_grows_and_shrinks_with_the_batch():
    spec = TensorSpec("x", (None, 3), "int8", 1 / 255, -128)
    q = Quantizer(spec, Scratch())
    rng = np.random.default_rng(2)
    for n in (1, 50, 3, 200, 1, 200):
        x = rng.uniform(-0.5, 1.5, (n, 3)).astype(np.float32)
        np.testing.assert_array_equal(q(x), reference_quantize(x, spec), err_msg=f"batch {n}")


def test_nan_is_an_input_error_in_reference_and_fast_path():
    spec = TensorSpec("image", (None, 3), "int8", 1 / 255, -128)
    x = np.array([[0.1, np.nan, 0.2], [np.nan, 1.0, 0.0]], np.float32)
    with pytest.raises(InputError, match=r"2 NaN value"):
        rt.quantize(x, spec)
    with pytest.raises(InputError, match=r"2 NaN value.*nan_to_num"):
        Quantizer(spec, Scratch()).prepare(x)


def test_in_range_data_raises_no_warnings():
    spec = TensorSpec("x", (None,), "int8", 1 / 255, -128)
    x = np.random.default_rng(3).random(1000, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(fast_quantize(x, spec, into_view=True), reference_quantize(x, spec))


@pytest.mark.parametrize("dtype, scale, zp", SPECS)
def test_dequantize_is_the_reference_formula(dtype, scale, zp):
    spec = TensorSpec("x", (None,), dtype, scale, zp)
    info = np.iinfo(np.dtype(dtype))
    q = np.random.default_rng(4).integers(info.min, info.max + 1, 5000).astype(dtype)
    q = np.concatenate([q, np.array([info.min, info.max, 0], dtype)])
    got = rt.dequantize(q, spec)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, reference_dequantize(q, spec))
    np.testing.assert_array_equal(rt.dequantize(q[::3], spec), reference_dequantize(q[::3], spec))


# ------------------------------------------------------------------ uint8 pixels


@pytest.mark.parametrize("dtype, scale, zp", SPECS)
@pytest.mark.parametrize("divisor", [255, 1, 127.5])
def test_uint8_table_is_the_float_path_for_every_pixel(dtype, scale, zp, divisor):
    spec = TensorSpec("x", (None,), dtype, scale, zp)
    px = Pixels(spec, divisor, True, Scratch())
    u = np.arange(256, dtype=np.uint8)
    want = reference_quantize(u.astype(np.float32) / np.float32(divisor), spec)
    np.testing.assert_array_equal(px(u), want)
    np.testing.assert_array_equal(px(u[::-1].reshape(4, 64)), want[::-1].reshape(4, 64))


def test_image_spec_takes_the_one_add_fast_path():
    spec = TensorSpec("x", (None,), "int8", 0.003921568859368563, -128)  # what TFLite stores for 1/255
    px = Pixels(spec, 255, True, Scratch())
    assert px.shift is not None  # u - 128 as int8, i.e. one uint8 add of 128
    np.testing.assert_array_equal(px(np.arange(256, dtype=np.uint8)), (np.arange(256) - 128).astype(np.int8))
    assert Pixels(TensorSpec("x", (None,), "int8", 0.1, 3), 255, True, Scratch()).shift is None


# ------------------------------------------------------------------ through a real int8 TFLite model


@pytest.fixture(scope="module")
def int8():
    return rt.load(DIGITS_INT8)


@pytest.fixture(scope="module")
def digits_x():
    return np.load(DIGITS_INT8 / "eval.npz")["x"].astype(np.float32)


def reference_run(session, x):
    """Today's path: reference quantize, the engine's plain run, reference dequantize."""
    (spec_in,), (spec_out,) = session.inputs, session.outputs
    (out,) = session._engine.run([reference_quantize(x, spec_in)])
    return reference_dequantize(out, spec_out)


def test_int8_model_uses_the_in_place_path(int8):
    assert int8.inputs[0].quantized and int8.outputs[0].quantized
    assert int8._run1_into is not None  # LiteRT: the quantized feed is written into its tensor


def test_int8_model_outputs_identical_to_reference(int8, digits_x):
    rng = np.random.default_rng(5)
    noisy = np.concatenate([digits_x[:40], rng.uniform(-1, 2, (24, 8, 8, 1)).astype(np.float32)])
    for x in (digits_x[:64], noisy, digits_x[:1], digits_x[:7], digits_x[:64].astype(np.float64), digits_x[:64][::-2]):
        want = reference_run(int8, np.ascontiguousarray(x))
        for _ in range(3):  # first call (checked path) and the cached fast path
            got = int8.run(x)["logits"]
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, want)


def test_outputs_do_not_alias_between_calls(int8, digits_x):
    a = int8.run(digits_x[:8])["logits"]
    keep = a.copy()
    int8.run(digits_x[8:16])
    int8.run(digits_x[16:24])
    np.testing.assert_array_equal(a, keep)


def test_without_the_in_place_hook_same_numbers(digits_x):
    s = rt.load(DIGITS_INT8)
    s._run1_into = None  # the path of engines that take an array (quantized into scratch)
    want = reference_run(s, digits_x[:32])
    for _ in range(3):
        np.testing.assert_array_equal(s.run(digits_x[:32])["logits"], want)


def test_nan_feed_is_an_input_error_and_session_stays_usable(digits_x):
    s = rt.load(DIGITS_INT8)
    good = s.run(digits_x[:4])["logits"]
    s.run(digits_x[:4])  # cached: the next call takes the fast path
    bad = digits_x[:4].copy()
    bad[1, 2, 3, 0] = np.nan
    for _ in range(2):
        with pytest.raises(InputError, match="NaN"):
            s.run(bad)
    # a resize right after (LiteRT refuses one while a view of its memory is alive)
    np.testing.assert_array_equal(s.run(digits_x[:9])["logits"], reference_run(s, digits_x[:9]))
    np.testing.assert_array_equal(s.run(digits_x[:4])["logits"], good)


def test_inf_and_out_of_range_feeds_saturate(int8, digits_x):
    x = digits_x[:6].copy()
    x[0, 0, 0, 0], x[1, 1, 1, 0], x[2, :, :, 0], x[3, 2, 2, 0] = np.inf, -np.inf, 7.5, -3.0
    np.testing.assert_array_equal(int8.run(x)["logits"], reference_run(int8, x))
    np.testing.assert_array_equal(int8.run(x)["logits"], reference_run(int8, x))


def test_uint8_feed_needs_an_explicit_divisor(digits_x):
    s = rt.load(DIGITS_INT8)
    u = np.round(digits_x[:4] * 255).astype(np.uint8)
    with pytest.raises(InputError, match=r"uint8.*uint8_divisor = 255"):
        s.run(u)
    s.uint8_divisor = 255
    want = s.run(u.astype(np.float32) / 255)["logits"]
    for _ in range(3):
        np.testing.assert_array_equal(s.run(u)["logits"], want)
    s.uint8_divisor = 510  # changing the meaning drops cached handlers
    np.testing.assert_array_equal(s.run(u)["logits"], s.run(u.astype(np.float32) / 510)["logits"])
    s.uint8_divisor = None
    with pytest.raises(InputError, match="uint8"):
        s.run(u)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "255", True])
def test_bad_divisor_is_refused(int8, bad):
    with pytest.raises(InputError, match="uint8_divisor"):
        int8.uint8_divisor = bad


def test_uint8_feed_with_quantize_io_off_is_refused():
    s = rt.load(DIGITS_INT8, quantize_io=False)
    s.uint8_divisor = 255
    with pytest.raises(InputError, match="uint8"):
        s.run(np.zeros((1, 8, 8, 1), np.uint8))
    raw = s.run(np.zeros((1, 8, 8, 1), np.int8))["logits"]  # raw int8 values still go straight in
    assert raw.dtype == np.int8


def test_threads_sharing_one_int8_session(digits_x):
    s = rt.load(DIGITS_INT8)
    s.uint8_divisor = 255
    rng = np.random.default_rng(6)
    feeds = {}
    for t in range(6):
        for r in range(15):
            n = 1 + (t * 7 + r) % 9
            x = rng.uniform(-0.2, 1.2, (n, 8, 8, 1)).astype(np.float32)
            feeds[(t, r)] = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8) if (t + r) % 3 == 0 else x
    expected = {k: reference_run(s, v.astype(np.float32) / 255 if v.dtype == np.uint8 else v) for k, v in feeds.items()}
    results, errors = {}, []
    start = threading.Barrier(6)

    def worker(t):
        try:
            start.wait()
            for r in range(15):
                results[(t, r)] = s.run(feeds[(t, r)])["logits"]
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors
    for k, v in expected.items():
        np.testing.assert_array_equal(results[k], v, err_msg=str(k))


# ------------------------------------------------------------------ float inputs (ONNX Identity)


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["out"])], "identity",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 4, 3])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 4, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("identity") / "identity.onnx"
    onnx.save(model, path)
    return path


def test_float_feed_to_float_input_is_passed_as_is(identity):
    s = rt.load(identity, num_threads=1)
    x = np.random.default_rng(7).random((2, 4, 3), dtype=np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(s.run(x)["out"], x)
    assert s._last[2] is s._run1  # no host-side conversion on the cached path, only the engine call


@pytest.mark.parametrize("divisor", [255, 127.5, 1])
def test_uint8_feed_to_float_input_is_u_over_divisor(identity, divisor):
    s = rt.load(identity, num_threads=1)
    s.uint8_divisor = divisor
    u = (np.arange(24 * 12) % 256).astype(np.uint8).reshape(24, 4, 3)  # every pixel value
    for _ in range(3):
        got = s.run(u)["out"]
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, u.astype(np.float32) / np.float32(divisor))


def test_load_takes_uint8_divisor_for_folders_and_checks_it():
    u = np.random.default_rng(5).integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)
    pixels = rt.load(DIGITS_INT8, uint8_divisor=255, num_threads=1)
    assert pixels.uint8_divisor == 255.0
    floats = rt.load(DIGITS_INT8, num_threads=1).run(u.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(pixels.run(u)["logits"], floats["logits"])  # the float path's numbers exactly
    with pytest.raises(InputError, match="uint8_divisor must be a positive number"):
        rt.load(DIGITS_INT8, uint8_divisor=0)
