"""The slim runtime on arm64, for real: an emulated Raspberry Pi OS userland with the real aarch64 wheels.

For each Debian suite (Raspberry Pi OS Bookworm is Debian 12 with Python 3.11; Trixie, Debian 13,
has Python 3.13) this:

1. builds an arm64 userland with ``mmdebstrap --variant=extract`` (Debian's own arm64 packages:
   python3, libstdc++6, libgomp1; ~5 s, cached);
2. installs edgekit's runtime-only set into a target folder, resolved as pip on the Pi resolves
   ``edgekit[tflite]``: pyproject's base dependencies plus the ``tflite`` extra with its environment
   markers evaluated for ``platform_machine == 'aarch64'`` (``benchmarks/pi_wheels.py``), fetched as
   aarch64 wheels with ``--platform manylinux_2_27_aarch64 --only-binary=:all:`` (cached per suite and
   requirement set); no TensorFlow;
3. runs under ``qemu-aarch64-static -cpu cortex-a72`` (a Pi 4's core) with the userland's own
   ``python3.X`` and this checkout's ``src/``:

   * ``edgekit doctor --json --reprobe``: the machine is aarch64 and the LiteRT probe (a child
     process loading and running a tiny model) says it runs;
   * ``edgekit bench`` on a converted output folder: every target's accuracy on the folder's
     eval.npz equals the same bench run on this machine (x86_64);
   * ``examples/iot_app.py --source stdin`` on a few eval samples: the same top-1 as on x86_64;
   * the crash path: with ai-edge-litert 2.3.0 laid over the set, ``doctor`` reports "crashes on
     this CPU (signal 11): install ai-edge-litert==2.1.6" instead of dying, and ``bench`` then
     refuses the folder with a one-line error.

``--bisect 2.0.2 2.1.6 2.2.0 2.3.0`` probes those ai-edge-litert releases under the emulator (the
probe child's exit says runs / crashes). Everything lands under the edgekit cache root
(``$EDGEKIT_CACHE/arm64``, default ``~/.cache/edgekit/arm64``; or ``$EDGEKIT_ARM64_CACHE``): a re-run costs the emulated runs only.

Needs: ``apt-get install mmdebstrap qemu-user-static`` (root), the Debian mirror and PyPI.

Run: ``.venv/bin/python benchmarks/arm64_check.py [--suite bookworm trixie] [--folder OUT] [--json FILE]``
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from edgekit.cache import cache_dir  # noqa: E402

# Debian suite -> its python3 (Raspberry Pi OS Bookworm/Trixie are these suites with Pi packages on top).
SUITES = {"bookworm": "3.11", "trixie": "3.13"}
PACKAGES = "python3,python3-venv,libpython{py}-stdlib,ca-certificates,libstdc++6,libgomp1"
PLATFORMS = ("manylinux_2_27_aarch64", "manylinux2014_aarch64")
CPU = "cortex-a72"  # Raspberry Pi 4's core; qemu-user 7.2 also offers cortex-a76 (Pi 5) and max
CRASHING_LITERT = "2.3.0"
HEAVY = {"tensorflow", "tf-keras", "keras", "jax", "jaxlib", "torch", "onnx", "tf2onnx"}
TOOLS = {"mmdebstrap": "mmdebstrap", "qemu-aarch64-static": "qemu-user-static"}


def base() -> Path:
    """Where the userlands, wheel sets and emulated runs' state live: ``$EDGEKIT_ARM64_CACHE``, else
    ``arm64/`` under the edgekit cache root (tests/deploy/test_arm64.py keeps it out of the test run's
    throw-away cache, so a re-run costs the emulated runs only)."""
    path = Path(os.environ.get("EDGEKIT_ARM64_CACHE") or cache_dir("arm64"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def missing_tools() -> str | None:
    """Why the check cannot run here (a tool is missing), or ``None``."""
    gone = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not gone:
        return None
    return (f"{' and '.join(gone)} not installed: apt-get install {' '.join(TOOLS[t] for t in gone)} "
            "(as root; .ci/run does it)")


def _pi_wheels() -> Any:
    spec = importlib.util.spec_from_file_location("pi_wheels", REPO / "benchmarks" / "pi_wheels.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]


def _cached_build(path: Path, build, refresh: bool = False) -> tuple[Path, bool]:
    """``path`` built once by ``build(tmp)`` (renamed into place when complete); (path, was it cached)."""
    stamp = path.with_name(path.name + ".complete")
    if stamp.exists() and path.exists() and not refresh:
        return path, True
    shutil.rmtree(path, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", dir=path.parent))
    try:
        build(tmp)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    stamp.write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
    return path, False


def _run(cmd: list[str], timeout: float = 900, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)


def userland(suite: str, refresh: bool = False) -> tuple[Path, bool]:
    """The arm64 Debian ``suite`` root folder (mmdebstrap, extract variant), cached by suite + packages."""
    py = SUITES[suite]
    include = PACKAGES.format(py=py)
    root = base() / f"{suite}-arm64-{_digest(include, 'merged-usr')}"

    def build(tmp: Path) -> None:
        tmp.rmdir()  # mmdebstrap wants to create (or find empty) its target
        p = _run(["mmdebstrap", "--quiet", "--variant=extract", "--arch=arm64", f"--include={include}", suite, tmp])
        if p.returncode != 0 or not (tmp / f"usr/bin/python{py}").exists():
            raise RuntimeError(f"mmdebstrap {suite} failed: {(p.stderr or p.stdout).strip()[-500:]}")
        # Trixie's packages install into /usr only; the /lib -> usr/lib links (where every arm64 binary
        # looks for /lib/ld-linux-aarch64.so.1) come from maintainer scripts the extract variant skips.
        for top in ("bin", "sbin", "lib"):
            if not (tmp / top).exists() and not (tmp / top).is_symlink():
                (tmp / top).symlink_to(f"usr/{top}")

    return _cached_build(root, build, refresh)


def requirements(py: str) -> list[str]:
    """``edgekit[tflite]``'s runtime set for an aarch64 device on Python ``py`` (markers evaluated there)."""
    return _pi_wheels().requirements(py, "aarch64")


def _wheels_into(target: Path, py: str, reqs: list[str], no_deps: bool = False) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
           "--target", target, "--python-version", py, "--implementation", "cp", "--only-binary=:all:"]
    for plat in PLATFORMS:
        cmd += ["--platform", plat]
    if no_deps:
        cmd.append("--no-deps")
    p = _run(cmd + reqs)
    if p.returncode != 0:
        err = next((ln for ln in p.stderr.splitlines() if ln.startswith("ERROR")), p.stderr.strip()[-400:])
        raise RuntimeError(f"pip could not fetch aarch64 wheels for cp{py} ({' '.join(reqs)}): {err}")


def installed(site: Path) -> dict[str, str]:
    """Distribution -> version of what a target folder holds (from its ``*.dist-info`` names)."""
    out = {}
    for d in site.glob("*.dist-info"):
        name, _, version = d.name[: -len(".dist-info")].partition("-")
        out[name.lower().replace("_", "-")] = version
    return dict(sorted(out.items()))


def runtime_site(py: str, refresh: bool = False) -> tuple[Path, bool]:
    """edgekit's runtime-only set as aarch64 wheels for CPython ``py``, cached per requirement set."""
    reqs = requirements(py)
    site = base() / f"site-cp{py.replace('.', '')}-{_digest(reqs, PLATFORMS)}"
    return _cached_build(site, lambda tmp: _wheels_into(tmp, py, reqs), refresh)


def litert_overlay(py: str, version: str) -> Path:
    """ai-edge-litert ``version`` alone (no deps), to lay over the runtime set (bisect, crash check)."""
    path = base() / f"litert-cp{py.replace('.', '')}-{version}"
    return _cached_build(path, lambda tmp: _wheels_into(tmp, py, [f"ai-edge-litert=={version}"], no_deps=True))[0]


class Emulator:
    """One arm64 userland + site folders, running this checkout's edgekit under qemu-aarch64-static."""

    def __init__(self, suite: str, root: Path, site: Path, cpu: str = CPU, overlays: tuple[Path, ...] = ()) -> None:
        self.suite, self.root, self.site, self.cpu, self.overlays = suite, root, site, cpu, overlays
        self.py = SUITES[suite]
        state = base() / f"state-{suite}"
        state.mkdir(exist_ok=True)
        # A clean environment: nothing of this machine's venv, its caches or its PYTHONPATH leaks in.
        self.env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(state),
            "LANG": "C.UTF-8",
            "PYTHONPATH": os.pathsep.join([*map(str, overlays), str(site), str(REPO / "src")]),
            "PYTHONPYCACHEPREFIX": str(state / "pycache"),  # keep aarch64 .pyc files out of the checkout
            "EDGEKIT_CACHE": str(state / ("cache-" + _digest([str(o) for o in overlays]))),
            "EDGEKIT_RESULTS": str(state / "results.sqlite"),
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }

    def with_overlay(self, overlay: Path) -> "Emulator":
        return Emulator(self.suite, self.root, self.site, self.cpu, (overlay, *self.overlays))

    def python(self, *args: Any, stdin: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """``python3.X ARGS`` as an aarch64 process (``sys.executable`` inside is the userland's python,
        so the probe's child process is emulated too)."""
        cmd = ["qemu-aarch64-static", "-cpu", self.cpu, "-L", self.root, self.root / f"usr/bin/python{self.py}", *args]
        env = {**self.env, "QEMU_LD_PREFIX": str(self.root), "QEMU_CPU": self.cpu}
        if _binfmt_note():
            # The kernel cannot exec an aarch64 python here, but the emulated one can exec this x86_64 qemu:
            # edgekit's probe starts its child through it, so the child is emulated as its parent is.
            env["EDGEKIT_PROBE_WRAPPER"] = f"{shutil.which('qemu-aarch64-static')} -cpu {self.cpu} -L {self.root}"
        return subprocess.run([str(c) for c in cmd], input=stdin, capture_output=True, text=True, timeout=timeout,
                              env=env, cwd=str(REPO))

    def edgekit(self, *args: Any, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.python("-m", "edgekit.cli", *args, **kw)


def _binfmt_note() -> str | None:
    # The probe's child is `sys.executable` = the userland's aarch64 python: the kernel can only exec
    # it through binfmt_misc (qemu-user-static registers it). Without it the child fails to start.
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if entry.exists() and "enabled" in entry.read_text():
        return None
    return "binfmt_misc has no enabled qemu-aarch64 entry: the probe's child process cannot start"


def x86_bench(folder: Path, runs: int) -> dict[str, Any]:
    """The same bench on this machine (its venv), for the accuracy comparison."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "bench.json"
        p = _run([sys.executable, "-m", "edgekit.cli", "bench", folder, "--runs", runs, "--warmup", "2",
                  "--no-cold-start", "--no-store", "--json", out], env={**os.environ, "EDGEKIT_RESULTS": str(Path(d) / "r.sqlite")})
        if p.returncode != 0:
            raise RuntimeError(f"x86 bench failed: {p.stderr.strip()[-500:]}")
        return json.loads(out.read_text())


def _bench_json(em: Emulator, folder: Path, runs: int) -> tuple[dict[str, Any], float]:
    state = Path(em.env["HOME"])
    out = state / "bench.json"
    out.unlink(missing_ok=True)
    t = time.monotonic()
    p = em.edgekit("bench", folder, "--runs", runs, "--warmup", "2", "--no-cold-start", "--no-store", "--json", out)
    took = time.monotonic() - t
    if p.returncode != 0 or not out.exists():
        raise RuntimeError(f"emulated bench failed ({p.returncode}): {(p.stderr or p.stdout).strip()[-800:]}")
    return json.loads(out.read_text()), took


def _samples(folder: Path, n: int) -> str:
    import numpy as np

    with np.load(folder / "eval.npz") as z:
        x = z["x"][:n]
    return "".join(json.dumps({"id": f"eval-{i}", "inputs": x[i : i + 1].tolist()}) + "\n" for i in range(len(x)))


def _iot(run, folder: Path, stdin: str, target: str) -> list[dict[str, Any]]:
    p = run(REPO / "examples" / "iot_app.py", folder, "--source", "stdin", "--target", target, stdin=stdin)
    if p.returncode != 0:
        raise RuntimeError(f"iot_app failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    return [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]


def check_suite(suite: str, folder: Path, *, cpu: str = CPU, runs: int = 20, x86: dict[str, Any] | None = None,
                iot_samples: int = 5, crash_check: bool = True, refresh: bool = False) -> dict[str, Any]:
    """Run every step for one suite; a dict of what each step found (``ok`` and ``failures``)."""
    import numpy as np

    t0 = time.monotonic()
    failures: list[str] = []
    root, root_cached = userland(suite, refresh)
    py = SUITES[suite]
    site, site_cached = runtime_site(py, refresh)
    setup_s = time.monotonic() - t0
    versions = installed(site)
    heavy = sorted(set(versions) & HEAVY)
    if heavy:
        failures.append(f"the runtime set pulled in {heavy}")
    em = Emulator(suite, root, site, cpu)
    res: dict[str, Any] = {"suite": suite, "python": py, "cpu": cpu, "userland": str(root), "site": str(site),
                           "cached": root_cached and site_cached, "setup_s": round(setup_s, 1), "versions": versions}

    # -- doctor: aarch64, and the LiteRT probe (an emulated child process) runs its model
    t = time.monotonic()
    p = em.edgekit("doctor", "--json", "--reprobe")
    res["doctor_s"] = round(time.monotonic() - t, 1)
    if p.returncode != 0:
        failures.append(f"doctor exited {p.returncode}: {p.stderr.strip()[-300:]}")
    else:
        d = json.loads(p.stdout)
        res["doctor"] = {"machine": d["device"]["machine"], "python": d["python"], "engines": d["device"]["engines"],
                         "tflite": d["probes"].get("tflite", {}).get("verdict")}
        if d["device"]["machine"] != "aarch64":
            failures.append(f"doctor sees machine {d['device']['machine']!r}, not aarch64")
        if d["probes"].get("tflite", {}).get("status") != "runs":
            failures.append(f"LiteRT probe: {d['probes'].get('tflite', {}).get('verdict')}")

    # -- bench: accuracy per target equals the x86 run's
    try:
        bench, took = _bench_json(em, folder, runs)
        res["bench_s"] = round(took, 1)
        rows = {r["target"]: r for r in bench["results"]}
        res["bench"] = {t: {"p50_ms": r["latency_ms"]["p50"] if r.get("latency_ms") else None, "accuracy": r.get("accuracy"),
                            "engine": f"{r.get('engine')} {r.get('engine_version')}", "status": r.get("status")}
                        for t, r in rows.items()}
        if x86 is not None:
            ref = {r["target"]: r.get("accuracy") for r in x86["results"]}
            res["x86_accuracy"] = ref
            for target, acc in ref.items():
                got = rows.get(target, {}).get("accuracy")
                if got is None or acc is None or got != acc:
                    failures.append(f"{target}: accuracy {got} under emulation vs {acc} on x86_64")
        if any(r.get("status") != "ok" for r in rows.values()):
            failures.append(f"bench rows not ok: {[(t, r.get('status'), r.get('error')) for t, r in rows.items()]}")
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        failures.append(str(exc))

    # -- examples/iot_app.py on a few inputs: the same answers as on x86_64
    try:
        stdin = _samples(folder, iot_samples)
        # One artifact on both machines (the rules would pick int8 on arm64, fp32 on this x86), so the
        # outputs themselves compare, not only the top-1.
        targets = [a["target"] for a in json.loads((folder / "manifest.json").read_text())["artifacts"] if a.get("path")]
        target = next((t for t in targets if t.endswith(":fp32")), targets[0])
        t = time.monotonic()
        arm = _iot(em.python, folder, stdin, target)
        res["iot_s"] = round(time.monotonic() - t, 1)
        host = _iot(lambda *a, stdin=None: _run([sys.executable, *a], input=stdin, cwd=str(REPO)), folder, stdin, target)
        res["iot"] = {"target": target, "n": len(arm), "top1": [r.get("top1") for r in arm],
                      "x86_top1": [r.get("top1") for r in host]}
        if len(arm) != iot_samples or [r.get("top1") for r in arm] != [r.get("top1") for r in host]:
            failures.append(f"iot_app top-1 {res['iot']['top1']} under emulation vs {res['iot']['x86_top1']} on x86_64")
        else:
            err = max(float(np.max(np.abs(np.asarray(list(a["outputs"].values())[0]) - np.asarray(list(h["outputs"].values())[0]))))
                      for a, h in zip(arm, host))
            res["iot"]["max_abs_diff_vs_x86"] = err
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
        failures.append(str(exc))

    # -- the crash path: LiteRT 2.3.0 segfaults here; doctor says so and bench refuses, nobody dies
    if crash_check:
        bad = em.with_overlay(litert_overlay(py, CRASHING_LITERT))
        t = time.monotonic()
        p = bad.edgekit("doctor", "--reprobe")
        line = next((ln.strip() for ln in p.stdout.splitlines() if "tflite" in ln and ("❌" in ln or "✅" in ln)), "")
        install = next((ln.strip() for ln in p.stdout.splitlines() if ln.strip().startswith("install: pip install 'ai-edge-litert")), "")
        # The verdict is cached now: load() (the rule choice, what iot_app and serve use) refuses the engine.
        ld = bad.python("-c", "import sys, edgekit.runtime as rt\n"
                              "try:\n    rt.load(sys.argv[1])\nexcept Exception as e:\n    print(f'{type(e).__name__}: {e}'); sys.exit(3)",
                        folder)
        b = bad.edgekit("bench", folder, "--runs", "2", "--no-cold-start", "--no-store")
        res["crash"] = {"doctor_rc": p.returncode, "doctor_line": line, "install": install,
                        "load_rc": ld.returncode, "load_error": (ld.stdout.strip().splitlines() or [""])[-1],
                        "bench_rc": b.returncode, "bench_tail": (b.stdout + b.stderr).strip().splitlines()[-3:],
                        "s": round(time.monotonic() - t, 1)}
        want = f"ai-edge-litert {CRASHING_LITERT} crashes on this CPU (signal 11): install ai-edge-litert=="
        if p.returncode != 0 or want not in line:
            failures.append(f"crash check: doctor exited {p.returncode}, tflite line {line!r}")
        if ld.returncode != 3 or "crashes on this CPU (signal 11)" not in res["crash"]["load_error"]:
            failures.append(f"crash check: load() exited {ld.returncode}: {res['crash']['load_error']!r}")
        if b.returncode < 0 or b.returncode >= 128:
            # bench asks runnable() per artifact, which reads the verdict: it lists the engine as not
            # runnable here instead of loading it and dying.
            failures.append(f"crash check: edgekit bench died (exit {b.returncode}): {res['crash']['bench_tail']}")

    res["failures"] = failures
    res["ok"] = not failures
    res["wall_s"] = round(time.monotonic() - t0, 1)
    return res


def bisect(suite: str, versions: list[str], cpu: str = CPU) -> dict[str, str]:
    """Probe each ai-edge-litert release under the emulator: ``runs`` or ``crashes (signal N)``."""
    root, _ = userland(suite)
    site, _ = runtime_site(SUITES[suite])
    model = REPO / "src" / "edgekit" / "runtime" / "probe_models" / "probe.tflite"
    out = {}
    for v in versions:
        em = Emulator(suite, root, site, cpu).with_overlay(litert_overlay(SUITES[suite], v))
        p = em.python("-m", "edgekit.runtime.probe_child", "edgekit.runtime.backends.litert:LiteRTBackend", "tflite", model)
        if p.returncode < 0 or p.returncode >= 128:
            sig = -p.returncode if p.returncode < 0 else p.returncode - 128
            out[v] = f"crashes (signal {sig})"
        else:
            m = re.search(r'EDGEKIT-PROBE result (\{.*\})', p.stdout)
            out[v] = json.loads(m.group(1))["status"] if m else f"exit {p.returncode}: {p.stderr.strip()[-200:]}"
    return out


def default_folder() -> Path:
    """digits-cnn converted to fp32 and int8 TFLite, once (needs this machine's full install)."""
    def build(tmp: Path) -> None:
        p = _run([sys.executable, "-m", "edgekit.cli", "convert", "digits-cnn", "-t", "tflite:fp32", "-t", "tflite:int8",
                  "-o", tmp, "--force"])
        if p.returncode != 0:
            raise RuntimeError(f"convert failed: {p.stderr.strip()[-500:]}")

    return _cached_build(base() / "digits-out", build)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", nargs="+", default=list(SUITES), choices=list(SUITES))
    ap.add_argument("--folder", type=Path, help="An edgekit output folder with eval.npz (default: digits-cnn fp32 + int8).")
    ap.add_argument("--cpu", default=CPU, help=f"qemu -cpu model (default {CPU}: Raspberry Pi 4; cortex-a76: Pi 5).")
    ap.add_argument("--runs", type=int, default=20, help="Timed bench runs (emulation is slow; p50 is proof it runs, not speed).")
    ap.add_argument("--bisect", nargs="+", metavar="VERSION", help="Only probe these ai-edge-litert releases.")
    ap.add_argument("--no-crash-check", action="store_true", help="Skip the ai-edge-litert 2.3.0 crash-report step.")
    ap.add_argument("--refresh", action="store_true", help="Rebuild the cached userland and wheel set.")
    ap.add_argument("--json", type=Path, help="Write every result as JSON.")
    args = ap.parse_args(argv)
    why = missing_tools()
    if why:
        print(f"arm64 check cannot run: {why}", file=sys.stderr)
        return 2
    note = _binfmt_note()
    if note:
        print(f"note: {note}; starting it through qemu-aarch64-static instead (EDGEKIT_PROBE_WRAPPER)", file=sys.stderr)
    if args.bisect:
        rows = {s: bisect(s, args.bisect, args.cpu) for s in args.suite}
        for s, r in rows.items():
            print(f"{s} (cp{SUITES[s]}, qemu -cpu {args.cpu}): " + ", ".join(f"{v} {st}" for v, st in r.items()))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        return 0
    folder = (args.folder or default_folder()).resolve()
    x86 = x86_bench(folder, args.runs)
    results = []
    for suite in args.suite:
        try:
            r = check_suite(suite, folder, cpu=args.cpu, runs=args.runs, x86=x86, crash_check=not args.no_crash_check,
                            refresh=args.refresh)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            r = {"suite": suite, "ok": False, "failures": [str(exc)]}
        results.append(r)
        _print(r)
    if args.json:
        args.json.write_text(json.dumps({"folder": str(folder), "results": results}, indent=2))
    return 0 if all(r["ok"] for r in results) else 1


def _print(r: dict[str, Any]) -> None:
    print(f"== {r['suite']} (Python {r.get('python')}, qemu -cpu {r.get('cpu')}): {'ok' if r['ok'] else 'FAILED'}"
          + (f" in {r['wall_s']} s ({'cached' if r['cached'] else 'built'} userland + wheels: {r['setup_s']} s)" if "wall_s" in r else ""))
    if r.get("versions"):
        print("   runtime set: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()))
    if r.get("doctor"):
        print(f"   doctor ({r['doctor_s']} s): {r['doctor']['machine']}, Python {r['doctor']['python']}; tflite probe: {r['doctor']['tflite']}")
    for t, b in (r.get("bench") or {}).items():
        print(f"   bench {t:<12} {b['engine']}: p50 {b['p50_ms']} ms, accuracy {b['accuracy']} % "
              f"(x86_64: {(r.get('x86_accuracy') or {}).get(t)} %)")
    if r.get("iot"):
        print(f"   iot_app: top-1 {r['iot']['top1']} (x86_64 {r['iot']['x86_top1']}), max |diff| {r['iot'].get('max_abs_diff_vs_x86')}")
    if r.get("crash"):
        c = r["crash"]
        print(f"   with ai-edge-litert {CRASHING_LITERT}: doctor exit {c['doctor_rc']}: {c['doctor_line']}\n"
              f"      {c['install']}\n   load() exit {c['load_rc']}: {c['load_error']}\n"
              f"   bench exit {c['bench_rc']}: {c.get('bench_note') or ' / '.join(c['bench_tail'])}")
    for f in r.get("failures", []):
        print(f"   FAIL {f}")


if __name__ == "__main__":
    sys.exit(main())
