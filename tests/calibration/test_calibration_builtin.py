"""digits, random_like, open_dataset, docstring examples and import hygiene."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.calibration import DEFAULT_LIMIT, Dataset, digits, from_arrays, open_dataset, random_like
from edgekit.errors import DataError
from edgekit.manifest import TensorSpec

SRC = Path(__file__).resolve().parents[2] / "src"

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="no scikit-learn")


@needs_sklearn
def test_digits_splits_sizes_disjoint_and_cover_everything():
    from sklearn.datasets import load_digits

    splits = [digits(s, flat=True) for s in ("train", "calib", "eval")]
    assert [len(d) for d in splits] == [1258, 180, 359]
    assert sum(len(d) for d in splits) == 1797
    everything = digits("all", flat=True)
    # The splits are consecutive slices of one permutation: together they are exactly "all", in order,
    # so no sample is in two splits (a few digits are pixel-identical, so rows alone are not ids).
    np.testing.assert_array_equal(np.concatenate([d.inputs[0] for d in splits]), everything.inputs[0])
    np.testing.assert_array_equal(np.concatenate([d.labels for d in splits]), everything.labels)
    # ... and "all" is a permutation of the real scikit-learn data.
    raw = load_digits()
    ref = np.column_stack([raw.data / 16.0, raw.target])
    got = np.column_stack([everything.inputs[0], everything.labels])
    np.testing.assert_allclose(got[np.lexsort(got.T)], ref[np.lexsort(ref.T)], atol=1e-7)


@needs_sklearn
def test_digits_values_dtypes_shapes_and_determinism():
    ds = digits("eval")
    x = ds.inputs[0]
    assert x.shape == (359, 8, 8, 1) and x.dtype == np.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert ds.labels.dtype == np.int64 and set(ds.labels.tolist()) == set(range(10))
    assert ds.classes == tuple("0123456789")
    assert ds.name == "digits:eval"
    again = digits("eval")
    np.testing.assert_array_equal(again.inputs[0], x)
    np.testing.assert_array_equal(again.labels, ds.labels)
    other = digits("eval", seed=1)
    assert not np.array_equal(other.labels, ds.labels)
    np.testing.assert_array_equal(digits("eval", flat=True).inputs[0], x.reshape(359, 64))
    x[0, 0, 0, 0] = 5.0  # callers own their copy: the cache is untouched
    assert float(digits("eval").inputs[0][0, 0, 0, 0]) != 5.0


@needs_sklearn
def test_digits_unknown_split():
    with pytest.raises(DataError, match=r"unknown digits split 'test': use one of \['train', 'calib', 'eval', 'all'\]"):
        digits("test")


def test_random_like_shapes_dtypes_and_seed():
    specs = [
        TensorSpec("image", (None, 8, 8, 1), "float32"),
        TensorSpec("q", (1, 4), "int8"),
        TensorSpec("ids", (None, None), "int64"),
        TensorSpec("h", (None, 2), "float16"),
    ]
    ds = random_like(specs, n=5)
    assert [(x.shape, str(x.dtype)) for x in ds.inputs] == [
        ((5, 8, 8, 1), "float32"),
        ((5, 4), "int8"),
        ((5, 1), "int64"),
        ((5, 2), "float16"),
    ]
    assert ds.name == "random" and ds.labels is None
    assert 0.0 <= float(ds.inputs[0].min()) and float(ds.inputs[0].max()) < 1.0
    assert 0 <= int(ds.inputs[2].min()) and int(ds.inputs[2].max()) <= 127
    np.testing.assert_array_equal(random_like(specs, n=5).inputs[1], ds.inputs[1])
    assert not np.array_equal(random_like(specs, n=5, seed=3).inputs[0], ds.inputs[0])
    per_sample = random_like([TensorSpec("v", (3,), "float32")], n=2, batch_dim=0)
    assert per_sample.inputs[0].shape == (2, 3)
    with pytest.raises(DataError, match="not numeric"):
        random_like([TensorSpec("s", (None, 1), "str")])
    with pytest.raises(DataError, match="n must be a positive integer"):
        random_like(specs, n=0)


def test_random_like_int8_passes_check_against():
    spec = TensorSpec("q", (None, 16), "int8", scale=0.1, zero_point=0)
    ds = random_like([spec], n=64)
    assert ds.check_against([spec]).inputs[0].dtype == np.int8
    assert int(ds.inputs[0].min()) < 0 < int(ds.inputs[0].max())


@needs_sklearn
def test_open_dataset_digits_forms_and_limit():
    assert DEFAULT_LIMIT == 200
    assert open_dataset(None) is None
    ds = open_dataset("digits")
    assert len(ds) == 200 and ds.name == "digits:eval (n=200 of 359, seed=0)"
    assert open_dataset("digits:calib", limit=None).inputs[0].shape == (180, 8, 8, 1)
    assert open_dataset("digits:train:flat", limit=7).inputs[0].shape == (7, 64)
    assert open_dataset("digits:flat", limit=None).inputs[0].shape == (359, 64)
    a, b = open_dataset("digits", limit=20, seed=4), open_dataset("digits", limit=20, seed=4)
    np.testing.assert_array_equal(a.labels, b.labels)
    with pytest.raises(DataError, match="unknown digits split 'nope'"):
        open_dataset("digits:nope")


def test_open_dataset_paths_and_dataset(tmp_path):
    Image = pytest.importorskip("PIL.Image")

    np.savez(tmp_path / "c.npz", features=np.zeros((300, 2)), target=np.arange(300))
    ds = open_dataset(tmp_path / "c.npz", x_key="features", y_key="target")
    assert len(ds) == DEFAULT_LIMIT and ds.labels.max() < 300
    np.save(tmp_path / "c.npy", np.ones((3, 2)))
    assert open_dataset(str(tmp_path / "c.npy")).inputs[0].shape == (3, 2)
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (9, 9)).save(folder / "a.png")
    assert open_dataset(folder, size=(4, 4), color="grayscale").inputs[0].shape == (1, 4, 4, 1)
    mem = from_arrays(np.zeros((10, 2)))
    assert len(open_dataset(mem, limit=3)) == 3
    assert open_dataset(mem, limit=None) is mem


def test_open_dataset_errors(tmp_path):
    with pytest.raises(DataError) as err:
        open_dataset("foo")
    assert str(err.value) == (
        "cannot open data 'foo' (no such file or folder): expected a .npz/.npy file, an image folder, "
        "or 'digits[:split]'"
    )
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(DataError, match="unknown type"):
        open_dataset(tmp_path / "data.csv")
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(tmp_path / "missing.npz")
    with pytest.raises(DataError, match=r"option\(s\) \['size'\] do not apply"):
        open_dataset("digits", size=(2, 2))
    with pytest.raises(DataError, match="cannot open data of type int"):
        open_dataset(3)


def test_dataset_repr_mentions_shapes():
    assert repr(from_arrays(np.zeros((2, 3)), [0, 1], name="r")) == (
        "Dataset('r', inputs=[(2, 3) float64], labels=(2,) int64)"
    )
    assert isinstance(open_dataset(from_arrays(np.zeros((2, 3)))), Dataset)


@pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None or importlib.util.find_spec("PIL") is None,
    reason="the examples use digits() (scikit-learn) and Pillow",
)
@pytest.mark.parametrize(
    "module",
    ["__init__", "dataset", "_check", "_util", "arrays", "images", "generator", "builtin", "opening"],
)
def test_docstring_examples_run(module):
    name = "edgekit.calibration" + ("" if module == "__init__" else f".{module}")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_import_pulls_in_neither_tensorflow_nor_heavy_optionals():
    code = (
        "import sys, edgekit.calibration; "
        "bad = [m for m in ('tensorflow', 'keras', 'sklearn', 'PIL') if m in sys.modules]; "
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
