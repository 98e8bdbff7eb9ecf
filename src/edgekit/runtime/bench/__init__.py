"""``edgekit bench``: time Sessions, sweep settings, gate regressions, keep history, render reports.

Numbers are per call (one batch), taken the way ``benchmark_model`` takes them: load, first
inference, warm-up, timed runs.

* :mod:`.config`: :class:`BenchConfig` (what to run) and :class:`BenchResult` (the JSON/CSV schema)
* :mod:`.timing`: the timed loop (one stream, or K at once: throughput mode), peak memory, cold start,
  throttling warnings
* :mod:`.sweep`: a file or every artifact of an output folder, at one or many settings
* :mod:`.document`: the JSON document and its notes
* :mod:`.gate`: compare with a baseline and fail on rules (``p50+10%``)
* :mod:`.history`: the local SQLite results store
* :mod:`.html_report`: one self-contained HTML page

Example:
    >>> from edgekit.runtime import load
    >>> result = bench_file("model.tflite", BenchConfig(runs=50))  # doctest: +SKIP
    >>> result.latency_ms["p50"] > 0  # doctest: +SKIP
    True
"""

from __future__ import annotations

from edgekit.runtime.bench.config import CV_WARN, LATENCY_KEYS, SCHEMA, BenchConfig, BenchResult
from edgekit.runtime.bench.document import notes, report
from edgekit.runtime.bench.sweep import accuracy, bench_file, bench_path, load_eval
from edgekit.runtime.bench.timing import cold_start_ms, synthetic_feeds, time_session, time_streams

__all__ = [
    "CV_WARN",
    "LATENCY_KEYS",
    "SCHEMA",
    "BenchConfig",
    "BenchResult",
    "accuracy",
    "bench_file",
    "bench_path",
    "cold_start_ms",
    "load_eval",
    "notes",
    "report",
    "synthetic_feeds",
    "time_session",
    "time_streams",
]
