"""The exporter protocol and the registry of exporters by format name.

Each exporter declares its ``format``, file ``suffix``, the ``precisions`` it supports and the
options it accepts. The pipeline only ever talks to this protocol, so a new format is one module
plus one registry line, never an ``if/elif`` in the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Protocol, runtime_checkable

from edgekit.registry import did_you_mean, load_attr
from edgekit.errors import InputError, RecipeError, UnsupportedError
from edgekit.manifest import TensorSpec

if TYPE_CHECKING:
    from edgekit.calibration import Dataset

# Lazy "module:Class" strings: importing the registry imports no converter.
REGISTRY: dict[str, str] = {
    "tflite": "edgekit.convert.exporters.tflite:TFLiteExporter",
    "onnx": "edgekit.convert.exporters.onnx:ONNXExporter",
    "coreml": "edgekit.convert.exporters.coreml:CoreMLExporter",
    "tftrt": "edgekit.convert.exporters.tftrt:TFTRTExporter",
    "tensorrt": "edgekit.convert.exporters.tensorrt:TensorRTExporter",
}


@dataclass(frozen=True)
class ExportResult:
    """What an exporter hands back about the file it wrote."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    options: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@runtime_checkable
class Exporter(Protocol):
    """Turns a :class:`~edgekit.convert.source.SourceModel` into one artifact file."""

    format: ClassVar[str]
    suffix: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    # option name -> allowed values (None: any value) and the default per precision
    options: ClassVar[Mapping[str, tuple[Any, ...] | None]]
    needs_calibration: ClassVar[tuple[str, ...]]

    def unavailable_reason(self) -> str | None:
        """``None`` when this exporter can run here, else why not and how to fix it."""

    def export(self, source: Any, precision: str, options: Mapping[str, Any], calib: "Dataset | None", out: Path) -> ExportResult:
        """Write the artifact to ``out`` (a staging path the pipeline renames into place)."""


def require_calibration(exporter: Any, precision: str, calib: Any) -> None:
    """Refuse a precision that needs representative data when none (or an empty set) was given.

    Example:
        >>> require_calibration(get_exporter("tflite"), "int8", None)
        Traceback (most recent call last):
        ...
        edgekit.errors.InputError: tflite:int8 needs representative (calibration) data: pass --calib data.npz (or an image folder, or 'digits' for the bundled set), ~100-500 samples of real inputs to fix activation ranges
    """
    if precision in exporter.needs_calibration and (calib is None or len(calib) == 0):
        raise InputError(
            f"{exporter.format}:{precision} needs representative (calibration) data: pass --calib data.npz (or an "
            "image folder, or 'digits' for the bundled set), ~100-500 samples of real inputs to fix activation ranges"
        )


def exporter_names() -> list[str]:
    return sorted(REGISTRY)


def get_exporter(fmt: str) -> Exporter:
    """Instantiate the exporter registered for ``fmt``.

    Example:
        >>> get_exporter("tflite").suffix
        '.tflite'
    """
    if fmt not in REGISTRY:
        raise UnsupportedError(f"unknown format {fmt!r}{did_you_mean(fmt, REGISTRY)}; supported formats: "
                               f"{', '.join(exporter_names())}")
    return load_attr(REGISTRY[fmt])()


def check_target(fmt: str, precision: str, options: Mapping[str, Any] | None = None) -> Exporter:
    """Return the exporter for a target, or raise naming what is supported.

    Example:
        >>> check_target("tflite", "int4")
        Traceback (most recent call last):
        ...
        edgekit.errors.UnsupportedError: tflite does not support precision 'int4'; supported: fp32, fp16, dynamic, int8, int16x8
    """
    exp = get_exporter(fmt)
    if precision not in exp.precisions:
        raise UnsupportedError(f"{fmt} does not support precision {precision!r}; supported: {', '.join(exp.precisions)}")
    for key, value in (options or {}).items():
        if key not in exp.options:
            known = ", ".join(exp.options) or "none"
            raise RecipeError(f"{fmt} has no option {key!r} (options: {known})")
        allowed = exp.options[key]
        if allowed is not None and value not in allowed:
            raise RecipeError(f"{fmt} option {key}={value!r} is not one of {', '.join(map(str, allowed))}")
    # Exporters whose options only mean something for some precisions refuse the rest up front.
    check_options = getattr(exp, "check_options", None)
    if check_options is not None:
        check_options(precision, dict(options or {}))
    return exp
