"""ONNX Runtime backend for ``.onnx`` files: execution providers in order, threads set explicitly.

Providers are tried in the order given; by default the accelerated ones this onnxruntime build
has (TensorRT EP, then CUDA), then the CPU. onnxruntime itself falls back down the list when a
provider cannot start (e.g. TensorRT libraries missing), and :meth:`ORTEngine.info` reports the
providers actually in use. The CPU wheel from PyPI has only the CPU provider; CUDA/TensorRT need
``onnxruntime-gpu`` (on Jetson: NVIDIA's wheel for JetPack).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from edgekit.cache import cache_dir
from edgekit.errors import BackendError, EdgekitError, InputError, MissingDependencyError
from edgekit.manifest import TensorSpec
from edgekit.registry import missing
from edgekit.runtime.backends.base import BackendBase
from edgekit.runtime.backends.litert import default_threads

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


def _spec(arg: Any) -> TensorSpec:
    dtype = _DTYPES.get(arg.type)
    if dtype is None:
        raise BackendError(f"tensor {arg.name!r} has type {arg.type}, which edgekit cannot feed from numpy")
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (arg.shape or ()))
    return TensorSpec(arg.name, shape, dtype)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise BackendError(f"model file {path} does not exist")
    if path.is_dir():
        raise BackendError(f"{path} is a folder, not an .onnx file")
    if path.stat().st_size == 0:
        raise BackendError(f"{path.name} is not an ONNX model: the file is empty")


class ORTEngine:
    """One ``InferenceSession`` with named, ordered inputs and outputs."""

    def __init__(self, path: Path, num_threads: int | None = None, providers: str | Sequence[str] | None = None,
                 graph_optimization: str = "all") -> None:
        ort = _ort()
        self.path = Path(path)
        self.num_threads = default_threads() if num_threads is None else int(num_threads)
        if self.num_threads < 1:
            raise InputError(f"num_threads must be >= 1, got {num_threads}")
        if graph_optimization not in OPTIMIZATION_LEVELS:
            raise InputError(f"graph_optimization={graph_optimization!r} is not one of {', '.join(OPTIMIZATION_LEVELS)}")
        _check_file(self.path)
        chosen = resolve_providers(providers, ort.get_available_providers())
        opts = ort.SessionOptions()
        # onnxruntime's default is one thread per physical core it detects, which ignores CPU
        # affinity/cgroups; pin it to what this process may use, like the LiteRT backend.
        opts.intra_op_num_threads = self.num_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # errors only: warnings about unused initializers are noise here
        opts.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[graph_optimization]
        self.graph_optimization = graph_optimization
        provider_options = [self._provider_options(p) for p in chosen]
        from edgekit.quiet import captured_output

        try:
            with captured_output():
                self._sess = ort.InferenceSession(str(self.path), sess_options=opts, providers=chosen,
                                                  provider_options=provider_options)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind exception types
            raise BackendError(f"cannot load {self.path.name} with onnxruntime: {_one_line(exc)}") from None
        self.version = ort.__version__
        self.inputs = tuple(_spec(a) for a in self._sess.get_inputs())
        self.outputs = tuple(_spec(a) for a in self._sess.get_outputs())
        self._in_names = [s.name for s in self.inputs]
        self._out_names = [s.name for s in self.outputs]
        self.metadata = dict(self._sess.get_modelmeta().custom_metadata_map or {})

    @staticmethod
    def _provider_options(provider: str) -> dict[str, Any]:
        if provider == "TensorrtExecutionProvider":
            # TensorRT engines are specific to the GPU and TensorRT version: cache them on this
            # device so the (minutes-long) build happens once, not at every session start.
            return {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir("onnxruntime-trt")),
                    "trt_timing_cache_enable": True}
        return {}

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        try:
            return self._sess.run(self._out_names, dict(zip(self._in_names, arrays)))
        except Exception as exc:  # noqa: BLE001
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

    def guess_precision(self, path: Path) -> str:
        return guess_precision(path)

    def open(self, path: Path, **options: Any) -> ORTEngine:
        self.check_open_options(options)
        return ORTEngine(Path(path), **options)


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
