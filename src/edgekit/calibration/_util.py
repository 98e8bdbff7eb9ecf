"""Small checks shared by the data sources (private; numpy only).

Every helper raises :class:`~edgekit.errors.DataError` with a one-line message that says what was
received, what is allowed and how to fix it, because these values come straight from users.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.checks import non_negative_int
from edgekit.errors import DataError

# bool, signed int, unsigned int, float: what a model input or a label can be fed from.
NUMERIC_KINDS = "biuf"


def seed_int(value: Any) -> int:
    """A seed as a non-negative ``int``; ``None`` is refused because it would make runs irreproducible."""
    return non_negative_int(value, "seed", fix="pass e.g. seed=0 (runs are reproducible by design)", error=DataError)


def as_numeric(value: Any, where: str) -> np.ndarray:
    """``np.asarray(value)``, refusing ragged, object, string and complex data."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists raise ValueError in numpy >= 1.24
        raise DataError(
            f"{where} is not a rectangular array ({exc}): pass a numpy array whose samples all have the same shape"
        ) from None
    if arr.dtype.kind not in NUMERIC_KINDS:
        raise DataError(
            f"{where} has dtype {arr.dtype}, which is not numeric: pass bool, integer or float data"
        )
    return arr


def as_input_array(value: Any, where: str) -> np.ndarray:
    """A numeric array with a leading sample axis (``ndim >= 1``)."""
    arr = as_numeric(value, where)
    if arr.ndim == 0:
        raise DataError(f"{where} is a scalar: pass an array with a leading sample axis, shape (N, ...)")
    return arr


def parse_dtype(dtype: Any, where: str) -> np.dtype:
    """``np.dtype(dtype)`` restricted to numeric dtypes."""
    try:
        target = np.dtype(dtype)
    except TypeError:
        raise DataError(
            f"{where}: {dtype!r} is not a numpy dtype: use a name such as 'float32', 'int8' or 'uint8'"
        ) from None
    if target.kind not in NUMERIC_KINDS:
        raise DataError(f"{where}: dtype {target} is not numeric: use a bool, integer or float dtype")
    return target


def cast_array(x: np.ndarray, dtype: Any, where: str) -> np.ndarray:
    """Cast ``x`` to ``dtype`` when no value changes kind or overflows.

    Allowed: float -> narrower float (float64 -> float32 is ordinary numpy behaviour), int/bool ->
    float, int -> int when every value fits. Refused: float -> int (that needs rounding and usually
    quantization parameters, which only the caller knows).
    """
    target = parse_dtype(dtype, where)
    if x.dtype == target:
        return x
    if not np.can_cast(x.dtype, target, casting="same_kind"):
        raise DataError(
            f"{where} is {x.dtype} and cannot be cast to {target} without rounding: convert it yourself "
            f"(e.g. quantize float data with the model's scale and zero point)"
        )
    if target.kind in "iu" and x.dtype.kind in "iu" and x.size:
        info = np.iinfo(target)
        lo, hi = x.min(), x.max()
        if lo < info.min or hi > info.max:
            raise DataError(
                f"{where} has values in [{lo}, {hi}], which do not fit {target} [{info.min}, {info.max}]: "
                f"rescale or shift the data first"
            )
    with np.errstate(over="ignore"):  # overflow is detected (and explained) just below
        out = x.astype(target)
    # A narrower float (e.g. float16) turns large values into inf; say so rather than feed infs.
    if target.kind == "f" and x.dtype.kind == "f" and x.size and not np.isfinite(out).all() and np.isfinite(x).all():
        raise DataError(
            f"{where} has values up to {np.abs(x).max():g}, which overflow {target}: rescale the data first"
        )
    return out
