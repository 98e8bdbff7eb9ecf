"""Session: numpy in, numpy out, with feeds checked and int8 I/O (de)quantized for you.

Engines' interpreters are not thread-safe; a Session serialises ``run`` with a lock so one Session
can be shared by threads (each call sees consistent results; for parallel throughput open one
Session per thread).

Float <-> int8 conversion of feeds and outputs lives in :mod:`edgekit.runtime.quantize`.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgekit.errors import InputError
from edgekit.manifest import Artifact, TensorSpec
from edgekit.runtime.quantize import Pixels, Quantizer, Scratch, check_divisor, dequantize, quantize

Feeds = "Mapping[str, np.ndarray] | Sequence[np.ndarray] | np.ndarray"
# Engine bytes per input byte to assume where neither the engine (Session.sample_bytes) nor the
# model's layers say what a sample costs: serve's batch limit and convert's batch sizes use it. Keras
# applications measured (sum of layer outputs / input bytes, 224x224x3 float32): MobileNetV3Small
# ~35, MobileNetV2 ~145, EfficientNetB0 ~165, ResNet50 ~245 -- but a subclassed model's opaque
# layer is as often an MLP or a small CNN; 32 errs large for those and, for the big ones, still
# keeps a batch near the budget's order of magnitude (27 instead of 6 at 512 MiB for MobileNetV2).
OPAQUE_ACTIVATION_FACTOR = 32
_MISSING = object()


def _trim_heap() -> None:
    # glibc keeps freed blocks under its (dynamic, up to 32 MiB) mmap threshold in the heap, so a
    # large batch's temporaries stay resident after they are freed; malloc_trim hands them back.
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim this way
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


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
        self._uint8_divisor = check_divisor(uint8_divisor)
        # Fast path for one-input models: the verdict of a full check, cached per (dtype, shape) of
        # the feed as the function that runs such a feed, so repeated calls skip re-checking.
        self._one_in = len(self.inputs) == 1
        self._name0 = self.inputs[0].name if self.inputs else None
        self._fast: dict[tuple[Any, ...], Any] = {}
        self._last: tuple[Any, Any, Any] = (None, None, None)
        self._scratch = Scratch()
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
        # Engines with work limits refuse a batch before we spend memory converting its feed, and
        # count the times they re-created themselves to give a large batch's memory back.
        self._check_batch = getattr(engine, "check_batch", None)
        self._rebuilds = getattr(engine, "rebuilds", None)

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    @property
    def uint8_divisor(self) -> float | None:
        return self._uint8_divisor

    @property
    def sample_bytes(self) -> int | None:
        """Bytes of engine tensors each sample of a batch adds (measured once), or ``None`` if unknown.

        What a server sizes its batch limit from: a batch of ``n`` needs about ``n * sample_bytes``
        of engine memory. An upper bound where the engine shares memory between tensors (LiteRT's
        arena does). ``None`` where the engine does not expose tensor sizes (ONNX Runtime, CoreML,
        TensorRT), and for models whose batch cannot change.

        Example:
            >>> s = load("out/", target="tflite:int8")  # doctest: +SKIP
            >>> s.sample_bytes  # doctest: +SKIP
            10570
        """
        return getattr(self._engine, "sample_bytes", None)

    @uint8_divisor.setter
    def uint8_divisor(self, value: float | None) -> None:
        d = check_divisor(value)
        with self._lock:  # cached feed handlers were built for the old meaning
            self._uint8_divisor = d
            self._fast = {}
            self._last = (None, None, None)

    def prepare(self, feeds: Any) -> list[np.ndarray]:
        """Check feeds against the input specs and convert them to engine arrays (in input order).

        Raises:
            InputError: as :meth:`run`; also a batch the engine's tensor limit refuses, before any
                conversion is done.
        """
        arrays = self._order(feeds)
        if self._check_batch is not None and arrays and arrays[0].ndim:
            self._check_batch(max(a.shape[0] if a.ndim else 1 for a in arrays))
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
                outs = self._engine.run(arrays)
            self._after_rebuild()
            return self._outputs(outs)
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
        self._after_rebuild()
        return self._outputs(outs)

    def _after_rebuild(self) -> None:
        """The engine gave a large batch's memory back: give back our conversion scratch too.

        The cached handlers hold the old scratch, so they go with it (they are rebuilt on the next
        call of each kind). Checked off the repeated-call fast path only: a batch that repeats is
        a workload, and the engine keeps its memory then too.
        """
        n = getattr(self._engine, "rebuilds", None)
        if n != self._rebuilds:
            with self._lock:
                self._rebuilds = n
                self._scratch = Scratch()
                self._fast = {}
                self._last = (None, None, None)
            _trim_heap()

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
            px = Pixels(spec, self._uint8_divisor, quantized, self._scratch)
            if into is not None:
                return lambda a: into(a.shape, px.store, a)
            return lambda a: run1(px(a))
        if quantized and arr.dtype.kind == "f":
            q = Quantizer(spec, self._scratch)
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
                batch_size: int = 64, progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """Outputs (in output order) of ``session`` over whole arrays, in batches.

    ``inputs`` is a list in ``session.inputs`` order or, safer for several inputs, ``{name: array}``
    (converters may reorder inputs, e.g. TFLite sorts them by name). Falls back to one sample at a
    time when the model's batch dimension is fixed. ``progress`` is called with the number of
    samples done after each batch.

    Example:
        >>> outs = run_batched(session, {"image": x_eval})  # doctest: +SKIP
    """
    if isinstance(inputs, Mapping):
        inputs = session._order(inputs)
    n = len(inputs[0])
    if n == 0:
        raise InputError("no samples to run")
    chunks: list[list[np.ndarray]] = []
    try:
        first = session.run([a[: min(batch_size, n)] for a in inputs])
        chunks.append([first[name] for name in session.output_names])  # the probe is the first batch
    except InputError:
        batch_size = 1
    for start in range(batch_size if chunks else 0, n, batch_size):  # after the probe's batch, if it ran
        if progress is not None:
            progress(start)
        res = session.run([a[start : start + batch_size] for a in inputs])
        chunks.append([res[name] for name in session.output_names])
    if progress is not None:
        progress(n)
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(session.outputs))]
