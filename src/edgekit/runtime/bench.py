"""Time a Session the way ``benchmark_model`` does: load, first inference, warm-up, timed runs.

Numbers are per call (one batch). Memory is the process's peak resident set while the artifact
was loaded and run; on Linux the peak is reset before each artifact (``/proc/self/clear_refs``) so
several artifacts benched in one process each get their own figure.

Example:
    >>> from edgekit.runtime import load
    >>> result = bench(load("model.tflite"), runs=50)  # doctest: +SKIP
    >>> result.latency_ms["p50"] > 0  # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgekit.errors import EdgekitError, InputError
from edgekit.manifest import Artifact, Manifest, TensorSpec, artifact_bytes
from edgekit.runtime.device import describe_throttled, device_info, throttling
from edgekit.runtime.session import Session, run_batched

SCHEMA = "edgekit.bench/1"
CV_WARN = 0.15  # robust coefficient of variation above which a result is flagged as unstable


@dataclass(frozen=True)
class BenchConfig:
    """How to bench.

    Attributes:
        warmup: Untimed runs after the first inference.
        runs: Timed runs (at least this many unless ``max_seconds`` stops earlier).
        max_seconds: Stop the timed loop after this long (``None``: no limit).
        batch_size: Samples per call.
        num_threads: Engine threads (``None``: all cores this process may use).
        seed: Seed for synthetic inputs.
        cold_start: Also time a fresh process from start to first result (import, load, run once).
    """

    warmup: int = 10
    runs: int = 100
    max_seconds: float | None = None
    batch_size: int = 1
    num_threads: int | None = None
    seed: int = 0
    cold_start: bool = False

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.runs < 1 or self.batch_size < 1:
            raise InputError(f"bench needs warmup >= 0, runs >= 1, batch >= 1 (got {self.warmup}, {self.runs}, {self.batch_size})")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise InputError(f"max_seconds must be > 0, got {self.max_seconds}")
        if self.num_threads is not None and self.num_threads < 1:
            raise InputError(f"num_threads must be >= 1, got {self.num_threads}")


@dataclass(frozen=True)
class BenchResult:
    """One artifact's numbers. The field names are the stable JSON/CSV schema."""

    model: str
    target: str
    format: str
    precision: str
    status: str
    size_bytes: int | None = None
    batch_size: int = 1
    num_threads: int | None = None
    engine: str = ""
    engine_version: str = ""
    cold_start_ms: float | None = None
    load_ms: float | None = None
    first_ms: float | None = None
    warmup_runs: int = 0
    runs: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    cv: float | None = None
    robust_cv: float | None = None
    throughput: float | None = None
    peak_rss_mb: float | None = None
    accuracy: float | None = None
    accuracy_samples: int | None = None
    validation: str | None = None
    warnings: tuple[str, ...] = ()
    error: str | None = None
    samples_ms: tuple[float, ...] = ()  # every timed call, for distributions; not in CSV

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["warnings"] = list(self.warnings)
        d["samples_ms"] = list(self.samples_ms)
        return d

    def flat(self) -> dict[str, Any]:
        """One CSV row: nested latency fields become ``latency_p50_ms`` etc."""
        d = self.to_dict()
        d.pop("samples_ms")
        lat = d.pop("latency_ms") or {}
        for k in LATENCY_KEYS:
            d[f"latency_{k}_ms"] = lat.get(k)
        d["warnings"] = "; ".join(self.warnings)
        return d


LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std", "min", "max")


def synthetic_feeds(specs: Sequence[TensorSpec], batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """Random engine-dtype inputs of the right shape (latency does not depend on values here)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in specs:
        shape = [batch_size] + [1 if d is None else d for d in s.shape[1:]]
        dt = np.dtype(s.dtype)
        if dt.kind == "f":
            out.append(rng.random(shape, dtype=np.float32).astype(dt))
        elif dt.kind in "iu":
            info = np.iinfo(dt)
            out.append(rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=shape).astype(dt))
        else:
            out.append(np.zeros(shape, dt))
    return out


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0, 1)


def time_session(session: Session, config: BenchConfig, feeds: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """First-inference time, warm-up, then the timed loop; returns the timing fields of a result."""
    arrays = session.prepare(list(feeds) if feeds is not None else synthetic_feeds(session.inputs, config.batch_size, config.seed))
    t = time.perf_counter()
    session.run_prepared(arrays)
    first_ms = (time.perf_counter() - t) * 1e3
    for _ in range(config.warmup):
        session.run_prepared(arrays)
    times: list[float] = []
    deadline = None if config.max_seconds is None else time.perf_counter() + config.max_seconds
    while len(times) < config.runs:
        t = time.perf_counter()
        session.run_prepared(arrays)
        times.append((time.perf_counter() - t) * 1e3)
        if deadline is not None and time.perf_counter() > deadline:
            break
    a = np.asarray(times)
    lat = {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "std": float(a.std()),
        "min": float(a.min()),
        "max": float(a.max()),
    }
    lat = {k: round(v, 4) for k, v in lat.items()}
    cv = round(lat["std"] / lat["mean"], 4) if lat["mean"] > 0 else None
    # The warning uses a robust spread (MAD / median): one preempted call in a 10 us loop should not
    # cry wolf, a bimodal or drifting run should.
    med = float(np.median(a))
    robust_cv = round(1.4826 * float(np.median(np.abs(a - med))) / med, 4) if med > 0 else None
    return {
        "first_ms": round(first_ms, 3),
        "warmup_runs": config.warmup,
        "runs": len(times),
        "latency_ms": lat,
        "cv": cv,
        "robust_cv": robust_cv,
        "throughput": round(config.batch_size * 1e3 / lat["mean"], 2) if lat["mean"] > 0 else None,
        "samples_ms": tuple(round(t, 5) for t in times),
    }


def accuracy(session: Session, inputs: "Sequence[np.ndarray] | dict[str, np.ndarray]", labels: np.ndarray) -> float | None:
    """Top-1 accuracy (%) of the first class-shaped output, or ``None`` if the model has none."""
    outs = run_batched(session, inputs)
    for o in outs:
        if o.ndim == 2 and o.shape[1] > 1 and len(o) == len(labels):
            return round(float(np.mean(np.argmax(o, axis=1) == labels)) * 100.0, 4)
    return None


def bench_file(path: str | os.PathLike[str], config: BenchConfig = BenchConfig(), *, artifact: Artifact | None = None,
               eval_data: tuple[Any, np.ndarray] | None = None,
               verify: bool = True) -> BenchResult:
    """Load one artifact (timing the load) and bench it. Errors become a result with ``error`` set."""
    from edgekit.runtime.loader import load, verify_artifact

    path = Path(path)
    base = {
        "model": str(path),
        "target": artifact.target if artifact else f"{path.suffix.lstrip('.')}:{_guess_precision(path)}",
        "format": artifact.format if artifact else _format_of(path),
        "precision": artifact.precision if artifact else _guess_precision(path),
        "status": "error",
        "size_bytes": artifact_bytes(path) if path.exists() else None,  # folder artifacts: total of their files
        "batch_size": config.batch_size,
        "validation": artifact.status if artifact else None,
    }
    try:
        if artifact is not None and verify:
            verify_artifact(path, artifact)
        from edgekit.runtime.backends import format_for_path, get_backend

        # Import the engine first so load_ms is the model's load, not the library's import.
        get_backend(artifact.format if artifact else format_for_path(path)).unavailable_reason()
        cold = cold_start_ms(path, config.num_threads) if config.cold_start else None
        before = throttling()
        _reset_peak_rss()
        t = time.perf_counter()
        session = load(path, num_threads=config.num_threads)
        load_ms = round((time.perf_counter() - t) * 1e3, 3)
        timing = time_session(session, config)
        acc = None
        if eval_data is not None:
            acc = accuracy(session, eval_data[0], eval_data[1])
        peak = _peak_rss_mb()
    except EdgekitError as exc:
        return BenchResult(**base, error=str(exc))
    warnings = _throttle_warnings(before, throttling())
    if timing["robust_cv"] is not None and timing["robust_cv"] > CV_WARN:
        warnings.append(f"unstable timing: robust cv {timing['robust_cv']:.2f} > {CV_WARN} (busy or throttled machine?)")
    info = session.info
    return BenchResult(
        **{**base, "status": "ok"},
        num_threads=info.get("num_threads"),
        engine=str(info.get("engine", "")),
        engine_version=str(info.get("engine_version", "")),
        cold_start_ms=cold,
        load_ms=load_ms,
        **timing,
        peak_rss_mb=peak,
        accuracy=acc,
        accuracy_samples=len(eval_data[1]) if eval_data is not None and acc is not None else None,
        warnings=tuple(warnings),
    )


_COLD_SCRIPT = """
import sys
from edgekit.runtime import load
from edgekit.runtime.bench import synthetic_feeds
threads = None if sys.argv[2] == "-" else int(sys.argv[2])
s = load(sys.argv[1], num_threads=threads, verify=False)
s.run_prepared(s.prepare(synthetic_feeds(s.inputs, 1)))
sys.stdout.write("done\\n")
sys.stdout.flush()
"""


def cold_start_ms(path: str | os.PathLike[str], num_threads: int | None = None, timeout: float = 120.0) -> float | None:
    """Wall time from spawning a fresh Python to its first inference result (what a restarted service pays)."""
    import subprocess

    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", _COLD_SCRIPT, str(path), "-" if num_threads is None else str(num_threads)],
                              capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    ms = (time.perf_counter() - t) * 1e3
    return round(ms, 1) if proc.returncode == 0 and proc.stdout.startswith("done") else None


def _throttle_warnings(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    out = []
    reasons = describe_throttled(after.get("throttled"))
    if reasons:
        out.append("device reports " + ", ".join(reasons) + " (vcgencmd get_throttled): numbers are not comparable")
    b, a = before.get("cpu_khz") or [], after.get("cpu_khz") or []
    if b and a and len(a) == len(b):
        lo_b, lo_a = min(b), min(a)
        if lo_b and abs(lo_a - lo_b) / lo_b > 0.10:
            out.append(f"CPU frequency changed during the run ({lo_b // 1000} -> {lo_a // 1000} MHz min core): "
                       "throttling or a power governor; pin the governor to 'performance' for stable numbers")
    return out


def load_eval(folder: Path, manifest: Manifest, override: str | os.PathLike[str] | None = None) -> tuple[Any, np.ndarray] | None:
    """Eval inputs and labels for accuracy: ``override`` (.npz), else the ``eval.npz`` convert wrote."""
    path = Path(override) if override else (folder / manifest.eval_data["file"] if manifest.eval_data.get("file") else None)
    if path is None:
        return None
    if not path.is_file():
        raise InputError(f"eval data {path} does not exist")
    from edgekit.calibration import from_npz

    ds = from_npz(path)
    if ds.labels is None:
        return None
    names = [s["name"] for s in manifest.source.get("inputs", [])]
    if len(names) == ds.num_inputs:
        # eval.npz stores inputs in the source model's order; feed them by name.
        return dict(zip(names, ds.inputs)), ds.labels
    return list(ds.inputs), ds.labels


def bench_path(path: str | os.PathLike[str], config: BenchConfig | Sequence[BenchConfig] = BenchConfig(), *,
               target: str | None = None, eval_path: str | os.PathLike[str] | None = None,
               verify: bool = True) -> list[BenchResult]:
    """Bench a model file, or every artifact of an edgekit output folder, side by side.

    ``config`` may be a list (a threads x batch sweep): the manifest, eval data and each artifact's
    checksum are then read once, not once per configuration.

    Example:
        >>> rows = bench_path("out/", BenchConfig(runs=50))  # doctest: +SKIP
    """
    configs = [config] if isinstance(config, BenchConfig) else list(config)
    from edgekit.errors import ModelError

    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p} does not exist")
    from edgekit.runtime.loader import is_output_folder

    if not is_output_folder(p):
        data = None
        if eval_path:
            from edgekit.calibration import from_npz

            ds = from_npz(eval_path)
            data = (list(ds.inputs), ds.labels) if ds.labels is not None else None
        return [bench_file(p, c, eval_data=data, verify=verify) for c in configs]
    folder = p if p.is_dir() else p.parent
    manifest = Manifest.load(folder)
    data = load_eval(folder, manifest, eval_path)
    chosen = [a for a in manifest.artifacts if not target or target in (a.target, a.format, a.precision)]
    if not chosen:
        raise ModelError(f"no artifact matches {target!r}; this folder has {[a.target for a in manifest.artifacts]}")
    from edgekit.runtime.loader import artifact_path

    results = []
    for a in chosen:
        if not a.path:
            results.append(BenchResult(model="-", target=a.target, format=a.format, precision=a.precision,
                                       status="skipped", validation=a.status, error=a.error))
            continue
        try:
            file = artifact_path(folder, a)
        except EdgekitError as exc:
            results.append(BenchResult(model=str(a.path), target=a.target, format=a.format, precision=a.precision,
                                       status="error", validation=a.status, error=str(exc)))
            continue
        cannot_run = _engine_unavailable(a.format)
        if cannot_run:
            # One folder holds every format; those this device cannot run (CoreML off macOS, TensorRT
            # without a GPU) are listed with the reason instead of failing the whole bench.
            results.append(BenchResult(model=str(file), target=a.target, format=a.format, precision=a.precision,
                                       status="skipped", size_bytes=a.bytes, validation=a.status,
                                       error=f"not run here: {cannot_run}"))
            continue
        for i, c in enumerate(configs):
            r = bench_file(file, c, artifact=a, eval_data=data, verify=verify and i == 0)
            results.append(r)
            if r.status == "error":
                break  # a corrupt or missing artifact fails the same way at every setting
    return results


def report(results: Sequence[BenchResult], config: BenchConfig) -> dict[str, Any]:
    """The JSON document: schema, device, config, results, and ratios against the fp32 artifact."""
    return {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device_info(),
        "config": dataclasses.asdict(config),
        "results": [r.to_dict() for r in results],
        "notes": notes(results),
    }


def notes(results: Sequence[BenchResult]) -> list[str]:
    """Findings worth a line: quantized artifacts that are not faster than fp32 of the same format."""
    out = []
    fp32 = {r.format: r for r in results if r.precision == "fp32" and r.status == "ok"}
    for r in results:
        ref = fp32.get(r.format)
        if r.status != "ok" or ref is None or r is ref or r.precision in ("fp32", "fp16"):
            continue
        ratio = r.latency_ms["p50"] / ref.latency_ms["p50"]
        if ratio >= 0.95:
            out.append(f"{r.target} is not faster than {ref.target} here (p50 {ratio:.2f}x): int8 needs int8 kernels "
                       "(VNNI / dot-product) to pay off; prefer the smaller file only if size matters more")
    return out


def _engine_unavailable(fmt: str) -> str | None:
    from edgekit.runtime.backends import get_backend

    try:
        return get_backend(fmt).unavailable_reason()
    except EdgekitError as exc:
        return str(exc)


def _format_of(path: Path) -> str:
    from edgekit.runtime.backends import SUFFIXES

    return SUFFIXES.get(path.suffix.lower(), path.suffix.lstrip("."))


def _guess_precision(path: Path) -> str:
    """Best guess at a bare file's precision (for the table only; manifests say it exactly)."""
    if path.suffix.lower() == ".onnx" and path.is_file():
        try:
            from edgekit.runtime.backends.onnxruntime import guess_precision as onnx_precision

            return onnx_precision(path)  # edgekit stamps it into the model's metadata
        except EdgekitError:
            return "?"
    if path.suffix.lower() != ".tflite" or not path.is_file():
        return "?"
    try:
        from edgekit.runtime.backends.litert import guess_precision

        return guess_precision(path)
    except EdgekitError:
        return "?"
