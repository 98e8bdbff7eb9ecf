"""``edgekit doctor``: what this device is, which engines it has, which targets it can run, and the
exact install command for what is missing.

Example:
    >>> report = diagnose()
    >>> "device" in report and "backends" in report
    True
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from edgekit.runtime.backends.base import REGISTRY as BACKENDS
from edgekit.runtime.device import device_info, describe_throttled, throttling

# What to install for each backend, by platform where it differs (Jetson has no onnxruntime-gpu on PyPI).
INSTALL = {
    "tflite": "pip install 'edgekit[tflite]'",
    "onnx": "pip install 'edgekit[onnx]'",
    "coreml": "pip install 'edgekit[coreml]'  (runs on macOS only)",
    "tensorrt": "pip install tensorrt  (desktop) / use JetPack's python3-libnvinfer (Jetson): see Dockerfile.jetson",
    "tftrt": "a TensorRT-enabled TensorFlow: NVIDIA's Jetson wheels or NGC containers (see Dockerfile.jetson)",
}


def onnx_providers() -> list[str]:
    """ONNX Runtime execution providers available here (imports onnxruntime if installed)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    try:
        import onnxruntime

        return list(onnxruntime.get_available_providers())
    except Exception:  # noqa: BLE001 - a broken install is reported, not fatal
        return []


def diagnose() -> dict[str, Any]:
    """Device, engines, ONNX Runtime providers, and per backend: available or how to get it."""
    from edgekit.runtime.backends import get_backend

    info = device_info()
    backends = {}
    for fmt in sorted(BACKENDS):
        try:
            reason = get_backend(fmt).unavailable_reason()
        except Exception as exc:  # noqa: BLE001
            reason = f"{type(exc).__name__}: {exc}"
        backends[fmt] = {"available": reason is None, "reason": reason, "install": None if reason is None else INSTALL.get(fmt)}
    thr = throttling()
    return {
        "device": info,
        "python": sys.version.split()[0],
        "onnx_providers": onnx_providers(),
        "backends": backends,
        "throttling": describe_throttled(thr["throttled"]),
        "cpu_khz": thr["cpu_khz"],
    }
