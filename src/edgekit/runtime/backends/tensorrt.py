"""TensorRT backend: ``.trt`` artifact folders (rebuilt per device when needed) and bare engines.

A ``.trt`` folder, as ``edgekit convert -t tensorrt:fp16`` writes it::

    model.onnx            the portable model the engines are built from
    build.json            precision, batch profile, workspace; which device the shipped engine is for
    calibration.cache     int8 only: TensorRT's scales, so a rebuild needs no calibration data
    engines/<key>.engine  the engine built at conversion time, keyed by :func:`trt_support.cache_key`

Opening it on a device whose key has no engine builds one from ``model.onnx`` (minutes on a
Jetson) and caches it under ``$EDGEKIT_CACHE/tensorrt/``; the artifact folder itself is never
modified, so its sha256 in the manifest stays valid. Bare ``.engine``/``.plan`` files load as they
are, and one built for another TensorRT or GPU gives a clear error instead of a crash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from edgekit import formats
from edgekit.cache import cache_dir
from edgekit.errors import BackendError, EdgekitError, InputError, MissingDependencyError
from edgekit.manifest import TensorSpec, atomic_write_bytes
from edgekit.runtime.backends import trt_support
from edgekit.runtime.backends.base import BackendBase

BUILD_FILE = "build.json"
ONNX_FILE = "model.onnx"
CALIB_FILE = "calibration.cache"
ENGINES = "engines"
NOT_PORTABLE = ("TensorRT engines only load on the TensorRT version and GPU they were built with: rebuild it on this "
                "device (edgekit convert MODEL -t tensorrt:fp16 -o out/), or load the .trt folder, which rebuilds itself")


def engine_plan(folder: Path, cuda: trt_support.Cuda, rebuild: bool = False) -> tuple[bytes, str]:
    """The engine bytes for this device from a ``.trt`` folder, and where they came from.

    Looks for the engine shipped with the artifact under this device's key, then the local cache;
    else (or with ``rebuild``) builds one from ``model.onnx`` into the cache.
    """
    build = _read_build(folder)
    key = trt_support.cache_key(cuda)
    shipped = folder / ENGINES / f"{key}.engine"
    onnx_bytes = (folder / ONNX_FILE).read_bytes()
    digest = hashlib.sha256(onnx_bytes).hexdigest()[:16]
    cached = cache_dir("tensorrt", f"{digest}-{build['precision']}") / f"{key}.engine"
    if not rebuild and shipped.is_file():
        return shipped.read_bytes(), "artifact"
    if not rebuild and cached.is_file():
        return cached.read_bytes(), "cache"
    return _rebuild(folder, build, onnx_bytes, cuda, cached), "built"


def _rebuild(folder: Path, build: dict[str, Any], onnx_bytes: bytes, cuda: trt_support.Cuda, cached: Path) -> bytes:
    calib = None
    if build["precision"] == "int8":
        cache_file = folder / CALIB_FILE
        if not cache_file.is_file():
            raise BackendError(f"{folder.name} is int8 but has no {CALIB_FILE}: re-run edgekit convert with --calib")
        calib = trt_support.calibrator((), cache_file.read_bytes(), cuda)
    plan = trt_support.build_engine(onnx_bytes, build["precision"], max_batch=int(build["max_batch"]),
                                    opt_batch=int(build.get("opt_batch", 1)), workspace_mb=int(build.get("workspace_mb", 1024)),
                                    calib=calib)
    atomic_write_bytes(cached, plan)  # two processes building at once both end with a whole file
    return plan


def _read_build(folder: Path) -> dict[str, Any]:
    path = folder / BUILD_FILE
    if not path.is_file() or not (folder / ONNX_FILE).is_file():
        raise BackendError(f"{folder.name} is not an edgekit TensorRT folder (needs {BUILD_FILE} and {ONNX_FILE})")
    try:
        build = json.loads(path.read_text())
        build["precision"], build["max_batch"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendError(f"{path} is not a valid TensorRT build file: {exc}") from None
    return build


class TensorRTEngine:
    """A deserialized engine with one execution context, fed by tensor name (TensorRT >= 8.5 API)."""

    def __init__(self, path: Path, num_threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BackendError(f"TensorRT engine {self.path} does not exist")
        if self.path.is_dir():
            _read_build(self.path)  # a malformed folder is reported as such, even without a GPU
        t = trt_support.trt()
        self.num_threads = num_threads  # runs on the GPU; kept for a uniform bench schema
        self._cuda = trt_support.Cuda()
        if self.path.is_dir():
            plan, self.source = engine_plan(self.path, self._cuda)
        else:
            plan, self.source = self.path.read_bytes(), "file"
        self._runtime = t.Runtime(trt_support.logger())
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None and self.path.is_dir():
            # Same key but still refused (a patch release, a damaged cache entry): rebuild, don't crash.
            plan, self.source = engine_plan(self.path, self._cuda, rebuild=True)
            self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise BackendError(f"cannot load {self.path.name}: {NOT_PORTABLE}")
        self._ctx = self._engine.create_execution_context()
        self._stream = self._cuda.stream()
        self.version = t.__version__
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_in = {n: self._engine.get_tensor_mode(n) == t.TensorIOMode.INPUT for n in names}
        self.inputs = tuple(self._spec(t, n) for n in names if is_in[n])
        self.outputs = tuple(self._spec(t, n) for n in names if not is_in[n])
        self._max_batch = {s.name: int(self._engine.get_tensor_profile_shape(s.name, 0)[2][0]) for s in self.inputs}
        self._bufs: dict[str, tuple[int, int]] = {}

    def _spec(self, t: Any, name: str) -> TensorSpec:
        shape = tuple(int(d) for d in self._engine.get_tensor_shape(name))
        return TensorSpec(name, shape, np.dtype(t.nptype(self._engine.get_tensor_dtype(name))).name)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._bufs.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self._cuda.free(ptr)
            ptr = self._cuda.malloc(nbytes)
            self._bufs[name] = (ptr, nbytes)
        return ptr

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        for spec, arr in zip(self.inputs, arrays):
            if len(arr) > self._max_batch[spec.name]:
                raise InputError(f"input {spec.name!r}: batch {len(arr)} is over this engine's profile maximum "
                                 f"{self._max_batch[spec.name]} (convert with tensorrt:...,max_batch=N for more)")
            if not self._ctx.set_input_shape(spec.name, tuple(arr.shape)):
                raise InputError(f"input {spec.name!r}: this engine cannot take shape {tuple(arr.shape)}")
            ptr = self._buffer(spec.name, arr.nbytes)
            self._cuda.htod(ptr, arr)
            self._ctx.set_tensor_address(spec.name, ptr)
        results = []
        for spec in self.outputs:
            out = np.empty(tuple(self._ctx.get_tensor_shape(spec.name)), np.dtype(spec.dtype))
            self._ctx.set_tensor_address(spec.name, self._buffer(spec.name, out.nbytes))
            results.append(out)
        if not self._ctx.execute_async_v3(int(self._stream)):
            raise BackendError(f"TensorRT failed to run {self.path.name}")
        self._cuda.sync(self._stream)
        for spec, out in zip(self.outputs, results):
            self._cuda.dtoh(out, self._bufs[spec.name][0])
        return results

    def info(self) -> dict[str, Any]:
        gpu, cc = self._cuda.device()
        return {"backend": "tensorrt", "engine": "tensorrt", "engine_version": self.version, "num_threads": self.num_threads,
                "gpu": gpu, "compute_capability": cc, "engine_source": self.source}

    def __del__(self) -> None:
        for ptr, _ in getattr(self, "_bufs", {}).values():
            try:
                self._cuda.free(ptr)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass


class TensorRTBackend(BackendBase):
    """Backend for the ``tensorrt`` format.

    Example:
        >>> TensorRTBackend().unavailable_reason() is None or "tensorrt" in TensorRTBackend().unavailable_reason().lower()
        True
    """

    name: ClassVar[str] = "tensorrt"
    format: ClassVar[str] = "tensorrt"
    open_options: ClassVar[tuple[str, ...]] = ("num_threads",)
    engine_label: ClassVar[str] = "TensorRT"

    def unavailable(self) -> EdgekitError | None:
        """A platform TensorRT does not run on, a missing ``tensorrt``/``cuda-python`` (typed, with the
        extra), or no usable GPU; ``None`` when engines can run here."""
        wrong = self.wrong_platform(f"TensorRT runs on {'/'.join(formats.FORMATS[self.format].platforms)} "
                                    f"with {trt_support.NEEDS}")
        if wrong is not None:
            return wrong
        try:
            trt_support.trt()
            trt_support.Cuda()
        except (MissingDependencyError, BackendError) as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - a broken driver raises anything
            return BackendError(f"CUDA is not usable here ({' '.join(str(exc).split())[:200]}); TensorRT needs {trt_support.NEEDS}")
        return None

    def open(self, path: Path, **options: Any) -> TensorRTEngine:
        self.check_open_options(options)
        return TensorRTEngine(Path(path), **options)
