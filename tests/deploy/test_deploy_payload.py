"""edgekit.runtime.serve.payload: JSON / npy / npz to feeds (multi-input, int8, limits), docstring examples, no TensorFlow."""

from __future__ import annotations

import doctest
import importlib
import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from edgekit.errors import InputError
from edgekit.manifest import TensorSpec
from edgekit.runtime.serve import payload

TWO = (TensorSpec("image", (None, 2, 2), "float32"), TensorSpec("ids", (None, 3), "int32"))
INT8 = TensorSpec("x", (None, 2), "int8", scale=0.5, zero_point=-1)


@pytest.mark.parametrize("module", ["edgekit.runtime.serve.payload", "edgekit.runtime.serve", "edgekit.runtime.serve.server",
                                    "edgekit.runtime.serve.handler", "edgekit.runtime.serve.state",
                                    "edgekit.runtime.serve.limits", "edgekit.runtime.serve.connections",
                                    "edgekit.runtime.serve.reload", "edgekit.runtime.serve.access"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_named_json_inputs_get_each_specs_dtype():
    feeds = payload.feeds_from_json({"inputs": {"ids": [[1, 2, 3]], "image": [[[0, 1], [2, 3.5]]]}}, TWO)
    assert list(feeds) == ["image", "ids"]
    assert feeds["image"].dtype == np.float32 and feeds["image"].tolist() == [[[0.0, 1.0], [2.0, 3.5]]]
    assert feeds["ids"].dtype == np.int32 and feeds["ids"].tolist() == [[1, 2, 3]]


@pytest.mark.parametrize("doc, message", [
    ([[1, 2, 3]], "a bare list is for one-input models"),
    ({"inputs": {"image": [[[0, 0], [0, 0]]]}}, "missing input(s) ['ids']"),
    ({"inputs": {"image": [[[0, 0], [0, 0]]], "ids": [[1, 2, 3]], "extra": [1]}}, "unknown input name(s) ['extra']"),
    ({"inputs": {"image": [[[0, 0], [0, 0]]], "ids": [[1.5, 2, 3]]}}, "takes whole numbers"),
    ({"inputs": {"image": [[[0, 0], [0, 0]]], "ids": [[2**40, 2, 3]]}}, "must lie in [-2147483648, 2147483647]"),
    ({"inputs": {"image": "abc", "ids": [[1, 2, 3]]}}, "must be a nested list of numbers, got str"),
    ({"inputs": {"image": [[[True, False], [True, True]]], "ids": [[1, 2, 3]]}}, "got booleans"),
    ({"inputs": 3}, "'inputs' must be an object of named arrays or a nested list, got int"),
    ("just text", "'inputs' must be an object"),
])
def test_json_mistakes_are_input_errors_naming_the_spec(doc, message):
    with pytest.raises(InputError) as info:
        payload.feeds_from_json(doc, TWO)
    assert message in str(info.value)


def test_int8_inputs_keep_float_json_for_the_session_to_quantize():
    assert payload.json_array([[0.25, 1.0]], INT8).dtype == np.float32
    raw = payload.json_array([[-128, 127]], INT8, quantize_io=False)
    assert raw.dtype == np.int8 and raw.tolist() == [[-128, 127]]
    with pytest.raises(InputError, match=r"must lie in \[-128, 127\]"):
        payload.json_array([[300, 0]], INT8, quantize_io=False)


def test_npy_and_npz_round_trip_and_refuse_pickles():
    buf = io.BytesIO()
    np.save(buf, np.arange(6, dtype=np.int16).reshape(2, 3))
    arr = payload.load_npy(buf.getvalue())
    assert arr.dtype == np.int16 and arr.tolist() == [[0, 1, 2], [3, 4, 5]]
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="object arrays are refused"):
        payload.load_npy(buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, image=np.zeros((1, 2, 2), np.float32), ids=np.ones((1, 3), np.int32))
    arrays = payload.load_npz(buf.getvalue(), 1 << 20)
    assert sorted(arrays) == ["ids", "image"] and arrays["ids"].dtype == np.int32
    assert payload.feeds_from_arrays(arrays, TWO) == arrays
    with pytest.raises(InputError, match="one .npy array given but this model takes 2 inputs"):
        payload.feeds_from_arrays(np.zeros((1, 2, 2)), TWO)


def test_npz_expansion_limit_reads_the_zip_directory_not_the_data():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("image.npy", b"\0" * (4 << 20))  # 4 MiB of zeros compress to ~4 KiB
    assert len(buf.getvalue()) < 64 << 10
    with pytest.raises(InputError, match=r"unpacks to 4194304 bytes, more than the 1048576-byte limit"):
        payload.load_npz(buf.getvalue(), 1 << 20)


def test_outputs_encode_as_standard_json_and_npz():
    out = {"logits": np.array([[1.5, -np.inf, np.nan]], np.float32), "ids": np.array([[3]], np.int64)}
    doc = json.loads(json.dumps(payload.outputs_to_json(out), allow_nan=False))
    assert doc == {"logits": [[1.5, None, None]], "ids": [[3]]}
    with np.load(io.BytesIO(payload.outputs_to_npz(out))) as z:
        assert z["ids"].tolist() == [[3]] and z["logits"].dtype == np.float32
    assert payload.top1({"logits": np.array([[0.0, 2.0, 1.0]])}) == [1] and payload.top1({"y": np.zeros(3)}) is None


def test_serve_modules_import_no_tensorflow():
    code = ("import sys, edgekit.runtime.serve, edgekit.runtime.serve.payload, edgekit.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'tf_keras'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def _npy_header(shape, descr="<f4") -> bytes:
    text = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


def test_npz_member_headers_are_checked_before_any_array_is_allocated():
    # The zip says 80 bytes; the member's .npy header says 2**40 float32s: refused on the header alone.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("image.npy", _npy_header((1 << 40,)) + b"\0" * 16)
    with pytest.raises(payload.PayloadTooLarge, match="arrays take 4398046511104 bytes decoded, over the 1048576-byte limit"):
        payload.load_npz(buf.getvalue(), 1 << 20)
    with pytest.raises(payload.PayloadTooLarge, match="batch of 1099511627776 samples, over the limit of 8 x"):
        payload.load_npz(buf.getvalue(), 1 << 20, max_batch=8, hints={"batch": "x"})
    many = io.BytesIO()
    np.savez(many, **{f"a{i}": np.zeros(1) for i in range(payload.MAX_NPZ_ARRAYS + 1)})
    with pytest.raises(InputError, match="holds 65 members"):
        payload.load_npz(many.getvalue(), 1 << 20)
    short = io.BytesIO()
    with zipfile.ZipFile(short, "w") as zf:
        zf.writestr("image.npy", _npy_header((4, 2)) + b"\0" * 8)  # 32 bytes declared, 8 stored
    with pytest.raises(InputError, match="not a .npz archive"):
        payload.load_npz(short.getvalue(), 1 << 20)


def test_npy_headers_that_lie_are_refused_without_allocating():
    with pytest.raises(payload.PayloadTooLarge, match="decoded, over the 4096-byte limit"):
        payload.load_npy(_npy_header((1 << 38, 8, 8, 1), "<f8"), max_bytes=4096)
    with pytest.raises(InputError, match=r"declares \(1024,\) float32 \(4096 bytes\) but only 0 bytes follow"):
        payload.load_npy(_npy_header((1024,)))
    with pytest.raises(InputError, match="not a loadable .npy array"):
        payload.load_npy(b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n")


@pytest.mark.parametrize("body, message", [
    (b"[" * 100 + b"]" * 100, "nests deeper than the 64 levels"),
    (b'["\\n", ' + b"[" * 5000 + b"]" * 5000 + b"]", "nests too deeply to parse"),  # escapes: the parser's limit holds
    (b"[" + b"1" * 5000 + b"]", "a number JSON cannot carry"),
])
def test_json_bombs_are_input_errors(body, message):
    with pytest.raises(InputError, match=message):
        payload.parse_json(body)


def test_json_depth_ignores_brackets_in_strings():
    assert payload.json_depth(b'{"a": "[[[[", "b": [[1]]}') == 3
    assert payload.json_depth(b'"\\"[["') is None
    assert payload.parse_json(b'{"a": "[[[[[[[[", "b": [1]}', max_depth=2) == {"a": "[[[[[[[[", "b": [1]}


def test_finite_and_batch_checks_cover_arrays_and_dicts():
    payload.check_finite({"x": np.zeros(3, np.float32), "ids": np.zeros(3, np.int32)})
    with pytest.raises(InputError, match=r"input 'input' holds 2 NaN or infinite value\(s\); send finite numbers \(hint\)"):
        payload.check_finite(np.array([np.inf, -np.inf, 0.0]), "(hint)")
    payload.check_batch(np.zeros((4, 2)), 4)
    with pytest.raises(payload.PayloadTooLarge, match="batch of 5 samples"):
        payload.check_batch({"a": np.zeros((5, 2))}, 4)
