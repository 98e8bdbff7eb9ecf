"""LiteRT backend for ``.tflite`` files: ai-edge-litert, then tflite_runtime, then tf.lite.

LiteRT's Python ``Interpreter`` runs on one thread unless told otherwise, which is the most common
reason a Pi benchmark looks 3x slower than it should; we default to the machine's cores.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from edgekit.errors import BackendError, EdgekitError, InputError, MissingDependencyError
from edgekit.manifest import TensorSpec
from edgekit.registry import missing
from edgekit.runtime.backends.base import BackendBase, read_model_file
from edgekit.runtime.backends.tflite_checks import check_structure


def default_threads() -> int:
    """Cores this process may use (respects CPU affinity / cgroup pinning where visible)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _interpreter_class() -> tuple[Any, str, str]:
    """(Interpreter class, engine name, version), in our order of preference."""
    try:
        from ai_edge_litert import interpreter as mod

        import ai_edge_litert

        return mod.Interpreter, "ai-edge-litert", getattr(ai_edge_litert, "__version__", _dist_version("ai-edge-litert"))
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as mod  # type: ignore[import-not-found]

        return mod.Interpreter, "tflite_runtime", _dist_version("tflite-runtime")
    except ImportError:
        pass
    try:
        # Last resort only: the slim runtime must not need TensorFlow.
        import tensorflow as tf  # type: ignore[import-not-found]

        return tf.lite.Interpreter, "tf.lite", tf.__version__
    except ImportError:
        raise MissingDependencyError("ai-edge-litert", "tflite", "running .tflite models") from None


def open_interpreter(model_path: str | os.PathLike[str] | None = None, model_content: bytes | None = None, *,
                     preserve_all_tensors: bool = False, default_delegates: bool = False) -> Any:
    """The engine's own ``Interpreter`` for a ``.tflite`` file or its bytes, not yet allocated.

    For callers that need what :class:`LiteRTEngine` hides (every tensor, the op graph), e.g. the
    converter's calibration checks and int8 sensitivity search. The engine is picked as for
    :class:`LiteRTEngine` (ai-edge-litert, then tflite_runtime, then tf.lite).

    Args:
        model_path: The model file (or give ``model_content``).
        model_content: The model's bytes.
        preserve_all_tensors: Keep intermediate tensors readable after ``invoke()``.
        default_delegates: Apply the default delegates (XNNPACK). Off by default: analysis wants the
            original op graph, not XNNPACK's fused one.

    Raises:
        MissingDependencyError: no LiteRT engine is installed.
        InputError: neither or both of ``model_path`` and ``model_content`` were given.

    Example:
        >>> it = open_interpreter("model.tflite", preserve_all_tensors=True)  # doctest: +SKIP
        >>> it.allocate_tensors()  # doctest: +SKIP
    """
    if (model_path is None) == (model_content is None):
        raise InputError("open_interpreter needs exactly one of model_path and model_content")
    cls, _, _ = _interpreter_class()
    kwargs: dict[str, Any] = {"model_path": str(model_path)} if model_path is not None else {"model_content": model_content}
    if preserve_all_tensors:
        kwargs["experimental_preserve_all_tensors"] = True
    if not default_delegates:
        kwargs["experimental_op_resolver_type"] = _resolver(cls, "BUILTIN_WITHOUT_DEFAULT_DELEGATES")
    return cls(**kwargs)


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return "unknown"


_SIG_PREFIX = re.compile(r"^serving_default_")
# What LiteRT's Python wrapper raises for malformed models (a corrupt name even gives UnicodeDecodeError).
ENGINE_ERRORS = (ValueError, RuntimeError, TypeError, IndexError, KeyError, UnicodeDecodeError, OverflowError)


def _default_tensor_limit() -> int:
    # An eighth of the machine's memory, at most 2 GiB: past that the OOM killer, not a clean
    # error, is what a flipped shape byte or a huge request batch meets (a 4 GB Pi gets 512 MiB).
    # The estimate sums tensors without LiteRT's memory reuse (~3x the real RSS), so 2 GiB still
    # takes MobileNetV2 224x224 at batch 64; EDGEKIT_MAX_TENSOR_BYTES raises it.
    try:
        phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        phys = 16 << 30
    return max(64 << 20, min(2 << 30, phys // 8))


# Refuse a load or a batch whose tensors would need more than this (bytes): a flipped byte in a
# shape can ask for terabytes, a request for a batch of 500,000. Read at each check, so a caller
# (tools/fuzz.py) may lower it at run time.
MAX_TENSOR_BYTES = int(os.environ.get("EDGEKIT_MAX_TENSOR_BYTES") or _default_tensor_limit())
# After a call whose batch needed this many more bytes than batch 1, the interpreter is rebuilt
# at its load shape: LiteRT's arena (and XNNPACK's workspace) only ever grow, so a resize back
# keeps the memory of the largest batch ever seen.
SHRINK_BYTES = int(os.environ.get("EDGEKIT_SHRINK_TENSOR_BYTES") or 32 << 20)
# ... and at least this many times the model's own tensors at load: a 224x224 model needs ~30 MB
# more per sample, and rebuilding it (~15 ms plus XNNPACK's weight packing) after every request
# of a client alternating batch 2 and 3 would cost more than the memory it returns.
SHRINK_FACTOR = 8
# Batches up to this size are not checked against the limit until the per-sample figure has
# been measured for a larger one (measuring runs the model twice more on the reference kernels).
UNCHECKED_BATCH = 64


def human_bytes(n: float) -> str:
    """``n`` bytes as ``"2.3 GiB"`` / ``"48 MiB"`` / ``"512 KiB"``, for messages.

    Example:
        >>> human_bytes(2.3 * 2**30), human_bytes(48 << 20), human_bytes(512 << 10)
        ('2.3 GiB', '48 MiB', '512 KiB')
    """
    if n >= 1 << 30:
        return f"{n / 2**30:.1f} GiB"
    if n >= 1 << 20:
        return f"{n / 2**20:.0f} MiB"
    return f"{n / 2**10:.0f} KiB"


def _tensor_bytes(it: Any) -> int:
    """Bytes of every tensor of ``it`` at its current shapes (weights included)."""
    total = 0
    for d in it.get_tensor_details():
        n = 1
        for dim in d["shape"]:
            n *= max(int(dim), 1)
        total += n * np.dtype(d["dtype"]).itemsize
    return total


def _check_tensor_sizes(it: Any, path: Path) -> None:
    limit = MAX_TENSOR_BYTES
    if _tensor_bytes(it) > limit:
        raise BackendError(
            f"{path.name} declares more than {limit >> 20} MiB of tensors (corrupt shapes?); "
            "set EDGEKIT_MAX_TENSOR_BYTES to raise the limit if the model is really that large"
        )


def _spec(name: str, d: dict[str, Any]) -> TensorSpec:
    shape = d.get("shape_signature")
    if shape is None or len(shape) == 0:
        shape = d["shape"]
    scale, zp = d.get("quantization", (0.0, 0))
    dtype = np.dtype(d["dtype"]).name
    quantized = bool(scale) and dtype in ("int8", "uint8", "int16")
    return TensorSpec(
        name=name,
        shape=tuple(int(x) for x in shape),
        dtype=dtype,
        scale=float(scale) if quantized else None,
        zero_point=int(zp) if quantized else None,
    )


def read_model(path: Path) -> bytes:
    """A ``.tflite`` file's bytes, read once (regular files only), with the clear messages for the common faults.

    Example:
        >>> read_model(Path("/dev/zero"))
        Traceback (most recent call last):
        ...
        edgekit.errors.BackendError: model file /dev/zero is a character device, not a regular file: refusing to read it
    """
    return read_model_file(path, ".tflite")


def _check_content(data: bytes, path: Path) -> None:
    # LiteRT verifies the flatbuffer itself; these checks give a clearer message for the common cases.
    if len(data) < 8:
        raise BackendError(f"{path.name} is not a TFLite model: the file is {len(data)} bytes (empty or truncated)")
    if data[4:8] != b"TFL3":
        raise BackendError(f"{path.name} is not a TFLite model: missing the 'TFL3' file identifier (wrong format or corrupt)")
    check_structure(data, path.name)  # indices the verifier passes and the engine then trusts (segfaults)


class LiteRTEngine:
    """One TFLite interpreter with named, ordered inputs and outputs, running from bytes in memory.

    The model is read once (or given as ``content``, bytes the caller has verified) and handed to
    LiteRT as ``model_content``: LiteRT maps a model *file*, and a file truncated on disk under a
    mapping kills the process with SIGBUS; bytes we own cannot change under a running engine.

    Work limits: every batch is checked against :data:`MAX_TENSOR_BYTES` before the engine
    allocates for it (``sample_bytes`` x batch), and actual tensor sizes again after it did; after
    an occasional large batch the interpreter is rebuilt from the bytes so memory returns.
    """

    def __init__(self, path: Path, num_threads: int | None = None, use_xnnpack: bool = True,
                 delegates: Sequence[str | tuple[str, dict[str, str]]] = (), *, content: bytes | None = None) -> None:
        cls, self.engine, self.version = _interpreter_class()
        self._cls = cls
        self.path = Path(path)
        self.num_threads = default_threads() if num_threads is None else int(num_threads)
        if self.num_threads < 1:
            raise InputError(f"num_threads must be >= 1, got {num_threads}")
        self._content = read_model(self.path) if content is None else bytes(content)
        _check_content(self._content, self.path)
        kwargs: dict[str, Any] = {"model_content": self._content, "num_threads": self.num_threads}
        if not use_xnnpack:
            # OpResolverType lives in the interpreter module of each flavour.
            kwargs["experimental_op_resolver_type"] = _resolver(cls, "BUILTIN_WITHOUT_DEFAULT_DELEGATES")
        self.use_xnnpack = use_xnnpack
        self.delegates = [d if isinstance(d, str) else d[0] for d in delegates]
        if delegates:
            kwargs["experimental_delegates"] = [_load_delegate(cls, d) for d in delegates]
        self._kwargs = kwargs
        self._measured: tuple[int, int] | None | bool = False  # (bytes at batch 1, per extra sample); False: not yet
        self._alloc_big = False  # the interpreter holds memory of a large batch
        self._shrink_after = False  # rebuild it after the call in flight
        self._repeat: list[tuple[int, ...]] | None = None  # the last large batch's shapes (twice in a row: keep it)
        self.rebuilds = 0  # interpreters re-created to return memory (callers drop their own big buffers then)
        from edgekit.quiet import captured_output

        try:
            # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" from C++ on load.
            with captured_output():
                self._it = cls(**kwargs)
                _check_tensor_sizes(self._it, self.path)
                self._check_stored_batch()
                self._it.allocate_tensors()
                # Stored shapes are those of the inputs only; allocating propagates them through
                # the graph, so a batch edited into the file shows here at the latest.
                _check_tensor_sizes(self._it, self.path)
            # A file that passes the flatbuffer verifier can still hold garbage names or indices.
            self._map_signature()
        except ENGINE_ERRORS as exc:
            if "Flex delegate" in str(exc):  # converted with select_tf_ops=true: the TF kernels are not linked in
                raise BackendError(
                    f"{self.path.name} uses Select TF ops (Flex), which {self.engine} cannot run: it needs a "
                    "TFLite/LiteRT build with the Flex delegate linked in (on Android the tensorflow-lite-select-tf-ops "
                    "library; the ai-edge-litert, tflite_runtime and tensorflow pip wheels have none), or re-convert "
                    "without select_tf_ops (e.g. build LSTM/GRU layers with unroll=True)") from None
            raise BackendError(f"cannot load {self.path.name} with {self.engine}: {' '.join(str(exc).split())[:300]}") from None

    @property
    def content(self) -> bytes:
        """The model bytes this engine runs (read once at load)."""
        return self._content

    @property
    def sample_bytes(self) -> int | None:
        """Bytes of tensors each further batch sample needs (measured once), ``None`` if it cannot be measured."""
        m = self._measure()
        return m[1] if m else None

    def needed_bytes(self, batch: int) -> int | None:
        """Estimated bytes of this model's tensors at batch ``batch`` (weights included), or ``None``.

        Example:
            >>> eng = LiteRTEngine(Path("model.tflite"), num_threads=1)  # doctest: +SKIP
            >>> eng.needed_bytes(1000) > eng.needed_bytes(1)  # doctest: +SKIP
            True
        """
        m = self._measure()
        return None if not m else m[0] + max(int(batch) - 1, 0) * m[1]

    def check_batch(self, batch: int) -> int | None:
        """Raise :class:`InputError` if a batch of ``batch`` samples would need more than :data:`MAX_TENSOR_BYTES`.

        Returns the estimate (``None`` when it cannot be measured). Cheap after the first call:
        callers (``Session``) run it before converting a feed, so a refused batch costs nothing.

        Example:
            >>> eng.check_batch(500_000)  # doctest: +SKIP
            Traceback (most recent call last):
            ...
            edgekit.errors.InputError: batch 500000 needs ~4.9 GiB of tensors, over the 2048 MiB limit of m.tflite; ...
        """
        if batch <= UNCHECKED_BATCH and self._measured is False:
            return None  # not worth a measurement (the first call's latency): small batches fit any model that loaded
        need = self.needed_bytes(batch)
        limit = MAX_TENSOR_BYTES
        if need is not None and need > limit:
            raise InputError(f"batch {batch} needs ~{human_bytes(need)} of tensors, over the {limit >> 20} MiB limit "
                             f"of {self.path.name}; send smaller batches (or raise EDGEKIT_MAX_TENSOR_BYTES)")
        return need

    def _measure(self) -> tuple[int, int] | None:
        """(tensor bytes at batch 1, bytes per further sample), from a twin interpreter without delegates.

        The engine's own interpreter cannot tell: XNNPACK keeps the tensors of the subgraphs it
        takes over in its own workspace, whose sizes ``get_tensor_details`` does not show. The twin
        runs the reference kernels once at batch 1 and 2 on zeros (tensors sized by ops such as
        ``Shape`` -> ``Reshape`` get their size only when run); the difference is one sample's worth.
        """
        if self._measured is not False:
            return self._measured  # type: ignore[return-value]
        result: tuple[int, int] | None = None
        from edgekit.quiet import captured_output

        try:
            with captured_output():
                twin = self._cls(model_content=self._content, num_threads=1,
                                 experimental_op_resolver_type=_resolver(self._cls, "BUILTIN_WITHOUT_DEFAULT_DELEGATES"))
                inputs = twin.get_input_details()
                if inputs and all(len(d["shape"]) >= 1 for d in inputs):
                    sizes = []
                    for batch in (1, 2):
                        for d in inputs:
                            twin.resize_tensor_input(d["index"], [batch] + [int(x) for x in d["shape"][1:]], strict=False)
                        twin.allocate_tensors()
                        for d in inputs:
                            twin.set_tensor(d["index"], np.zeros([batch] + [int(x) for x in d["shape"][1:]], d["dtype"]))
                        twin.invoke()
                        sizes.append(_tensor_bytes(twin))
                    result = (sizes[0], max(sizes[1] - sizes[0], 0))
                del twin
        except (*ENGINE_ERRORS, MemoryError):
            result = None  # a model that cannot run at batch 1 and 2: only the after-allocate checks apply
        self._measured = result
        return result

    def _check_stored_batch(self) -> None:
        """Refuse, before allocating, a file whose stored input batch needs more than the limit."""
        batch = max((int(d["shape"][0]) for d in self._it.get_input_details() if len(d["shape"])), default=1)
        if batch <= 1:
            return
        need = self.needed_bytes(batch)
        if need is not None and need > MAX_TENSOR_BYTES:
            raise BackendError(
                f"{self.path.name} stores input batch {batch}, which needs ~{human_bytes(need)} of tensors, over the "
                f"{MAX_TENSOR_BYTES >> 20} MiB limit (corrupt shapes?); set EDGEKIT_MAX_TENSOR_BYTES to raise the limit"
            )

    def _map_signature(self) -> None:
        it = self._it
        details_in = {d["index"]: d for d in it.get_input_details()}
        details_out = {d["index"]: d for d in it.get_output_details()}
        sigs = it.get_signature_list() if hasattr(it, "get_signature_list") else {}
        if sigs:
            key = "serving_default" if "serving_default" in sigs else sorted(sigs)[0]
            runner = it.get_signature_runner(key)
            sin, sout = runner.get_input_details(), runner.get_output_details()
            in_names = [n for n in sigs[key]["inputs"] if n in sin]
            out_names = [n for n in sigs[key]["outputs"] if n in sout]
            self._in = [(n, sin[n]["index"]) for n in in_names]
            self._out = [(n, sout[n]["index"]) for n in out_names]
        else:
            self._in = [(_SIG_PREFIX.sub("", d["name"]).split(":")[0], i) for i, d in sorted(details_in.items())]
            self._out = [(d["name"], i) for i, d in sorted(details_out.items())]
        self.inputs = tuple(_spec(n, details_in[i]) for n, i in self._in)
        self.outputs = tuple(_spec(n, details_out[i]) for n, i in self._out)
        self._current = {i: tuple(int(x) for x in details_in[i]["shape"]) for _, i in self._in}
        self._load_shapes = dict(self._current)  # where a rebuilt interpreter starts
        self._load_bytes = _tensor_bytes(it)
        self._wrapper = _FastWrapper(it)
        self._out_idx = [i for _, i in self._out]
        self._one_in = len(self._in) == 1
        self._idx0 = self._in[0][1] if self._in else None
        self._shape0 = self._current.get(self._idx0)
        self.run1 = self._make_run1()
        self.run1_into = self._make_run1_into()

    @property
    def input_tensor_order(self) -> tuple[str, ...]:
        """Input names sorted by tensor index (``inputs`` is in signature order).

        The order TFLite's own tools (the quantization debugger, ``get_input_details``) use.
        """
        return tuple(name for name, _ in sorted(self._in, key=lambda t: t[1]))

    def _make_run1(self):
        """The hot path of most edge models (one input) as a closure: no loops, few lookups."""
        w, idx0 = self._wrapper, self._idx0
        errors, engine, name = ENGINE_ERRORS, self.engine, self.path.name
        if not w.direct:
            return lambda arr: self.run([arr])
        set_tensor = w.set_tensor
        finish = self._make_finish()

        def run1(arr: np.ndarray) -> list[np.ndarray]:
            if arr.shape != self._shape0:
                self._resize([arr.shape])
                self._shape0 = arr.shape
            # Fetched per call: see _FastWrapper; and the interpreter is rebuilt after a large batch.
            inner = self._it._interpreter
            try:
                set_tensor(inner, idx0, arr)
            except errors as exc:
                raise BackendError(f"{engine} failed to run {name}: {' '.join(str(exc).split())[:300]}") from None
            outs = finish(inner)
            if self._shrink_after:
                del inner
                self._shrink()
            return outs

        return run1

    def _make_finish(self):
        """``finish(inner)``: invoke and fetch the outputs, the shared tail of both fast paths."""
        w, out_idx = self._wrapper, tuple(self._out_idx)
        errors, engine, name = ENGINE_ERRORS, self.engine, self.path.name
        invoke, get_tensor = w.invoke, w.get_tensor
        out0 = out_idx[0] if len(out_idx) == 1 else None

        def finish(inner: Any) -> list[np.ndarray]:
            try:
                invoke(inner)
                # GetTensor copies, so results survive the next invoke. One output (the usual
                # case) skips building a comprehension.
                if out0 is not None:
                    return [get_tensor(inner, out0, 0)]
                return [get_tensor(inner, i, 0) for i in out_idx]
            except errors as exc:
                raise BackendError(f"{engine} failed to run {name}: {' '.join(str(exc).split())[:300]}") from None

        return finish

    def _make_run1_into(self):
        """``run1_into(shape, write, src)``: ``write(view, src)`` fills the input tensor in place.

        Saves the copy ``SetTensor`` makes, for feeds we convert anyway (float to int8): the
        conversion's last pass writes straight into the engine's memory. ``None`` where the
        wrapper has no ``tensor()`` view or the model has more than one input.
        """
        w, idx0 = self._wrapper, self._idx0
        if not (w.direct and w.tensor is not None and self._one_in):
            return None
        tensor = w.tensor
        finish = self._make_finish()

        def run1_into(shape: tuple[int, ...], write: Any, src: Any) -> list[np.ndarray]:
            if shape != self._shape0:
                self._resize([shape])
                self._shape0 = shape
            inner = self._it._interpreter
            # The view's base is the C++ wrapper, and LiteRT refuses to resize while any view is
            # alive (it counts references to the wrapper): drop it before anything else runs.
            view = tensor(inner, inner, idx0)
            try:
                write(view, src)
            finally:
                del view
            outs = finish(inner)
            if self._shrink_after:
                del inner
                self._shrink()
            return outs

        return run1_into

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self._one_in and self._wrapper.direct:
            return self.run1(arrays[0])
        for (_, idx), arr in zip(self._in, arrays):
            if arr.shape != self._current.get(idx):
                self._resize([a.shape for a in arrays])
                break
        set_tensor, invoke, get_tensor = self._wrapper.calls(self._it)
        try:
            for (_, idx), arr in zip(self._in, arrays):
                set_tensor(idx, arr)
            invoke()
            # get_tensor copies, so results survive the next invoke.
            outs = [get_tensor(idx) for idx in self._out_idx]
        except ENGINE_ERRORS as exc:
            raise BackendError(f"{self.engine} failed to run {self.path.name}: {' '.join(str(exc).split())[:300]}") from None
        if self._shrink_after:
            del set_tensor, invoke, get_tensor  # they hold the old interpreter's wrapper
            self._shrink()
        return outs

    def _resize(self, shapes: Sequence[tuple[int, ...]]) -> None:
        shapes = [tuple(int(d) for d in s) for s in shapes]
        batch = max((s[0] for s in shapes if s), default=1)
        need = self.check_batch(batch)  # before the engine allocates: past the limit the OOM killer would answer
        limit = MAX_TENSOR_BYTES
        if self._alloc_big:
            self._rebuild()  # resizing down keeps the arena of the large batch; a fresh interpreter does not
        it = self._it
        for (name, idx), shape in zip(self._in, shapes):
            if tuple(shape) != self._current.get(idx):
                try:
                    it.resize_tensor_input(idx, list(shape), strict=True)
                except (ValueError, RuntimeError, TypeError) as exc:
                    raise InputError(
                        f"input {name!r}: this model cannot take shape {tuple(shape)} "
                        f"(engine said: {' '.join(str(exc).split())[:200]})"
                    ) from None
        try:
            it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            self._current = {}  # unknown state: the next call resizes every input again
            self._shape0 = None
            raise InputError(f"cannot run {self.path.name} at these input shapes: {' '.join(str(exc).split())[:200]}") from None
        for (_, idx), shape in zip(self._in, shapes):
            self._current[idx] = tuple(shape)
        actual = _tensor_bytes(it)  # what the engine shows it allocated: the estimate's backstop
        if actual > limit:
            self._rebuild()
            raise InputError(f"input shapes {[tuple(s) for s in shapes]} need {human_bytes(actual)} of tensors, over the "
                             f"{limit >> 20} MiB limit of {self.path.name}; send smaller inputs (or raise EDGEKIT_MAX_TENSOR_BYTES)")
        base = self.needed_bytes(1) if need is not None else None  # measured already: no new cost
        extra = (need - base) if need is not None and base is not None else actual - self._load_bytes
        big = extra > max(SHRINK_BYTES, SHRINK_FACTOR * self._load_bytes) and not self.delegates  # external delegates are not ours to re-create
        self._alloc_big = big
        # A large batch twice in a row is a workload (bench, a batch job), not an outlier: keep it.
        self._shrink_after = big and shapes != self._repeat
        self._repeat = shapes if big else None

    def _rebuild(self) -> None:
        """A fresh interpreter from the same bytes, at the load shapes (returns a large batch's memory)."""
        from edgekit.quiet import captured_output

        self._it = None  # the old one goes first: its memory is the point
        try:
            with captured_output():
                it = self._cls(**self._kwargs)  # the same bytes: its stored shapes are the load shapes
                it.allocate_tensors()
        except ENGINE_ERRORS as exc:
            raise BackendError(f"cannot re-create {self.engine} for {self.path.name}: {' '.join(str(exc).split())[:300]}") from None
        self._it = it
        self.rebuilds += 1
        self._current = dict(self._load_shapes)
        self._shape0 = self._current.get(self._idx0)
        self._alloc_big = False

    def _shrink(self) -> None:
        """After an outlier batch: back to the load shapes, with the memory returned."""
        self._shrink_after = False
        self._rebuild()

    def guess_precision(self) -> str:
        """fp32 / fp16 / int8 / int16x8 / dynamic, from the tensor types of this model (see :func:`guess_precision`)."""
        try:
            details = self._it.get_tensor_details()
        except ENGINE_ERRORS as exc:
            raise BackendError(f"cannot read {self.path.name}: {exc}") from None
        types = {np.dtype(d["dtype"]).name for d in details}
        if "int16" in types and "int8" in types:
            return "int16x8"
        if "int8" in types or "uint8" in types:
            if any(s.quantized for s in self.inputs) or "float32" not in types:
                return "int8"
            # int8 weights with float activations is dynamic range; int8 activations with float I/O is int8.
            quant = sum(1 for d in details if np.dtype(d["dtype"]).name == "int8" and d["quantization"][0])
            floats = sum(1 for d in details if np.dtype(d["dtype"]).name == "float32")
            return "int8" if quant > 2 * max(1, floats) else "dynamic"
        if "float16" in types:
            return "fp16"
        return "fp32"

    def info(self) -> dict[str, Any]:
        return {
            "backend": "litert",
            "engine": self.engine,
            "engine_version": self.version,
            "num_threads": self.num_threads,
            "xnnpack": self.use_xnnpack,
            "delegates": list(self.delegates),
        }


class _FastWrapper:
    """Calls into the interpreter's C++ wrapper, or the public methods if a build hides it.

    Holds the wrapper's *unbound* functions and fetches the wrapper object per call: LiteRT
    refuses to resize while anything else holds a reference to its C++ wrapper (it counts them to
    detect live tensor() views), so a bound method kept here would break batch resizing.
    """

    def __init__(self, it: Any) -> None:
        inner = getattr(it, "_interpreter", None)
        cls = type(inner)
        self.direct = inner is not None and all(hasattr(cls, m) for m in ("SetTensor", "Invoke", "GetTensor"))
        self.tensor = None
        if self.direct:
            self.set_tensor, self.invoke, self.get_tensor = cls.SetTensor, cls.Invoke, cls.GetTensor
            # tensor(base, idx): a numpy view of a tensor's memory (what Interpreter.tensor wraps).
            self.tensor = getattr(cls, "tensor", None)
        del inner

    def calls(self, it: Any) -> tuple[Any, Any, Any]:
        """(set(idx, arr), invoke(), get(idx)) bound to the interpreter for one call."""
        if not self.direct:
            return it.set_tensor, it.invoke, it.get_tensor
        inner = it._interpreter
        st, inv, gt = self.set_tensor, self.invoke, self.get_tensor
        return (lambda i, a: st(inner, i, a)), (lambda: inv(inner)), (lambda i: gt(inner, i, 0))


def _load_delegate(cls: Any, spec: str | tuple[str, dict[str, str]]) -> Any:
    """An external delegate (e.g. ``libedgetpu.so.1`` for a Coral Edge TPU) by library path."""
    import importlib

    path, options = (spec, {}) if isinstance(spec, str) else spec
    import ctypes

    try:
        # Check the library loads and is a delegate plug-in first: LiteRT's Delegate leaves a
        # half-built object behind on failure whose __del__ prints a traceback.
        lib = ctypes.CDLL(path)
        for symbol in ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate"):
            getattr(lib, symbol)
    except OSError as exc:
        raise BackendError(f"cannot load delegate {path!r}: {' '.join(str(exc).split())[:200]}") from None
    except AttributeError:
        raise BackendError(f"{path!r} is not a TFLite external delegate (no tflite_plugin_create_delegate)") from None
    load = getattr(importlib.import_module(cls.__module__), "load_delegate", None)
    if load is None:
        raise BackendError("this LiteRT build cannot load external delegates (no load_delegate)")
    try:
        return load(path, options)
    except (ValueError, RuntimeError, OSError) as exc:
        raise BackendError(f"cannot load delegate {path!r}: {' '.join(str(exc).split())[:200]}") from None


def _resolver(cls: Any, name: str) -> Any:
    import importlib

    mod = importlib.import_module(cls.__module__)
    return getattr(mod.OpResolverType, name)


class LiteRTBackend(BackendBase):
    """Backend for the ``tflite`` format.

    Example:
        >>> eng = LiteRTBackend().open(Path("model.tflite"), num_threads=2)  # doctest: +SKIP
        >>> [s.name for s in eng.inputs]  # doctest: +SKIP
        ['image']
    """

    name: ClassVar[str] = "litert"
    format: ClassVar[str] = "tflite"
    open_options: ClassVar[tuple[str, ...]] = ("num_threads", "use_xnnpack", "delegates")
    engine_label: ClassVar[str] = "LiteRT"

    def unavailable(self) -> EdgekitError | None:
        return missing(_interpreter_class)

    # Opens from bytes: the loader hands over the bytes it verified (``open(path, content=...)``).
    from_bytes: ClassVar[bool] = True

    def guess_precision(self, path: Path) -> str:
        return guess_precision(path)

    def open(self, path: Path, *, content: bytes | None = None, **options: Any) -> LiteRTEngine:
        self.check_open_options(options)
        return LiteRTEngine(Path(path), content=content, **options)


def guess_precision(path: Path) -> str:
    """fp32 / fp16 / int8 / int16x8 / dynamic, from the tensor types inside a ``.tflite`` file.

    Example:
        >>> guess_precision(Path("tflite-int8.tflite"))  # doctest: +SKIP
        'int8'
    """
    return LiteRTEngine(Path(path), num_threads=1).guess_precision()


def open_interpreter_specs(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Input and output specs of a ``.tflite`` file as the runtime will see them."""
    eng = LiteRTEngine(Path(path), num_threads=1)
    return eng.inputs, eng.outputs
