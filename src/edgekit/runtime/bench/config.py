"""What a bench run is asked to do (:class:`BenchConfig`) and what it gives back (:class:`BenchResult`).

The result's field names are the stable JSON/CSV schema (``edgekit.bench/1``): the gate, the
history store and the HTML report read them.

Example:
    >>> BenchConfig(runs=5).runs
    5
    >>> BenchConfig(concurrency=2, num_threads=1).threads_per_stream()
    1
    >>> BenchConfig(runs=0)
    Traceback (most recent call last):
    ...
    edgekit.errors.InputError: bench needs warmup >= 0, runs >= 1, batch >= 1 (got 10, 0, 1)
    >>> sorted(BenchResult("m", "tflite:fp32", "tflite", "fp32", "ok").flat())[:3]
    ['accuracy', 'accuracy_samples', 'batch_size']
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from edgekit.checks import positive_int
from edgekit.errors import InputError

SCHEMA = "edgekit.bench/1"
CV_WARN = 0.15  # robust coefficient of variation above which a result is flagged as unstable
LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std", "min", "max")


@dataclass(frozen=True)
class BenchConfig:
    """How to bench.

    Attributes:
        warmup: Untimed runs after the first inference.
        runs: Timed runs (at least this many unless ``max_seconds`` stops earlier).
        max_seconds: Stop the timed loop after this long (``None``: no limit).
        batch_size: Samples per call.
        num_threads: Engine threads of each stream's Session (``None``: all cores this process may
            use with one stream; ``cores // concurrency``, at least 1, with several).
        seed: Seed for synthetic inputs.
        cold_start: Also time a fresh process from start to first result (import, load, run once).
        concurrency: Throughput mode: this many Sessions, each on its own thread, started together
            (OpenVINO's ``-nstreams``). Each stream makes ``runs`` timed calls (all stop at the
            ``max_seconds`` deadline); throughput is total samples over the wall time of that
            phase. ``1`` is the plain latency bench.
    """

    warmup: int = 10
    runs: int = 100
    max_seconds: float | None = None
    batch_size: int = 1
    num_threads: int | None = None
    seed: int = 0
    cold_start: bool = False
    concurrency: int = 1

    def __post_init__(self) -> None:
        positive_int(self.concurrency, "concurrency", error=InputError,
                     fix="the number of Sessions run side by side on their own threads, e.g. 2")
        if self.warmup < 0 or self.runs < 1 or self.batch_size < 1:
            raise InputError(f"bench needs warmup >= 0, runs >= 1, batch >= 1 (got {self.warmup}, {self.runs}, {self.batch_size})")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise InputError(f"max_seconds must be > 0, got {self.max_seconds}")
        if self.num_threads is not None and self.num_threads < 1:
            raise InputError(f"num_threads must be >= 1, got {self.num_threads}")

    def threads_per_stream(self, cores: int | None = None) -> int | None:
        """Engine threads each stream's Session gets: ``num_threads`` if set, else the cores shared out.

        With one stream ``None`` stays ``None`` (the engine's default: every core this process may
        use), so the plain bench is unchanged. With ``K`` streams the default is ``cores // K`` (at
        least 1): streams x threads fills the machine without oversubscribing it, which is the
        comparison throughput mode exists for (2 streams x 1 thread vs 1 stream x 2 threads).

        Args:
            cores: Cores to share out; default: those this process may use (CPU affinity).

        Example:
            >>> BenchConfig(concurrency=2).threads_per_stream(cores=8)
            4
            >>> BenchConfig(concurrency=3).threads_per_stream(cores=2), BenchConfig().threads_per_stream(cores=8)
            (1, None)
        """
        if self.num_threads is not None or self.concurrency == 1:
            return self.num_threads
        if cores is None:
            from edgekit.runtime.device import device_info

            cores = int(device_info()["cores"])
        return max(1, cores // self.concurrency)


@dataclass(frozen=True)
class BenchResult:
    """One artifact's numbers. The field names are the stable JSON/CSV schema.

    ``concurrency``, ``stream_runs`` and ``wall_s`` were added to ``edgekit.bench/1`` with
    throughput mode; readers of older documents get their defaults (one stream). With several
    streams ``num_threads`` is each stream's engine threads, ``runs`` and the latency percentiles
    cover every call of every stream, and ``throughput`` is ``runs * batch_size / wall_s``.
    """

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
    concurrency: int = 1  # Sessions run side by side, one thread each (throughput mode)
    stream_runs: tuple[int, ...] = ()  # timed calls of each stream; they sum to runs
    wall_s: float | None = None  # wall time of the timed phase (all streams, from their common start)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["warnings"] = list(self.warnings)
        d["samples_ms"] = list(self.samples_ms)
        d["stream_runs"] = list(self.stream_runs)
        return d

    def flat(self) -> dict[str, Any]:
        """One CSV row: nested latency fields become ``latency_p50_ms`` etc."""
        d = self.to_dict()
        d.pop("samples_ms")
        lat = d.pop("latency_ms") or {}
        for k in LATENCY_KEYS:
            d[f"latency_{k}_ms"] = lat.get(k)
        d["warnings"] = "; ".join(self.warnings)
        d["stream_runs"] = ";".join(map(str, self.stream_runs))  # one CSV cell: "50;50"
        return d
