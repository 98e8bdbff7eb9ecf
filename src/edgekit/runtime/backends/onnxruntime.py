"""ONNX Runtime backend for ``.onnx`` files: execution providers in order, threads set explicitly.

Providers are tried in the order given; by default the accelerated ones this onnxruntime build
has (TensorRT EP, then CUDA), then the CPU. onnxruntime itself falls back down the list when a
provider cannot start (e.g. TensorRT libraries missing), and :meth:`ORTEngine.info` reports the
providers actually in use. The CPU wheel from PyPI has only the CPU provider; CUDA/TensorRT need
``onnxruntime-gpu`` (on Jetson: NVIDIA's wheel for JetPack).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from edgekit.cache import cache_dir
from edgekit.errors import BackendError, EdgekitError, InputError, MissingDependencyError
from edgekit.manifest import TensorSpec
from edgekit.registry import missing
from edgekit.runtime.backends import litert
from edgekit.runtime.backends.base import BackendBase, read_model_file
from edgekit.runtime.backends.litert import UNCHECKED_BATCH, default_threads

# Short names users type -> onnxruntime's provider names.
PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "rocm": "ROCMExecutionProvider",
}
DEFAULT_ORDER = ("tensorrt", "cuda", "cpu")
OPTIMIZATION_LEVELS = ("all", "extended", "basic", "disable")
OPTIONS = ("num_threads", "providers", "graph_optimization")

_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(uint16)": "uint16",
    "tensor(int32)": "int32", "tensor(uint32)": "uint32", "tensor(int64)": "int64", "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx", "running .onnx models") from None
    return onnxruntime


def resolve_providers(requested: str | Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """onnxruntime provider names, in order, from short names (``"cuda,cpu"``) or full names.

    Example:
        >>> resolve_providers(None, ["CPUExecutionProvider", "AzureExecutionProvider"])
        ['CPUExecutionProvider']
        >>> resolve_providers("cuda", ["CPUExecutionProvider"])
        Traceback (most recent call last):
        ...
        edgekit.errors.InputError: execution provider 'cuda' is not in this onnxruntime build (it has: cpu); CUDA and TensorRT need the onnxruntime-gpu package (on Jetson: NVIDIA's wheel for your JetPack)
    """
    if requested is None:
        return [PROVIDERS[k] for k in DEFAULT_ORDER if PROVIDERS[k] in available]
    names = [n.strip() for n in requested.split(",")] if isinstance(requested, str) else [str(n) for n in requested]
    if not names or not all(names):
        raise InputError(f"providers must name at least one execution provider, e.g. 'cuda,cpu' (got {requested!r})")
    short = {v: k for k, v in PROVIDERS.items()}
    have = ", ".join(short.get(a, a) for a in available if a != "AzureExecutionProvider")
    out = []
    for n in names:
        full = PROVIDERS.get(n.lower(), n)
        if full not in available:
            raise InputError(
                f"execution provider {n!r} is not in this onnxruntime build (it has: {have}); CUDA and TensorRT need "
                "the onnxruntime-gpu package (on Jetson: NVIDIA's wheel for your JetPack)"
            )
        out.append(full)
    return out


# The process-wide CPU arena every session allocates from, capped at the tensor limit of the moment
# it was registered (once: onnxruntime keeps one per process).
_ARENA: dict[str, int | None] = {}


def _capped_arena(ort: Any) -> bool:
    """Register (once per process) a CPU arena of at most :data:`litert.MAX_TENSOR_BYTES` for sessions to share.

    Only the measuring session (:meth:`ORTEngine.sample_bytes`; serve asks at start) allocates
    from it: a graph whose inner dims were edited to 400,000 then fails that measurement at the
    limit, and the engine refuses every run, instead of meeting the OOM killer. Serving sessions
    keep their own arenas, which ``memory.enable_memory_arena_shrinkage`` can shrink after a large
    batch (a shared arena it cannot). ``False`` where this onnxruntime cannot register one.
    """
    if "limit" not in _ARENA:
        limit = int(litert.MAX_TENSOR_BYTES)
        try:
            mem = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            # kSameAsRequested (1): grow by what is asked, not the next power of two, so the cap is
            # reached by tensors, not by the arena's rounding.
            ort.create_and_register_allocator(mem, ort.OrtArenaCfg({"max_mem": limit, "arena_extend_strategy": 1}))
        except Exception:  # noqa: BLE001 - an older onnxruntime without the API: estimates only
            _ARENA["limit"] = None
        else:
            _ARENA["limit"] = limit
    return _ARENA["limit"] is not None


def _over_arena(exc: Exception) -> bool:
    """Whether onnxruntime failed because the capped arena (:func:`_capped_arena`) was full."""
    return "bfc_arena" in str(exc) or "Available memory of" in str(exc)


def _check_declared_sizes(specs: Sequence[TensorSpec], path: Path) -> None:
    """Refuse a model whose inputs/outputs alone, at their fixed dims (batch 1 where free), pass the limit.

    onnxruntime loads a graph declaring a 400,000 x 2^31 input without complaint; feeding it (or
    building a feed for it, as bench does) then meets the OOM killer instead of a clean error.
    """
    limit = litert.MAX_TENSOR_BYTES
    total = 0
    for spec in specs:
        n = 1
        for d in spec.shape:
            n *= d if d else 1
        total += n * np.dtype(spec.dtype).itemsize
        if total > limit:
            raise BackendError(f"{path.name} declares inputs/outputs of {litert.human_bytes(total)} at batch 1, over the "
                               f"{limit >> 20} MiB limit (corrupt or edited shapes?); set EDGEKIT_MAX_TENSOR_BYTES to raise it")


def _spec(arg: Any) -> TensorSpec:
    dtype = _DTYPES.get(arg.type)
    if dtype is None:
        raise BackendError(f"tensor {arg.name!r} has type {arg.type}, which edgekit cannot feed from numpy")
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (arg.shape or ()))
    return TensorSpec(arg.name, shape, dtype)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


# A call whose inputs exceed this many bytes hands the arena's memory back when it ends
# (``memory.enable_memory_arena_shrinkage``): a large batch then does not stay resident, and the
# usual small calls keep their arena (shrinking costs a re-allocation per call).
SHRINK_INPUT_BYTES = 1 << 20


def read_model(path: Path) -> bytes:
    """An ``.onnx`` file's bytes, read once (regular files only).

    Example:
        >>> read_model(Path("/dev/zero"))
        Traceback (most recent call last):
        ...
        edgekit.errors.BackendError: model file /dev/zero is a character device, not a regular file: refusing to read it
    """
    data = read_model_file(path, ".onnx")
    if not data:
        raise BackendError(f"{path.name} is not an ONNX model: the file is empty")
    return data


class ORTEngine:
    """One ``InferenceSession`` with named, ordered inputs and outputs, built from bytes in memory.

    The ``.onnx`` file is read once (or given as ``content``, bytes the caller verified) and the
    session is built from those bytes, so a file changed on disk cannot change a running engine.
    Weights stored as ONNX *external data* (side files, for models over 2 GiB) are read by
    onnxruntime from the model's folder at load (they are not covered by the manifest's sha256,
    which is of the ``.onnx`` file).
    """

    def __init__(self, path: Path, num_threads: int | None = None, providers: str | Sequence[str] | None = None,
                 graph_optimization: str = "all", *, content: bytes | None = None) -> None:
        ort = _ort()
        self.path = Path(path)
        self.num_threads = default_threads() if num_threads is None else int(num_threads)
        if self.num_threads < 1:
            raise InputError(f"num_threads must be >= 1, got {num_threads}")
        if graph_optimization not in OPTIMIZATION_LEVELS:
            raise InputError(f"graph_optimization={graph_optimization!r} is not one of {', '.join(OPTIMIZATION_LEVELS)}")
        content = read_model(self.path) if content is None else bytes(content)
        chosen = resolve_providers(providers, ort.get_available_providers())
        opts = ort.SessionOptions()
        # onnxruntime's default is one thread per physical core it detects, which ignores CPU
        # affinity/cgroups; pin it to what this process may use, like the LiteRT backend.
        opts.intra_op_num_threads = self.num_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Fatal only: every error also comes back as the exception we turn into a one-line message, and
        # the C++ log would print it again, in colour, on the server's stderr (warnings about unused
        # initializers are noise too).
        opts.log_severity_level = 4
        opts.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[graph_optimization]
        self.graph_optimization = graph_optimization
        # A session built from bytes has no folder of its own: say where external data files live
        # (onnxruntime still refuses paths that leave that folder).
        opts.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                      str(self.path.resolve().parent))
        provider_options = [self._provider_options(p) for p in chosen]
        from edgekit.quiet import captured_output

        try:
            with captured_output():
                self._sess = ort.InferenceSession(content, sess_options=opts, providers=chosen,
                                                  provider_options=provider_options)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
            raise BackendError(f"cannot load {self.path.name} with onnxruntime: {_one_line(exc)}") from None
        self.version = ort.__version__
        self.inputs = tuple(_spec(a) for a in self._sess.get_inputs())
        self.outputs = tuple(_spec(a) for a in self._sess.get_outputs())
        self._in_names = [s.name for s in self.inputs]
        self._out_names = [s.name for s in self.outputs]
        _check_declared_sizes(self.inputs + self.outputs, self.path)
        self.metadata = dict(self._sess.get_modelmeta().custom_metadata_map or {})
        self._content = content
        self._measured: tuple[int, int] | None | bool = False  # see _measure; False: not yet
        self._over_limit = False  # measuring found batch 1 alone over the tensor limit
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    @staticmethod
    def _provider_options(provider: str) -> dict[str, Any]:
        if provider == "TensorrtExecutionProvider":
            # TensorRT engines are specific to the GPU and TensorRT version: cache them on this
            # device so the (minutes-long) build happens once, not at every session start.
            return {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir("onnxruntime-trt")),
                    "trt_timing_cache_enable": True}
        return {}

    @property
    def sample_bytes(self) -> int | None:
        """Bytes of node outputs each further batch sample needs (measured once), ``None`` if it cannot be measured."""
        m = self._measure()
        return m[1] if m else None

    def needed_bytes(self, batch: int) -> int | None:
        """Estimated bytes of node outputs at batch ``batch``, or ``None``."""
        m = self._measure()
        return None if not m else m[0] + max(int(batch) - 1, 0) * m[1]

    def check_batch(self, batch: int) -> int | None:
        """Raise :class:`InputError` if a batch of ``batch`` would need more than the tensor limit.

        The limit is LiteRT's :data:`~edgekit.runtime.backends.litert.MAX_TENSOR_BYTES` (one knob,
        ``EDGEKIT_MAX_TENSOR_BYTES``, for every engine).
        """
        if batch <= UNCHECKED_BATCH and self._measured is False:
            return None  # not worth a measurement (the first call's latency): small batches fit any model that loaded
        need = self.needed_bytes(batch)
        limit = litert.MAX_TENSOR_BYTES
        if self._over_limit:
            raise self._over_error()
        if need is not None and need > limit:
            raise InputError(f"batch {batch} needs ~{litert.human_bytes(need)} of tensors, over the {limit >> 20} MiB "
                             f"limit of {self.path.name}; send smaller batches (or raise EDGEKIT_MAX_TENSOR_BYTES)")
        return need

    def _over_error(self) -> InputError:
        return InputError(f"{self.path.name} needs more than the {litert.MAX_TENSOR_BYTES >> 20} MiB tensor limit at batch 1 "
                          "(edited or corrupt shapes?); raise EDGEKIT_MAX_TENSOR_BYTES if the model is really that large")

    def _measure(self) -> tuple[int, int] | None:
        """(node output bytes at batch 1, bytes per further sample), from onnxruntime's own profiler.

        onnxruntime does not expose intermediate tensor sizes, but its profiler records each node's
        ``output_size``: one profiled CPU session runs batch 1 and batch 2 on zeros, once.
        """
        if self._measured is not False:
            return self._measured  # type: ignore[return-value]
        import json
        import shutil
        import tempfile

        ort = _ort()
        result = None
        folder = tempfile.mkdtemp(prefix="edgekit-ort-profile-")
        try:
            opts = ort.SessionOptions()
            opts.enable_profiling = True
            opts.profile_file_prefix = os.path.join(folder, "p")
            opts.intra_op_num_threads = 1
            opts.log_severity_level = 4
            if _capped_arena(ort):
                # The measuring session allocates from the capped arena: measuring a model whose inner
                # dims were edited huge must fail at the limit, not take the machine's memory.
                opts.add_session_config_entry("session.use_env_allocators", "1")
            opts.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                          str(self.path.resolve().parent))
            from edgekit.quiet import captured_output

            with captured_output():
                sess = ort.InferenceSession(self._content, sess_options=opts, providers=["CPUExecutionProvider"])
                if self.inputs and all(len(s.shape) >= 1 for s in self.inputs):
                    for batch in (1, 2):
                        feeds = {s.name: np.zeros([batch] + [1 if d is None else d for d in s.shape[1:]], s.dtype)
                                 for s in self.inputs}
                        sess.run(None, feeds)
                events = json.loads(Path(sess.end_profiling()).read_text())
            runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
            if len(runs) == 2:
                sizes = [0, 0]
                for e in events:
                    if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
                        i = 0 if e["ts"] <= runs[0][1] else 1
                        sizes[i] += int(e.get("args", {}).get("output_size", 0))
                if sizes[0] > 0:
                    result = (sizes[0], max(sizes[1] - sizes[0], 0))
        except Exception as exc:  # noqa: BLE001 - a model that cannot run at batch 1 and 2 has no figure; run() still guards
            result = None
            if _over_arena(exc):
                self._over_limit = True  # batch 1 or 2 alone passes the limit: every run is refused
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self._measured = result
        return result

    def guess_precision(self) -> str:
        """The precision edgekit stamped into this model's metadata, else ``"?"``."""
        return self.metadata.get("edgekit.precision", "?")

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self._over_limit:
            raise self._over_error()
        big = sum(a.nbytes for a in arrays) > SHRINK_INPUT_BYTES
        if big and arrays and arrays[0].ndim:
            self.check_batch(arrays[0].shape[0])  # before onnxruntime allocates: past the limit the OOM killer answers
        try:
            return self._sess.run(self._out_names, dict(zip(self._in_names, arrays)), self._shrink if big else None)
        except Exception as exc:  # noqa: BLE001
            if _over_arena(exc):
                raise InputError(f"running {self.path.name} on inputs of shapes {[a.shape for a in arrays]} needs more than "
                                 f"the {(_ARENA.get('limit') or 0) >> 20} MiB tensor limit; send smaller inputs "
                                 "(or raise EDGEKIT_MAX_TENSOR_BYTES)") from None
            raise InputError(f"onnxruntime could not run {self.path.name} on these inputs: {_one_line(exc)}") from None

    def info(self) -> dict[str, Any]:
        return {
            "backend": "onnxruntime",
            "engine": "onnxruntime",
            "engine_version": self.version,
            "num_threads": self.num_threads,
            "providers": list(self._sess.get_providers()),
            "graph_optimization": self.graph_optimization,
        }


class ONNXRuntimeBackend(BackendBase):
    """Backend for the ``onnx`` format.

    Example:
        >>> eng = ONNXRuntimeBackend().open(Path("model.onnx"), providers="cpu", num_threads=2)  # doctest: +SKIP
        >>> eng.info()["providers"]  # doctest: +SKIP
        ['CPUExecutionProvider']
    """

    name: ClassVar[str] = "onnxruntime"
    format: ClassVar[str] = "onnx"
    open_options: ClassVar[tuple[str, ...]] = tuple(OPTIONS)
    engine_label: ClassVar[str] = "onnxruntime"

    def unavailable(self) -> EdgekitError | None:
        return missing(_ort)

    # Opens from bytes: the loader hands over the bytes it verified (``open(path, content=...)``).
    from_bytes: ClassVar[bool] = True

    def guess_precision(self, path: Path) -> str:
        return guess_precision(path)

    def open(self, path: Path, *, content: bytes | None = None, **options: Any) -> ORTEngine:
        self.check_open_options(options)
        return ORTEngine(Path(path), content=content, **options)


def open_specs(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Input and output specs of an ``.onnx`` file as the runtime will see them (CPU provider)."""
    eng = ORTEngine(Path(path), num_threads=1, providers="cpu")
    return eng.inputs, eng.outputs


def guess_precision(path: Path) -> str:
    """The precision edgekit stamped into an ``.onnx`` file's metadata, else ``"?"``.

    Example:
        >>> guess_precision(Path("onnx-int8.onnx"))  # doctest: +SKIP
        'int8'
    """
    return ORTEngine(Path(path), num_threads=1, providers="cpu").metadata.get("edgekit.precision", "?")
