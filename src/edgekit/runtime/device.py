"""What this process runs on: enough of a fingerprint to make bench results comparable.

Reads only files and the standard library (no engines), so it is safe on any device.

Example:
    >>> info = device_info()
    >>> info["cores"] >= 1
    True
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return ""


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (x86 ``model name``, ARM ``Model``/``Hardware``), else platform."""
    info = _read("/proc/cpuinfo")
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in info.splitlines():
            if line.startswith(key) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The ISA features that decide which kernels an engine can use (NEON, AVX2, AVX512-VNNI, ...)."""
    info = _read("/proc/cpuinfo")
    flags: set[str] = set()
    for line in info.splitlines():
        if line.startswith(("flags", "Features")) and ":" in line:
            flags.update(line.split(":", 1)[1].split())
    interesting = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "fma", "neon", "asimd", "asimddp", "sve", "i8mm", "fphp")
    return sorted(f for f in flags if f in interesting)


def device_info() -> dict[str, Any]:
    """Machine, OS, CPU model, cores, ISA flags, board model (Raspberry Pi / Jetson device tree)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    board = _read("/proc/device-tree/model") or None
    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "release": platform.release(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": cores,
        "cpu_flags": cpu_flags(),
        "board": board,
        "l4t": _read("/etc/nv_tegra_release").split(",")[0] or None,
    }
