"""The digits in the zoo's forms: resized, RGB, flat, tokens and metadata, via digits() and open_dataset."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edgekit.calibration import digits, open_dataset
from edgekit.calibration.digit_forms import META_FEATURES, ink, metadata, parse_spec, tokens, upscale
from edgekit.errors import DataError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="no scikit-learn")


@pytest.mark.parametrize("spec, shapes, dtypes, name", [
    ("digits:train:28x28:flat", [(1258, 784)], ["float32"], "digits:train:28x28:flat"),
    ("digits:eval:32x32:rgb", [(359, 32, 32, 3)], ["float32"], "digits:eval:32x32:rgb"),
    ("digits:calib:tokens", [(180, 64)], ["int32"], "digits:calib:tokens"),
    ("digits:eval:meta", [(359, 8, 8, 1), (359, 6)], ["float32", "float32"], "digits:eval:meta"),
    ("digits:16x16", [(359, 16, 16, 1)], ["float32"], "digits:eval:16x16"),
    ("digits:flat:32x32:rgb:train", None, None, None),  # the split comes first
    ("digits:all:rgb:meta:32x32", [(1797, 32, 32, 3), (1797, 6)], ["float32", "float32"], "digits:all:32x32:rgb:meta"),
])
def test_open_dataset_forms(spec, shapes, dtypes, name):
    if shapes is None:
        with pytest.raises(DataError, match="unknown digits option 'train'"):
            open_dataset(spec)
        return
    ds = open_dataset(spec, limit=None)
    assert [x.shape for x in ds.inputs] == shapes
    assert [str(x.dtype) for x in ds.inputs] == dtypes
    assert ds.name == name and ds.labels.shape == (shapes[0][0],)
    assert open_dataset(ds.name, limit=None).name == name  # the name reopens the same data


def test_forms_keep_the_labels_and_values_of_the_plain_split():
    plain = digits("eval")
    for kw in ({"size": (28, 28)}, {"rgb": True}, {"tokens": True}, {"meta": True}, {"size": (32, 32), "rgb": True}):
        np.testing.assert_array_equal(digits("eval", **kw).labels, plain.labels)
    big = digits("eval", size=(32, 32), rgb=True).inputs[0]
    assert float(big.min()) >= 0.0 and float(big.max()) <= 1.0
    np.testing.assert_array_equal(big[..., 0], big[..., 2])  # grey on all three channels
    # Upscaling 8 -> 32 keeps each digit's mean ink within 2 % (bilinear, half-pixel centres).
    np.testing.assert_allclose(big[..., 0].mean(axis=(1, 2)), plain.inputs[0].mean(axis=(1, 2, 3)), rtol=0.02, atol=1e-3)
    toks = digits("eval", tokens=True).inputs[0]
    assert toks.min() == 0 and toks.max() == 16
    np.testing.assert_array_equal(toks, np.rint(plain.inputs[0].reshape(359, 64) * 16))
    image, meta = digits("eval", meta=True).inputs
    np.testing.assert_array_equal(image, plain.inputs[0])
    np.testing.assert_allclose(meta[:, 0], plain.inputs[0].mean(axis=(1, 2, 3)), rtol=1e-5)
    flat = digits("train", size=(28, 28), flat=True).inputs[0]
    np.testing.assert_array_equal(flat, digits("train", size=(28, 28)).inputs[0].reshape(1258, 784))


def test_metadata_tokens_and_ink_by_hand():
    img = np.zeros((1, 8, 8), np.float32)
    img[0, :4, :] = 1.0  # top half inked
    assert META_FEATURES == ("mean", "std", "top_mean", "bottom_mean", "left_mean", "right_mean")
    np.testing.assert_allclose(metadata(img)[0], [0.5, 0.5, 1.0, 0.0, 0.5, 0.5])
    assert tokens(img)[0].tolist() == [16] * 32 + [0] * 32
    assert ink(img[..., None]).tolist() == [[0.5]]
    ramp = np.arange(8, dtype=np.float32)[None, None, :].repeat(8, axis=1)
    up = upscale(ramp, (8, 16))[0, 0]
    assert up[0] == 0.0 and up[-1] == 7.0 and np.all(np.diff(up) >= 0)  # monotone, ends preserved
    np.testing.assert_array_equal(upscale(ramp, (8, 8)), ramp)  # same size: identity


@pytest.mark.parametrize("spec, message", [
    ("digits:nope", "unknown digits split 'nope'"),
    ("digits:eval:bogus", r"unknown digits option 'bogus' in 'digits:eval:bogus': use digits\[:split\]\[:HxW\]"),
    ("digits:eval:flat:flat", "digits option 'flat' is given twice"),
    ("digits:eval:tokens:rgb", r"digits:tokens is a pixel-value sequence and takes no image option \(got rgb"),
    ("digits:eval:0x8", "digits size 0x8 in 'digits:eval:0x8' is out of range: use 1x1 .. 128x128"),
    ("digits:eval:512x512", "out of range"),
])
def test_bad_forms_are_refused_with_the_grammar(spec, message):
    with pytest.raises(DataError, match=message):
        open_dataset(spec)


def test_parse_spec_and_the_old_forms():
    assert parse_spec("foo.npz") is None and parse_spec("digitsfoo") is None
    assert parse_spec("digits") == {"split": "eval"}
    assert parse_spec("digits:calib:32x32:rgb:meta") == {"split": "calib", "size": (32, 32), "rgb": True, "meta": True}
    assert open_dataset("digits:train:flat", limit=None).inputs[0].shape == (1258, 64)
    assert open_dataset("digits:flat", limit=None).name == "digits:eval:flat"
    with pytest.raises(DataError, match=r"option\(s\) \['size'\] do not apply"):
        open_dataset("digits:eval:28x28", size=(2, 2))


def test_docstring_examples_run():
    import doctest

    from edgekit.calibration import digit_forms

    result = doctest.testmod(digit_forms, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 10
