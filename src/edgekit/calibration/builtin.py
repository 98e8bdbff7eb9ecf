"""Data that needs no files: the digits set bundled with scikit-learn, and random smoke data.

Example:
    >>> ds = digits("calib")
    >>> ds.inputs[0].shape, ds.name
    ((180, 8, 8, 1), 'digits:calib')
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from edgekit.calibration import digit_forms as forms
from edgekit.calibration._util import parse_dtype, seed_int
from edgekit.checks import positive_int
from edgekit.calibration.dataset import Dataset
from edgekit.errors import DataError, MissingDependencyError
from edgekit.manifest import TensorSpec

# Fractions of the shuffled 1797 samples: train, then calib, then eval (the rest).
SPLITS = ("train", "calib", "eval", "all")
_TRAIN, _CALIB = 0.7, 0.1


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as float32 in [0, 1], shape (N, 8, 8), and int64 labels (read once)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingDependencyError("scikit-learn", "convert", "the bundled digits data") from None
    bunch = load_digits()  # ships inside scikit-learn: no network
    images = (bunch.images / 16.0).astype(np.float32)  # pixels are 0..16
    images.flags.writeable = False  # cached and shared: callers get copies via indexing
    labels = bunch.target.astype(np.int64)
    labels.flags.writeable = False
    return images, labels


def _split_indices(n: int, split: str, seed: int) -> np.ndarray:
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round(n * _TRAIN))
    n_calib = int(round(n * _CALIB))
    bounds = {
        "train": (0, n_train),
        "calib": (n_train, n_train + n_calib),
        "eval": (n_train + n_calib, n),
        "all": (0, n),
    }
    start, stop = bounds[split]
    return perm[start:stop]


def digits(split: str = "eval", flat: bool = False, seed: int = 0, *, size: tuple[int, int] | None = None,
           rgb: bool = False, tokens: bool = False, meta: bool = False) -> Dataset:
    """The real 8x8 handwritten digits bundled with scikit-learn (1797 images, 10 classes).

    The samples are shuffled with ``np.random.default_rng(seed)`` and cut into disjoint splits:
    ``"train"`` (first 70 %, 1258), ``"calib"`` (next 10 %, 180), ``"eval"`` (last 20 %, 359);
    ``"all"`` is every sample in shuffled order.

    Args:
        split: One of ``"train"``, ``"calib"``, ``"eval"``, ``"all"``.
        flat: ``(N, 64)`` instead of ``(N, 8, 8, 1)`` (``(N, H*W*C)`` with the options below).
        seed: Shuffle seed; keep the default so splits match across runs and tools.
        size: ``(H, W)`` to resize to (bilinear), e.g. ``(28, 28)`` for MNIST-shaped models.
        rgb: Three identical channels, e.g. for CIFAR-10-shaped models (CIFAR-10 is not bundled).
        tokens: The 64 pixel values 0..16 as an ``(N, 64)`` int32 sequence (text models).
        meta: Two inputs: the image and ``(N, 6)`` float32 metadata (see
            :func:`edgekit.calibration.digit_forms.metadata`).

    Returns:
        float32 images in [0, 1] and int64 labels 0..9; ``classes`` is ``("0", ..., "9")``; the
        name is the spec that reopens it, e.g. ``"digits:train:28x28:flat"``.

    Raises:
        MissingDependencyError: scikit-learn is not installed.
        DataError: Unknown split, or options that do not combine (tokens with image options).

    Example:
        >>> ds = digits("eval", flat=True)
        >>> ds.inputs[0].shape, ds.labels.dtype, ds.name
        ((359, 64), dtype('int64'), 'digits:eval:flat')
        >>> [x.shape for x in digits("calib", size=(32, 32), rgb=True, meta=True).inputs]
        [(180, 32, 32, 3), (180, 6)]
    """
    if split not in SPLITS:
        raise DataError(f"unknown digits split {split!r}: use one of {list(SPLITS)}, e.g. 'digits:eval'")
    size = None if size is None else (int(size[0]), int(size[1]))
    forms.check_forms(size, rgb, flat, tokens, meta, f"digits:{split}{forms.suffix(size, rgb, flat, tokens, meta)}")
    images, labels = _load_digits()
    idx = _split_indices(len(images), split, seed_int(seed))
    x = images[idx]
    if tokens:
        inputs: tuple[np.ndarray, ...] = (forms.tokens(x),)
    else:
        inputs = (forms.shape_images(x, size, rgb, flat),)
        if meta:
            inputs += (forms.metadata(x),)
    name = f"digits:{split}" + forms.suffix(size, rgb, flat, tokens, meta)
    return Dataset(inputs, labels[idx], name, tuple(str(d) for d in range(10)))


def _random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "f":
        # rng.random only makes float32/float64; narrower floats are cast from float32.
        base = np.float64 if dtype == np.float64 else np.float32
        return rng.random(shape, dtype=base).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    info = np.iinfo(dtype)
    if info.bits <= 16:
        lo, hi = info.min, info.max  # quantized tensors: exercise the whole range
    else:
        lo, hi = 0, 127  # wide ints are usually ids or indices: stay small and non-negative
    return rng.integers(lo, hi, size=shape, dtype=dtype, endpoint=True)


def random_like(specs: Sequence[TensorSpec], n: int = 16, seed: int = 0, batch_dim: int = 1) -> Dataset:
    """Random data shaped like a model's inputs: for smoke tests only, never for accuracy.

    ``None`` dimensions other than the batch become 1; the batch holds ``n`` samples. Floats are
    uniform in [0, 1); 8/16-bit ints span their dtype; wider ints are in [0, 127]; bools are fair
    coins.

    Args:
        specs: The model's input specs.
        n: Number of samples.
        seed: Seed for ``np.random.default_rng``.
        batch_dim: How many leading axes of each spec are the batch axis: 1 (the usual
            ``(None, ...)`` specs) or 0 (specs that give the per-sample shape only).

    Raises:
        DataError: No specs, a non-numeric dtype, or bad ``n``/``seed``/``batch_dim``.

    Example:
        >>> ds = random_like([TensorSpec("image", (None, 8, 8, 1), "float32"),
        ...                   TensorSpec("ids", (1, None), "int32")], n=4)
        >>> [(x.shape, str(x.dtype)) for x in ds.inputs]
        [((4, 8, 8, 1), 'float32'), ((4, 1), 'int32')]
    """
    specs = tuple(specs)
    if not specs:
        raise DataError("random_like() got no input specs: pass the model's input TensorSpecs")
    n = positive_int(n, "n", fix="pass how many random samples to make, e.g. n=16", error=DataError)
    if batch_dim not in (0, 1) or isinstance(batch_dim, bool):
        raise DataError(f"batch_dim must be 1 (specs include the batch axis) or 0 (they do not), got {batch_dim!r}")
    rng = np.random.default_rng(seed_int(seed))
    arrays = []
    for spec in specs:
        dtype = parse_dtype(spec.dtype, f"model input '{spec.name}'")
        sample = tuple(1 if d is None else d for d in spec.shape[batch_dim:])
        arrays.append(_random_array(rng, (n, *sample), dtype))
    return Dataset(tuple(arrays), None, "random")
