"""The exporter protocol, its options, and the registry of exporters by format name.

Which class exports which format, and the file suffix it writes, is read from
:data:`edgekit.formats.FORMATS`: a format registered there is a target here with no second edit.
Each exporter declares the ``precisions`` it supports and its :class:`Option` s once; the same
declaration is enforced by :func:`check_target` and listed by ``--list-targets``. The pipeline
only ever talks to this protocol, never an ``if/elif`` over formats.

Example:
    >>> exp = check_target("onnx", "int8", {"calibration": "entropy"})
    >>> [o.name for o in exp.options if o.applies("fp32")]
    ['opset']
    >>> check_target("tflite", "fp32", {"keep_float": ["dense"]})
    Traceback (most recent call last):
    ...
    edgekit.errors.RecipeError: tflite option keep_float=['dense'] does not apply to tflite:fp32; it applies to: tflite:int8, tflite:int16x8
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Protocol, Sequence, runtime_checkable

from edgekit import formats
from edgekit.checks import one_of
from edgekit.errors import EdgekitError, InputError, RecipeError, UnsupportedError
from edgekit.manifest import TensorSpec
from edgekit.registry import Plugin, Registry, did_you_mean

if TYPE_CHECKING:
    from edgekit.calibration import Dataset
    from edgekit.convert.sensitivity import LayerError


@dataclass(frozen=True)
class ExportResult:
    """What an exporter hands back about the artifact it wrote.

    Attributes:
        inputs: Tensor specs as the artifact's engine sees them.
        outputs: Ditto for outputs.
        options: The options that made the artifact, defaults included (recorded in the manifest).
        notes: One-line facts a user should know about the artifact (recorded as ``Artifact.notes``),
            e.g. that it needs the Flex delegate to run.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    options: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Option:
    """One exporter option, declared once: enforced by :func:`check_target`, listed by ``--list-targets``.

    Attributes:
        name: The key in a target (``io`` in ``tflite:int8,io=float``).
        values: The allowed values; ``None`` when ``check`` (or anything) decides.
        precisions: The precisions it means something for; ``None``: every precision. Given for any
            other precision it is refused, never silently ignored.
        check: ``check(value, what)`` raises a :class:`~edgekit.errors.RecipeError` for a bad value
            (e.g. :func:`edgekit.checks.positive_int`); ``what`` names the option in the message.
        default: The value used when the target does not give one.
        help: One line for listings.

    Example:
        >>> from edgekit.checks import positive_int
        >>> Option("max_batch", check=positive_int, default=64).validate("coreml", "fp16", 0)
        Traceback (most recent call last):
        ...
        edgekit.errors.RecipeError: coreml option max_batch must be a positive integer, got 0
    """

    name: str
    values: tuple[Any, ...] | None = None
    precisions: tuple[str, ...] | None = None
    check: Callable[[Any, str], Any] | None = None
    default: Any = None
    help: str = ""

    def applies(self, precision: str) -> bool:
        """Whether the option means something for ``precision``."""
        return self.precisions is None or precision in self.precisions

    def validate(self, fmt: str, precision: str, value: Any) -> None:
        """Refuse the option for a precision it does nothing for, or a value it does not take."""
        if not self.applies(precision):
            users = ", ".join(f"{fmt}:{p}" for p in self.precisions or ())
            raise RecipeError(f"{fmt} option {self.name}={value} does not apply to {fmt}:{precision}; "
                              f"it applies to: {users}")
        what = f"{fmt} option {self.name}"
        if self.values is not None:
            one_of(value, self.values, what)
        if self.check is not None:
            self.check(value, what)


def layer_names(value: Any, what: str = "keep_float") -> tuple[str, ...]:
    """A list of layer/node names as a tuple; one string is one name (never split into characters).

    Example:
        >>> layer_names("dense_1"), layer_names(["a", "b"])
        (('dense_1',), ('a', 'b'))
        >>> layer_names([1])
        Traceback (most recent call last):
        ...
        edgekit.errors.RecipeError: keep_float must be a list of layer (node) names, e.g. [dense_1, conv2d], got [1]
    """
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise RecipeError(f"{what} must be a list of layer (node) names, e.g. [dense_1, conv2d], got {value!r}")
    return tuple(value)


@runtime_checkable
class Exporter(Protocol):
    """Turns a :class:`~edgekit.convert.source.SourceModel` into one artifact (file or folder)."""

    format: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    options: ClassVar[tuple[Option, ...]]
    needs_calibration: ClassVar[tuple[str, ...]]

    def unavailable(self) -> EdgekitError | None:
        """``None`` when this exporter can run here, else why not, as a typed error.

        A missing converter is a :class:`~edgekit.errors.MissingDependencyError` (``.extra`` says
        what to install); anything else this machine cannot do is another
        :class:`~edgekit.errors.EdgekitError` (usually :class:`~edgekit.errors.UnsupportedError`).
        """

    def unavailable_reason(self) -> str | None:
        """:meth:`unavailable` as one line of text."""

    def export(self, source: Any, precision: str, options: Mapping[str, Any], calib: "Dataset | None",
               out: Path) -> ExportResult:
        """Write the artifact to ``out`` (a staging path the pipeline renames into place).

        ``source`` is the :class:`~edgekit.convert.source.SourceModel`; an exporter that runs the
        model itself (calibration) draws at most ``source.max_batch`` samples per call where set.
        """


@runtime_checkable
class Int8Search(Protocol):
    """What an exporter offers the accuracy-aware int8 search (:mod:`edgekit.convert.int8_aware`).

    Formats with ``FormatSpec.int8_search`` implement it; their int8 exporter takes a ``keep_float``
    option naming the layers (nodes) to leave in float, and :meth:`layer_sensitivity` ranks exactly
    those names. Optional extras, looked up with ``getattr``: ``int16_fallback() -> str | None``
    (a precision to try when no keep_float set meets the budget).
    """

    def layer_sensitivity(self, source: Any, calib: "Dataset", options: Mapping[str, Any]) -> list["LayerError"]:
        """The int8 model's quantized layers ranked by their own error, most sensitive first."""


class ExporterBase(Plugin):
    """What every exporter shares: the suffix from the table, the text form of :meth:`unavailable`,
    option defaults, and an empty cross-option rule.

    Example:
        >>> class Nowhere(ExporterBase):
        ...     format = "tflite"
        ...     def unavailable(self):
        ...         return UnsupportedError("no converter here")
        >>> Nowhere().unavailable_reason(), Nowhere().suffix
        ('no converter here', '.tflite')
    """

    format: ClassVar[str] = ""
    precisions: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()
    needs_calibration: ClassVar[tuple[str, ...]] = ()

    @property
    def suffix(self) -> str:
        """The suffix of the artifacts it writes, from :data:`edgekit.formats.FORMATS`."""
        return formats.FORMATS[self.format].suffix

    def ready(self, precision: str, options: Mapping[str, Any], calib: Any) -> None:
        """What every ``export`` checks first: the options, the calibration data, the converter.

        Raises:
            RecipeError: an option that is unknown, bad or meaningless for ``precision``.
            InputError: a precision that needs calibration data and got none.
            EdgekitError: :meth:`unavailable`'s typed reason (a missing converter).
        """
        check_options(self, precision, options)
        require_calibration(self, precision, calib)
        missing = self.unavailable()
        if missing is not None:
            raise missing

    def option(self, name: str) -> Option:
        """The declared option ``name`` (``KeyError`` if there is none)."""
        for o in self.options:
            if o.name == name:
                return o
        raise KeyError(name)

    def setting(self, options: Mapping[str, Any], name: str) -> Any:
        """The value of option ``name`` for a target: the one given, else its declared default."""
        return options[name] if name in options else self.option(name).default

    def cross_check(self, precision: str, options: Mapping[str, Any]) -> None:
        """Rules between options (e.g. TensorRT's ``opt_batch <= max_batch``); none by default."""


def _entries() -> dict[str, str]:
    return {name: spec.exporter for name, spec in formats.FORMATS.items()}


# Format -> lazy "module:Class" of its exporter, read from FORMATS on every call.
EXPORTERS: Registry[Exporter] = Registry("format", _entries, known_label="supported formats")


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
    """Every format an exporter is registered for, sorted.

    Example:
        >>> {"tflite", "onnx", "coreml"} <= set(exporter_names())
        True
    """
    return EXPORTERS.names()


def get_exporter(fmt: str) -> Exporter:
    """Instantiate the exporter registered for ``fmt``.

    Example:
        >>> get_exporter("tflite").suffix
        '.tflite'
        >>> get_exporter("tfilte")
        Traceback (most recent call last):
        ...
        edgekit.errors.UnsupportedError: unknown format 'tfilte' (did you mean 'tflite'?); supported formats: coreml, onnx, tensorrt, tflite, tftrt
    """
    return EXPORTERS.get(fmt)


def check_options(exporter: Any, precision: str, options: Mapping[str, Any] | None) -> None:
    """Refuse an unknown option, a bad value, or an option that does nothing for ``precision``.

    Example:
        >>> check_options(get_exporter("tensorrt"), "fp16", {"workspace": 1})
        Traceback (most recent call last):
        ...
        edgekit.errors.RecipeError: tensorrt has no option 'workspace' (did you mean 'workspace_mb'?) (options: max_batch, opt_batch, workspace_mb)
    """
    fmt = exporter.format
    declared = {o.name: o for o in exporter.options}
    options = dict(options or {})
    for key, value in options.items():
        if key not in declared:
            known = ", ".join(declared) or "none"
            raise RecipeError(f"{fmt} has no option {key!r}{did_you_mean(key, declared)} (options: {known})")
        declared[key].validate(fmt, precision, value)
    cross = getattr(exporter, "cross_check", None)
    if cross is not None:
        cross(precision, options)


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
    check_options(exp, precision, options)
    return exp


def supports_int8_search(exporter: Any) -> bool:
    """Whether ``exporter`` implements :class:`Int8Search` (what ``FormatSpec.int8_search`` promises).

    Example:
        >>> supports_int8_search(get_exporter("onnx")), supports_int8_search(get_exporter("coreml"))
        (True, False)
    """
    return isinstance(exporter, Int8Search)


__all__: Sequence[str] = ["EXPORTERS", "ExportResult", "Exporter", "ExporterBase", "Int8Search", "Option",
                          "check_options", "check_target", "exporter_names", "get_exporter", "layer_names",
                          "require_calibration", "supports_int8_search"]
