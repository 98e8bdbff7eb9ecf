"""Regression gate, results store, HTML report, doctor and cold start: values, not "it ran"."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgekit.errors import InputError
from edgekit.runtime.bench import BenchConfig, bench_path, report
from edgekit.runtime.bench.gate import check, load_baseline, parse_rules
from edgekit.runtime.bench.history import ResultStore, model_key_for


def _r(target="tflite:int8", p50=1.0, acc=99.0, size=1000, status="ok", threads=2, batch=1):
    return {"target": target, "batch_size": batch, "num_threads": threads, "status": status,
            "latency_ms": {"p50": p50, "p99": p50 * 2}, "accuracy": acc, "size_bytes": size, "throughput": 1000 / p50}


def test_rules_parse_and_reject():
    rules = parse_rules("p50+10%, accuracy-1 ,size+5%,throughput-20%")
    assert [str(r) for r in rules] == ["p50+10%", "accuracy-1", "size+5%", "throughput-20%"]
    for bad, msg in (("p50*10", "is not METRIC"), ("latency+10%", "unknown"), ("", "at least one rule")):
        with pytest.raises(InputError, match=msg):
            parse_rules(bad)


def test_gate_flags_each_kind_of_regression():
    rules = parse_rules("p50+10%,accuracy-1,size+5%,throughput-20%")
    base = [_r(), _r("tflite:fp32", p50=2.0), _r("tflite:fp16")]
    assert check([_r(p50=1.09), _r("tflite:fp32", p50=2.1), _r("tflite:fp16", acc=98.1)], base, rules) == []
    # p50 1.2 also cuts throughput by 16.7 %, inside throughput-20%: not reported.
    out = check([_r(p50=1.2, acc=97.5), _r("tflite:fp32", p50=2.0, size=2000), _r("tflite:fp16", status="error")], base, rules)
    assert out == [
        "tflite:int8 (batch 1, 2 threads): p50 1.2 vs baseline 1 (+20.0%) exceeds p50+10%",
        "tflite:int8 (batch 1, 2 threads): accuracy 97.5 vs baseline 99 (-1.5%) exceeds accuracy-1",
        "tflite:fp32 (batch 1, 2 threads): size 2000 vs baseline 1000 (+100.0%) exceeds size+5%",
        "tflite:fp16 (batch 1, 2 threads): in the baseline but error now",
    ]
    # Matching is per target, batch and thread count: another sweep point is not compared.
    assert check([_r(p50=9.0, threads=1)], [_r()], rules) == ["tflite:int8 (batch 1, 2 threads): in the baseline but missing now"]


def test_baseline_file_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_baseline(tmp_path / "none.json")
    (tmp_path / "b.json").write_text("[1]")
    with pytest.raises(InputError, match="no results list"):
        load_baseline(tmp_path / "b.json")


@pytest.fixture()
def store_env(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_RESULTS", str(tmp_path / "results.sqlite"))
    return tmp_path / "results.sqlite"


def _edgekit(*args, env=None):
    return subprocess.run([sys.executable, "-m", "edgekit.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_cli_gate_history_and_report_end_to_end(digits_out, tmp_path, store_env):
    out, _ = digits_out
    env = {"EDGEKIT_RESULTS": str(store_env)}
    base = tmp_path / "base.json"
    r = _edgekit("bench", str(out), "--runs", "30", "--warmup", "2", "--target", "int8", "--json", str(base),
                 "--report", str(tmp_path / "r.html"), env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(base.read_text())
    (res,) = doc["results"]
    assert res["cold_start_ms"] > 0 and len(res["samples_ms"]) == 30
    # Same artifact against its own baseline: no regression.
    r2 = _edgekit("bench", str(out), "--runs", "30", "--warmup", "2", "--target", "int8", "--no-cold-start",
                  "--baseline", str(base), "--fail-on", "size+0%,accuracy-0", env=env)
    assert r2.returncode == 0 and "no regression" in r2.stderr
    # A baseline claiming a smaller file and better accuracy: the gate fails with both reasons.
    doc["results"][0]["size_bytes"] = res["size_bytes"] // 2
    doc["results"][0]["accuracy"] = 100.0
    (tmp_path / "better.json").write_text(json.dumps(doc))
    r3 = _edgekit("bench", str(out), "--runs", "20", "--target", "int8", "--no-cold-start",
                  "--baseline", str(tmp_path / "better.json"), "--fail-on", "size+5%,accuracy-0.1", env=env)
    assert r3.returncode == 1
    assert "regression: tflite:int8" in r3.stderr and "exceeds size+5%" in r3.stderr and "exceeds accuracy-0.1" in r3.stderr
    # Every run was appended to the store; --history shows them for this model.
    name, key = model_key_for(out)
    rows = ResultStore(store_env).history(key)
    assert len(rows) == 3 and {r["target"] for r in rows} == {"tflite:int8"}
    assert all(r["device"] and r["engine"] == "ai-edge-litert" for r in rows)
    h = _edgekit("bench", str(out), "--history", env=env)
    assert h.returncode == 0 and h.stdout.count("tflite:int8") == 3 and name in h.stdout
    # The report: both tables, both charts as inline SVG (tests/runtime/test_report_html.py renders them), device line.
    html = (tmp_path / "r.html").read_text()
    assert "<h2>Artifacts</h2>" in html and "<h2>Timing</h2>" in html and "tflite:int8" in html
    assert "Latency distribution" in html and html.count("<svg") >= 2
    assert doc["device"]["cpu"] in html


def test_history_for_a_model_with_no_runs(tmp_path, store_env, digits_out):
    r = _edgekit("bench", str(digits_out[0]), "--history", env={"EDGEKIT_RESULTS": str(store_env)})
    assert r.returncode == 0 and "no stored results" in r.stdout


def test_sweep_threads_and_batches(digits_out, store_env):
    out, _ = digits_out
    results = []
    for t in (1, 2):
        for b in (1, 4):
            results += bench_path(out, BenchConfig(warmup=1, runs=5, num_threads=t, batch_size=b), target="tflite:fp32")
    assert [(r.num_threads, r.batch_size) for r in results] == [(1, 1), (1, 4), (2, 1), (2, 4)]
    assert all(r.status == "ok" and r.throughput > 0 for r in results)
    doc = report(results, BenchConfig())
    assert doc["schema"] == "edgekit.bench/1" and len(doc["results"]) == 4
    # A sweep as one call: same settings, grouped per artifact.
    swept = bench_path(out, [BenchConfig(warmup=1, runs=5, num_threads=t, batch_size=b) for t in (1, 2) for b in (1, 4)],
                       target="tflite:fp32")
    assert [(r.num_threads, r.batch_size, r.status) for r in swept] == [(1, 1, "ok"), (1, 4, "ok"), (2, 1, "ok"), (2, 4, "ok")]


def test_doctor_reports_engines_and_install_commands():
    r = _edgekit("doctor", "--json")
    assert r.returncode == 0
    d = json.loads(r.stdout)
    assert d["backends"]["tflite"]["available"] is True
    assert d["device"]["cores"] >= 1 and "ai_edge_litert" in d["device"]["engines"]
    assert "tensorflow" not in d["device"]["engines"] or d["device"]["engines"]["tensorflow"]
    missing = [b for b in d["backends"].values() if not b["available"]]
    assert all(b["install"] and b["reason"] for b in missing)
    text = _edgekit("doctor").stdout
    assert "✅ tflite" in text and "device" in text
