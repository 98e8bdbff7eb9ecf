"""CoreML backend for ``.mlpackage`` folders: predictions through coremltools, on macOS only.

coremltools installs on Linux and converts there, but its prediction API needs Apple's CoreML
framework. On any other OS :meth:`CoreMLBackend.unavailable_reason` says so, and the convert
pipeline records the artifact as ``not_validated`` instead of pretending it passed.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from edgekit.errors import BackendError, EdgekitError, InputError, MissingDependencyError
from edgekit.manifest import TensorSpec
from edgekit.registry import missing
from edgekit.runtime.backends.base import BackendBase

NOT_MACOS = "CoreML runs only on macOS"
COMPUTE_UNITS = ("all", "cpu_only", "cpu_and_gpu", "cpu_and_ne")
_DTYPES = {65568: "float32", 65552: "float16", 65600: "float64", 131104: "int32"}  # ArrayFeatureType values


def _coremltools() -> Any:
    if platform.system() != "Darwin":
        raise BackendError(f"{NOT_MACOS} (this is {platform.system()}): copy the .mlpackage to a Mac and run edgekit bench there")
    try:
        import coremltools as ct
    except ImportError:
        raise MissingDependencyError("coremltools", "coreml", "running CoreML models") from None
    return ct


def read_specs(spec: Any) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Input/output specs from a CoreML model spec (flexible dimensions become ``None``)."""

    def one(feature: Any) -> TensorSpec:
        arr = feature.type.multiArrayType
        ranges = list(arr.shapeRange.sizeRanges)
        if ranges:
            shape = tuple(r.lowerBound if r.lowerBound == r.upperBound else None for r in ranges)
        else:
            shape = tuple(int(d) for d in arr.shape) or (None,)
        return TensorSpec(feature.name, shape, _DTYPES.get(int(arr.dataType), "float32"))

    return (tuple(one(f) for f in spec.description.input), tuple(one(f) for f in spec.description.output))


class CoreMLEngine:
    """One loaded ``MLModel``; batches are fed as one multi-array per input (flexible batch axis)."""

    def __init__(self, path: Path, compute_units: str = "all", num_threads: int | None = None) -> None:
        ct = _coremltools()
        self.path = Path(path)
        if not self.path.is_dir() or not (self.path / "Manifest.json").is_file():
            raise BackendError(f"{self.path.name} is not a CoreML .mlpackage folder (no Manifest.json inside)")
        if compute_units not in COMPUTE_UNITS:
            raise InputError(f"compute_units={compute_units!r} is not one of {', '.join(COMPUTE_UNITS)}")
        self.compute_units = compute_units
        # CoreML schedules its own threads; num_threads is accepted so `bench --threads` works everywhere.
        self.num_threads = num_threads
        try:
            self._model = ct.models.MLModel(str(self.path), compute_units=getattr(ct.ComputeUnit, compute_units.upper()))
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"cannot load {self.path.name} with CoreML: {' '.join(str(exc).split())[:300]}") from None
        self.version = ct.__version__
        self.inputs, self.outputs = read_specs(self._model.get_spec())

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        feeds = {s.name: a for s, a in zip(self.inputs, arrays)}
        try:
            res = self._model.predict(feeds)
        except Exception as exc:  # noqa: BLE001
            msg = " ".join(str(exc).split())[:300]
            raise InputError(f"CoreML could not run {self.path.name} on these inputs: {msg}") from None
        return [np.asarray(res[s.name], dtype=np.float32) for s in self.outputs]

    def info(self) -> dict[str, Any]:
        return {"backend": "coreml", "engine": "coremltools", "engine_version": self.version,
                "num_threads": self.num_threads, "compute_units": self.compute_units}


class CoreMLBackend(BackendBase):
    """Backend for the ``coreml`` format (macOS only).

    Example:
        >>> CoreMLBackend().unavailable_reason() if platform.system() != "Darwin" else NOT_MACOS
        'CoreML runs only on macOS'
    """

    name: ClassVar[str] = "coreml"
    format: ClassVar[str] = "coreml"
    open_options: ClassVar[tuple[str, ...]] = ("compute_units", "num_threads")
    engine_label: ClassVar[str] = "CoreML"

    def unavailable(self) -> EdgekitError | None:
        return self.wrong_platform(NOT_MACOS) or missing(_coremltools)

    def open(self, path: Path, **options: Any) -> CoreMLEngine:
        self.check_open_options(options)
        return CoreMLEngine(Path(path), **options)
