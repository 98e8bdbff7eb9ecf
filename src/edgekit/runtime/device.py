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


# Arm's documented MIDR part numbers ("CPU part" in /proc/cpuinfo) by implementer ("CPU implementer"):
# 0x41 Arm Ltd, 0x4e NVIDIA. The cores of the boards edgekit targets and their neighbours.
ARM_PARTS = {
    0x41: {0xd03: "Cortex-A53", 0xd04: "Cortex-A35", 0xd05: "Cortex-A55", 0xd07: "Cortex-A57", 0xd08: "Cortex-A72",
           0xd09: "Cortex-A73", 0xd0a: "Cortex-A75", 0xd0b: "Cortex-A76", 0xd0c: "Neoverse-N1", 0xd0d: "Cortex-A77",
           0xd40: "Neoverse-V1", 0xd41: "Cortex-A78", 0xd42: "Cortex-A78AE", 0xd44: "Cortex-X1", 0xd46: "Cortex-A510",
           0xd47: "Cortex-A710", 0xd48: "Cortex-X2", 0xd49: "Neoverse-N2", 0xd4b: "Cortex-A78C", 0xd4f: "Neoverse-V2"},
    0x4e: {0x004: "Carmel"},
}


def _cpuinfo_fields(root: Path) -> list[dict[str, str]]:
    """``/proc/cpuinfo`` as one dict per paragraph (a processor, or the trailing board lines)."""
    blocks: list[dict[str, str]] = [{}]
    for line in _read(root, "/proc/cpuinfo").splitlines():
        if not line.strip():
            blocks.append({})
        elif ":" in line:
            k, v = line.split(":", 1)
            blocks[-1][k.strip()] = v.strip()
    return [b for b in blocks if b]


def cpu_cores(root: str | os.PathLike[str] = "/") -> dict[str, int]:
    r"""ARM core names from ``/proc/cpuinfo``'s implementer and part ids, with how many of each.

    Empty on x86, and for a part id not in :data:`ARM_PARTS` the id itself is the name.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp()); (root / "proc").mkdir()
        >>> _ = (root / "proc/cpuinfo").write_text("processor : 0\nCPU implementer : 0x41\nCPU part : 0xd0b\n\n"
        ...                                       "processor : 1\nCPU implementer : 0x41\nCPU part : 0xd0b\n")
        >>> cpu_cores(root)
        {'Cortex-A76': 2}
    """
    counts: dict[str, int] = {}
    for b in _cpuinfo_fields(Path(root)):
        if "CPU part" not in b:
            continue
        try:
            impl, part = int(b.get("CPU implementer", "0"), 16), int(b["CPU part"], 16)
        except ValueError:
            continue
        name = ARM_PARTS.get(impl, {}).get(part, f"part {b['CPU part']} (implementer {b.get('CPU implementer', '?')})")
        counts[name] = counts.get(name, 0) + 1
    return counts


def cpu_core(root: str | os.PathLike[str] = "/") -> str | None:
    """The ARM core(s) in one string (``"Cortex-A76"``, ``"4x Cortex-A55 + 4x Cortex-A76"``), ``None`` off ARM.

    Example:
        >>> cpu_core("/nonexistent") is None
        True
    """
    counts = cpu_cores(root)
    if not counts:
        return None
    if len(counts) == 1:
        return next(iter(counts))
    return " + ".join(f"{n}x {name}" for name, n in sorted(counts.items()))


def cpu_model(root: str | os.PathLike[str] = "/") -> str:
    """CPU model from ``/proc/cpuinfo`` (x86 ``model name``; ARM ``Model``, ``Hardware`` or the core name)."""
    info = _read(Path(root), "/proc/cpuinfo")
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in info.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    core = cpu_core(root)
    if core:  # a Jetson's cpuinfo names no model: the core is the best description there is
        return f"ARM {core}"
    return platform.processor() or platform.machine()


def machine(root: str | os.PathLike[str] = "/") -> str:
    """The CPU architecture: ``platform.machine()`` here; for a fixture root, read from its ``/proc/cpuinfo``.

    Example:
        >>> machine() == platform.machine()
        True
    """
    if str(root) == "/":
        return platform.machine()
    blocks = _cpuinfo_fields(Path(root))
    if any("CPU implementer" in b for b in blocks):
        arch = next((b.get("CPU architecture") for b in blocks if b.get("CPU architecture")), "8")
        return "armv7l" if arch.strip() == "7" else "aarch64"
    if any("model name" in b or "flags" in b for b in blocks):
        return "x86_64"
    return platform.machine()


def core_count(root: str | os.PathLike[str] = "/") -> int:
    """Cores this process may use (affinity); for a fixture root, the processors its cpuinfo lists."""
    if str(root) != "/":
        n = sum(1 for b in _cpuinfo_fields(Path(root)) if "processor" in b)
        if n:
            return n
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
    if "asimd" in flags:
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
    b = board(root)
    return {
        "machine": machine(root),
        "system": platform.system(),
        "release": platform.release(),
        "python": platform.python_version(),
        "cpu": cpu_model(root),
        "cpu_core": cpu_core(root),
        "cores": core_count(root),
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

    Kept: machine, OS, CPU model (and ARM core) and its inference ISA flags, the cores this process may use,
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
        # The ARM core (Cortex-A72 vs A76) decides kernels where the CPU model is only a board name;
        # only where known, so keys made before it was read stay valid elsewhere.
        **({"cpu_core": info["cpu_core"]} if info.get("cpu_core") else {}),
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
