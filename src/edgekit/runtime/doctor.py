"""``edgekit doctor``: what this device is, which engines it has, which targets it can run, and the
exact install command for what is missing.

Every format in :data:`edgekit.formats.FORMATS` is listed, so a format registered there shows up
here with no other edit; what to install comes from the same table.

Example:
    >>> report = diagnose()
    >>> "device" in report and "backends" in report
    True
    >>> sorted(report["backends"]["tflite"])
    ['available', 'install', 'reason']
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from edgekit.errors import EdgekitError, MissingDependencyError
from edgekit.formats import FORMATS, FormatSpec
from edgekit.runtime.backends import get_backend
from edgekit.runtime.device import describe_throttled, device_info, throttling


def onnx_providers() -> list[str]:
    """ONNX Runtime execution providers available here (imports onnxruntime if installed)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    try:
        import onnxruntime

        return list(onnxruntime.get_available_providers())
    except Exception:  # noqa: BLE001 - a broken install is reported, not fatal
        return []


def install_hint(spec: FormatSpec, err: EdgekitError | None) -> str | None:
    """What to run so ``spec``'s engine works here (``None`` when it already does).

    The table's own instruction wins (TensorRT and TF-TRT are not a pip extra away); otherwise the
    extra the error names, falling back to the format's extra.

    Example:
        >>> from edgekit.errors import MissingDependencyError
        >>> install_hint(FORMATS["onnx"], MissingDependencyError("onnxruntime", "onnx"))
        "pip install 'edgekit[onnx]'"
        >>> install_hint(FORMATS["onnx"], None) is None
        True
    """
    if err is None:
        return None
    if spec.install is None and isinstance(err, MissingDependencyError):
        return err.install
    return spec.install_hint


def backend_status(fmt: str) -> dict[str, Any]:
    """``{"available", "reason", "install"}`` for one format's backend on this machine.

    Example:
        >>> backend_status("tflite")["available"]
        True
    """
    spec = FORMATS[fmt]
    try:
        err = get_backend(fmt).unavailable()
    except Exception as exc:  # noqa: BLE001 - a broken plug-in is reported, not fatal
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}", "install": spec.install_hint}
    return {"available": err is None, "reason": None if err is None else str(err), "install": install_hint(spec, err)}


def diagnose() -> dict[str, Any]:
    """Device, engines, ONNX Runtime providers, and per format: available or how to get it."""
    info = device_info()
    thr = throttling()
    return {
        "device": info,
        "python": sys.version.split()[0],
        "onnx_providers": onnx_providers(),
        "backends": {fmt: backend_status(fmt) for fmt in sorted(FORMATS)},
        "throttling": describe_throttled(thr["throttled"]),
        "cpu_khz": thr["cpu_khz"],
    }
