"""Time a Session the way ``benchmark_model`` does: first inference, warm-up, timed runs; plus the
measurements around it (peak memory, a cold process start, throttling during the run).

Memory is the process's peak resident set while the artifact was loaded and run; on Linux the peak
is reset before each artifact (``/proc/self/clear_refs``) so several artifacts benched in one
process each get their own figure.

Example:
    >>> from edgekit.manifest import TensorSpec
    >>> [a.shape for a in synthetic_feeds([TensorSpec("x", (None, 8, 8, 1), "float32")], batch_size=2)]
    [(2, 8, 8, 1)]
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any, Sequence

import numpy as np

from edgekit.manifest import TensorSpec
from edgekit.runtime.bench.config import BenchConfig
from edgekit.runtime.device import describe_throttled
from edgekit.runtime.session import Session


def synthetic_feeds(specs: Sequence[TensorSpec], batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """Random engine-dtype inputs of the right shape (latency does not depend on values here).

    Example:
        >>> from edgekit.manifest import TensorSpec
        >>> synthetic_feeds([TensorSpec("q", (1, 4), "int8")], 1)[0].dtype
        dtype('int8')
    """
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


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS to its current RSS (Linux >= 4.0); ``False`` where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The process's peak resident set in MB (since the last :func:`reset_peak_rss` on Linux).

    Example:
        >>> peak_rss_mb() > 0
        True
    """
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
    """First-inference time, warm-up, then the timed loop; returns the timing fields of a result.

    Example:
        >>> from edgekit.runtime import load
        >>> time_session(load("model.tflite"), BenchConfig(runs=20))["runs"]  # doctest: +SKIP
        20
    """
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
    """Wall time from spawning a fresh Python to its first inference result (what a restarted service pays).

    Example:
        >>> cold_start_ms("model.tflite") > 0  # doctest: +SKIP
        True
    """
    import subprocess

    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", _COLD_SCRIPT, str(path), "-" if num_threads is None else str(num_threads)],
                              capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    ms = (time.perf_counter() - t) * 1e3
    return round(ms, 1) if proc.returncode == 0 and proc.stdout.startswith("done") else None


def throttle_warnings(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Why numbers taken between two :func:`edgekit.runtime.device.throttling` readings are suspect.

    Example:
        >>> throttle_warnings({"cpu_khz": [2400000]}, {"throttled": 0, "cpu_khz": [1500000]})[0].split(" (")[0]
        'CPU frequency changed during the run'
    """
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
