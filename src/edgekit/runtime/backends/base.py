"""The backend protocol: one inference engine behind ``open(path) -> Engine``.

Engines are imported lazily inside each backend, so ``import edgekit.runtime`` costs numpy only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np

from edgekit.registry import did_you_mean, load_attr
from edgekit.errors import BackendError
from edgekit.manifest import TensorSpec

# Lazy "module:Class" strings, by artifact format.
REGISTRY: dict[str, str] = {
    "tflite": "edgekit.runtime.backends.litert:LiteRTBackend",
    "onnx": "edgekit.runtime.backends.onnxruntime:ONNXRuntimeBackend",
    "coreml": "edgekit.runtime.backends.coreml:CoreMLBackend",
    "tftrt": "edgekit.runtime.backends.tftrt:TFTRTBackend",
    "tensorrt": "edgekit.runtime.backends.tensorrt:TensorRTBackend",
}
# File (or artifact folder) suffix -> format, for loading bare models. Folders: .mlpackage (CoreML),
# .tftrt (a TF-TRT SavedModel), .trt (ONNX + build settings + per-device TensorRT engine cache).
SUFFIXES: dict[str, str] = {
    ".tflite": "tflite",
    ".onnx": "onnx",
    ".mlpackage": "coreml",
    ".tftrt": "tftrt",
    ".trt": "tensorrt",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
}


@runtime_checkable
class Engine(Protocol):
    """An opened model: engine-level specs and a positional run. Not thread-safe by itself."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Arrays already in engine dtype and in ``inputs`` order; outputs in ``outputs`` order."""

    def info(self) -> dict[str, Any]:
        """Engine name, version and settings, for results and ``doctor``."""


@runtime_checkable
class Backend(Protocol):
    name: ClassVar[str]
    format: ClassVar[str]

    def unavailable_reason(self) -> str | None:
        """``None`` if the engine imports here, else what to install."""

    def open(self, path: Path, **options: Any) -> Engine:
        """Open ``path``; raise :class:`BackendError` (one line) for anything malformed."""


def get_backend(fmt: str) -> Backend:
    """The backend registered for artifact format ``fmt``.

    Example:
        >>> get_backend("tflite").name
        'litert'
    """
    if fmt not in REGISTRY:
        raise BackendError(f"no runtime backend for format {fmt!r}{did_you_mean(fmt, REGISTRY)}; "
                           f"available: {', '.join(sorted(REGISTRY))}")
    return load_attr(REGISTRY[fmt])()


def format_for_path(path: Path) -> str:
    """Artifact format from a file's suffix, or a :class:`BackendError` listing the known ones."""
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise BackendError(
            f"cannot tell the format of {path.name}: unknown suffix {path.suffix or '(none)'!r}; "
            f"supported: {', '.join(sorted(SUFFIXES))} or an edgekit output folder with manifest.json"
        )
    return fmt
