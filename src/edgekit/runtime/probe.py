"""Does an engine really run on this CPU? Ask a child process, so a crash kills the child, not you.

An engine is native code: a wheel built for the wrong CPU features dies with SIGSEGV or SIGILL
inside its constructor, taking the whole process with it and printing nothing useful (seen:
ai-edge-litert 2.2.0 and 2.3.0 segfault in ``Interpreter(...)`` on arm64 under qemu-user 7.2, while
2.0.2 to 2.1.6 run). :func:`probe` runs, in a fresh interpreter, what ``load()`` would (:mod:`edgekit.runtime.probe_child`): the
backend's own availability check, then opening a tiny bundled model of the format and one
inference on it. The verdict is cached per (format, engine, engine version, device) under the
edgekit cache root, so it is paid once per engine upgrade, not per load.

Who reads the verdict: ``edgekit doctor`` shows it per format (probing what is not cached yet);
:func:`edgekit.runtime.artifacts.runnable` (so ``load()``, ``edgekit bench`` and the chooser)
consults :func:`known_crash`, which reads the cache only — set ``EDGEKIT_PROBE=1`` to have it probe
an engine it has no verdict for (once, then cached).

A plug-in format's backend may offer a model to probe with: a public ``probe_model()`` method
returning a path (or ``None``). Without one (and without a bundled model) the probe still runs the
availability check out of process — which imports the engine — and reports ``available``.

Example:
    >>> r = probe("tflite")
    >>> r.status, r.ok
    ('runs', True)
    >>> r.verdict().startswith("ai-edge-litert ") and "runs a model" in r.verdict()
    True
    >>> known_crash("tflite") is None
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from edgekit.cache import cache_dir
from edgekit.formats import FORMATS

PROBE_SCHEMA = "edgekit.probe/1"
DEFAULT_TIMEOUT_S = 120.0  # an emulated or cold Pi imports numpy + an engine in tens of seconds
# What the child prints before each step and with its result; engines print to stdout too.
MARK = "EDGEKIT-PROBE"
MODELS = Path(__file__).with_name("probe_models")
# Tiny models (1x4 -> Dense(2) -> ReLU, ~1 KB) shipped as package data; ones in -> [[2.0, 1.5]] out.
BUNDLED = {"tflite": MODELS / "probe.tflite", "onnx": MODELS / "probe.onnx"}
# The newest release of an engine that ran under the arm64 emulator when the bundled model crashed
# the newer ones (benchmarks/arm64_check.py re-checks it). Named in the fix of a crash verdict.
KNOWN_GOOD = {"ai-edge-litert": "2.1.6"}
# Statuses; "runs" and "available" are the good ones.
RUNS, AVAILABLE, UNAVAILABLE, CRASHED, TIMEOUT, ERROR = "runs", "available", "unavailable", "crashed", "timeout", "error"


@dataclass(frozen=True)
class ProbeResult:
    """What one engine did in a child process on this device.

    Attributes:
        format: The artifact format probed (a key of :data:`edgekit.formats.FORMATS`).
        engine: The engine's distribution (``ai-edge-litert``), ``None`` when none is installed.
        version: Its installed version.
        device: A readable label of the device (:func:`edgekit.runtime.device.fingerprint`).
        key: The cache key (format, backend, engine, version, device facts).
        status: ``runs`` (loaded and ran the tiny model), ``available`` (engine imports, no model to
            run), ``unavailable`` (the backend says why), ``crashed`` (killed by a signal),
            ``timeout`` or ``error`` (a Python exception while loading or running).
        stage: Where the child was when it stopped: ``import``, ``open`` or ``run``.
        signal: The signal that killed it (``crashed``).
        reason: The backend's reason (``unavailable``) or the error's text (``error``).
        install: What to install for an ``unavailable`` engine.
        fix: What to do about a crash, in one clause (``install ai-edge-litert==2.1.6``).
        seconds: How long the child took.
        created: When it was probed (UTC, ISO 8601).
        cached: Whether this call read it from the cache.
    """

    format: str
    engine: str | None
    version: str | None
    device: str
    key: str
    status: str
    stage: str | None = None
    signal: int | None = None
    reason: str | None = None
    install: str | None = None
    fix: str | None = None
    seconds: float = 0.0
    created: str = ""
    cached: bool = False

    @property
    def ok(self) -> bool:
        """Whether the engine ran (or, with no model to run, imported) in the child."""
        return self.status in (RUNS, AVAILABLE)

    @property
    def crashed(self) -> bool:
        """Whether the child died of a signal or hung: the engine would take the caller down too."""
        return self.status in (CRASHED, TIMEOUT)

    def verdict(self) -> str:
        """The result in one line, naming the fix when there is one.

        Example:
            >>> r = ProbeResult("tflite", "ai-edge-litert", "2.3.0", "aarch64/Cortex-A72/4c", "k", CRASHED,
            ...                 stage="open", signal=11, fix="install ai-edge-litert==2.1.6")
            >>> r.verdict()
            'ai-edge-litert 2.3.0 crashes on this CPU (signal 11): install ai-edge-litert==2.1.6 (SIGSEGV while loading a model, in a probe subprocess)'
        """
        who = f"{self.engine} {self.version}" if self.engine else f"the {self.format} engine"
        where = {"import": "importing the engine", "open": "loading a model", "run": "running a model"}.get(
            self.stage or "", "starting")
        if self.status == CRASHED:
            name = _signal_name(self.signal)
            return (f"{who} crashes on this CPU (signal {self.signal}): {self.fix} "
                    f"({name + ' ' if name else ''}while {where}, in a probe subprocess)")
        if self.status == TIMEOUT:
            return f"{who} hangs on this CPU ({where} took over {self.seconds:.0f} s in a probe subprocess): {self.fix}"
        if self.status == RUNS:
            return f"{who} loads and runs a model here ({self.seconds:.1f} s in a probe subprocess)"
        if self.status == AVAILABLE:
            return f"{who} imports here (no probe model for {self.format}: not run)"
        if self.status == UNAVAILABLE:
            return str(self.reason)
        return f"{who} failed while {where}: {self.reason}"

    def record(self) -> dict[str, Any]:
        """The stored form (the cache file's JSON)."""
        d = {"schema": PROBE_SCHEMA, **dataclasses.asdict(self)}
        d.pop("cached")
        return d

    def to_dict(self) -> dict[str, Any]:
        """The stored form plus ``cached``, ``ok`` and the one-line ``verdict`` (``doctor --json``)."""
        return {**self.record(), "cached": self.cached, "ok": self.ok, "verdict": self.verdict()}

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> "ProbeResult":
        """Read a stored record; ``ValueError`` on another schema or a broken one."""
        if d.get("schema") != PROBE_SCHEMA:
            raise ValueError(f"schema {d.get('schema')!r} is not {PROBE_SCHEMA!r}")
        names = {f.name for f in dataclasses.fields(cls)} - {"cached"}
        try:
            return cls(**{k: d[k] for k in names if k in d})
        except TypeError as exc:
            raise ValueError(f"broken probe record: {exc}") from None


def _signal_name(num: int | None) -> str:
    try:
        return signal.Signals(num).name if num else ""
    except ValueError:
        return ""


def engine_of(fmt: str) -> tuple[str | None, str | None]:
    """The distribution and version of the engine ``fmt``'s backend would use here (found, not imported).

    The first of the format's engines (:data:`edgekit.formats.FORMATS`, in the backend's order)
    whose module is installed.

    Example:
        >>> engine_of("tflite")[0]
        'ai-edge-litert'
    """
    from importlib.metadata import PackageNotFoundError, version

    spec = FORMATS[fmt]
    for eng in spec.engines:
        if importlib.util.find_spec(eng.module) is None:
            continue
        for dist in eng.distributions:
            try:
                return dist, version(dist)
            except PackageNotFoundError:
                continue
        return eng.distributions[0] if eng.distributions else eng.module, "unknown"
    return None, None


def probe_key(fmt: str, engine: str | None, version: str | None, info: dict[str, Any] | None = None) -> str:
    """16 hex digits naming one (format, backend, engine version, device) verdict.

    The device part is :func:`edgekit.runtime.device.stable_facts` without the other engines'
    versions: installing onnxruntime does not change whether LiteRT crashes here.

    Example:
        >>> a = probe_key("tflite", "ai-edge-litert", "2.3.0")
        >>> a == probe_key("tflite", "ai-edge-litert", "2.3.0"), a == probe_key("tflite", "ai-edge-litert", "2.1.6")
        (True, False)
    """
    from edgekit.runtime.device import device_info, stable_facts

    facts = stable_facts(device_info() if info is None else info)
    facts.pop("engines", None)
    spec = FORMATS.get(fmt)
    blob = json.dumps({"format": fmt, "backend": spec.backend if spec else None, "engine": engine, "version": version,
                       "device": facts, "python": sys.version_info[:2]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(key: str) -> Path:
    """Where the verdict for ``key`` is kept: ``$EDGEKIT_CACHE/probe/<key>.json``."""
    return cache_dir("probe") / f"{key}.json"


def cached(fmt: str) -> ProbeResult | None:
    """The stored verdict for ``fmt``'s installed engine on this device, or ``None``. Runs nothing.

    Example:
        >>> cached("no-such-format") is None
        True
    """
    if fmt not in FORMATS:
        return None
    engine, version = engine_of(fmt)
    path = cache_path(probe_key(fmt, engine, version))
    try:
        return dataclasses.replace(ProbeResult.from_record(json.loads(path.read_text())), cached=True)
    except (OSError, ValueError):
        return None  # none yet, or unreadable: as if never probed


def probe(fmt: str, *, timeout: float = DEFAULT_TIMEOUT_S, refresh: bool = False) -> ProbeResult:
    """The verdict for ``fmt``'s installed engine here: from the cache, else from a child process.

    Args:
        fmt: A format of :data:`edgekit.formats.FORMATS`.
        timeout: Seconds the child may take before it counts as hung (and is killed).
        refresh: Probe again even when a verdict is cached.

    Example:
        >>> probe("onnx").status in ("runs", "unavailable")
        True
    """
    return probe_many([fmt], timeout=timeout, refresh=refresh)[fmt]


def probe_many(fmts: Iterable[str], *, timeout: float = DEFAULT_TIMEOUT_S, refresh: bool = False) -> dict[str, ProbeResult]:
    """:func:`probe` for several formats, the children running side by side (``doctor``'s wall time
    is then the slowest engine's import, not the sum: TensorFlow's alone is ~13 s).

    Example:
        >>> sorted(probe_many(["tflite", "onnx"]))
        ['onnx', 'tflite']
    """
    from edgekit.runtime.device import device_info, fingerprint

    info = device_info()
    label = fingerprint(info)
    out: dict[str, ProbeResult] = {}
    running: dict[str, tuple[subprocess.Popen[str], Any, float, str, str | None, str | None]] = {}
    for fmt in dict.fromkeys(fmts):
        hit = None if refresh else cached(fmt)
        if hit is not None:
            out[fmt] = hit
            continue
        spec = FORMATS[fmt]
        engine, version = engine_of(fmt)
        key = probe_key(fmt, engine, version, info)
        if engine is None:
            # Nothing installed: nothing can crash, and the backend's own check is cheap. Not cached,
            # so the verdict appears as soon as the engine is installed.
            out[fmt] = _in_process_unavailable(fmt, label, key)
            continue
        log = tempfile.TemporaryFile(mode="w+")
        cmd = [*wrapper(), sys.executable, "-m", "edgekit.runtime.probe_child", spec.backend, fmt, _model_arg(fmt)]
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=_child_env())
        except OSError as exc:  # this Python cannot start itself (an emulator without binfmt_misc): say so, cache nothing
            log.close()
            out[fmt] = ProbeResult(fmt, engine, version, label, key, ERROR, reason=(
                f"could not start the probe ({exc}); set EDGEKIT_PROBE_WRAPPER to what runs this Python"), created=_now())
            continue
        running[fmt] = (proc, log, time.monotonic(), key, engine, version)
    for fmt, (proc, log, start, key, engine, version) in running.items():
        left = max(0.1, timeout - (time.monotonic() - start))
        try:
            rc = proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = None
        seconds = round(time.monotonic() - start, 2)
        log.seek(0)
        text = log.read()
        log.close()
        result = _interpret(fmt, rc, text, seconds, label, key, engine, version)
        _store(result)
        out[fmt] = result
    return {f: out[f] for f in dict.fromkeys(fmts)}


def known_crash(fmt: str) -> str | None:
    """The one-line reason ``fmt``'s engine must not be loaded here, from a cached verdict; else ``None``.

    Reads the cache only, unless ``EDGEKIT_PROBE=1`` is set: then an engine with no verdict yet is
    probed once (a child process, seconds) and the verdict cached. Never raises: a verdict that
    cannot be read is no verdict.

    Example:
        >>> known_crash("tflite") is None
        True
    """
    try:
        if fmt not in FORMATS:
            return None
        hit = cached(fmt)
        if hit is None and os.environ.get("EDGEKIT_PROBE", "").lower() in ("1", "true", "yes", "on"):
            hit = probe(fmt)
        if hit is None or not hit.crashed:
            return None
        return f"{hit.verdict()}; `edgekit doctor --reprobe` checks again"
    except Exception:  # noqa: BLE001 - a broken cache must never stop a load that would work
        return None


def wrapper() -> list[str]:
    """What runs the probe's child before ``sys.executable``: ``$EDGEKIT_PROBE_WRAPPER``, split like a shell.

    Empty normally. Under an emulator that the kernel cannot start by itself (qemu-user without
    binfmt_misc, as in ``benchmarks/arm64_check.py``) it is the emulator's command line, so the child
    is emulated as its parent is.

    Example:
        >>> import os
        >>> os.environ["EDGEKIT_PROBE_WRAPPER"] = "qemu-aarch64-static -cpu cortex-a72"
        >>> wrapper()
        ['qemu-aarch64-static', '-cpu', 'cortex-a72']
        >>> del os.environ["EDGEKIT_PROBE_WRAPPER"]; wrapper()
        []
    """
    import shlex

    return shlex.split(os.environ.get("EDGEKIT_PROBE_WRAPPER", ""))


def _model_arg(fmt: str) -> str:
    path = BUNDLED.get(fmt)
    return str(path) if path is not None and path.is_file() else ""


def _child_env() -> dict[str, str]:
    # The child must import what the parent can: a plug-in format registered at run time names a
    # backend module that is only on the parent's sys.path (tests/, a notebook's folder).
    env = dict(os.environ)
    paths = [p for p in sys.path if p] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.pop("EDGEKIT_PROBE", None)  # the child loads the engine itself: no probe of the probe
    return env


def _in_process_unavailable(fmt: str, label: str, key: str) -> ProbeResult:
    from edgekit.runtime.backends import get_backend

    spec = FORMATS[fmt]
    try:
        err = get_backend(fmt).unavailable()
    except Exception as exc:  # noqa: BLE001 - a broken plug-in is reported, not fatal
        return ProbeResult(fmt, None, None, label, key, ERROR, stage="import", reason=f"{type(exc).__name__}: {exc}",
                           install=spec.install_hint, created=_now())
    if err is None:  # an engine listed nowhere in the table (numpy-only plug-in): nothing native to crash
        return ProbeResult(fmt, None, None, label, key, AVAILABLE, created=_now())
    return ProbeResult(fmt, None, None, label, key, UNAVAILABLE, reason=str(err), install=install_for(spec, err),
                       created=_now())


def install_for(spec: Any, err: Exception) -> str:
    """What to install when ``spec``'s backend says ``err`` (the extra a missing engine names, else the table's)."""
    from edgekit.errors import MissingDependencyError

    if spec.install is None and isinstance(err, MissingDependencyError):
        return err.install
    return spec.install_hint


def crash_fix(fmt: str, engine: str | None, version: str | None) -> str:
    """What to do when ``engine`` crashes: a known-good release, another engine, or another format.

    Example:
        >>> crash_fix("tflite", "ai-edge-litert", "2.3.0")
        "install ai-edge-litert==2.1.6 (pip install 'ai-edge-litert==2.1.6'), or use an onnx artifact"
        >>> crash_fix("onnx", "onnxruntime", "1.20.0")
        'install another onnxruntime release, or use a tflite artifact'
    """
    good = KNOWN_GOOD.get(engine or "")
    others = [f for f in ("tflite", "onnx") if f != fmt and f in FORMATS]
    alt = f", or use {'an' if others and others[0][0] in 'aeio' else 'a'} {others[0]} artifact" if others else ""
    if good and good != version:
        return f"install {engine}=={good} (pip install '{engine}=={good}'){alt}"
    return f"install another {engine or fmt + ' engine'} release{alt}"


def _interpret(fmt: str, rc: int | None, text: str, seconds: float, label: str, key: str,
               engine: str | None, version: str | None) -> ProbeResult:
    stage = None
    result: dict[str, Any] | None = None
    for line in text.splitlines():
        if line.startswith(MARK + " stage "):
            stage = line.split()[-1]
        elif line.startswith(MARK + " result "):
            try:
                result = json.loads(line[len(MARK + " result "):])
            except ValueError:
                pass
    base = dict(format=fmt, engine=engine, version=version, device=label, key=key, stage=stage, seconds=seconds,
                created=_now())
    if rc is None:
        return ProbeResult(status=TIMEOUT, fix=crash_fix(fmt, engine, version), **base)
    if rc < 0 or (result is None and rc >= 128):  # killed by a signal (a shell wrapper reports 128+n)
        return ProbeResult(status=CRASHED, signal=-rc if rc < 0 else rc - 128, fix=crash_fix(fmt, engine, version),
                           **base)
    if result is None:
        tail = " / ".join(ln for ln in text.strip().splitlines()[-3:] if not ln.startswith(MARK))
        return ProbeResult(status=ERROR, reason=f"the probe exited {rc} without a result: {tail[-300:]}", **base)
    return ProbeResult(status=result["status"], reason=result.get("reason"), install=result.get("install"), **base)


def _store(result: ProbeResult) -> None:
    if result.status == ERROR and result.stage in (None, "import"):
        return  # the probe itself broke (not the engine): do not remember it
    path = cache_path(result.key)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(result.record(), indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs a re-probe


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


__all__ = ["AVAILABLE", "BUNDLED", "CRASHED", "ERROR", "KNOWN_GOOD", "MARK", "RUNS", "TIMEOUT", "UNAVAILABLE", "ProbeResult", "cache_path", "cached", "crash_fix", "engine_of", "install_for", "known_crash",
           "probe", "probe_key", "probe_many", "wrapper"]
