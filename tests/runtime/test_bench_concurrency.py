"""Throughput mode (`bench --concurrency K`): K Sessions on K threads, timed together, on the
committed int8 artifact with real LiteRT. Numbers are checked for consistency, never for speed."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import InputError
from edgekit.runtime import load
from edgekit.runtime.bench import BenchConfig, bench_file, bench_path, time_streams
from edgekit.runtime.device import device_info

DATA = Path(__file__).resolve().parents[1] / "data" / "digits-int8"  # committed, see tests/data/README.md
MODEL = DATA / "tflite-int8.tflite"
CORES = device_info()["cores"]


def edgekit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def _consistent(r_or_t, batch: int) -> None:
    """The fields of one result (or time_streams dict) agree with each other."""
    get = r_or_t.get if isinstance(r_or_t, dict) else lambda k: getattr(r_or_t, k)
    lat = get("latency_ms")
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["min"] > 0
    assert sum(get("stream_runs")) == get("runs") == len(get("samples_ms"))
    assert get("wall_s") > 0
    # aggregate throughput is total samples over the concurrent phase's wall time
    assert get("throughput") == pytest.approx(get("runs") * batch / get("wall_s"), rel=1e-3)


def test_two_streams_run_on_two_threads_with_their_own_sessions():
    sessions = [load(MODEL, num_threads=1) for _ in range(2)]
    t = time_streams(sessions, BenchConfig(warmup=3, runs=40))
    threads = [s["thread"] for s in t["streams"]]
    assert len(set(threads)) == 2 and threading.get_ident() not in threads
    assert t["stream_runs"] == (40, 40) and [s["runs"] for s in t["streams"]] == [40, 40]
    assert t["runs"] == 80 and t["warmup_runs"] == 3 and t["first_ms"] > 0
    # each stream ran within the phase the aggregate figure is measured over
    assert all(0 < s["wall_s"] <= t["wall_s"] for s in t["streams"])
    _consistent(t, batch=1)


def test_streams_with_a_batch_count_samples_not_calls():
    sessions = [load(MODEL, num_threads=1) for _ in range(3)]
    t = time_streams(sessions, BenchConfig(warmup=0, runs=10, batch_size=4))
    assert t["stream_runs"] == (10, 10, 10)
    _consistent(t, batch=4)


def test_the_deadline_stops_every_stream():
    sessions = [load(MODEL, num_threads=1) for _ in range(2)]
    t = time_streams(sessions, BenchConfig(warmup=0, runs=10_000_000, max_seconds=0.2))
    assert all(1 <= n < 10_000_000 for n in t["stream_runs"])
    assert t["wall_s"] >= 0.2  # a stream stops after the call that crosses the deadline
    _consistent(t, batch=1)


def test_one_session_cannot_be_two_streams():
    s = load(MODEL, num_threads=1)
    with pytest.raises(InputError, match="one Session per stream"):
        time_streams([s, s], BenchConfig(runs=2))
    with pytest.raises(InputError, match="at least one Session"):
        time_streams([], BenchConfig(runs=2))


def test_bench_file_concurrency_two():
    r = bench_file(MODEL, BenchConfig(warmup=2, runs=30, batch_size=2, concurrency=2))
    assert r.status == "ok", r.error
    assert r.concurrency == 2 and r.stream_runs == (30, 30) and r.runs == 60
    assert r.num_threads == max(1, CORES // 2)  # default: the cores shared out between the streams
    assert r.batch_size == 2 and r.peak_rss_mb > 0 and r.load_ms > 0
    _consistent(r, batch=2)


def test_bench_file_concurrency_with_explicit_threads_and_accuracy():
    rows = bench_path(DATA, [BenchConfig(warmup=1, runs=20, concurrency=2, num_threads=1),
                             BenchConfig(warmup=1, runs=20, concurrency=1, num_threads=2)])
    assert [(r.concurrency, r.num_threads, r.stream_runs) for r in rows] == [(2, 1, (20, 20)), (1, 2, (20,))]
    for r in rows:
        assert r.status == "ok" and r.accuracy is not None and r.accuracy >= 95.0


def test_an_error_result_keeps_its_setting(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    r = bench_file(junk, BenchConfig(runs=2, concurrency=2))
    assert r.status == "error" and "is not a TFLite model" in r.error
    assert r.concurrency == 2 and r.stream_runs == () and r.throughput is None


def test_concurrency_one_is_the_plain_bench():
    r = bench_file(MODEL, BenchConfig(warmup=2, runs=25))
    assert r.status == "ok" and r.concurrency == 1 and r.stream_runs == (25,) and r.runs == 25
    assert r.num_threads == CORES  # one stream keeps the engine's default: every core
    # one stream keeps the latency bench's throughput: batch over the mean call
    assert r.throughput == round(1e3 / r.latency_ms["mean"], 2)
    assert r.wall_s >= sum(r.samples_ms) / 1e3 * 0.999  # the loop's wall covers its calls
    assert not any("streams" in w for w in r.warnings)


def test_oversubscription_is_a_warning():
    r = bench_file(MODEL, BenchConfig(warmup=0, runs=5, concurrency=2, num_threads=CORES))
    assert r.status == "ok"
    want = f"2 streams x {CORES} threads = {2 * CORES} engine threads on {CORES} cores"
    assert any(w.startswith(want) for w in r.warnings), r.warnings


@pytest.mark.parametrize("k", [0, -1, 1.5, "2", True, None])
def test_bad_concurrency_is_refused(k):
    with pytest.raises(InputError, match=rf"concurrency must be a positive integer, got {k!r}"):
        BenchConfig(concurrency=k)


def test_threads_per_stream():
    assert BenchConfig(concurrency=4).threads_per_stream(cores=8) == 2
    assert BenchConfig(concurrency=4).threads_per_stream(cores=2) == 1
    assert BenchConfig(concurrency=4, num_threads=3).threads_per_stream(cores=2) == 3  # the user's choice wins
    assert BenchConfig().threads_per_stream(cores=8) is None
    assert BenchConfig(concurrency=2).threads_per_stream() == max(1, CORES // 2)


@pytest.mark.parametrize("value, message", [
    ("0", "error: concurrency must be a positive integer, got 0"),
    ("-1", "error: concurrency must be a positive integer, got -1"),
    ("two", "error: --concurrency 'two' must be an integer or a comma list"),
    ("1.5", "error: --concurrency '1.5' must be an integer or a comma list"),
])
def test_cli_bad_concurrency_is_one_line_exit_2(value, message):
    p = edgekit("bench", DATA, "--runs", "2", "--no-store", "--concurrency", value)
    assert p.returncode == 2
    assert p.stderr.startswith(message), p.stderr
    assert p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr
    assert p.stdout == ""


def test_cli_sweep_side_by_side_json_csv_and_table(tmp_path):
    jpath, cpath = tmp_path / "r.json", tmp_path / "r.csv"
    p = edgekit("bench", DATA, "--runs", "15", "--warmup", "1", "--no-cold-start", "--no-store",
                "--concurrency", "1,2", "--threads", "1,2", "--json", jpath, "--csv", cpath)
    assert p.returncode == 0, p.stderr
    header = next(line for line in p.stdout.splitlines() if "target" in line)
    assert "streams" in header and header.index("threads") < header.index("streams") < header.index("inf/s")
    doc = json.loads(jpath.read_text())
    assert doc["schema"] == "edgekit.bench/1"
    assert doc["config"]["concurrency"] == 1
    assert doc["config"]["sweep"] == [{"concurrency": k, "num_threads": t, "batch_size": 1}
                                      for k in (1, 2) for t in (1, 2)]
    got = [(r["concurrency"], r["num_threads"], r["stream_runs"], r["runs"]) for r in doc["results"]]
    assert got == [(1, 1, [15], 15), (1, 2, [15], 15), (2, 1, [15, 15], 30), (2, 2, [15, 15], 30)]
    for r in doc["results"]:
        assert r["status"] == "ok" and r["wall_s"] > 0 and len(r["samples_ms"]) == r["runs"]
    for r in doc["results"][2:]:
        # wall_s is stored to the microsecond: 30 calls of the digits model take ~280 us on a fast
        # CPU, where that rounding alone moves runs / wall_s by up to 0.18 %.
        assert r["throughput"] == pytest.approx(r["runs"] / r["wall_s"], rel=1e-3 + 5e-7 / r["wall_s"])
    rows = list(csv.DictReader(io.StringIO(cpath.read_text())))
    assert [(row["concurrency"], row["num_threads"], row["stream_runs"]) for row in rows] == [
        ("1", "1", "15"), ("1", "2", "15"), ("2", "1", "15;15"), ("2", "2", "15;15")]
    for row, r in zip(rows, doc["results"]):
        assert float(row["wall_s"]) == pytest.approx(r["wall_s"])
        assert float(row["throughput"]) == pytest.approx(r["throughput"])


def test_plain_table_has_no_streams_column():
    p = edgekit("bench", DATA, "--runs", "3", "--warmup", "0", "--no-cold-start", "--no-store")
    assert p.returncode == 0, p.stderr
    assert "streams" not in p.stdout and "inf/s" in p.stdout


def test_streams_see_the_same_outputs_as_one_session():
    # Two Sessions on two threads are independent engines: each stream's results are the model's.
    sessions = [load(DATA, num_threads=1) for _ in range(2)]
    x = np.random.default_rng(1).random((4, 8, 8, 1), dtype=np.float32)
    want = sessions[0].run(x)
    got: list = [None, None]

    def work(i: int) -> None:
        for _ in range(20):
            got[i] = sessions[i].run(x)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for g in got:
        for name in want:
            np.testing.assert_array_equal(g[name], want[name])
