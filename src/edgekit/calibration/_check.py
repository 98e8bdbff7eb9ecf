"""Does data fit a model's inputs? The logic behind :meth:`Dataset.check_against` (private).

Shapes are never changed here: guessing where a channel axis belongs hides real mistakes (a
flattened image fed to a CNN), so a mismatch is reported with the exact fix instead.
"""

from __future__ import annotations

import math

import numpy as np

from edgekit.calibration._util import cast_array
from edgekit.errors import DataError
from edgekit.manifest import TensorSpec


def check_inputs(inputs: tuple[np.ndarray, ...], specs: tuple[TensorSpec, ...], what: str) -> tuple[np.ndarray, ...]:
    """Check ``inputs`` against ``specs`` and return them cast to the specs' dtypes.

    Example:
        >>> import numpy as np
        >>> spec = TensorSpec("x", (None, 3), "float32")
        >>> check_inputs((np.zeros((2, 3), "float64"),), (spec,), "data")[0].dtype
        dtype('float32')
    """
    if len(inputs) != len(specs):
        names = ", ".join(repr(s.name) for s in specs)
        raise DataError(
            f"{what} has {len(inputs)} input array(s) but the model has {len(specs)} input(s) ({names}): "
            f"pass one array per model input, in the model's order (npz keys x0, x1, ...)"
        )
    out = []
    for i, (x, spec) in enumerate(zip(inputs, specs)):
        _check_shape(x, spec, i, what)
        out.append(_check_dtype(x, spec, i, what))
    return tuple(out)


def _matches(data: tuple[int, ...], spec: tuple[int | None, ...]) -> bool:
    return len(data) == len(spec) and all(s is None or s == d for d, s in zip(data, spec))


def _shape_hint(data: tuple[int, ...], spec: tuple[int | None, ...]) -> str:
    """The most likely fix for a per-sample shape mismatch."""
    if spec and spec[-1] == 1 and _matches(data, spec[:-1]):
        return "add a trailing channel axis (x[..., None]) or pass data for this model"
    if data and data[-1] == 1 and _matches(data[:-1], spec):
        return "drop the trailing axis (x[..., 0]) or pass data for this model"
    if None not in spec and math.prod(data) == math.prod(spec):
        dims = ", ".join(str(d) for d in spec)
        return f"reshape the data (e.g. x.reshape(-1, {dims})) or pass data for this model"
    return "reshape the data to match or pass data for this model"


def _check_shape(x: np.ndarray, spec: TensorSpec, i: int, what: str) -> None:
    data = tuple(x.shape[1:])
    # spec.shape[0] is the batch axis; a spec without one (rare) describes a single sample.
    expected = tuple(spec.shape[1:])
    if _matches(data, expected):
        return
    raise DataError(
        f"{what} input {i} has per-sample shape {data} {x.dtype} but the model input '{spec.name}' expects "
        f"{expected} {spec.dtype}: {_shape_hint(data, expected)}"
    )


def _check_dtype(x: np.ndarray, spec: TensorSpec, i: int, what: str) -> np.ndarray:
    where = f"{what} input {i} (model input '{spec.name}')"
    try:
        target = np.dtype(spec.dtype)
    except TypeError:
        raise DataError(
            f"model input '{spec.name}' has dtype {spec.dtype!r}, which edgekit cannot feed from numpy arrays: "
            f"use a model whose inputs are numeric"
        ) from None
    if target.kind in "iu" and x.dtype.kind == "f":
        if spec.scale:
            fix = f"quantize it first (q = round(x / {spec.scale:g}) + {spec.zero_point}) or use a float model"
        else:
            fix = "convert it to integers yourself (edgekit never rounds data silently)"
        raise DataError(
            f"{what} input {i} is {x.dtype} but the model input '{spec.name}' expects {spec.dtype}: {fix}"
        )
    if target.kind == "b" and x.dtype.kind != "b":
        raise DataError(
            f"{what} input {i} is {x.dtype} but the model input '{spec.name}' expects bool: pass x.astype(bool)"
        )
    # Float/int -> float and int -> int (values checked to fit) are plain, documented casts.
    return cast_array(x, target, where)
