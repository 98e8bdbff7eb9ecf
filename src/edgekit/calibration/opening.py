"""One entry point from a CLI flag or a recipe value to a :class:`Dataset`.

Example:
    >>> ds = open_dataset("digits:calib", limit=50)
    >>> len(ds), ds.name
    (50, 'digits:calib (n=50 of 180, seed=0)')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgekit.calibration.arrays import from_npy, from_npz
from edgekit.calibration.builtin import digits
from edgekit.calibration.digit_forms import parse_spec as parse_digits
from edgekit.calibration.dataset import Dataset
from edgekit.calibration.images import from_image_folder
from edgekit.errors import DataError

DEFAULT_LIMIT = 200  # enough for int8 calibration; bigger sets mostly cost time

_EXPECTED = "expected a .npz/.npy file, an image folder, or 'digits[:split]'"
# Options each kind of source accepts (everything else is a typo we should report).
_OPTIONS = {
    "npz": {"x_key", "y_key"},
    "npy": {"labels_path"},
    "images": {"size", "color", "scale", "mean", "std", "extensions"},
    "digits": set(),
}


def _check_options(kind: str, spec: str, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - _OPTIONS[kind])
    if unknown:
        allowed = sorted(_OPTIONS[kind]) or "none"
        raise DataError(
            f"option(s) {unknown} do not apply to data '{spec}' ({kind}); allowed: {allowed}: remove them"
        )


def _open(spec: str, options: dict[str, Any], limit: int | None, seed: int) -> Dataset:
    form = parse_digits(spec)
    if form is not None:  # the built-in name wins over a local file or folder called "digits"
        _check_options("digits", spec, options)
        return digits(**form)
    path = Path(spec)
    suffix = path.suffix.lower()
    if path.is_dir():
        _check_options("images", spec, options)
        return from_image_folder(path, **options, limit=limit, seed=seed)  # decodes only the subset
    if suffix == ".npz":
        _check_options("npz", spec, options)
        return from_npz(path, **options)
    if suffix == ".npy":
        _check_options("npy", spec, options)
        return from_npy(path, **options)
    why = "it is a file of an unknown type" if path.exists() else "no such file or folder"
    raise DataError(f"cannot open data '{spec}' ({why}): {_EXPECTED}")


def open_dataset(
    spec: str | os.PathLike | Dataset | None,
    *,
    limit: int | None = DEFAULT_LIMIT,
    seed: int = 0,
    **options: Any,
) -> Dataset | None:
    """Open data named on the command line or in a recipe, then keep ``limit`` samples.

    Args:
        spec: ``None`` (no data -> ``None``); a :class:`Dataset`; ``"digits"`` /
            ``"digits:<split>"`` / ``"digits:<split>:flat"`` (split defaults to ``eval``), with the
            zoo's forms ``:HxW``, ``:rgb``, ``:tokens``, ``:meta`` (see
            :mod:`edgekit.calibration.digit_forms`); a path ending in ``.npz`` or ``.npy``; or a
            folder of images.
        limit: Keep a seeded random subset of at most this many samples; ``None`` keeps all.
        seed: Seed for that subset (the digits splits themselves are fixed).
        **options: Passed to the source: ``x_key``/``y_key`` (npz), ``labels_path`` (npy),
            ``size``/``color``/``scale``/``mean``/``std``/``extensions`` (image folders).

    Raises:
        DataError: Unknown spec, options that do not apply, or any error of the source.

    Example:
        >>> open_dataset(None) is None
        True
        >>> len(open_dataset("digits:eval:flat", limit=None))
        359
        >>> [x.shape for x in open_dataset("digits:calib:32x32:rgb:meta", limit=4).inputs]
        [(4, 32, 32, 3), (4, 6)]
    """
    if spec is None:
        return None
    if isinstance(spec, Dataset):
        if options:
            raise DataError(
                f"option(s) {sorted(options)} do not apply to a Dataset object: apply them when building it"
            )
        return spec.take(limit, seed)
    if not isinstance(spec, (str, os.PathLike)):
        raise DataError(f"cannot open data of type {type(spec).__name__}: {_EXPECTED}, or pass a Dataset")
    text = os.fspath(spec)
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"cannot open data {text!r}: {_EXPECTED}")
    return _open(text, options, limit, seed).take(limit, seed)
