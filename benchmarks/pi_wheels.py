"""Do ``edgekit[tflite]``'s dependencies have linux-aarch64 wheels (Raspberry Pi OS 64-bit, Jetson)?

For each Python version, asks pip to resolve numpy, click and ai-edge-litert (the ``tflite`` extra,
read from pyproject.toml) for a manylinux aarch64 platform with ``--only-binary=:all:`` and prints
what resolved: a version per package, or pip's error. Needs the package index (PyPI); nothing is
installed. Also checks 32-bit Raspberry Pi OS (armv7l), where LiteRT ships no wheels.

Run: ``.venv/bin/python benchmarks/pi_wheels.py [--python 3.10 3.11 3.12 3.13] [--json]``
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AARCH64 = ("manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
ARMV7 = ("manylinux_2_31_armv7l", "linux_armv7l")


def declared() -> list[str]:
    """Base dependencies plus the ``tflite`` extra, as written in pyproject.toml (markers and all)."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"]) + list(project["optional-dependencies"]["tflite"])


def target_env(python: str = "3.11", machine: str = "aarch64") -> dict[str, str]:
    """The PEP 508 marker environment of a Linux device (a Pi or a Jetson) running CPython ``python``."""
    return {"python_version": python, "python_full_version": f"{python}.0", "platform_machine": machine,
            "platform_system": "Linux", "sys_platform": "linux", "os_name": "posix", "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "platform_release": "", "platform_version": "",
            "implementation_version": f"{python}.0"}


def requirements(python: str = "3.11", machine: str = "aarch64") -> list[str]:
    """:func:`declared` with each marker evaluated for the device: what pip *on the device* installs.

    ``pip download --platform`` evaluates markers for the machine it runs on, not for the platform
    it is told to fetch for, so the extra's ``platform_machine == 'aarch64'`` line would be
    dropped here on x86_64; evaluating them ourselves keeps the resolution the Pi's.
    """
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip always carries a copy
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]

    env = target_env(python, machine)
    out = []
    for line in declared():
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            req.marker = None
            out.append(str(req))
    return out


def resolve(python: str, platforms: tuple[str, ...] = AARCH64, reqs: list[str] | None = None,
            no_deps: bool = False, timeout: float = 600) -> dict[str, object]:
    """``pip download --only-binary=:all:`` for one Python version; {ok, wheels: {name: file}, mb, error}."""
    reqs = reqs or requirements(python, "armv7l" if any("armv7" in p for p in platforms) else "aarch64")
    with tempfile.TemporaryDirectory() as dest:
        cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--implementation", "cp",
               "--python-version", python, "--dest", dest, "--quiet", "--disable-pip-version-check"]
        for plat in platforms:
            cmd += ["--platform", plat]
        if no_deps:
            cmd.append("--no-deps")
        proc = subprocess.run(cmd + reqs, capture_output=True, text=True, timeout=timeout)
        files = sorted(p.name for p in Path(dest).glob("*.whl"))
        size = sum(p.stat().st_size for p in Path(dest).glob("*.whl"))
    wheels = {re.split(r"-\d", f, maxsplit=1)[0].lower().replace("_", "-"): f for f in files}
    error = None
    if proc.returncode != 0:
        error = next((ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")), proc.stderr.strip()[-300:])
    return {"python": python, "ok": proc.returncode == 0, "wheels": wheels, "download_mb": round(size / 2**20, 1),
            "error": error}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python", nargs="+", default=["3.10", "3.11", "3.12", "3.13"])
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = [resolve(v) for v in args.python]
    # numpy comes from piwheels on 32-bit Pi OS; LiteRT itself is what has no armv7 wheels anywhere.
    armv7 = resolve(args.python[min(1, len(args.python) - 1)], ARMV7, reqs=["ai-edge-litert"], no_deps=True)
    if args.json:
        print(json.dumps({"aarch64": rows, "armv7l": armv7}, indent=2))
    else:
        print(f"edgekit[tflite] = {', '.join(requirements())} on linux-aarch64 (glibc >= 2.27: {AARCH64[0]} or older tags)")
        for r in rows:
            if not r["ok"]:
                print(f"  cp{r['python']}: FAILED {r['error']}")
                continue
            w = r["wheels"]
            key = {k: re.search(r"-([\d.]+(?:\.post\d+)?)-", w[k]).group(1) for k in ("ai-edge-litert", "numpy", "click") if k in w}
            others = sorted(set(w) - set(key))
            print(f"  cp{r['python']}: ok  ai-edge-litert {key.get('ai-edge-litert')} · numpy {key.get('numpy')} · "
                  f"click {key.get('click')}  (+ {', '.join(others)}; {r['download_mb']} MB of wheels)")
        print(f"  armv7l (32-bit Pi OS), cp{armv7['python']}: {'ok' if armv7['ok'] else 'no wheels: ' + str(armv7['error'])}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
