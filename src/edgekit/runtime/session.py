"""Session: numpy in, numpy out, with feeds checked and int8 I/O (de)quantized for you.

Engines' interpreters are not thread-safe; a Session serialises ``run`` with a lock so one Session
can be shared by threads (each call sees consistent results; for parallel throughput open one
Session per thread).

Float feeds to an int8 input are quantized exactly as :func:`quantize` does, but in place: the
repeated call divides into per-Session scratch memory, skips the clip when the data is in range,
and casts straight into the engine's input tensor where the engine offers it (LiteRT), so a user
with float images pays about one pass over the input per call, not five plus copies.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from edgekit.errors import InputError
from edgekit.manifest import Artifact, TensorSpec

Feeds = "Mapping[str, np.ndarray] | Sequence[np.ndarray] | np.ndarray"
_MISSING = object()


def _nan_error(spec: TensorSpec, x: np.ndarray) -> InputError:
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
        raise _nan_error(spec, x)
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


class _Scratch:
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


class _Quantizer:
    """:func:`quantize` for one input spec, bit-identical, in the passes that measured fastest.

    ``prepare`` does the float work in scratch memory and raises before anything is written;
    ``store`` casts the result into the destination (the engine's own input tensor, or scratch).
    """

    def __init__(self, spec: TensorSpec, scratch: _Scratch) -> None:
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
                raise _nan_error(self.spec, x)
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


class _Pixels:
    """uint8 feeds that stand for ``u / divisor`` floats, for one input: the float path's numbers.

    A quantized input gets a 256-entry table built with :func:`quantize` (so it is the float
    path's result for every possible pixel, for any scale and zero point); when that table is a
    constant shift of 0..255 (scale 1/255, zero point -128 with divisor 255: ``u - 128``) it is
    one integer add, else a table look-up. A float input gets one division.
    """

    def __init__(self, spec: TensorSpec, divisor: float, quantized: bool, scratch: _Scratch) -> None:
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


def _check_divisor(value: Any) -> float | None:
    if value is None:
        return None
    d = float(value) if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) else math.nan
    if not (math.isfinite(d) and d > 0):
        raise InputError(f"uint8_divisor must be a positive number (255 for pixels 0..255 taken as 0..1) or None, got {value!r}")
    return d


class Session:
    """A loaded model ready to ``run``.

    Attributes:
        inputs: Engine input specs (int8 inputs carry scale/zero point).
        outputs: Engine output specs.
        path: The artifact file.
        format: ``"tflite"`` ...
        precision: From the manifest when known, else ``None``.
        quantize_io: Whether float feeds to int8 inputs are quantized and int8 outputs dequantized.
        uint8_divisor: What a uint8 feed to a float or quantized input means: ``None`` (the default)
            refuses it, a number ``d`` takes pixel ``u`` as the float ``u / d`` (``255`` for the
            usual 0..255 -> 0..1 preprocessing), bit-identical to feeding
            ``u.astype(np.float32) / d`` and much faster. A model's float range is a property of
            how it was trained, which the file does not record, hence an explicit choice. Inputs
            whose engine dtype is uint8 (``io=uint8`` models) always take uint8 feeds as raw values.
        artifact: The manifest entry this Session was loaded from, if any.
        info: Engine name/version/threads and how the artifact was chosen.

    Example:
        >>> s = load("out/")  # doctest: +SKIP
        >>> s.run({"image": np.zeros((1, 8, 8, 1), np.float32)})["logits"].shape  # doctest: +SKIP
        (1, 10)
        >>> s.uint8_divisor = 255  # doctest: +SKIP
        >>> s.run(np.zeros((1, 8, 8, 1), np.uint8))["logits"].shape  # doctest: +SKIP
        (1, 10)
    """

    def __init__(self, engine: Any, *, path: Any, format: str, precision: str | None = None,
                 quantize_io: bool = True, artifact: Artifact | None = None, info: dict[str, Any] | None = None,
                 uint8_divisor: float | None = None) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self.inputs: tuple[TensorSpec, ...] = tuple(engine.inputs)
        self.outputs: tuple[TensorSpec, ...] = tuple(engine.outputs)
        self.path = path
        self.format = format
        self.precision = precision
        self.quantize_io = quantize_io
        self.artifact = artifact
        self.info = {**engine.info(), **(info or {})}
        self._uint8_divisor = _check_divisor(uint8_divisor)
        # Fast path for one-input models: the verdict of a full check, cached per (dtype, shape) of
        # the feed as the function that runs such a feed, so repeated calls skip re-checking.
        self._one_in = len(self.inputs) == 1
        self._name0 = self.inputs[0].name if self.inputs else None
        self._fast: dict[tuple[Any, ...], Any] = {}
        self._last: tuple[Any, Any, Any] = (None, None, None)
        self._scratch = _Scratch()
        deq = [quantize_io and s.quantized for s in self.outputs]
        self._plain_out = not any(deq)
        self._deq = tuple(deq)
        self._out_names = tuple(s.name for s in self.outputs)
        self._out0 = self._out_names[0] if self._out_names else None
        self._one_plain_out = self._plain_out and len(self._out_names) == 1
        # Engines may offer a one-input fast call (LiteRT does); otherwise wrap the generic run.
        self._run1 = getattr(engine, "run1", None) or (lambda a: engine.run([a]))
        # ... and a call that lets us write the input into the engine's own tensor (LiteRT).
        self._run1_into = getattr(engine, "run1_into", None)

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    @property
    def uint8_divisor(self) -> float | None:
        return self._uint8_divisor

    @uint8_divisor.setter
    def uint8_divisor(self, value: float | None) -> None:
        d = _check_divisor(value)
        with self._lock:  # cached feed handlers were built for the old meaning
            self._uint8_divisor = d
            self._fast = {}
            self._last = (None, None, None)

    def prepare(self, feeds: Any) -> list[np.ndarray]:
        """Check feeds against the input specs and convert them to engine arrays (in input order)."""
        arrays = self._order(feeds)
        return [self._convert(spec, arr) for spec, arr in zip(self.inputs, arrays)]

    def run(self, feeds: Any) -> dict[str, np.ndarray]:
        """Run one batch.

        Args:
            feeds: ``{name: array}``, a list of arrays in input order, or one array for a one-input model.

        Returns:
            ``{output name: array}`` in output order; int8 outputs dequantized to float32 unless
            ``quantize_io`` is off.

        Raises:
            InputError: unknown/missing names, wrong rank, shape or dtype (message names the expected
                spec); NaN fed to a quantized input.
        """
        # Fast path: one array for a one-input model, of the same kind as the last call. Everything
        # here was checked when that kind was first seen; only the lock and the engine call remain.
        if self._one_in and type(feeds) is np.ndarray:
            last_dtype, last_shape, call = self._last  # one tuple, read whole (thread-safe)
            if feeds.dtype is last_dtype and feeds.shape == last_shape:
                with self._lock:
                    outs = call(feeds)
                if self._one_plain_out:
                    return {self._out0: outs[0]}
                return self._outputs(outs)
        return self._run_checked(feeds)

    def _run_checked(self, feeds: Any) -> dict[str, np.ndarray]:
        """``run`` for anything but the repeated fast-path call: full checks, handler cached."""
        arr = None
        if self._one_in:
            if type(feeds) is np.ndarray:
                arr = feeds
            elif type(feeds) is dict and len(feeds) == 1:
                arr = feeds.get(self._name0)
        if arr is None:
            arrays = self.prepare(feeds)
            with self._lock:
                return self._outputs(self._engine.run(arrays))
        key = (arr.dtype, arr.shape)
        call = self._fast.get(key)
        if call is None:
            arrays = self.prepare([arr])  # checks (raises for a bad feed) and the reference conversion
            call = self._caller(arr, arrays[0])
            if len(self._fast) > 64:  # bounded: batch sizes can vary without limit
                self._fast.clear()
            self._fast[key] = call
            with self._lock:
                outs = self._engine.run(arrays)
        else:
            with self._lock:
                outs = call(arr)
        self._last = (arr.dtype, arr.shape, call)
        return self._outputs(outs)

    def _outputs(self, outs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        if self._plain_out:
            return dict(zip(self._out_names, outs))
        return {spec.name: dequantize(o, spec) if d else o for spec, d, o in zip(self.outputs, self._deq, outs)}

    def _caller(self, arr: np.ndarray, prepared: np.ndarray) -> Any:
        """How to run this kind of feed again (under the lock), as ``prepare`` converted it.

        Every handler gives the numbers ``prepare`` gave (the tests hold them to that); where the
        engine lets us, the handler writes into the engine's input tensor instead of an array it
        then copies.
        """
        run1, into = self._run1, self._run1_into
        if prepared is arr:
            return run1
        spec = self.inputs[0]
        want = np.dtype(spec.dtype)
        quantized = spec.quantized and self.quantize_io
        if arr.size == 0:  # nothing to gain; the reference handles the degenerate case
            return lambda a: run1(self._convert(spec, a))
        if arr.dtype == np.uint8 and self._uint8_divisor is not None and (quantized or want == np.float32):
            px = _Pixels(spec, self._uint8_divisor, quantized, self._scratch)
            if into is not None:
                return lambda a: into(a.shape, px.store, a)
            return lambda a: run1(px(a))
        if quantized and arr.dtype.kind == "f":
            q = _Quantizer(spec, self._scratch)
            if into is not None:
                return lambda a: into(a.shape, q.store, q.prepare(a))  # prepare raises before the engine is touched
            return lambda a: run1(q(a))
        if into is not None and want == np.float32 and arr.dtype.kind == "f":
            return lambda a: into(a.shape, np.copyto, a)  # float64/float16 -> float32 in the copy itself
        if want.kind == "f" and arr.dtype.kind == "f":
            return lambda a: run1(np.ascontiguousarray(a, dtype=want))
        return lambda a: run1(self._convert(spec, a))  # rare pairs: the reference conversion itself

    def run_prepared(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run engine-ready arrays from :meth:`prepare` (what ``bench`` times: no per-call checks)."""
        with self._lock:
            return self._engine.run(arrays)

    def _order(self, feeds: Any) -> list[np.ndarray]:
        expected = ", ".join(s.describe() for s in self.inputs)
        if isinstance(feeds, Mapping):
            unknown = [k for k in feeds if k not in self.input_names]
            if unknown:
                raise InputError(f"unknown input name(s) {unknown}; this model takes {expected}")
            missing = [n for n in self.input_names if n not in feeds]
            if missing:
                raise InputError(f"missing input(s) {missing}; this model takes {expected}")
            return [np.asarray(feeds[n]) for n in self.input_names]
        if isinstance(feeds, np.ndarray) or np.isscalar(feeds):
            feeds = [feeds]
        if not isinstance(feeds, (list, tuple)):
            raise InputError(f"feeds must be a dict, a list of arrays or one array, got {type(feeds).__name__}")
        if len(feeds) != len(self.inputs):
            raise InputError(f"got {len(feeds)} input array(s) but this model takes {len(self.inputs)}: {expected}")
        return [np.asarray(f) for f in feeds]

    def _convert(self, spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
        if arr.ndim != len(spec.shape):
            raise InputError(f"input {spec.name!r} got shape {arr.shape} (rank {arr.ndim}) but expects {spec.describe()}")
        if arr.ndim and arr.shape[0] == 0:
            raise InputError(f"input {spec.name!r} got an empty batch {arr.shape}; expects {spec.describe()} with at least one sample")
        # Only the batch axis may differ from a fixed shape; other fixed dims must match.
        for axis, (got, want) in enumerate(zip(arr.shape, spec.shape)):
            if axis > 0 and want is not None and got != want:
                raise InputError(f"input {spec.name!r} got shape {arr.shape} but expects {spec.describe()}")
        want = np.dtype(spec.dtype)
        if arr.dtype == want:
            return arr  # engines copy strided arrays themselves (LiteRT's SetTensor does); uint8 -> uint8 stays raw
        quantized = spec.quantized and self.quantize_io
        if arr.dtype == np.uint8 and self._uint8_divisor is not None and (quantized or want.kind == "f"):
            # The documented meaning of a pixel feed; the fast path is held bit-identical to this.
            arr = np.asarray(arr, np.float32) / np.float32(self._uint8_divisor)
            if arr.dtype == want:
                return arr
        if quantized and arr.dtype.kind == "f":
            return quantize(arr, spec)
        if want.kind == "f" and arr.dtype.kind == "f":
            return np.ascontiguousarray(arr, dtype=want)  # float64 -> float32 is what numpy users mean
        how = " (pass float data to have it quantized, or raw values as this dtype)" if spec.quantized else ""
        if arr.dtype == np.uint8 and (quantized or want.kind == "f"):
            how = (" (for 0..255 pixels set session.uint8_divisor = 255 to have them taken as x / 255, "
                   "the float path's numbers; or pass float data)")
        raise InputError(f"input {spec.name!r} got dtype {arr.dtype} but expects {spec.describe()}{how}")

    def __repr__(self) -> str:
        ins = ", ".join(s.describe() for s in self.inputs)
        return f"Session({self.format}:{self.precision or '?'} {getattr(self.path, 'name', self.path)}; inputs: {ins})"


def run_batched(session: Session, inputs: "Sequence[np.ndarray] | Mapping[str, np.ndarray]",
                batch_size: int = 64) -> list[np.ndarray]:
    """Outputs (in output order) of ``session`` over whole arrays, in batches.

    ``inputs`` is a list in ``session.inputs`` order or, safer for several inputs, ``{name: array}``
    (converters may reorder inputs, e.g. TFLite sorts them by name). Falls back to one sample at a
    time when the model's batch dimension is fixed.

    Example:
        >>> outs = run_batched(session, {"image": x_eval})  # doctest: +SKIP
    """
    if isinstance(inputs, Mapping):
        inputs = session._order(inputs)
    n = len(inputs[0])
    if n == 0:
        raise InputError("no samples to run")
    try:
        session.run([a[: min(batch_size, n)] for a in inputs])
    except InputError:
        batch_size = 1
    chunks: list[list[np.ndarray]] = []
    for start in range(0, n, batch_size):
        res = session.run([a[start : start + batch_size] for a in inputs])
        chunks.append([res[name] for name in session.output_names])
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(session.outputs))]
