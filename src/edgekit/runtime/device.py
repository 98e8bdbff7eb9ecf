"""What this process runs on: the fingerprint that makes bench results comparable and lets the
runtime pick an artifact the device can run well.

Reads files and asks the standard library only; engines are *found* (``importlib.util.find_spec``),
never imported here, so this is safe on any device and never pulls in TensorFlow. Every path is read
under a ``root`` so tests can describe a Raspberry Pi or a Jetson with fixture files.

Example:
    >>> info = device_info()
    >>> info["cores"] >= 1 and info["machine"] != ""
    True
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from edgekit.formats import engine_modules

# The ISA features that decide which kernels an engine can use.
_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "fma", "f16c", "neon", "asimd", "asimddp",
          "asimdhp", "sve", "i8mm", "fphp")


def _read(root: Path, path: str) -> str:
    try:
        return (root / path.lstrip("/")).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return ""


def cpu_model(root: str | os.PathLike[str] = "/") -> str:
    """CPU model from ``/proc/cpuinfo`` (x86 ``model name``; ARM ``Model``, ``Hardware`` or part id)."""
    info = _read(Path(root), "/proc/cpuinfo")
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in info.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags(root: str | os.PathLike[str] = "/") -> list[str]:
    """The ISA flags that matter for inference (NEON/ASIMD dot-product, AVX2, AVX512-VNNI, ...).

    Example:
        >>> isinstance(cpu_flags(), list)
        True
    """
    info = _read(Path(root), "/proc/cpuinfo")
    flags: set[str] = set()
    for line in info.splitlines():
        if line.split(":")[0].strip() in ("flags", "Features") and ":" in line:
            flags.update(line.split(":", 1)[1].split())
    if platform.machine() in ("aarch64", "arm64") and "asimd" in flags:
        flags.add("neon")  # every AArch64 core has NEON; cpuinfo calls it asimd
    return sorted(f for f in flags if f in _FLAGS)


def board(root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """Single-board computer identity: Raspberry Pi model, Jetson model and L4T release.

    Example:
        >>> sorted(board())
        ['jetson', 'l4t', 'model', 'raspberry_pi']
    """
    r = Path(root)
    model = _read(r, "/proc/device-tree/model") or _read(r, "/sys/firmware/devicetree/base/model") or None
    l4t = None
    tegra = _read(r, "/etc/nv_tegra_release")
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", tegra)
    if m:
        l4t = f"{m.group(1)}.{m.group(2)}"
    return {
        "model": model,
        "raspberry_pi": bool(model and "Raspberry Pi" in model),
        "jetson": bool(l4t or (model and ("Jetson" in model or "NVIDIA" in model))),
        "l4t": l4t,
    }


def nvidia_gpus(root: str | os.PathLike[str] = "/", use_smi: bool = True) -> list[str]:
    """NVIDIA GPU names: the driver's /proc entries, else ``nvidia-smi -L``; Jetson iGPUs via device tree."""
    r = Path(root)
    names = []
    gpus = r / "proc/driver/nvidia/gpus"
    if gpus.is_dir():
        for info in sorted(gpus.glob("*/information")):
            m = re.search(r"^Model:\s*(.+)$", info.read_text(errors="replace"), re.M)
            if m:
                names.append(m.group(1).strip())
    if not names and use_smi and str(root) == "/" and shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=5).stdout
            names = [m.group(1) for m in re.finditer(r"GPU \d+: (.+?) \(UUID", out)]
        except (OSError, subprocess.SubprocessError):
            pass
    if not names and board(root)["jetson"]:
        names.append(f"{board(root)['model'] or 'Jetson'} (integrated)")
    return names


def engines() -> dict[str, str | None]:
    """Installed inference engines: import name -> version (or ``None`` if absent). Imports nothing.

    The engines are those of every format in :data:`edgekit.formats.FORMATS` (TensorFlow included:
    it is the TF-TRT engine); a version is read from the first of the engine's distributions that
    is installed (``onnxruntime-gpu`` installs the ``onnxruntime`` module too).

    Example:
        >>> {"ai_edge_litert", "onnxruntime", "tensorflow"} <= set(engines())
        True
    """
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for mod, (dists, _) in engine_modules().items():
        if importlib.util.find_spec(mod) is None:
            found[mod] = None
            continue
        found[mod] = "unknown"
        for name in dists:
            try:
                found[mod] = version(name)
                break
            except PackageNotFoundError:
                continue
    return found


def throttling() -> dict[str, Any]:
    """Raspberry Pi's ``vcgencmd get_throttled`` bits and the current CPU frequencies (kHz)."""
    out: dict[str, Any] = {"throttled": None, "cpu_khz": cpu_frequencies()}
    if shutil.which("vcgencmd"):
        try:
            text = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=3).stdout
            m = re.search(r"throttled=(0x[0-9a-fA-F]+)", text)
            if m:
                out["throttled"] = int(m.group(1), 16)
        except (OSError, subprocess.SubprocessError):
            pass
    return out


def describe_throttled(bits: int | None) -> list[str]:
    """Human reasons from ``get_throttled`` bits (the documented low bits: now; high bits: since boot).

    Example:
        >>> describe_throttled(0x50005)
        ['under-voltage now', 'throttled now', 'under-voltage since boot', 'throttled since boot']
    """
    if not bits:
        return []
    names = {0: "under-voltage now", 1: "frequency capped now", 2: "throttled now", 3: "soft temperature limit now",
             16: "under-voltage since boot", 17: "frequency capped since boot", 18: "throttled since boot",
             19: "soft temperature limit since boot"}
    return [text for bit, text in sorted(names.items()) if bits & (1 << bit)]


def cpu_frequencies(root: str | os.PathLike[str] = "/") -> list[int]:
    """Current frequency of each CPU in kHz (empty where cpufreq is not exposed, e.g. most VMs)."""
    base = Path(root) / "sys/devices/system/cpu"
    freqs = []
    for f in sorted(base.glob("cpu[0-9]*/cpufreq/scaling_cur_freq"), key=lambda p: int(p.parent.parent.name[3:])):
        try:
            freqs.append(int(f.read_text().strip()))
        except (OSError, ValueError):
            pass
    return freqs


def device_info(root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """The fingerprint stored with every bench result.

    The live machine's is read once per process (``load()`` asks on every folder it opens, and
    finding GPUs may run ``nvidia-smi``); callers get their own copy.

    Args:
        root: Filesystem root to read ``/proc``, ``/sys`` and ``/etc`` under (fixture folders in tests).
    """
    if str(root) == "/":
        return copy.deepcopy(_live_info())
    return _read_info(root)


@functools.lru_cache(maxsize=1)
def _live_info() -> dict[str, Any]:
    return _read_info("/")


def _read_info(root: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    b = board(root)
    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "release": platform.release(),
        "python": platform.python_version(),
        "cpu": cpu_model(root),
        "cores": cores,
        "cpu_flags": cpu_flags(root),
        "board": b["model"],
        "raspberry_pi": b["raspberry_pi"],
        "jetson": b["jetson"],
        "l4t": b["l4t"],
        "gpus": nvidia_gpus(root),
        "engines": {k: v for k, v in engines().items() if v},
    }


def fingerprint(info: dict[str, Any]) -> str:
    """A short stable key for "the same device" across runs (board or CPU, cores, GPUs).

    Example:
        >>> fingerprint({"board": None, "cpu": "AMD EPYC", "cores": 2, "machine": "x86_64", "gpus": []})
        'x86_64/AMD EPYC/2c'
    """
    parts = [info.get("machine", "?"), info.get("board") or info.get("cpu", "?"), f"{info.get('cores', '?')}c"]
    if info.get("gpus"):
        parts.append("+".join(info["gpus"]))
    return "/".join(str(p) for p in parts)


def stable_facts(info: dict[str, Any]) -> dict[str, Any]:
    """The facts of :func:`device_info` that decide which artifact runs fastest, and nothing that drifts.

    Kept: machine, OS, CPU model and its inference ISA flags, the cores this process may use,
    board / L4T, GPU names, engine versions and edgekit's version. Left out: the kernel release,
    Python's patch version and CPU frequencies, which change on an update or under load without
    changing which artifact wins (a timing cached under them would expire for no reason).

    Example:
        >>> facts = stable_facts({"machine": "x86_64", "cpu": "AMD EPYC", "cores": 2, "cpu_flags": ["avx2"],
        ...                       "gpus": [], "engines": {"onnxruntime": "1.20.0"}, "release": "6.1"})
        >>> facts["cores"], "release" in facts
        (2, False)
    """
    from edgekit import __version__

    return {
        "machine": info.get("machine"),
        "system": info.get("system"),
        "cpu": info.get("cpu"),
        "cpu_flags": sorted(info.get("cpu_flags") or ()),
        "cores": info.get("cores"),
        "board": info.get("board"),
        "l4t": info.get("l4t"),
        "gpus": list(info.get("gpus") or ()),
        "engines": dict(sorted((info.get("engines") or {}).items())),
        "edgekit": __version__,
    }


def device_key(info: dict[str, Any] | None = None) -> str:
    """A 16-hex-digit hash of :func:`stable_facts`: equal on identical devices, different otherwise.

    This is what a measured artifact choice (:mod:`edgekit.runtime.pick`) is cached under, so a
    fleet of identical devices can share one measurement and any other device ignores it. Unlike
    :func:`fingerprint` (a readable label), it changes with engine versions and core affinity too.

    Example:
        >>> a = {"machine": "x86_64", "cpu": "AMD EPYC", "cores": 2, "gpus": [], "engines": {}}
        >>> device_key(a) == device_key(dict(a)), device_key(a) == device_key({**a, "cores": 4})
        (True, False)
        >>> len(device_key())
        16
    """
    import hashlib
    import json

    facts = stable_facts(device_info() if info is None else info)
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]
