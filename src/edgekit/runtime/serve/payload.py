"""Request payloads to Session feeds and outputs back: JSON, ``.npy`` and ``.npz``.

Shared by ``edgekit serve`` and apps that embed the runtime (``examples/iot_app.py``). numpy and
the standard library only.

JSON has no dtypes, so JSON numbers are cast to the input's dtype (float inputs, and int8 inputs
whose float values the Session quantizes); ``.npy``/``.npz`` arrays keep their dtype and the
Session checks it. Shapes are never guessed: a missing batch axis is an error naming the spec.

Hostile payloads cost a bounded amount of work: ``.npy`` and ``.npz`` headers are read and checked
against a byte and a batch limit *before* any array is allocated (a 31 KB compressed archive can
declare gigabytes), JSON nesting deeper than a tensor can be is refused before parsing, and
:func:`check_finite` / :func:`check_batch` apply the same rules to every kind of payload once
decoded. Limit violations raise :class:`PayloadTooLarge` (HTTP 413), other mistakes
:class:`~edgekit.errors.InputError` (400).

Example:
    >>> from edgekit.manifest import TensorSpec
    >>> specs = (TensorSpec("x", (None, 2), "float32"),)
    >>> feeds_from_json({"inputs": {"x": [[1, 2]]}}, specs)["x"].dtype
    dtype('float32')
"""

from __future__ import annotations

import io
import json
import math
import zipfile
import zlib
from typing import Any, Mapping, Sequence

import numpy as np

from edgekit.errors import InputError
from edgekit.manifest import TensorSpec

JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"
NPZ_TYPE = "application/x-npz"
JSON_SHAPE_HINT = '{"inputs": {"<name>": [[...]]}} or, for a one-input model, a bare nested list'
_MISSING = object()
MAX_NPZ_ARRAYS = 64  # an archive with more members than this is not a model's feeds
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


class PayloadTooLarge(InputError):
    """A payload within the byte limit that asks for more work than allowed (HTTP 413).

    Example:
        >>> issubclass(PayloadTooLarge, InputError)
        True
    """


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



def json_depth(body: bytes, cap: int = 64) -> int | None:
    """How deeply ``[``/``{`` nest in JSON text, without parsing it: ``cap + 1`` means deeper than ``cap``.

    ``None`` when it cannot tell cheaply (backslash escapes in strings, unbalanced brackets): the
    parser's own recursion limit still applies then. Costs a few C-level passes over the text
    (strings dropped, everything but brackets dropped, then one pass per level), so a megabyte
    costs about a millisecond and a 5,000-deep body stops after ``cap + 1`` passes.

    Example:
        >>> json_depth(b'{"inputs": {"x": [[1, 2]]}}'), json_depth(b'["[[[["]'), json_depth(b'1'), json_depth(b'[' * 99, cap=8)
        (4, 1, 0, None)
        >>> json_depth(b'[' * 99 + b']' * 99, cap=8)
        9
    """
    if b"\\" in body:
        return None
    if b'"' in body:  # without escapes, every other quote-delimited piece is a string's contents
        body = b"".join(body.split(b'"')[0::2])
    brackets = body.translate(_SQUARE, _NOT_BRACKETS)  # "{" -> "[", "}" -> "]", all else dropped
    depth = 0
    while brackets:
        if depth > cap:
            return depth
        inner = brackets.replace(b"[]", b"")  # removes every innermost pair: one level per pass
        if len(inner) == len(brackets):
            return None
        brackets, depth = inner, depth + 1
    return depth


def parse_json(body: bytes, what: str = "body", *, max_depth: int | None = 64) -> Any:
    """Decode UTF-8 JSON; :class:`InputError` with the position of the first problem.

    Nesting deeper than ``max_depth`` is refused before parsing (the parser recurses per level,
    and a 5,000-deep body would otherwise end in RecursionError); integers too long for Python's
    int-string conversion limit are refused too.

    Example:
        >>> parse_json(b'{"inputs": [[1]]}')
        {'inputs': [[1]]}
        >>> parse_json(b'[[[[1]]]]', max_depth=3)
        Traceback (most recent call last):
        ...
        edgekit.errors.InputError: body nests deeper than the 3 levels this model's inputs need
    """
    try:
        # Decode first: json.loads(bytes) would guess UTF-16/32 from the first bytes.
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} is not UTF-8 text: send JSON, or numpy payloads as application/x-npy / application/x-npz") from None
    if max_depth is not None:
        depth = json_depth(body, cap=max_depth)
        if depth is not None and depth > max_depth:
            raise InputError(f"{what} nests deeper than the {max_depth} levels this model's inputs need")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InputError(f"{what} nests too deeply to parse") from None
    except ValueError as exc:  # int('9' * 5000): over the interpreter's int-string conversion limit
        raise InputError(f"{what} holds a number JSON cannot carry here: {' '.join(str(exc).split())[:120]}") from None
    except MemoryError:
        raise PayloadTooLarge(f"{what} is too large to parse") from None


def npy_header(stream: Any, what: str = "body") -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of a ``.npy`` stream, which is left at the start of the data.

    Reads at most the header (numpy caps it at 10,000 bytes): nothing is allocated for the array.

    Raises:
        InputError: no NPY header, a malformed one, or an object (pickle) dtype.

    Example:
        >>> buf = io.BytesIO(); np.save(buf, np.ones((3, 2), np.int8)); _ = buf.seek(0)
        >>> npy_header(buf)
        ((3, 2), dtype('int8'))
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):  # 3.0 differs only in allowing UTF-8 field names
            shape, _, dtype = fmt.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise InputError(f"{what} is not a loadable .npy array: {' '.join(str(exc).split())[:160]}") from None
    if dtype.hasobject:
        raise InputError(f"{what} holds Python objects (dtype {dtype}): object arrays are refused (no pickles); send numeric arrays")
    if any(d < 0 for d in shape):
        raise InputError(f"{what}: the .npy header declares a negative dimension {shape}")
    return tuple(int(d) for d in shape), dtype


def check_header(shape: tuple[int, ...], dtype: np.dtype, what: str = "body", *, max_bytes: int | None = None,
                 max_batch: int | None = None, hints: Mapping[str, str] | None = None) -> int:
    """Bytes an array of ``shape``/``dtype`` would take; :class:`PayloadTooLarge` above a limit.

    Example:
        >>> check_header((4, 8), np.dtype("float32"))
        128
        >>> check_header((500000, 8), np.dtype("int8"), max_batch=4096)
        Traceback (most recent call last):
        ...
        edgekit.runtime.serve.payload.PayloadTooLarge: body: batch of 500000 samples, over the limit of 4096
    """
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: a header claiming 10**30 elements cannot overflow
    if max_batch is not None and shape and shape[0] > max_batch:
        raise PayloadTooLarge(f"{what}: batch of {shape[0]} samples, over the limit of {max_batch}{_hint(hints, 'batch')}")
    if max_bytes is not None and nbytes > max_bytes:
        raise PayloadTooLarge(f"{what}: array {shape} {dtype} is {nbytes} bytes decoded, over the {max_bytes}-byte limit"
                              f"{_hint(hints, 'decoded')}")
    return nbytes


def load_npy(data: bytes, what: str = "body", *, max_bytes: int | None = None, max_batch: int | None = None,
             hints: Mapping[str, str] | None = None) -> np.ndarray:
    """One array from ``.npy`` bytes (``np.save``); pickled object arrays are refused.

    The header is checked before the array is allocated: against ``max_bytes`` (decoded size) and
    ``max_batch`` (first axis), and against the bytes actually sent, so a header claiming 954 GiB
    costs nothing. ``hints`` maps ``"batch"`` / ``"decoded"`` to text appended to that limit's error
    (how to raise it, e.g. ``"(edgekit serve --max-batch)"``).

    Example:
        >>> buf = io.BytesIO(); np.save(buf, np.ones((1, 2), np.float32))
        >>> load_npy(buf.getvalue()).shape
        (1, 2)
    """
    if data[:2] == b"PK":
        raise InputError(f"{what} is a .npz archive, not a .npy array: send it as application/x-npz")
    if data[:6] != b"\x93NUMPY":
        raise InputError(f"{what} is not a .npy array: no NPY header (write it with np.save)")
    stream = io.BytesIO(data)
    shape, dtype = npy_header(stream, what)
    nbytes = check_header(shape, dtype, what, max_bytes=max_bytes, max_batch=max_batch, hints=hints)
    have = len(data) - stream.tell()
    if nbytes > have:
        raise InputError(f"{what}: the .npy header declares {shape} {dtype} ({nbytes} bytes) but only {have} bytes follow it")
    stream.seek(0)
    try:
        return np.load(stream, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{what} is not a loadable .npy array (object arrays are refused): {' '.join(str(exc).split())[:160]}") from None


def load_npz(data: bytes, max_bytes: int, what: str = "body", *, max_batch: int | None = None,
             hints: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """Named arrays from ``.npz`` bytes (``np.savez``), refusing archives that unpack past ``max_bytes``.

    The limit matters because a small compressed archive can expand to gigabytes (a zip bomb):
    the zip's declared sizes are checked first, then each member's ``.npy`` header (only the
    header is decompressed) against ``max_bytes`` in total and ``max_batch``, before any array is
    allocated; members are then read straight into arrays of the checked size.

    Example:
        >>> buf = io.BytesIO(); np.savez(buf, image=np.zeros((1, 2), np.float32))
        >>> sorted(load_npz(buf.getvalue(), 1 << 20))
        ['image']
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_NPZ_ARRAYS:
                raise InputError(f"{what}: .npz archive holds {len(infos)} members, more than {MAX_NPZ_ARRAYS}: send one array per model input")
            total = sum(info.file_size for info in infos)
            if total > max_bytes:
                raise PayloadTooLarge(f"{what}: .npz archive unpacks to {total} bytes, more than the {max_bytes}-byte limit"
                                      f"{_hint(hints, 'decoded')}")
            names, total = [], 0
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise InputError(f"{what}: .npz member {info.filename[:80]!r} is not a .npy array (write the archive with np.savez)")
                name = info.filename[:-4]
                with zf.open(info) as member:
                    shape, dtype = npy_header(member, f"{what}: array {name!r}")
                total += check_header(shape, dtype, f"{what}: array {name!r}", max_batch=max_batch, hints=hints)
                if total > max_bytes:
                    raise PayloadTooLarge(f"{what}: .npz arrays take {total} bytes decoded, over the {max_bytes}-byte limit"
                                          f"{_hint(hints, 'decoded')}")
                names.append((name, info))
            out = {}
            for name, info in names:
                with zf.open(info) as member:
                    out[name] = np.lib.format.read_array(member, allow_pickle=False)
            return out
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError, RuntimeError, NotImplementedError) as exc:
        raise InputError(f"{what} is not a .npz archive (np.savez output): {' '.join(str(exc).split())[:160]}") from None


def _hint(hints: Mapping[str, str] | None, limit: str) -> str:
    text = (hints or {}).get(limit)
    return f" {text}" if text else ""


def _arrays(feeds: Mapping[str, np.ndarray] | np.ndarray) -> list[tuple[str, np.ndarray]]:
    if isinstance(feeds, np.ndarray):
        return [("input", feeds)]
    return [(str(k), np.asarray(v)) for k, v in feeds.items()]


def check_batch(feeds: Mapping[str, np.ndarray] | np.ndarray, max_batch: int,
                hints: Mapping[str, str] | None = None) -> None:
    """:class:`PayloadTooLarge` when any feed's first axis holds more than ``max_batch`` samples.

    Example:
        >>> check_batch({"x": np.zeros((8, 2))}, 4)
        Traceback (most recent call last):
        ...
        edgekit.runtime.serve.payload.PayloadTooLarge: input 'x': batch of 8 samples, over the limit of 4
    """
    for name, arr in _arrays(feeds):
        if arr.ndim and arr.shape[0] > max_batch:
            raise PayloadTooLarge(f"input {name!r}: batch of {arr.shape[0]} samples, over the limit of {max_batch}"
                                  f"{_hint(hints, 'batch')}")


def check_finite(feeds: Mapping[str, np.ndarray] | np.ndarray, hint: str = "") -> None:
    """:class:`InputError` when a float feed holds NaN or an infinity.

    An int8 model quantizes NaN to some integer and answers plausibly: refuse it instead.

    Example:
        >>> check_finite({"x": np.array([1.0, np.nan])})
        Traceback (most recent call last):
        ...
        edgekit.errors.InputError: input 'x' holds 1 NaN or infinite value(s); send finite numbers
    """
    for name, arr in _arrays(feeds):
        if arr.dtype.kind in "fc":
            bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
            if bad:
                raise InputError(f"input {name!r} holds {bad} NaN or infinite value(s); send finite numbers{hint and ' ' + hint}")


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
