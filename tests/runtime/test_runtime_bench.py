"""edgekit.runtime.bench on the real digits artifacts: numbers, limits, errors and the JSON report."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgekit.runtime as rt
from edgekit.errors import InputError, ModelError
from edgekit.runtime.bench import (LATENCY_KEYS, SCHEMA, BenchConfig, BenchResult, bench_file, bench_path, report,
                                   synthetic_feeds)

TARGETS = ["tflite:fp32", "tflite:dynamic", "tflite:int8", "tflite:fp16"]


@pytest.fixture(scope="module")
def config():
    return BenchConfig(warmup=2, runs=20)


@pytest.fixture(scope="module")
def results(digits_out, config):
    return bench_path(digits_out[0], config)


def test_bench_folder_results(results, digits_out):
    out, manifest = digits_out
    assert [r.target for r in results] == TARGETS
    for r, a in zip(results, manifest.artifacts):
        assert r.status == "ok", r.error
        assert r.error is None
        assert r.format == "tflite" and r.precision == a.precision
        assert r.validation == "passed"
        assert Path(r.model) == out / a.path
        assert r.size_bytes == (out / a.path).stat().st_size == a.bytes
        assert r.runs == 20 and r.warmup_runs == 2 and r.batch_size == 1
        assert r.engine in ("ai-edge-litert", "tflite_runtime", "tf.lite") and r.engine_version
        assert r.num_threads is not None and r.num_threads >= 1


def test_bench_latency_numbers(results):
    for r in results:
        lat = r.latency_ms
        assert set(lat) == set(LATENCY_KEYS) == {"p50", "p90", "p99", "mean", "std", "min", "max"}
        assert all(isinstance(v, float) and np.isfinite(v) for v in lat.values())
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert lat["min"] <= lat["mean"] <= lat["max"]
        assert lat["std"] >= 0
        assert r.throughput == pytest.approx(1000.0 * r.batch_size / lat["mean"], rel=1e-2)
        assert r.cv is not None and r.cv >= 0
        assert r.load_ms > 0 and r.first_ms > 0
        assert r.peak_rss_mb > 0


def test_bench_accuracy_from_eval_npz(results):
    for r in results:
        assert r.accuracy is not None and r.accuracy >= 95.0, (r.target, r.accuracy)
        assert r.accuracy_samples == 359


def test_bench_batch_and_threads(digits_out):
    (r,) = bench_path(digits_out[0], BenchConfig(warmup=1, runs=5, batch_size=8, num_threads=1), target="tflite:int8")
    assert r.status == "ok" and r.target == "tflite:int8"
    assert r.batch_size == 8 and r.num_threads == 1 and r.runs == 5
    assert r.throughput == pytest.approx(8000.0 / r.latency_ms["mean"], rel=1e-2)


def test_bench_target_filter(digits_out):
    rs = bench_path(digits_out[0], BenchConfig(warmup=0, runs=3), target="tflite:fp16")
    assert [r.target for r in rs] == ["tflite:fp16"]
    rs = bench_path(digits_out[0], BenchConfig(warmup=0, runs=3), target="tflite")
    assert [r.target for r in rs] == TARGETS


def test_bench_unknown_target_is_model_error(digits_out):
    with pytest.raises(ModelError, match="tflite:fp32"):
        bench_path(digits_out[0], BenchConfig(warmup=0, runs=3), target="onnx:fp32")


def test_max_seconds_stops_early(digits_out):
    cfg = BenchConfig(warmup=0, runs=100_000, max_seconds=0.2)
    (r,) = bench_path(digits_out[0], cfg, target="tflite:fp32")
    assert r.status == "ok"
    assert 1 <= r.runs < 100_000
    # the loop ran for about max_seconds (timed runs alone can't exceed it by much)
    assert r.runs * r.latency_ms["mean"] / 1e3 <= 0.2 + 0.2


@pytest.mark.parametrize("kwargs", [dict(runs=0), dict(runs=-1), dict(warmup=-1), dict(batch_size=0),
                                    dict(max_seconds=0), dict(max_seconds=-1.0), dict(num_threads=0)])
def test_bad_config(kwargs):
    with pytest.raises(InputError) as ei:
        BenchConfig(**kwargs)
    assert "\n" not in str(ei.value)


@pytest.mark.parametrize("name, precision", [("tflite-int8.tflite", "int8"), ("tflite-fp32.tflite", "fp32"),
                                             ("tflite-fp16.tflite", "fp16"), ("tflite-dynamic.tflite", "dynamic")])
def test_bench_bare_file_guesses_precision(digits_out, name, precision):
    out, _ = digits_out
    (r,) = bench_path(out / name, BenchConfig(warmup=1, runs=5))
    assert r.status == "ok", r.error
    assert r.precision == precision
    assert r.target == f"tflite:{precision}"
    assert r.validation is None
    assert r.accuracy is None  # a bare file has no eval data unless given
    assert r.size_bytes == (out / name).stat().st_size
    assert r.runs == 5


def test_bench_bare_file_with_eval(digits_out):
    out, _ = digits_out
    (r,) = bench_path(out / "tflite-int8.tflite", BenchConfig(warmup=1, runs=5), eval_path=out / "eval.npz")
    assert r.status == "ok"
    assert r.accuracy >= 95.0 and r.accuracy_samples == 359


def test_bench_missing_path(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        bench_path(tmp_path / "nope", BenchConfig(runs=1))


def test_bench_corrupt_artifact_in_folder(digits_out, tmp_path):
    out, manifest = digits_out
    folder = tmp_path / "copy"
    shutil.copytree(out, folder)
    f = folder / manifest.artifact("tflite:int8").path
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    rs = bench_path(folder, BenchConfig(warmup=1, runs=5))
    by = {r.target: r for r in rs}
    assert list(by) == TARGETS
    bad = by["tflite:int8"]
    assert bad.status == "error"
    assert bad.error and "sha256" in bad.error and "\n" not in bad.error
    assert bad.latency_ms == {} and bad.runs == 0 and bad.throughput is None
    assert bad.size_bytes == f.stat().st_size
    for t in ("tflite:fp32", "tflite:dynamic", "tflite:fp16"):
        assert by[t].status == "ok" and by[t].error is None and by[t].accuracy >= 95.0


def test_bench_random_bytes_file_is_error_result(tmp_path):
    f = tmp_path / "junk.tflite"
    f.write_bytes(np.random.default_rng(0).bytes(4096))
    (r,) = bench_path(f, BenchConfig(runs=2))
    assert r.status == "error"
    assert "TFL3" in r.error and "junk.tflite" in r.error
    assert r.precision == "?" and r.target == "tflite:?"
    assert r.size_bytes == 4096


def test_bench_file_direct(digits_out):
    out, manifest = digits_out
    a = manifest.artifact("tflite:fp16")
    r = bench_file(out / a.path, BenchConfig(warmup=0, runs=3), artifact=a)
    assert r.status == "ok" and r.target == "tflite:fp16" and r.validation == "passed" and r.accuracy is None


def test_synthetic_feeds_match_specs(digits_out):
    s = rt.load(digits_out[0], target="tflite:int8")
    (x,) = synthetic_feeds(s.inputs, batch_size=4, seed=1)
    assert x.shape == (4, 8, 8, 1) and x.dtype == np.int8
    (y,) = synthetic_feeds(s.inputs, batch_size=4, seed=1)
    np.testing.assert_array_equal(x, y)  # seeded
    (f,) = synthetic_feeds(rt.load(digits_out[0], target="tflite:fp32").inputs, batch_size=2)
    assert f.shape == (2, 8, 8, 1) and f.dtype == np.float32 and 0 <= f.min() and f.max() < 1


def test_report_document(results, config):
    doc = report(results, config)
    assert doc["schema"] == SCHEMA == "edgekit.bench/1"
    dev = doc["device"]
    assert dev["cores"] >= 1 and isinstance(dev["cpu"], str) and dev["machine"]
    assert doc["config"] == {"warmup": 2, "runs": 20, "max_seconds": None, "batch_size": 1, "num_threads": None, "seed": 0,
                             "cold_start": False, "concurrency": 1}
    assert [r["target"] for r in doc["results"]] == TARGETS
    fields = {f.name for f in dataclasses.fields(BenchResult)}
    for r in doc["results"]:
        assert set(r) == fields
        assert isinstance(r["warnings"], list)
    assert isinstance(doc["notes"], list) and all(isinstance(n, str) for n in doc["notes"])
    # the whole document is plain JSON and round-trips
    assert json.loads(json.dumps(doc)) == doc


def test_flat_row_for_csv(results):
    row = results[0].flat()
    assert "latency_ms" not in row
    for k in LATENCY_KEYS:
        assert row[f"latency_{k}_ms"] == results[0].latency_ms[k]
    assert isinstance(row["warnings"], str)


def test_settle_waits_while_a_thread_of_this_process_is_busy_and_not_when_it_is_quiet():
    # What keeps one candidate's spinning engine pool (onnxruntime's, tens of ms after each run)
    # out of the next candidate's timing. It must hold on a contended box too (the suite runs 2
    # workers on 2 cores): a CPU-share test alone once read a descheduled spinner as quiet.
    import threading
    import time

    from edgekit.runtime.bench.timing import SETTLE_MAX, settle

    assert settle() < 0.1  # quiet: back after one step of SETTLE_STEP (room for a slow sleep on a busy box)
    a = np.random.default_rng(0).random(1 << 18)  # one sort ~10 ms, GIL released: a native thread burning a core
    busy_s = 0.15
    started, stop = threading.Event(), threading.Event()

    def spin() -> None:
        end = time.perf_counter() + busy_s
        started.set()
        while time.perf_counter() < end:
            np.sort(a)
        stop.wait()  # blocked, as an idle pool thread is

    t = threading.Thread(target=spin, daemon=True)  # a failed assert must not hang the worker
    t.start()
    try:
        started.wait()
        t0 = time.perf_counter()
        waited = settle()
        left = busy_s - (time.perf_counter() - t0)
        assert waited <= SETTLE_MAX + 0.05
        assert waited >= min(SETTLE_MAX, busy_s) * 0.5, waited  # it waited for the spinner, not one step
        time.sleep(max(left, 0) + 0.1)  # its last sort ends, then it blocks as an idle pool thread does
        assert settle() < 0.1
    finally:
        stop.set()
        t.join()


def test_runnable_threads_counts_a_spinning_thread_and_not_a_blocked_one():
    import sys
    import threading
    import time

    from edgekit.runtime.bench.timing import runnable_threads

    if not sys.platform.startswith("linux"):
        assert runnable_threads() is None or runnable_threads() >= 0
        return
    a = np.random.default_rng(0).random(1 << 20)  # one sort ~60 ms
    go, stop, parking, parked = (threading.Event() for _ in range(4))

    def spin() -> None:
        go.set()
        while not stop.is_set():
            np.sort(a)
        parking.set()
        parked.wait()  # blocked, as an idle pool thread is

    t = threading.Thread(target=spin, daemon=True)  # a failed assert must not hang the worker
    t.start()
    try:
        go.wait()
        seen = [runnable_threads() for _ in range(5)]
        stop.set()
        assert max(seen) >= 1, seen  # state R, on the CPU or waiting for one
        parking.wait()
        # Once it blocks it is not counted (another thread of the test process may wake now and then).
        deadline, zero = time.perf_counter() + 1.0, False
        while not zero and time.perf_counter() < deadline:
            zero = runnable_threads() == 0
            time.sleep(0.002)
        assert zero
    finally:
        stop.set()
        parked.set()
        t.join()
