"""One capability table, derived from the registries: every format x precision, its options, and
whether this machine can convert to it and run it.

Nothing here is written by hand per format: a new exporter or backend shows up by registering.

Example:
    >>> rows = capabilities()  # doctest: +SKIP
    >>> [(r.target, r.convert_ok) for r in rows if r.format == "onnx"][:2]  # doctest: +SKIP
    [('onnx:fp32', True), ('onnx:fp16', True)]
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from edgekit.convert.exporters import exporter_names, get_exporter
from edgekit.errors import EdgekitError


@dataclass(frozen=True)
class Capability:
    """One format x precision and what this machine can do with it.

    Attributes:
        format: Exporter name, e.g. ``"onnx"``.
        precision: e.g. ``"int8"``.
        suffix: The artifact's file (or folder) suffix.
        needs_calibration: Whether ``--calib`` data is required.
        options: Exporter options that apply to this precision.
        convert: ``None`` when this machine can convert to it, else why not and the fix.
        run: ``None`` when this machine can run (and so validate) it, else why not.
    """

    format: str
    precision: str
    suffix: str
    needs_calibration: bool
    options: tuple[str, ...]
    convert: str | None
    run: str | None

    @property
    def target(self) -> str:
        return f"{self.format}:{self.precision}"

    @property
    def convert_ok(self) -> bool:
        return self.convert is None

    @property
    def run_ok(self) -> bool:
        return self.run is None

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, **asdict(self), "options": list(self.options)}


def _reason(fn: Any) -> str | None:
    try:
        return fn()
    except EdgekitError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a broken engine install must not break the listing
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def capabilities() -> list[Capability]:
    """Every registered format x precision with this machine's availability, in registry order."""
    from edgekit.runtime.backends import get_backend

    rows = []
    for fmt in exporter_names():
        exp = get_exporter(fmt)
        convert = _reason(exp.unavailable_reason)
        run = _reason(lambda: get_backend(fmt).unavailable_reason())
        applies = getattr(exp, "applies_to", None)
        for p in exp.precisions:
            opts = tuple(k for k in exp.options if applies is None or p in applies.get(k, ()))
            rows.append(Capability(fmt, p, exp.suffix, p in exp.needs_calibration, opts, convert, run))
    return rows


def short(reason: str | None) -> str:
    """A table cell for a reason: available, the pip command, or the reason when it is short.

    Example:
        >>> short(None), short("onnxruntime is not installed (needed for x): pip install 'edgekit[onnx]'")
        ('✅ available', "⛔ missing: pip install 'edgekit[onnx]'")
    """
    if reason is None:
        return "✅ available"
    pip = re.search(r"pip install '[^']+'", reason)
    if pip:
        return f"⛔ missing: {pip.group(0)}"
    if len(reason) <= 40:
        return f"⛔ {reason}"
    if "GPU" in reason:
        return "⛔ needs an NVIDIA GPU (see below)"
    return "⛔ unavailable (see below)"
