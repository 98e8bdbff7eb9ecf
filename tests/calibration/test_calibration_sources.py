"""Sources: arrays, .npz, .npy, image folders, generators (real files under tmp_path)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgekit.calibration import from_arrays, from_generator, from_image_folder, from_npy, from_npz
from edgekit.errors import DataError

try:
    from PIL import Image
except ImportError:  # only the image-folder tests need Pillow
    Image = None
needs_pillow = pytest.mark.skipif(Image is None, reason="Pillow not installed")


# ---------------------------------------------------------------- arrays


def test_from_arrays_single_list_and_dict():
    one = from_arrays(np.ones((4, 3)), y=[0, 1, 0, 1], name="one")
    assert (one.num_inputs, len(one), one.name) == (1, 4, "one")
    assert one.labels.tolist() == [0, 1, 0, 1]
    multi = from_arrays([np.zeros((2, 3)), np.ones((2, 5))])
    assert [x.shape for x in multi.inputs] == [(2, 3), (2, 5)]
    d = from_arrays({"b": np.full((2, 1), 7), "a": np.zeros((2, 4))})
    assert [x.shape for x in d.inputs] == [(2, 1), (2, 4)]  # insertion order, not sorted
    assert d.inputs[0][0, 0] == 7


def test_from_arrays_ragged_is_a_data_error():
    with pytest.raises(DataError, match="not a rectangular array"):
        from_arrays([[[1, 2], [3]]])


# ---------------------------------------------------------------- npz


def test_npz_with_x_and_y(tmp_path):
    x = np.random.default_rng(0).random((6, 8, 8, 1)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x, y=np.arange(6))
    ds = from_npz(tmp_path / "calib.npz")
    np.testing.assert_array_equal(ds.inputs[0], x)
    assert ds.labels.tolist() == list(range(6))
    assert ds.name == "calib.npz"


@pytest.mark.parametrize("xk, yk", [("images", "labels"), ("inputs", "targets"), ("data", "label")])
def test_npz_alternative_key_names(tmp_path, xk, yk):
    np.savez(tmp_path / "a.npz", **{xk: np.zeros((3, 2)), yk: np.array([5, 6, 7])})
    ds = from_npz(tmp_path / "a.npz")
    assert ds.inputs[0].shape == (3, 2)
    assert ds.labels.tolist() == [5, 6, 7]


def test_npz_single_array_is_x_without_labels(tmp_path):
    np.savez(tmp_path / "a.npz", whatever=np.ones((4, 2)))
    ds = from_npz(tmp_path / "a.npz")
    assert ds.inputs[0].shape == (4, 2)
    assert ds.labels is None


def test_npz_multi_input_numbered_keys_in_numeric_order(tmp_path):
    arrays = {f"x_{i}": np.full((3, i + 1), i) for i in range(11)}
    np.savez(tmp_path / "m.npz", y=np.arange(3), **arrays)
    ds = from_npz(tmp_path / "m.npz")
    assert ds.num_inputs == 11
    assert [x.shape[1] for x in ds.inputs] == list(range(1, 12))  # x_10 comes last, not after x_1
    assert ds.labels.tolist() == [0, 1, 2]


def test_npz_explicit_keys(tmp_path):
    np.savez(tmp_path / "k.npz", a=np.zeros((2, 3)), b=np.ones((2, 4)), c=np.array([1, 0]))
    ds = from_npz(tmp_path / "k.npz", x_key="b, a", y_key="c")
    assert [x.shape for x in ds.inputs] == [(2, 4), (2, 3)]
    assert ds.labels.tolist() == [1, 0]
    with pytest.raises(DataError, match=r"has no array \['zz'\] for x_key; it has keys \['a', 'b', 'c'\]"):
        from_npz(tmp_path / "k.npz", x_key="zz")
    with pytest.raises(DataError, match="no array 'zz' for y_key"):
        from_npz(tmp_path / "k.npz", x_key="a", y_key="zz")


def test_npz_ambiguous_keys_list_what_was_found(tmp_path):
    np.savez(tmp_path / "amb.npz", foo=np.zeros((2, 2)), bar=np.zeros((2, 2)))
    with pytest.raises(DataError) as err:
        from_npz(tmp_path / "amb.npz")
    msg = str(err.value)
    assert "cannot tell which arrays" in msg and "['foo', 'bar']" in msg and "x_key=" in msg
    np.savez(tmp_path / "two.npz", x=np.zeros((2, 2)), data=np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"several possible input arrays \['x', 'data'\]"):
        from_npz(tmp_path / "two.npz")


def test_npz_with_zero_rows_is_a_data_error(tmp_path):
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 8, 8, 1)), y=np.zeros((0,)))
    with pytest.raises(DataError, match=r"empty\.npz has no samples"):
        from_npz(tmp_path / "empty.npz")


def test_corrupt_npz_missing_file_and_npy_mixup(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(np.random.default_rng(0).bytes(256))
    with pytest.raises(DataError, match=r"cannot read .*bad\.npz as \.npz: not a zip archive"):
        from_npz(bad)
    with pytest.raises(DataError, match=r"missing\.npz does not exist"):
        from_npz(tmp_path / "missing.npz")
    np.save(tmp_path / "arr.npy", np.zeros((2, 2)))
    with pytest.raises(DataError, match="it is a .npy file: use from_npy"):
        from_npz(tmp_path / "arr.npy")


def test_npz_with_truncated_member_is_a_data_error(tmp_path):
    path = tmp_path / "trunc.npz"
    np.savez(path, x=np.zeros((100, 100)))
    data = path.read_bytes()
    # Flip bytes inside the member's data so the zip directory is intact but the CRC fails.
    path.write_bytes(data[:200] + bytes(b ^ 0xFF for b in data[200:1200]) + data[1200:])
    with pytest.raises(DataError, match=r"cannot read .*trunc\.npz as \.npz"):
        from_npz(path)


def test_npz_object_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DataError, match="cannot read .* as .npz: Object arrays cannot be loaded"):
        from_npz(tmp_path / "obj.npz")


# ---------------------------------------------------------------- npy


def test_npy_with_labels(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(12.0).reshape(4, 3))
    np.save(tmp_path / "y.npy", np.array([3, 2, 1, 0]))
    ds = from_npy(tmp_path / "x.npy", labels_path=tmp_path / "y.npy")
    assert ds.inputs[0][3].tolist() == [9.0, 10.0, 11.0]
    assert ds.labels.tolist() == [3, 2, 1, 0]
    assert ds.name == "x.npy"
    np.save(tmp_path / "y2.npy", np.array([1, 2]))
    with pytest.raises(DataError, match="has 4 samples but 2 labels"):
        from_npy(tmp_path / "x.npy", labels_path=tmp_path / "y2.npy")
    (tmp_path / "junk.npy").write_bytes(b"hello")
    with pytest.raises(DataError, match="not a .npy file"):
        from_npy(tmp_path / "junk.npy")


# ---------------------------------------------------------------- image folders


def _img(path, size_wh, value, mode="RGB"):
    color = value if mode == "L" else (value, value // 2, 0)
    Image.new(mode, size_wh, color=color).save(path)


@needs_pillow
def test_image_folder_with_classes_resize_and_grayscale(tmp_path):
    for cls, value in (("dog", 200), ("cat", 100)):
        (tmp_path / cls).mkdir()
        for i in range(2):
            _img(tmp_path / cls / f"{i}.png", (10 + i, 7), value)
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    ds = from_image_folder(tmp_path, size=(4, 5), color="grayscale")
    assert ds.inputs[0].shape == (4, 4, 5, 1)
    assert ds.inputs[0].dtype == np.float32
    assert ds.classes == ("cat", "dog")
    assert ds.labels.tolist() == [0, 0, 1, 1]
    assert "cat, dog" in ds.name
    # grayscale of (v, v//2, 0) is L = 0.299 v + 0.587 v/2, scaled by 1/255
    expected_cat = (0.299 * 100 + 0.587 * 50) / 255
    np.testing.assert_allclose(ds.inputs[0][0], expected_cat, atol=1 / 255)


@needs_pillow
def test_image_folder_flat_rgb_with_normalisation(tmp_path):
    for i in range(3):
        _img(tmp_path / f"img{i}.jpg" if i == 0 else tmp_path / f"img{i}.png", (6, 6), 255)
    ds = from_image_folder(tmp_path, mean=[0.5, 0.5, 0.0], std=0.5)
    assert ds.inputs[0].shape == (3, 6, 6, 3)
    assert ds.labels is None and ds.classes == ()
    red = ds.inputs[0][1, ..., 0]  # (255/255 - 0.5) / 0.5
    np.testing.assert_allclose(red, 1.0, atol=1e-6)
    np.testing.assert_allclose(ds.inputs[0][1, ..., 2], 0.0, atol=1e-6)


@needs_pillow
def test_image_folder_with_a_limit_decodes_only_the_subset_take_would_keep(tmp_path):
    from edgekit.calibration import open_dataset
    from edgekit.calibration.dataset import sample_indices

    files = []
    for cls in ("a", "b", "c"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            files.append(tmp_path / cls / f"{i}.png")
            _img(files[-1], (6, 5), 20 * len(files))
    whole = from_image_folder(tmp_path).take(5, seed=2)
    part = from_image_folder(tmp_path, limit=5, seed=2)
    assert part.name == whole.name and part.name.endswith("(n=5 of 12, seed=2)")
    np.testing.assert_array_equal(part.inputs[0], whole.inputs[0])
    assert part.labels.tolist() == whole.labels.tolist() and part.classes == whole.classes
    opened = open_dataset(str(tmp_path), limit=5, seed=2)
    assert opened.name == whole.name and np.array_equal(opened.inputs[0], whole.inputs[0])
    # An image outside the subset is never decoded: a broken one there does not stop the limited read.
    unused = next(i for i in range(12) if i not in sample_indices(12, 5, seed=2))
    files[unused].write_bytes(b"not a png")
    assert len(from_image_folder(tmp_path, limit=5, seed=2)) == 5
    with pytest.raises(DataError, match="cannot read image"):
        from_image_folder(tmp_path)


@needs_pillow
def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="has no images"):
        from_image_folder(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        from_image_folder(tmp_path / "nope")
    _img(tmp_path / "a.png", (4, 4), 10)
    _img(tmp_path / "b.png", (5, 4), 10)
    with pytest.raises(DataError, match=r"different sizes \(4x4 in a\.png, 5x4 in b\.png\): pass size=\(h, w\)"):
        from_image_folder(tmp_path)
    assert from_image_folder(tmp_path, size=(3, 3)).inputs[0].shape == (2, 3, 3, 3)
    with pytest.raises(DataError, match="color must be one of"):
        from_image_folder(tmp_path, size=(3, 3), color="RGB")
    with pytest.raises(DataError, match="size must be"):
        from_image_folder(tmp_path, size=(3,))
    (tmp_path / "c.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"cannot read image .*c\.png"):
        from_image_folder(tmp_path, size=(3, 3))


@needs_pillow
def test_image_folder_mixed_layout_is_refused(tmp_path):
    (tmp_path / "cls").mkdir()
    _img(tmp_path / "cls" / "a.png", (4, 4), 10)
    _img(tmp_path / "top.png", (4, 4), 10)
    with pytest.raises(DataError, match="both at its top"):
        from_image_folder(tmp_path)


# ---------------------------------------------------------------- generators


def test_generator_of_batches_like_representative_dataset():
    def rep():
        for i in range(5):
            yield [np.full((1, 3), i, dtype=np.float32)]

    ds = from_generator(rep)  # a generator function is called
    assert ds.inputs[0][:, 0].tolist() == [0, 1, 2, 3, 4]
    assert ds.labels is None


def test_generator_of_single_samples_with_labels_and_multi_input():
    items = [([np.full((2,), i), np.full((3, 3), -i)], i) for i in range(4)]
    ds = from_generator(iter(items), name="pairs")
    assert [x.shape for x in ds.inputs] == [(4, 2), (4, 3, 3)]
    assert ds.labels.tolist() == [0, 1, 2, 3]
    assert ds.name == "pairs"
    dicts = from_generator([{"a": np.zeros((2, 1)), "b": np.ones((2, 2))}] * 3)
    assert [x.shape for x in dicts.inputs] == [(6, 1), (6, 2)]


def test_generator_limit_stops_infinite_generators():
    pulled = []

    def forever():
        for i in itertools.count():
            pulled.append(i)
            yield np.full((4, 2), i), np.full(4, i)

    ds = from_generator(forever, limit=10)
    assert len(ds) == 10
    assert ds.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 2
    assert pulled == [0, 1, 2]


def test_generator_batched_override_and_inconsistencies():
    ds = from_generator([np.zeros((8, 8))] * 2, batched=False)
    assert ds.inputs[0].shape == (2, 8, 8)
    assert from_generator([np.zeros((8, 8))] * 2).inputs[0].shape == (16, 8)
    with pytest.raises(DataError, match="item 1 has per-sample shapes"):
        from_generator([np.zeros((1, 3)), np.zeros((1, 4))])
    with pytest.raises(DataError, match="item 1 has 2 input"):
        from_generator([[np.zeros((1, 3))], [np.zeros((1, 3)), np.zeros((1, 3))]])
    with pytest.raises(DataError, match="tuples mean"):
        from_generator([(np.zeros((1, 3)),) * 3])
    with pytest.raises(DataError, match=r"batch sizes \[2, 3\]"):
        from_generator([(np.zeros((2, 3)), np.zeros(3))])


def test_empty_generator_and_bad_source():
    with pytest.raises(DataError, match="yielded no samples"):
        from_generator(iter([]), name="gen")
    with pytest.raises(DataError, match="expected a generator"):
        from_generator(42)


def test_image_folder_is_decoded_into_one_array_without_copies(tmp_path):
    """Peak allocation while reading is the dataset plus one image's temporaries (was 4x the data)."""
    import tracemalloc

    pytest.importorskip("PIL")
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(60):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(tmp_path / f"{i:02d}.png")
    tracemalloc.start()
    try:
        ds = from_image_folder(tmp_path, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    x = ds.inputs[0]
    assert x.shape == (60, 48, 48, 3) and x.dtype == np.float32
    assert peak < 1.3 * x.nbytes, (peak, x.nbytes)
