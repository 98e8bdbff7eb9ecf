"""Input-shape fuzzing: hostile feeds for a model that loads (batch 0 / 1 / 10^6, wrong rank or dims,
other dtypes, NaN and inf, non-contiguous and read-only layouts, wrong names and containers), written
as plain data so a forked child can build them after it loaded the model (see :func:`tools.fuzz.fuzz`).

Example:
    >>> import random
    >>> feed_spec(random.Random(1), "feed_layout")["layout"] in ("fortran", "strided", "negative", "readonly", "transposed", "broadcast")
    True
"""

from __future__ import annotations

import random
from typing import Any, Sequence

FEED_MUTATIONS: list[str] = ["feed_batch", "feed_rank", "feed_dims", "feed_dtype", "feed_values", "feed_layout", "feed_wrap"]


def feed_spec(rng: random.Random, kind: str) -> dict[str, Any]:
    """A hostile feed, as data the child turns into arrays (see :func:`build_feeds`).

    Example:
        >>> feed_spec(random.Random(0), "feed_batch")["batch"] in (0, 1, 2, 7, 1000, 100_000, 1_000_000)
        True
    """
    spec: dict[str, Any] = {"kind": kind, "batch": 1, "dims": None, "dtype": None, "fill": "random", "layout": "c",
                            "wrap": "dict"}
    if kind == "feed_batch":
        spec["batch"] = rng.choice((0, 1, 2, 7, 1000, 100_000, 1_000_000))
        spec["fill"] = "zeros"  # a huge random array costs the parent's CPU, not the engine's memory
    elif kind == "feed_rank":
        spec["dims"] = rng.choice(("drop", "add", "scalar", "flat"))
    elif kind == "feed_dims":
        spec["dims"] = rng.choice(("zero", "double", "huge", "one"))
    elif kind == "feed_dtype":
        spec["dtype"] = rng.choice(("float64", "float16", "int8", "uint8", "int64", "bool", "complex64", ">f4",
                                    "object", "<U3", "int32"))
    elif kind == "feed_values":
        spec["fill"] = rng.choice(("nan", "inf", "-inf", "max", "min", "denormal"))
    elif kind == "feed_layout":
        spec["layout"] = rng.choice(("fortran", "strided", "negative", "readonly", "transposed", "broadcast"))
    elif kind == "feed_wrap":
        spec["wrap"] = rng.choice(("array", "list", "nested", "badname", "extra", "missing", "none", "tuple"))
    else:
        raise ValueError(f"unknown feed mutation {kind!r}; known: {FEED_MUTATIONS}")
    return spec


def build_feeds(specs: Sequence[Any], spec: dict[str, Any]) -> tuple[Any, int]:
    """The feeds ``spec`` describes for a model with input ``specs``, and their bytes.

    Example:
        >>> from edgekit.manifest import TensorSpec
        >>> feeds, nbytes = build_feeds([TensorSpec("x", (None, 4), "float32")], {"batch": 3, "dims": None, "dtype": None,
        ...     "fill": "zeros", "layout": "c", "wrap": "dict"})
        >>> feeds["x"].shape, nbytes
        ((3, 4), 48)
    """
    import numpy as np

    arrays = []
    for s in specs:
        shape = [spec["batch"]] + [1 if d is None or d < 0 else int(d) for d in tuple(s.shape)[1:]]
        dims = spec["dims"]
        if dims == "drop":
            shape = shape[:-1]
        elif dims == "add":
            shape = shape + [1]
        elif dims == "scalar":
            shape = []
        elif dims == "flat":
            shape = [int(np.prod(shape))]
        elif dims == "zero" and len(shape) > 1:
            shape[1] = 0
        elif dims == "double" and len(shape) > 1:
            shape[-1] *= 2
        elif dims == "huge" and len(shape) > 1:
            shape[1] = 1 << 20
        elif dims == "one":
            shape = [1] * len(shape)
        dtype = np.dtype(spec["dtype"] or s.dtype)
        fill = spec["fill"]
        if dtype.kind in "OU":
            a = np.full(shape, "x", dtype=dtype)
        elif fill == "zeros":
            a = np.zeros(shape, dtype)
        elif fill in ("nan", "inf", "-inf", "denormal") and dtype.kind == "f":
            a = np.full(shape, {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "denormal": 1e-310}[fill], dtype)
        elif fill in ("nan", "inf", "-inf", "denormal"):
            # The quantized model's input is int8 here: NaN arrives as a float feed it must refuse.
            a = np.full(shape, {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "denormal": 1e-310}[fill], np.float32)
        elif fill in ("max", "min"):
            info = np.finfo(dtype) if dtype.kind in "fc" else (np.iinfo(dtype) if dtype.kind in "iu" else None)
            a = np.full(shape, (info.max if fill == "max" else info.min) if info else True, dtype)
        else:
            a = np.random.default_rng(0).random(shape).astype(dtype) if dtype.kind != "b" else np.ones(shape, bool)
        layout = spec["layout"]
        if layout == "fortran":
            a = np.asfortranarray(a)
        elif layout == "strided" and a.ndim:
            a = np.repeat(a, 2, axis=-1)[..., ::2]
        elif layout == "negative" and a.ndim:
            a = a[::-1]
        elif layout == "readonly":
            a.setflags(write=False)
        elif layout == "transposed" and a.ndim > 1:
            a = np.ascontiguousarray(np.swapaxes(a, 1, -1)).swapaxes(1, -1)
        elif layout == "broadcast" and a.ndim:
            a = np.broadcast_to(a[:1], a.shape)  # zero strides, read-only
        arrays.append(a)
    nbytes = sum(a.nbytes for a in arrays)
    names = [s.name for s in specs]
    wrap = spec["wrap"]
    if wrap == "array":
        return arrays[0], nbytes
    if wrap == "list":
        return arrays, nbytes
    if wrap == "nested":
        return [a.tolist() if a.size < 10_000 else a for a in arrays], nbytes
    if wrap == "badname":
        return {n + "_nope": a for n, a in zip(names, arrays)}, nbytes
    if wrap == "extra":
        return {**dict(zip(names, arrays)), "extra": arrays[0]}, nbytes
    if wrap == "missing":
        return {}, nbytes
    if wrap == "none":
        return None, nbytes
    if wrap == "tuple":
        return tuple(arrays), nbytes
    return dict(zip(names, arrays)), nbytes
