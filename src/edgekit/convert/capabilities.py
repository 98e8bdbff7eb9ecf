"""One capability table, derived from the registries: every format x precision, its options, and
whether this machine can convert to it and run it.

Nothing here is written by hand per format: every format in :data:`edgekit.formats.FORMATS` shows
up, with its exporter's precisions and declared options. Why a cell is unavailable is kept typed
(``convert_error`` / ``run_error``), so the short table cell reads the pip extra off the error
instead of out of its text.

Example:
    >>> rows = capabilities()  # doctest: +SKIP
    >>> [(r.target, r.convert_ok) for r in rows if r.format == "onnx"][:2]  # doctest: +SKIP
    [('onnx:fp32', True), ('onnx:fp16', True)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from edgekit import formats
from edgekit.convert.exporters import get_exporter
from edgekit.errors import EdgekitError, MissingDependencyError, UnsupportedError

SHORT_REASON = 40  # a reason up to this long fits in the table cell as it is


@dataclass(frozen=True)
class Capability:
    """One format x precision and what this machine can do with it.

    Attributes:
        format: Exporter name, e.g. ``"onnx"``.
        precision: e.g. ``"int8"``.
        suffix: The artifact's file (or folder) suffix.
        needs_calibration: Whether ``--calib`` data is required.
        options: Exporter options that apply to this precision.
        convert_error: ``None`` when this machine can convert to it, else why not, typed (a
            :class:`~edgekit.errors.MissingDependencyError` carries the pip extra).
        run_error: ``None`` when this machine can run (and so validate) it, else why not, typed.
    """

    format: str
    precision: str
    suffix: str
    needs_calibration: bool
    options: tuple[str, ...]
    convert_error: EdgekitError | None = field(default=None, compare=False, repr=False)
    run_error: EdgekitError | None = field(default=None, compare=False, repr=False)

    @property
    def target(self) -> str:
        return f"{self.format}:{self.precision}"

    @property
    def convert(self) -> str | None:
        """Why this machine cannot convert to it (with the fix), or ``None``."""
        return None if self.convert_error is None else str(self.convert_error)

    @property
    def run(self) -> str | None:
        """Why this machine cannot run (and so validate) it, or ``None``."""
        return None if self.run_error is None else str(self.run_error)

    @property
    def convert_ok(self) -> bool:
        return self.convert_error is None

    @property
    def run_ok(self) -> bool:
        return self.run_error is None

    @property
    def convert_cell(self) -> str:
        """The table cell for converting here (see :func:`short`)."""
        return short(self.convert_error)

    @property
    def run_cell(self) -> str:
        """The table cell for running here (see :func:`short`)."""
        return short(self.run_error)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "format": self.format, "precision": self.precision, "suffix": self.suffix,
                "needs_calibration": self.needs_calibration, "options": list(self.options),
                "convert": self.convert, "run": self.run}


def _typed(fn: Callable[[], EdgekitError | None]) -> EdgekitError | None:
    try:
        return fn()
    except EdgekitError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - a broken engine install must not break the listing
        return UnsupportedError(f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")


def _run_error(fmt: str) -> EdgekitError | None:
    from edgekit.runtime.backends import get_backend

    return get_backend(fmt).unavailable()


def capabilities() -> list[Capability]:
    """Every format in :data:`edgekit.formats.FORMATS` x its precisions, with this machine's availability."""
    rows = []
    for fmt in formats.format_names():
        exp = get_exporter(fmt)
        convert = _typed(exp.unavailable)
        run = _typed(lambda: _run_error(fmt))
        for p in exp.precisions:
            opts = tuple(o.name for o in exp.options if o.applies(p))
            rows.append(Capability(fmt, p, formats.FORMATS[fmt].suffix, p in exp.needs_calibration, opts,
                                   convert, run))
    return rows


def short(error: EdgekitError | str | None) -> str:
    """A table cell for why a cell is unavailable: available, the pip command, or the reason when short.

    Example:
        >>> short(None), short(MissingDependencyError("onnxruntime", "onnx", "x"))
        ('✅ available', "⛔ missing: pip install 'edgekit[onnx]'")
        >>> short(UnsupportedError("CoreML runs only on macOS"))
        '⛔ CoreML runs only on macOS'
    """
    if error is None:
        return "✅ available"
    if isinstance(error, MissingDependencyError):
        return f"⛔ missing: {error.install}"
    reason = str(error)
    if len(reason) <= SHORT_REASON:
        return f"⛔ {reason}"
    if "GPU" in reason:
        return "⛔ needs an NVIDIA GPU (see below)"
    return "⛔ unavailable (see below)"
