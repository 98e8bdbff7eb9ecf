"""Time a Session the way ``benchmark_model`` does: first inference, warm-up, timed runs; plus the
measurements around it (peak memory, a cold process start, throttling during the run).

Throughput mode (:func:`time_streams`) times several Sessions at once, one thread each, the way
OpenVINO's ``benchmark_app -nstreams`` does: aggregate samples per second and per-call percentiles.

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
import threading
import time
from typing import Any, Sequence

import numpy as np

from edgekit.errors import InputError
from edgekit.manifest import TensorSpec
from edgekit.runtime.bench.config import BenchConfig
from edgekit.runtime.device import describe_throttled
from edgekit.runtime.session import Session


# Before timing a model, wait (untimed) until the previous one's engine threads stop spinning:
# onnxruntime's pool spins for tens of ms after a run. A LiteRT int8 MobileNetV2 224² timed right
# after an ONNX one measured 17.6 ms instead of 8.9 ms (2 cores), so pick ranked whatever came
# after an ONNX candidate last, and bench's 10 warm-up calls of a digits model fit inside the
# spin. Busy = another thread of this process is runnable (Linux: state R in /proc/self/task, which
# a spinning thread keeps even while a contended box has it off the CPU), or this process used
# QUIET_SHARE of one core or more during a SETTLE_STEP (any OS; a thread between two native calls
# can be waiting for the GIL, not runnable, yet it just burned the step).
SETTLE_STEP = 0.004
QUIET_SHARE = 0.1
SETTLE_MAX = 0.25
_TASKS = "/proc/self/task"


def runnable_threads() -> int | None:
    """How many other threads of this process are runnable now (Linux); ``None`` where unknown.

    Example:
        >>> n = runnable_threads()
        >>> n is None or n >= 0
        True
    """
    me = threading.get_native_id()
    try:
        tids = os.listdir(_TASKS)
    except OSError:
        return None
    n = 0
    for tid in tids:
        if tid == str(me):
            continue
        try:
            with open(f"{_TASKS}/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # the thread ended between listdir and open
            continue
        # "tid (comm) S ...": comm may hold spaces or parentheses, the state follows the last ")".
        fields = stat.rpartition(b")")[2].split()
        if fields and fields[0] == b"R":
            n += 1
    return n


def settle(max_s: float = SETTLE_MAX) -> float:
    """Wait until no thread of this process is busy (an engine's pool spinning), at most ``max_s``.

    Returns the seconds waited. "Busy" is measured, not guessed, so it works for any engine's
    threads: another thread is runnable (Linux), or the process burned CPU over a short sleep of
    the calling thread.

    Example:
        >>> settle() < SETTLE_MAX  # nothing spinning: one short step
        True
    """
    t_start = time.perf_counter()
    while True:
        c0, w0 = time.process_time(), time.perf_counter()
        time.sleep(SETTLE_STEP)
        share = (time.process_time() - c0) / max(time.perf_counter() - w0, 1e-9)
        waited = time.perf_counter() - t_start
        if waited >= max_s:
            return waited
        if share < QUIET_SHARE and not runnable_threads():
            return waited


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


def latency_summary(times_ms: Sequence[float]) -> dict[str, Any]:
    """Percentiles, mean, spread and the robust CV of per-call times (ms), as a result stores them.

    Example:
        >>> s = latency_summary([1.0, 2.0, 3.0, 4.0])
        >>> s["latency_ms"]["p50"], s["latency_ms"]["max"], s["cv"]
        (2.5, 4.0, 0.4472)
    """
    a = np.asarray(times_ms, dtype=np.float64)
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
    return {"latency_ms": lat, "cv": cv, "robust_cv": robust_cv}


def _timed_calls(session: Session, arrays: Any, runs: int, deadline: float | None, out: list[float]) -> None:
    """Append ``runs`` call latencies (ms) to ``out``, stopping early once ``deadline`` has passed."""
    while len(out) < runs:
        t = time.perf_counter()
        session.run_prepared(arrays)
        out.append((time.perf_counter() - t) * 1e3)
        if deadline is not None and time.perf_counter() > deadline:
            break


def time_session(session: Session, config: BenchConfig, feeds: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """First-inference time, warm-up, then the timed loop; returns the timing fields of a result.

    Example:
        >>> from edgekit.runtime import load
        >>> time_session(load("model.tflite"), BenchConfig(runs=20))["runs"]  # doctest: +SKIP
        20
    """
    arrays = session.prepare(list(feeds) if feeds is not None else synthetic_feeds(session.inputs, config.batch_size, config.seed))
    settle()  # the previous artifact's engine pool may still be spinning
    t = time.perf_counter()
    session.run_prepared(arrays)
    first_ms = (time.perf_counter() - t) * 1e3
    for _ in range(config.warmup):
        session.run_prepared(arrays)
    times: list[float] = []
    start = time.perf_counter()
    _timed_calls(session, arrays, config.runs, None if config.max_seconds is None else start + config.max_seconds, times)
    wall = time.perf_counter() - start
    summary = latency_summary(times)
    mean = summary["latency_ms"]["mean"]
    return {
        "first_ms": round(first_ms, 3),
        "warmup_runs": config.warmup,
        "runs": len(times),
        **summary,
        # One stream: samples per second of engine time (batch / mean call), as before throughput mode;
        # runs * batch / wall_s differs from it only by the loop's own overhead.
        "throughput": round(config.batch_size * 1e3 / mean, 2) if mean > 0 else None,
        "samples_ms": tuple(round(t, 5) for t in times),
        "stream_runs": (len(times),),
        "wall_s": round(wall, 6),
    }


def time_streams(sessions: Sequence[Session], config: BenchConfig,
                 feeds: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """Throughput mode: each Session on its own thread, all timed together; the timing fields of a result.

    Each Session makes its first inference on the calling thread (one after another: allocation is
    not what the concurrent phase measures), then every stream warms up on its own thread, waits at
    a barrier, and makes ``config.runs`` timed calls; a ``max_seconds`` deadline, counted from the
    barrier's release, stops every stream. ``throughput`` is total samples (calls x batch) over
    ``wall_s``, the time from that release to the last stream's end; the latency percentiles are
    over every call of every stream. ``streams`` (not a result field) says which thread ran each
    stream, how many calls it made and how long it took.

    Args:
        sessions: One distinct Session per stream (a Session serialises its calls with a lock, so
            one Session shared by two threads would measure the lock, not two streams).
        config: Warm-up, runs, deadline, batch and seed; ``config.concurrency`` is not read here.
        feeds: Inputs for every stream; default: seeded synthetic inputs.

    Raises:
        InputError: no Session, or the same Session given twice.

    Example:
        >>> from edgekit.runtime import load
        >>> two = [load("model.tflite", num_threads=1) for _ in range(2)]  # doctest: +SKIP
        >>> t = time_streams(two, BenchConfig(runs=50))  # doctest: +SKIP
        >>> t["stream_runs"], t["runs"]  # doctest: +SKIP
        ((50, 50), 100)
    """
    k = len(sessions)
    if k < 1:
        raise InputError("time_streams needs at least one Session")
    if len({id(s) for s in sessions}) != k:
        raise InputError("time_streams needs one Session per stream: a Session serialises its calls with a lock, "
                         "so sharing one between threads measures the lock; load() it once per stream")
    arrays = [s.prepare(list(feeds) if feeds is not None else synthetic_feeds(s.inputs, config.batch_size, config.seed))
              for s in sessions]
    first_ms = []
    settle()  # the previous artifact's engine pool may still be spinning
    for s, a in zip(sessions, arrays):
        t = time.perf_counter()
        s.run_prepared(a)
        first_ms.append((time.perf_counter() - t) * 1e3)

    times: list[list[float]] = [[] for _ in range(k)]
    ends = [0.0] * k
    idents = [0] * k
    errors: list[BaseException | None] = [None] * k
    released = [0.0]

    def release() -> None:
        # Runs once, in the last thread to arrive, before any stream is let go: the common start.
        released[0] = time.perf_counter()

    barrier = threading.Barrier(k, action=release)

    def stream(i: int) -> None:
        idents[i] = threading.get_ident()
        session, a, out = sessions[i], arrays[i], times[i]
        try:
            for _ in range(config.warmup):
                session.run_prepared(a)
        except BaseException as exc:  # re-raised on the calling thread below
            errors[i] = exc
            barrier.abort()  # the other streams must not wait forever for this one
            return
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        deadline = None if config.max_seconds is None else released[0] + config.max_seconds
        try:
            _timed_calls(session, a, config.runs, deadline, out)
        except BaseException as exc:
            errors[i] = exc
        ends[i] = time.perf_counter()

    workers = [threading.Thread(target=stream, args=(i,), name=f"edgekit-bench-stream-{i}", daemon=True) for i in range(k)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for exc in errors:
        if exc is not None:
            raise exc
    wall = max(ends) - released[0]
    every = [t for ts in times for t in ts]
    total = len(every)
    return {
        "first_ms": round(first_ms[0], 3),  # the first stream's, comparable with one stream's figure
        "warmup_runs": config.warmup,
        "runs": total,
        **latency_summary(every),
        "throughput": round(total * config.batch_size / wall, 2) if wall > 0 else None,
        "samples_ms": tuple(round(t, 5) for t in every),
        "stream_runs": tuple(len(ts) for ts in times),
        "wall_s": round(wall, 6),
        "streams": [{"thread": idents[i], "runs": len(times[i]), "wall_s": round(ends[i] - released[0], 6)}
                    for i in range(k)],
    }


def uneven_streams(streams: Sequence[dict[str, Any]], ratio: float = 0.75) -> str | None:
    """A warning when one stream got much less done per second than another (cores not shared fairly).

    Example:
        >>> uneven_streams([{"runs": 100, "wall_s": 1.0}, {"runs": 50, "wall_s": 1.0}]).split(":")[0]
        'streams ran unevenly (50-100 calls/s each)'
        >>> uneven_streams([{"runs": 100, "wall_s": 1.0}, {"runs": 95, "wall_s": 1.0}]) is None
        True
    """
    rates = [s["runs"] / s["wall_s"] for s in streams if s["wall_s"] > 0]
    if len(rates) < 2 or min(rates) >= ratio * max(rates):
        return None
    return (f"streams ran unevenly ({min(rates):.0f}-{max(rates):.0f} calls/s each): the OS did not share the cores "
            "fairly (other load, or more engine threads than cores)")


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
