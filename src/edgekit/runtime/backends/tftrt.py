"""TF-TRT backend for ``.tftrt`` folders (a SavedModel whose subgraphs are TensorRT engines).

The only backend that imports TensorFlow, and only inside :func:`_tf` when a TF-TRT model is
actually opened: ``import edgekit.runtime`` and every other backend stay TensorFlow-free. Loading
needs the same TensorRT-enabled TensorFlow that made the model (NVIDIA's Jetson / NGC builds),
since the graph holds ``TRTEngineOp`` nodes that plain TensorFlow cannot run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from edgekit.errors import BackendError, EdgekitError, InputError, MissingDependencyError, UnsupportedError
from edgekit.manifest import TensorSpec
from edgekit.runtime.backends.base import BackendBase

FIX = ("run it where TensorFlow has TensorRT (NVIDIA's TensorFlow for Jetson, the image from Dockerfile.jetson, "
       "or an NGC tensorflow container), or use the onnx / tensorrt artifacts instead")


def _missing_tf() -> MissingDependencyError | None:
    if importlib.util.find_spec("tensorflow") is None:
        return MissingDependencyError("tensorflow", "convert", f"TF-TRT models; {FIX}")
    return None


def _tf() -> Any:
    missing = _missing_tf()
    if missing is not None:
        raise missing
    from edgekit.quiet import captured_output, quiet_tf_env

    quiet_tf_env()
    with captured_output():
        import tensorflow as tf
    return tf


def tensorrt_enabled() -> bool:
    """Whether the installed TensorFlow was built with TensorRT (imports TensorFlow)."""
    _tf()
    try:
        from tensorflow.compiler.tf2tensorrt import _pywrap_py_utils

        return bool(_pywrap_py_utils.is_tensorrt_enabled())
    except Exception:  # noqa: BLE001
        return False


def _signature(path: Path) -> tuple[Any, Any]:
    tf = _tf()
    if not path.is_dir() or not (path / "saved_model.pb").is_file():
        raise BackendError(f"{path.name} is not a TF-TRT SavedModel folder (no saved_model.pb inside)")
    from edgekit.quiet import captured_output

    try:
        with captured_output():
            loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001
        msg = " ".join(str(exc).split())[:300]
        if "TRTEngineOp" in msg:
            raise BackendError(f"cannot load {path.name}: this TensorFlow has no TensorRT ops; {FIX}") from None
        raise BackendError(f"cannot load {path.name} as a SavedModel: {msg}") from None
    sigs = getattr(loaded, "signatures", {})
    if "serving_default" not in sigs:
        raise BackendError(f"{path.name} has no serving_default signature (it has {sorted(sigs)})")
    return loaded, sigs["serving_default"]


def _specs(fn: Any) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    _, kw = fn.structured_input_signature
    ins = tuple(TensorSpec(n, tuple(s.shape), s.dtype.name) for n, s in sorted(kw.items()))
    outs = tuple(TensorSpec(n, tuple(s.shape), s.dtype.name) for n, s in sorted(fn.structured_outputs.items()))
    return ins, outs


def read_specs(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Input/output specs of a TF-TRT SavedModel folder (signature order: sorted by name)."""
    _, fn = _signature(Path(path))
    return _specs(fn)


class TFTRTEngine:
    """A loaded TF-TRT SavedModel, called through its ``serving_default`` signature by name."""

    def __init__(self, path: Path, num_threads: int | None = None) -> None:
        self.path = Path(path)
        self._loaded, self._fn = _signature(self.path)
        self.inputs, self.outputs = _specs(self._fn)
        self.num_threads = num_threads  # TensorRT runs on the GPU; kept for a uniform bench schema
        self._tf = _tf()

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        tf = self._tf
        try:
            res = self._fn(**{s.name: tf.constant(a) for s, a in zip(self.inputs, arrays)})
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"TF-TRT could not run {self.path.name}: {' '.join(str(exc).split())[:300]}") from None
        return [np.asarray(res[s.name]) for s in self.outputs]

    def info(self) -> dict[str, Any]:
        return {"backend": "tftrt", "engine": "tensorflow-tensorrt", "engine_version": self._tf.__version__,
                "num_threads": self.num_threads}


class TFTRTBackend(BackendBase):
    """Backend for the ``tftrt`` format.

    Example:
        >>> TFTRTBackend().name
        'tftrt'
    """

    name: ClassVar[str] = "tftrt"
    format: ClassVar[str] = "tftrt"
    open_options: ClassVar[tuple[str, ...]] = ("num_threads",)
    engine_label: ClassVar[str] = "TF-TRT"

    def unavailable(self) -> EdgekitError | None:
        missing = _missing_tf()
        if missing is not None:
            return missing
        # TensorRT engines run on an NVIDIA GPU only. Looking for one costs microseconds; asking
        # TensorFlow whether it was built with TensorRT means importing it (~4 s of CPU on a quiet
        # machine, 20 s on a busy one), which `edgekit doctor` paid on every CPU-only device.
        from edgekit.runtime.device import nvidia_gpus

        if not nvidia_gpus():
            return UnsupportedError(f"TF-TRT runs TensorRT engines on an NVIDIA GPU and none is visible here: {FIX}")
        if not tensorrt_enabled():
            return UnsupportedError(f"this TensorFlow is not built with TensorRT: {FIX}")
        return None

    def open(self, path: Path, **options: Any) -> TFTRTEngine:
        self.check_open_options(options)
        return TFTRTEngine(Path(path), **options)
