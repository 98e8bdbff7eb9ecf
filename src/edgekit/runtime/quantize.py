"""Quantize float feeds and dequantize outputs of int8 tensors: the reference formulas and the fast,
bit-identical paths a :class:`~edgekit.runtime.session.Session` uses on every call.

Float feeds to an int8 input are quantized exactly as :func:`quantize` does, but in place: the
repeated call divides into per-Session scratch memory, skips the clip when the data is in range,
and casts straight into the engine's input tensor where the engine offers it (LiteRT), so a user
with float images pays about one pass over the input per call, not five plus copies.

Example:
    >>> spec = TensorSpec("x", (None, 3), "int8", 1 / 255, -128)
    >>> x = np.array([[0.0, 0.25, 1.0]], np.float32)
    >>> Quantizer(spec, Scratch())(x).tolist() == quantize(x, spec).tolist() == [[-128, -64, 127]]
    True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgekit.errors import InputError
from edgekit.manifest import TensorSpec


def nan_error(spec: TensorSpec, x: np.ndarray) -> InputError:
    n = int(np.count_nonzero(np.isnan(np.asarray(x, np.float32))))
    return InputError(f"input {spec.name!r} holds {n} NaN value(s), which {spec.describe()} cannot represent: "
                      "replace them first (e.g. np.nan_to_num(x)) or feed a float model")


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float values to the integer representation of a quantized tensor (round, clip).

    The reference for every faster path in the runtime: ``x`` is cast to float32, divided by the
    scale (a division, not a multiplication by ``1/scale``, which rounds differently), rounded
    half to even, shifted by the zero point and clipped, so ``±inf`` and out-of-range values
    saturate to the dtype's limits.

    Raises:
        InputError: ``x`` holds NaN, which no integer can stand for (before, it cast to whatever
            the CPU gave, 0 on x86, with a RuntimeWarning).

    Example:
        >>> quantize(np.array([0.0, 1.0], np.float32), TensorSpec("x", (2,), "int8", 1 / 255, -128)).tolist()
        [-128, 127]
    """
    info = np.iinfo(np.dtype(spec.dtype))
    q = np.round(np.asarray(x, np.float32) / np.float32(spec.scale)) + spec.zero_point
    q = np.clip(q, info.min, info.max)
    if np.isnan(q).any():
        raise nan_error(spec, x)
    return q.astype(spec.dtype)


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Integer tensor values back to float32: ``(q - zero_point) * scale``, in float32.

    Example:
        >>> dequantize(np.array([-128, 127], np.int8), TensorSpec("x", (2,), "int8", 0.5, -128)).tolist()
        [0.0, 127.5]
    """
    # Two passes into one new array (the caller keeps it), the same float32 operations as
    # (q.astype(float32) - zp) * scale.
    out = np.subtract(q, np.float32(spec.zero_point), dtype=np.float32)
    return np.multiply(out, np.float32(spec.scale), out=out)


class Scratch:
    """Grow-only work memory of one Session, used under its lock.

    One block per dtype, viewed at each call's shape: batch sizes that vary do not pile up a
    buffer per shape.
    """

    def __init__(self) -> None:
        self._mem: dict[np.dtype, np.ndarray] = {}

    def get(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        n = math.prod(shape)
        mem = self._mem.get(dtype)
        if mem is None or mem.size < n:
            mem = self._mem[dtype] = np.empty(n, dtype)
        return mem[:n].reshape(shape)


def _wrap_twin(dtype: np.dtype, low: int) -> np.dtype | None:
    """The signed or unsigned integer dtype of ``dtype``'s width whose minimum is ``low``, or None."""
    for twin in (np.dtype(f"int{8 * dtype.itemsize}"), np.dtype(f"uint{8 * dtype.itemsize}")):
        if np.iinfo(twin).min == low:
            return twin
    return None


class Quantizer:
    """:func:`quantize` for one input spec, bit-identical, in the passes that measured fastest.

    ``prepare`` does the float work in scratch memory and raises before anything is written;
    ``store`` casts the result into the destination (the engine's own input tensor, or scratch).
    """

    def __init__(self, spec: TensorSpec, scratch: Scratch) -> None:
        dtype = np.dtype(spec.dtype)
        info, zp = np.iinfo(dtype), int(spec.zero_point)
        self.spec, self.dtype, self.scratch = spec, dtype, scratch
        self.scale, self.zp = np.float32(spec.scale), np.float32(zp)
        # round(v) + zp is in [min, max] iff round(v) is in [min - zp, max - zp]; the bounds are
        # integers, so clipping v to them before rounding equals the reference's clip afterwards.
        self.lo, self.hi = np.float32(info.min - zp), np.float32(info.max - zp)
        # When [min - zp, max - zp] is exactly the range of a same-width integer type (zp 0, or
        # -128 for int8), cast round(v) there and add zp with wraparound: exact, because the true
        # result fits the dtype, and an integer add is a quarter of a float pass.
        self.twin = _wrap_twin(dtype, info.min - zp)
        self.shift = None if self.twin is None else np.array(zp, np.int64).astype(self.twin)[()]

    def prepare(self, x: np.ndarray) -> np.ndarray:
        buf = self.scratch.get(x.shape, np.float32)
        np.divide(x, self.scale, out=buf, dtype=np.float32)  # float64 feeds: cast first, as the reference
        lo, hi = buf.min(), buf.max()  # two fast reductions instead of a slow clip for in-range data
        if not (lo >= self.lo and hi <= self.hi):
            if np.isnan(lo) or np.isnan(hi):  # min/max propagate NaN: found for free
                raise nan_error(self.spec, x)
            np.clip(buf, self.lo, self.hi, out=buf)
        np.rint(buf, out=buf)  # half to even, as np.round
        if self.twin is None:
            np.add(buf, self.zp, out=buf)
        return buf

    def store(self, out: np.ndarray, buf: np.ndarray) -> None:
        if self.twin is None:
            np.copyto(out, buf, casting="unsafe")  # integral and in range: exact
            return
        k = out.view(self.twin)
        np.copyto(k, buf, casting="unsafe")
        if self.shift:
            np.add(k, self.shift, out=k)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Into scratch, for engines that take an array (ONNX Runtime copies it during run)."""
        buf = self.prepare(x)
        out = self.scratch.get(x.shape, self.dtype)
        self.store(out, buf)
        return out


class Pixels:
    """uint8 feeds that stand for ``u / divisor`` floats, for one input: the float path's numbers.

    A quantized input gets a 256-entry table built with :func:`quantize` (so it is the float
    path's result for every possible pixel, for any scale and zero point); when that table is a
    constant shift of 0..255 (scale 1/255, zero point -128 with divisor 255: ``u - 128``) it is
    one integer add, else a table look-up. A float input gets one division.
    """

    def __init__(self, spec: TensorSpec, divisor: float, quantized: bool, scratch: Scratch) -> None:
        self.dtype, self.scratch = np.dtype(spec.dtype), scratch
        self.divisor = np.float32(divisor)
        self.lut = self.shift = None
        if quantized:
            self.lut = quantize(np.arange(256, dtype=np.float32) / self.divisor, spec)
            if self.dtype.itemsize == 1:
                bits = self.lut.view(np.uint8)
                if np.array_equal(bits, (np.arange(256) + int(bits[0])).astype(np.uint8)):
                    self.shift = bits[0]

    def store(self, out: np.ndarray, u: np.ndarray) -> None:
        if self.shift is not None:
            np.add(u, self.shift, out=out.view(np.uint8))  # uint8 wraps: (u + c) mod 256, the table exactly
        elif self.lut is not None:
            np.take(self.lut, u, out=out, mode="wrap")  # uint8 indices are all in range; 'wrap' skips the check
        else:
            np.divide(u, self.divisor, out=out, dtype=np.float32)

    def __call__(self, u: np.ndarray) -> np.ndarray:
        out = self.scratch.get(u.shape, self.dtype)
        self.store(out, u)
        return out


def check_divisor(value: Any) -> float | None:
    if value is None:
        return None
    d = float(value) if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) else math.nan
    if not (math.isfinite(d) and d > 0):
        raise InputError(f"uint8_divisor must be a positive number (255 for pixels 0..255 taken as 0..1) or None, got {value!r}")
    return d


__all__ = ["Pixels", "Quantizer", "Scratch", "check_divisor", "dequantize", "nan_error", "quantize"]
