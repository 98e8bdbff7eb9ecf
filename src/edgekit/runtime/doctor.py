"""``edgekit doctor``: what this device is, which engines it has, which targets it can run, and the
exact install command for what is missing.

Every format in :data:`edgekit.formats.FORMATS` is listed, so a format registered there shows up
here with no other edit; what to install comes from the same table.

Each installed engine is probed in a child process (:mod:`edgekit.runtime.probe`: load and run a
tiny bundled model), so an engine that crashes on this CPU is reported with its fix instead of
killing ``doctor``; the availability checks run in those children too, which keeps TensorFlow (the
TF-TRT check) out of this process. Verdicts are cached per engine version and device.

Example:
    >>> report = diagnose()
    >>> "device" in report and "backends" in report
    True
    >>> sorted(report["backends"]["tflite"])
    ['available', 'install', 'reason']
    >>> report["probes"]["tflite"]["status"]
    'runs'
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from edgekit.errors import EdgekitError, MissingDependencyError
from edgekit.formats import FORMATS, FormatSpec
from edgekit.runtime.backends import get_backend
from edgekit.runtime.device import describe_throttled, device_info, throttling
from edgekit.runtime.probe import KNOWN_GOOD, UNAVAILABLE, ProbeResult, probe_many


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


def status_from_probe(fmt: str, result: ProbeResult) -> dict[str, Any] | None:
    """:func:`backend_status` as the probe's child saw it; ``None`` when the probe could not tell.

    A crash makes the format unavailable, with the crash verdict as the reason and the fix as what
    to install.

    Example:
        >>> r = ProbeResult("tflite", "ai-edge-litert", "2.3.0", "d", "k", "crashed", stage="open", signal=11,
        ...                 fix="install ai-edge-litert==2.1.6")
        >>> status_from_probe("tflite", r)["install"]
        "pip install 'ai-edge-litert==2.1.6'"
    """
    spec = FORMATS[fmt]
    if result.ok:
        return {"available": True, "reason": None, "install": None}
    if result.status == UNAVAILABLE:
        return {"available": False, "reason": result.reason, "install": result.install or spec.install_hint}
    if result.crashed:
        good = KNOWN_GOOD.get(result.engine or "")
        install = f"pip install '{result.engine}=={good}'" if good and good != result.version else spec.install_hint
        return {"available": False, "reason": result.verdict(), "install": install}
    return None  # an error in the probe itself: ask the backend here instead


def diagnose(probe: bool = True, reprobe: bool = False) -> dict[str, Any]:
    """Device, engines, ONNX Runtime providers, and per format: available or how to get it.

    Args:
        probe: Probe each installed engine in a child process (cached verdicts are reused).
        reprobe: Probe again even where a verdict is cached.
    """
    info = device_info()
    thr = throttling()
    probes = probe_many(sorted(FORMATS), refresh=reprobe) if probe else {}
    backends = {}
    for fmt in sorted(FORMATS):
        seen = status_from_probe(fmt, probes[fmt]) if fmt in probes else None
        backends[fmt] = seen if seen is not None else backend_status(fmt)
    # onnxruntime is imported here for its providers: only once a child has shown it does not crash.
    onnx_ok = "onnx" not in probes or probes["onnx"].ok
    return {
        "device": info,
        "python": sys.version.split()[0],
        "onnx_providers": onnx_providers() if onnx_ok else [],
        "backends": backends,
        "probes": {fmt: r.to_dict() for fmt, r in probes.items()},
        "throttling": describe_throttled(thr["throttled"]),
        "cpu_khz": thr["cpu_khz"],
    }
