"""TensorRT plumbing shared by the exporter and the runtime: CUDA memory, engine builds, the cache key.

TensorRT engines are specific to the TensorRT version and the GPU they were built on (pain 10 of
ANCHORS.md), so edgekit builds them on the target and keys every engine by
:func:`cache_key` (TensorRT version + GPU name + compute capability). The runtime rebuilds from the
artifact's ONNX model when no engine with this device's key exists, instead of failing to load a
foreign one.

Needs the ``tensorrt`` package and CUDA's runtime through ``cuda-python`` (no PyTorch, no PyCUDA):
``pip install 'edgekit[tensorrt]'`` on an x86 GPU machine; on Jetson both come with JetPack.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from edgekit.errors import BackendError, MissingDependencyError

NEEDS = "an NVIDIA GPU with the tensorrt and cuda-python packages (on Jetson: JetPack's TensorRT)"
DEFAULT_WORKSPACE_MB = 1024


def trt() -> Any:
    """The ``tensorrt`` module, or :class:`MissingDependencyError` naming the extra."""
    try:
        import tensorrt
    except ImportError:
        raise MissingDependencyError("tensorrt", "tensorrt", f"TensorRT engines; needs {NEEDS}") from None
    return tensorrt


def cudart() -> Any:
    """CUDA's runtime API from cuda-python (new and old module layouts)."""
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as runtime  # type: ignore[no-redef]  # older cuda-python
        except ImportError:
            raise MissingDependencyError("cuda-python", "tensorrt", f"TensorRT engines; needs {NEEDS}") from None
    return runtime


def _ok(result: Any, what: str) -> Any:
    # cuda-python returns (error, *values) from every call.
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendError(f"CUDA {what} failed: {err}")
    return values[0] if len(values) == 1 else (values or None)


class Cuda:
    """Just the CUDA calls TensorRT inference needs: device buffers, copies, one stream."""

    def __init__(self) -> None:
        self.rt = cudart()
        count = _ok(self.rt.cudaGetDeviceCount(), "device query")
        if not count:
            raise BackendError(f"no CUDA GPU is visible: TensorRT needs {NEEDS}")

    def malloc(self, nbytes: int) -> int:
        return int(_ok(self.rt.cudaMalloc(max(1, int(nbytes))), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self.rt.cudaFree(ptr)

    def htod(self, ptr: int, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr)
        _ok(self.rt.cudaMemcpy(ptr, arr.ctypes.data, arr.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice), "copy to GPU")

    def dtoh(self, arr: np.ndarray, ptr: int) -> None:
        _ok(self.rt.cudaMemcpy(arr.ctypes.data, ptr, arr.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost), "copy from GPU")

    def stream(self) -> Any:
        return _ok(self.rt.cudaStreamCreate(), "stream create")

    def sync(self, stream: Any) -> None:
        _ok(self.rt.cudaStreamSynchronize(stream), "stream sync")

    def device(self) -> tuple[str, str]:
        """(GPU name, compute capability like ``"8.7"``) of device 0."""
        props = _ok(self.rt.cudaGetDeviceProperties(0), "device properties")
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return name.strip("\x00 "), f"{props.major}.{props.minor}"


def cache_key(cuda: Cuda | None = None) -> str:
    """``trt<version>-<gpu>-sm<cc>``: an engine is only reused where all three match.

    Example:
        >>> cache_key()  # doctest: +SKIP
        'trt10.3.0-nvidia-jetson-orin-nano-sm8.7'
    """
    cuda = cuda or Cuda()
    name, cc = cuda.device()
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"
    return f"trt{trt().__version__}-{slug}-sm{cc}"


def logger() -> Any:
    t = trt()
    return t.Logger(t.Logger.VERBOSE if os.environ.get("EDGEKIT_VERBOSE") else t.Logger.ERROR)


def calibrator(batches: Iterable[Mapping[str, np.ndarray]], cache: bytes | None, cuda: Cuda) -> Any:
    """An ``IInt8EntropyCalibrator2`` over edgekit calibration batches (or just a saved cache).

    With ``cache`` TensorRT reads the scales and runs no batches, which is how the runtime rebuilds
    an int8 engine on a new device without the calibration data.
    """
    t = trt()
    if not hasattr(t, "IInt8EntropyCalibrator2"):
        raise BackendError(f"TensorRT {t.__version__} has no INT8 calibrator API; build from the onnx:int8 (QDQ) model instead")

    class EntropyCalibrator(t.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            t.IInt8EntropyCalibrator2.__init__(self)
            self._it: Iterator[Mapping[str, np.ndarray]] = iter(batches)
            self._bufs: dict[str, tuple[int, int]] = {}
            self.cache = cache

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: Sequence[str]) -> list[int] | None:
            feed = next(self._it, None)
            if feed is None:
                return None
            ptrs = []
            for n in names:
                arr = np.ascontiguousarray(feed[n])
                ptr, size = self._bufs.get(n, (0, 0))
                if size < arr.nbytes:
                    if ptr:
                        cuda.free(ptr)
                    ptr, size = cuda.malloc(arr.nbytes), arr.nbytes
                    self._bufs[n] = (ptr, size)
                cuda.htod(ptr, arr)
                ptrs.append(ptr)
            return ptrs

        def read_calibration_cache(self) -> bytes | None:
            return self.cache

        def write_calibration_cache(self, data: Any) -> None:
            self.cache = bytes(data)

    return EntropyCalibrator()


def build_engine(onnx_bytes: bytes, precision: str, *, max_batch: int, opt_batch: int = 1,
                 workspace_mb: int = DEFAULT_WORKSPACE_MB, calib: Any = None) -> bytes:
    """Serialized TensorRT engine from an ONNX model, for batch 1..``max_batch``.

    Args:
        onnx_bytes: The fp32 ONNX model.
        precision: ``fp32``, ``fp16`` or ``int8``.
        max_batch: Largest batch of the optimisation profile (opt: ``opt_batch``).
        workspace_mb: Builder scratch memory.
        calib: For ``int8``: a :func:`calibrator`.

    Raises:
        BackendError: the parser or builder failed (message has TensorRT's own words).
    """
    t = trt()
    log = logger()
    builder = t.Builder(log)
    major = int(t.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(t.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = t.OnnxParser(network, log)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse the ONNX model: {' '.join(errors.split())[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(t.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    profile = builder.create_optimization_profile()
    calib_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        rest = tuple(int(d) for d in inp.shape)[1:]
        if any(d < 0 for d in rest):
            raise BackendError(f"input {inp.name!r} has dynamic dimensions besides the batch: {tuple(inp.shape)}")
        profile.set_shape(inp.name, (1, *rest), (min(opt_batch, max_batch), *rest), (max_batch, *rest))
        calib_profile.set_shape(inp.name, (1, *rest), (1, *rest), (1, *rest))
    config.add_optimization_profile(profile)
    if precision == "fp16":
        config.set_flag(t.BuilderFlag.FP16)
    elif precision == "int8":
        if calib is None:
            raise BackendError("TensorRT int8 needs calibration data or a calibration cache")
        config.set_flag(t.BuilderFlag.INT8)
        config.int8_calibrator = calib
        config.set_calibration_profile(calib_profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError(f"TensorRT could not build a {precision} engine for this model on this GPU "
                           "(see TensorRT's log with EDGEKIT_VERBOSE=1)")
    return bytes(plan)
