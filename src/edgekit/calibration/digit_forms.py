"""The bundled digits in the shapes the zoo's tutorial models expect (numpy only).

The 8x8 scikit-learn digits stand in for the tutorials' datasets, which edgekit cannot download at
run time: upscaled to 28x28 (MNIST-sized), to 32x32 with three channels (CIFAR-10-sized: the
*pictures* are still digits, CIFAR-10 itself is not bundled), as a token sequence for the text
models, and with per-image metadata for the multi-input model. Every form is a pure function of the
real images, so labels and splits stay exactly those of :func:`edgekit.calibration.digits`.

Spec grammar (what :func:`edgekit.calibration.open_dataset` accepts after ``digits``)::

    digits[:split][:HxW][:rgb][:flat]   images, optionally resized / 3-channel / flattened
    digits[:split]:tokens               (N, 64) int32 pixel values 0..16 in raster order
    digits[:split][:HxW][:rgb]:meta     two inputs: the image and (N, 6) float32 metadata

Example:
    >>> parse_spec("digits:train:28x28:flat")
    {'split': 'train', 'size': (28, 28), 'flat': True}
    >>> upscale(np.ones((2, 8, 8), np.float32), (16, 16)).shape
    (2, 16, 16)
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from edgekit.errors import DataError

MODIFIERS = ("rgb", "flat", "tokens", "meta")
META_FEATURES = ("mean", "std", "top_mean", "bottom_mean", "left_mean", "right_mean")
TOKEN_VOCAB = 17  # pixel values 0..16, as scikit-learn ships them
MAX_SIZE = 128  # 1797 x 128 x 128 x 3 float32 is already ~350 MB
_SIZE = re.compile(r"^(\d+)x(\d+)$")
GRAMMAR = "digits[:split][:HxW][:rgb][:flat], digits[:split]:tokens or digits[:split][:HxW][:rgb]:meta"


def parse_spec(spec: str) -> dict[str, Any] | None:
    """Keyword arguments for :func:`~edgekit.calibration.digits` from a ``digits...`` spec.

    Returns ``None`` when ``spec`` is not a digits spec at all (a path, say). The split is checked
    by ``digits()`` itself, so an unknown one reads "unknown digits split ...".

    Raises:
        DataError: An unknown or repeated modifier, a bad size, or forms that do not combine.

    Example:
        >>> parse_spec("digits:flat"), parse_spec("data.npz")
        ({'split': 'eval', 'flat': True}, None)
    """
    if spec != "digits" and not spec.startswith("digits:"):
        return None
    parts = spec.split(":")[1:]
    kw: dict[str, Any] = {"split": "eval"}
    if parts and parts[0] not in MODIFIERS and not _SIZE.match(parts[0]):
        kw["split"] = parts.pop(0)
    for part in parts:
        size = _SIZE.match(part)
        key = "size" if size else part
        if key not in MODIFIERS and key != "size":
            raise DataError(f"unknown digits option {part!r} in {spec!r}: use {GRAMMAR}")
        if key in kw:
            raise DataError(f"digits option {part!r} is given twice in {spec!r}: give each option once")
        kw[key] = (int(size.group(1)), int(size.group(2))) if size else True
    check_forms(kw.get("size"), bool(kw.get("rgb")), bool(kw.get("flat")), bool(kw.get("tokens")),
                bool(kw.get("meta")), spec)
    return kw


def check_forms(size: Any, rgb: bool, flat: bool, tokens: bool, meta: bool, spec: str = "digits") -> None:
    """Refuse form combinations that mean nothing, naming the grammar.

    Example:
        >>> check_forms(None, True, False, True, False)
        Traceback (most recent call last):
        ...
        edgekit.errors.DataError: digits:tokens is a pixel-value sequence and takes no image option (got rgb in 'digits'): use digits[:split]:tokens
    """
    if tokens:
        extra = [n for n, on in (("HxW", size is not None), ("rgb", rgb), ("flat", flat), ("meta", meta)) if on]
        if extra:
            raise DataError(f"digits:tokens is a pixel-value sequence and takes no image option (got "
                            f"{', '.join(extra)} in {spec!r}): use digits[:split]:tokens")
    if size is not None:
        h, w = size
        if not (1 <= h <= MAX_SIZE and 1 <= w <= MAX_SIZE):
            raise DataError(f"digits size {h}x{w} in {spec!r} is out of range: use 1x1 .. {MAX_SIZE}x{MAX_SIZE}, e.g. 28x28")


def _axis_weights(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear weights with half-pixel centres (what tf.image.resize does)."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0.0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    w = np.zeros((n_out, n_in))
    w[np.arange(n_out), lo] += 1.0 - frac
    w[np.arange(n_out), hi] += frac
    return w


def upscale(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize ``(N, h, w)`` images to ``(N, *size)`` (float32, values stay in range).

    Example:
        >>> x = upscale(np.arange(4, dtype=np.float32).reshape(1, 2, 2), (4, 4))
        >>> x.shape, float(x.min()), float(x.max())
        ((1, 4, 4), 0.0, 3.0)
    """
    wy = _axis_weights(size[0], images.shape[1])
    wx = _axis_weights(size[1], images.shape[2])
    # Separable: rows then columns, one matrix product each; exact for the linear kernel.
    out = np.einsum("hi,nij,wj->nhw", wy, images.astype(np.float64), wx, optimize=True)
    return out.astype(np.float32)


def metadata(images: np.ndarray) -> np.ndarray:
    """Per-image features of ``(N, 8, 8)`` digits in [0, 1]: see :data:`META_FEATURES`.

    Real, cheap summaries a product would log beside an image (overall ink and its spread, and
    where on the canvas the ink sits), so the metadata branch has something genuine to learn from.

    Example:
        >>> metadata(np.ones((3, 8, 8), np.float32)).round(2).tolist()[0]
        [1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    """
    n, h, w = images.shape
    flat = images.reshape(n, -1)
    feats = [flat.mean(1), flat.std(1), images[:, : h // 2].reshape(n, -1).mean(1),
             images[:, h // 2 :].reshape(n, -1).mean(1), images[:, :, : w // 2].reshape(n, -1).mean(1),
             images[:, :, w // 2 :].reshape(n, -1).mean(1)]
    return np.stack(feats, axis=1).astype(np.float32)


def tokens(images: np.ndarray) -> np.ndarray:
    """``(N, 8, 8)`` digits in [0, 1] back to their 0..16 pixel values, as an ``(N, 64)`` int32 sequence.

    Example:
        >>> tokens(np.full((1, 8, 8), 0.5, np.float32))[0, :3].tolist()
        [8, 8, 8]
    """
    return np.rint(images.reshape(len(images), -1) * 16.0).astype(np.int32)


def ink(x: np.ndarray) -> np.ndarray:
    """Mean pixel intensity of each sample, ``(N, 1)`` float32: the multi-output models' regression target.

    Example:
        >>> ink(np.ones((2, 4, 4, 1), np.float32)).tolist()
        [[1.0], [1.0]]
    """
    return np.asarray(x, np.float32).reshape(len(x), -1).mean(1, keepdims=True)


def shape_images(images: np.ndarray, size: tuple[int, int] | None, rgb: bool, flat: bool) -> np.ndarray:
    """``(N, 8, 8)`` digits as model input: resized, 1 or 3 channels, optionally flattened.

    Example:
        >>> shape_images(np.zeros((2, 8, 8), np.float32), (32, 32), rgb=True, flat=False).shape
        (2, 32, 32, 3)
    """
    x = upscale(images, size) if size is not None and tuple(size) != images.shape[1:] else images
    x = x[..., None]
    if rgb:
        x = np.repeat(x, 3, axis=-1)  # grey digits on all three channels: honest, not invented colour
    return x.reshape(len(x), -1) if flat else x


def suffix(size: tuple[int, int] | None, rgb: bool, flat: bool, tokens_: bool, meta: bool) -> str:
    """The canonical spec tail for a form, e.g. ``":28x28:flat"`` (names datasets reproducibly).

    Example:
        >>> suffix((32, 32), True, False, False, True)
        ':32x32:rgb:meta'
    """
    parts = [f"{size[0]}x{size[1]}"] if size is not None else []
    parts += [n for n, on in (("rgb", rgb), ("flat", flat), ("tokens", tokens_), ("meta", meta)) if on]
    return "".join(f":{p}" for p in parts)
