"""Dataset: validation, take/batches/samples, cast, check_against, to_npz."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.calibration import Dataset, from_arrays, from_npz
from edgekit.errors import DataError, InputError
from edgekit.manifest import TensorSpec

IMAGE = TensorSpec("image", (None, 8, 8, 1), "float32")


def make(n: int = 10, labels: bool = True) -> Dataset:
    x = np.arange(n * 4, dtype=np.float64).reshape(n, 2, 2)
    return Dataset((x,), np.arange(n) if labels else None, "toy")


def test_fields_len_and_num_inputs():
    ds = Dataset((np.zeros((3, 2)), np.ones((3, 5))), [1, 2, 3], "two")
    assert len(ds) == 3
    assert ds.num_inputs == 2
    assert isinstance(ds.inputs, tuple)
    assert ds.labels.tolist() == [1, 2, 3]
    assert ds.classes == ()
    assert issubclass(DataError, InputError)


@pytest.mark.parametrize(
    "inputs, labels, needle",
    [
        ((), None, "has no input arrays"),
        ((np.zeros((3, 2)), np.zeros((4, 2))), None, "different sample counts (3 in input 0, 4 in input 1)"),
        ((np.zeros((0, 2)),), None, "has no samples"),
        ((np.zeros((3, 2)),), [0, 1], "has 3 samples but 2 labels"),
        ((np.array(5.0),), None, "is a scalar"),
        ((np.array(["a", "b"]),), None, "not numeric"),
    ],
)
def test_invalid_datasets_raise_one_line_data_errors(inputs, labels, needle):
    with pytest.raises(DataError) as err:
        Dataset(inputs, labels, "bad")
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_bare_array_as_inputs_is_refused_not_split_into_rows():
    with pytest.raises(DataError, match=r"wrap a single array as \(x,\)"):
        Dataset(np.zeros((3, 2)), None, "bad")


def test_take_is_seeded_sorted_and_limited():
    ds = make(50)
    a, b, c = ds.take(10, seed=1), ds.take(10, seed=1), ds.take(10, seed=2)
    assert len(a) == 10
    assert a.labels.tolist() == b.labels.tolist()
    assert a.labels.tolist() != c.labels.tolist()
    assert a.labels.tolist() == sorted(set(a.labels.tolist()))  # no repeats, source order
    expected = np.sort(np.random.default_rng(1).choice(50, size=10, replace=False))
    assert a.labels.tolist() == expected.tolist()
    # inputs and labels stay aligned
    np.testing.assert_array_equal(a.inputs[0], ds.inputs[0][a.labels])
    assert a.name == "toy (n=10 of 50, seed=1)"


def test_take_none_or_at_least_n_returns_self_and_bad_limit_raises():
    ds = make(5)
    assert ds.take(None) is ds
    assert ds.take(5) is ds
    assert ds.take(500) is ds
    for bad in (0, -1, 2.5, True):
        with pytest.raises(DataError, match="limit must be a positive integer"):
            ds.take(bad)


def test_batches_in_order_with_short_last_batch():
    ds = make(5)
    batches = list(ds.batches(2))
    assert [y.tolist() for _, y in batches] == [[0, 1], [2, 3], [4]]
    assert [xs[0].shape for xs, _ in batches] == [(2, 2, 2), (2, 2, 2), (1, 2, 2)]
    np.testing.assert_array_equal(np.concatenate([xs[0] for xs, _ in batches]), ds.inputs[0])
    assert [y for _, y in make(3, labels=False).batches(2)] == [None, None]
    with pytest.raises(DataError, match="batch_size"):
        list(ds.batches(0))


def test_samples_have_leading_batch_dim_of_one():
    ds = Dataset((np.arange(6.0).reshape(3, 2), np.arange(9).reshape(3, 3)), None, "two")
    samples = list(ds.samples())
    assert len(samples) == 3
    assert all([x.shape for x in s] == [(1, 2), (1, 3)] for s in samples)
    np.testing.assert_array_equal(samples[2][1], [[6, 7, 8]])


def test_cast_float64_to_float32_and_int_ranges():
    ds = make(3)
    assert ds.cast(["float32"]).inputs[0].dtype == np.float32
    ints = from_arrays(np.array([[0], [100], [127]], dtype=np.int64))
    assert ints.cast(["int8"]).inputs[0].dtype == np.int8
    with pytest.raises(DataError, match=r"values in \[0, 300\], which do not fit int8"):
        from_arrays(np.array([[0], [300]])).cast(["int8"])
    with pytest.raises(DataError, match="cannot be cast to int8 without rounding"):
        ds.cast(["int8"])
    with pytest.raises(DataError, match="one dtype per input"):
        ds.cast(["float32", "float32"])
    with pytest.raises(DataError, match="is not a numpy dtype"):
        ds.cast(["floaty"])
    with pytest.raises(DataError, match="overflow float16"):
        from_arrays(np.array([[1e6]])).cast(["float16"])


def test_check_against_good_spec_passes_and_casts_float64_to_float32():
    x = np.random.default_rng(0).random((4, 8, 8, 1))
    ds = from_arrays(x, [0, 1, 2, 3])
    checked = ds.check_against([IMAGE])
    assert checked.inputs[0].dtype == np.float32
    np.testing.assert_allclose(checked.inputs[0], x.astype(np.float32))
    assert checked.labels.tolist() == [0, 1, 2, 3]
    # already matching data comes back unchanged
    assert checked.check_against([IMAGE]) is checked
    # fixed batch size in the spec does not constrain N
    assert len(ds.check_against([TensorSpec("image", (1, 8, 8, 1), "float32")])) == 4


def test_check_against_accepts_integer_images_for_float_input():
    x = np.full((2, 8, 8, 1), 255, dtype=np.uint8)
    out = from_arrays(x).check_against([IMAGE]).inputs[0]
    assert out.dtype == np.float32
    assert float(out.max()) == 255.0


def test_check_against_none_dims_match_anything():
    spec = TensorSpec("seq", (None, None, 3), "float32")
    assert from_arrays(np.zeros((2, 17, 3))).check_against([spec]).inputs[0].shape == (2, 17, 3)


def test_check_against_wrong_shape_names_both_shapes_and_input_name():
    ds = from_arrays(np.zeros((4, 28, 28, 1), dtype=np.float32))
    with pytest.raises(DataError) as err:
        ds.check_against([IMAGE], what="eval data")
    msg = str(err.value)
    assert msg.startswith("eval data input 0 has per-sample shape (28, 28, 1) float32")
    assert "model input 'image' expects (8, 8, 1) float32" in msg


def test_check_against_missing_channel_axis_gives_hint_and_does_not_expand():
    ds = from_arrays(np.zeros((4, 8, 8), dtype=np.float32))
    with pytest.raises(DataError) as err:
        ds.check_against([IMAGE])
    assert str(err.value) == (
        "calibration data input 0 has per-sample shape (8, 8) float32 but the model input 'image' expects "
        "(8, 8, 1) float32: add a trailing channel axis (x[..., None]) or pass data for this model"
    )
    assert ds.inputs[0].shape == (4, 8, 8)


def test_check_against_flat_data_for_image_model_suggests_reshape():
    with pytest.raises(DataError, match=r"x\.reshape\(-1, 8, 8, 1\)"):
        from_arrays(np.zeros((4, 64))).check_against([IMAGE])


def test_check_against_wrong_number_of_inputs():
    specs = [TensorSpec("a", (None, 2), "float32"), TensorSpec("b", (None, 3), "float32")]
    with pytest.raises(DataError) as err:
        from_arrays(np.zeros((4, 2))).check_against(specs)
    assert "has 1 input array(s) but the model has 2 input(s) ('a', 'b')" in str(err.value)


def test_check_against_rejects_float_data_for_int8_spec():
    spec = TensorSpec("image", (None, 8, 8, 1), "int8", scale=0.5, zero_point=-3)
    with pytest.raises(DataError) as err:
        from_arrays(np.zeros((2, 8, 8, 1), dtype=np.float32)).check_against([spec])
    msg = str(err.value)
    assert "is float32 but the model input 'image' expects int8" in msg
    assert "q = round(x / 0.5) + -3" in msg
    ok = from_arrays(np.zeros((2, 8, 8, 1), dtype=np.int64)).check_against([spec])
    assert ok.inputs[0].dtype == np.int8


def test_to_npz_round_trips_multi_input_labels_and_classes(tmp_path):
    ds = Dataset((np.arange(6.0).reshape(3, 2), np.arange(3, dtype=np.int8)[:, None]), [2, 0, 1], "m", ("a", "b", "c"))
    path = tmp_path / "out.npz"
    ds.to_npz(path)
    assert sorted(np.load(path).files) == ["classes", "x0", "x1", "y"]
    back = from_npz(path)
    assert back.num_inputs == 2
    np.testing.assert_array_equal(back.inputs[0], ds.inputs[0])
    assert back.inputs[1].dtype == np.int8
    assert back.labels.tolist() == [2, 0, 1]
    assert back.classes == ("a", "b", "c")
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]  # no temp files left behind


def test_to_npz_into_missing_folder_raises(tmp_path):
    with pytest.raises(DataError, match="cannot write"):
        make(2).to_npz(tmp_path / "nope" / "x.npz")
