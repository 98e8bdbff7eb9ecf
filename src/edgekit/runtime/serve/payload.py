"""Request payloads to Session feeds and outputs back: JSON, ``.npy`` and ``.npz``.

Shared by ``edgekit serve`` and apps that embed the runtime (``examples/iot_app.py``). numpy and
the standard library only.

JSON has no dtypes, so JSON numbers are cast to the input's dtype (float inputs, and int8 inputs
whose float values the Session quantizes); ``.npy``/``.npz`` arrays keep their dtype and the
Session checks it. Shapes are never guessed: a missing batch axis is an error naming the spec.

Example:
    >>> from edgekit.manifest import TensorSpec
    >>> specs = (TensorSpec("x", (None, 2), "float32"),)
    >>> feeds_from_json({"inputs": {"x": [[1, 2]]}}, specs)["x"].dtype
    dtype('float32')
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any, Mapping, Sequence

import numpy as np

from edgekit.errors import InputError
from edgekit.manifest import TensorSpec

JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"
NPZ_TYPE = "application/x-npz"
JSON_SHAPE_HINT = '{"inputs": {"<name>": [[...]]}} or, for a one-input model, a bare nested list'
_MISSING = object()


def _expected(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(s.describe() for s in specs)


def json_array(value: Any, spec: TensorSpec, *, quantize_io: bool = True) -> np.ndarray:
    """A JSON value (nested lists of numbers) as an array of ``spec``'s dtype.

    Floats go to float inputs as is; to integer inputs they must be whole numbers in range (raw
    values), unless the input is quantized and ``quantize_io`` is on, in which case they stay
    float32 for the Session to quantize.

    Raises:
        InputError: not a rectangular array of numbers, or values that do not fit the dtype.

    Example:
        >>> json_array([[0.5, 1]], TensorSpec("x", (None, 2), "float32")).tolist()
        [[0.5, 1.0]]
    """
    if isinstance(value, (str, bytes, dict)) or value is None:
        raise InputError(f"input {spec.name!r} must be a nested list of numbers, got {type(value).__name__}; expects {spec.describe()}")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise InputError(f"input {spec.name!r} is not a rectangular array (rows of different lengths?); expects {spec.describe()}") from None
    if arr.dtype.kind not in "iuf" or arr.dtype == np.bool_:
        got = "booleans" if arr.dtype == np.bool_ else "strings" if arr.dtype.kind in "US" else "mixed or non-numeric values"
        raise InputError(f"input {spec.name!r} must hold numbers, got {got}; expects {spec.describe()}")
    want = np.dtype(spec.dtype)
    if want.kind == "f" or (spec.quantized and quantize_io):
        return arr.astype(want if want.kind == "f" else np.float32)
    if want.kind in "iu":
        if arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0):
            raise InputError(f"input {spec.name!r} takes whole numbers ({spec.describe()}), got fractions")
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise InputError(f"input {spec.name!r} values must lie in [{info.min}, {info.max}] for {spec.describe()}")
        return arr.astype(want)
    raise InputError(f"input {spec.name!r} has dtype {spec.dtype}, which JSON cannot express: send .npy/.npz")


def feeds_from_json(doc: Any, specs: Sequence[TensorSpec], *, quantize_io: bool = True) -> dict[str, np.ndarray]:
    """``{"inputs": {name: nested list}}``, ``{"inputs": nested list}`` or a bare nested list -> feeds.

    The list forms are for one-input models. Names are checked here so the error lists the
    model's inputs; shapes and ranks are left to :meth:`Session.run`.

    Example:
        >>> feeds_from_json([[1.0, 2.0]], (TensorSpec("x", (None, 2), "float32"),))["x"].shape
        (1, 2)
    """
    inputs = doc.get("inputs", _MISSING) if isinstance(doc, dict) else doc
    if inputs is _MISSING:
        raise InputError(f"JSON object has no 'inputs' key (keys: {sorted(doc)[:10]}); send {JSON_SHAPE_HINT}")
    by_name = {s.name: s for s in specs}
    if isinstance(inputs, dict):
        unknown = [k for k in inputs if k not in by_name]
        if unknown:
            raise InputError(f"unknown input name(s) {unknown}; this model takes {_expected(specs)}")
        missing = [n for n in by_name if n not in inputs]
        if missing:
            raise InputError(f"missing input(s) {missing}; this model takes {_expected(specs)}")
        return {n: json_array(inputs[n], by_name[n], quantize_io=quantize_io) for n in by_name}
    if isinstance(inputs, list):
        if len(specs) != 1:
            raise InputError(f"a bare list is for one-input models; this one takes {_expected(specs)}: send {{\"inputs\": {{name: ...}}}}")
        return {specs[0].name: json_array(inputs, specs[0], quantize_io=quantize_io)}
    raise InputError(f"'inputs' must be an object of named arrays or a nested list, got {type(inputs).__name__}; send {JSON_SHAPE_HINT}")



def parse_json(body: bytes, what: str = "body") -> Any:
    """Decode UTF-8 JSON; :class:`InputError` with the position of the first problem.

    Example:
        >>> parse_json(b'{"inputs": [[1]]}')
        {'inputs': [[1]]}
    """
    try:
        # Decode first: json.loads(bytes) would guess UTF-16/32 from the first bytes.
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{what} is not UTF-8 text: send JSON, or numpy payloads as application/x-npy / application/x-npz") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def load_npy(data: bytes, what: str = "body") -> np.ndarray:
    """One array from ``.npy`` bytes (``np.save``); pickled object arrays are refused.

    Example:
        >>> buf = io.BytesIO(); np.save(buf, np.ones((1, 2), np.float32))
        >>> load_npy(buf.getvalue()).shape
        (1, 2)
    """
    if data[:2] == b"PK":
        raise InputError(f"{what} is a .npz archive, not a .npy array: send it as application/x-npz")
    if data[:6] != b"\x93NUMPY":
        raise InputError(f"{what} is not a .npy array: no NPY header (write it with np.save)")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{what} is not a loadable .npy array (object arrays are refused): {' '.join(str(exc).split())[:160]}") from None


def load_npz(data: bytes, max_bytes: int, what: str = "body") -> dict[str, np.ndarray]:
    """Named arrays from ``.npz`` bytes (``np.savez``), refusing archives that unpack past ``max_bytes``.

    The limit matters because a small compressed archive can expand to gigabytes (a zip bomb).

    Example:
        >>> buf = io.BytesIO(); np.savez(buf, image=np.zeros((1, 2), np.float32))
        >>> sorted(load_npz(buf.getvalue(), 1 << 20))
        ['image']
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            total = sum(info.file_size for info in zf.infolist())
        if total > max_bytes:
            raise InputError(f"{what}: .npz archive unpacks to {total} bytes, more than the {max_bytes}-byte limit")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise InputError(f"{what} is not a .npz archive (np.savez output): {' '.join(str(exc).split())[:160]}") from None


def feeds_from_arrays(arrays: Mapping[str, np.ndarray] | np.ndarray, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray] | np.ndarray:
    """``.npy``/``.npz`` arrays as feeds: one array needs a one-input model; names must match.

    Example:
        >>> feeds_from_arrays(np.zeros((1, 2)), (TensorSpec("x", (None, 2), "float32"),)).shape
        (1, 2)
    """
    if isinstance(arrays, np.ndarray):
        if len(specs) != 1:
            raise InputError(f"one .npy array given but this model takes {len(specs)} inputs ({_expected(specs)}): send application/x-npz with one array per name")
        return arrays
    return dict(arrays)  # Session.run names unknown and missing inputs against the specs


def outputs_to_json(outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Output arrays as nested lists; NaN and infinities become ``null`` so the JSON stays standard.

    Example:
        >>> outputs_to_json({"y": np.array([1.5, np.nan], np.float32)})
        {'y': [1.5, None]}
    """
    out: dict[str, Any] = {}
    for name, arr in outputs.items():
        arr = np.asarray(arr)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            out[name] = np.where(np.isfinite(arr), arr, None).tolist()
        else:
            out[name] = arr.tolist()
    return out


def outputs_to_npz(outputs: Mapping[str, np.ndarray]) -> bytes:
    """Output arrays as ``.npz`` bytes (uncompressed: outputs are small and CPU is scarce).

    Example:
        >>> sorted(load_npz(outputs_to_npz({"y": np.zeros(3)}), 1 << 20))
        ['y']
    """
    buf = io.BytesIO()
    np.savez(buf, **{name: np.asarray(a) for name, a in outputs.items()})
    return buf.getvalue()


def top1(outputs: Mapping[str, np.ndarray]) -> list[int] | None:
    """Argmax per sample of the first ``[batch, classes]`` output, or ``None`` if there is none.

    Example:
        >>> top1({"logits": np.array([[0.1, 0.9], [2.0, 1.0]])})
        [1, 0]
    """
    for arr in outputs.values():
        if arr.ndim == 2 and arr.shape[1] > 1:
            return [int(i) for i in np.argmax(arr, axis=1)]
    return None
