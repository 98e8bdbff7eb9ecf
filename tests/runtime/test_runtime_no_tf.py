"""The slim runtime never imports TensorFlow / Keras: checked in fresh processes that load, run and bench."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

HEAVY = ("tensorflow", "keras", "tf_keras")

_RUNTIME_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import edgekit.runtime, edgekit.cli, edgekit.runtime.bench, edgekit.runtime.metrics, edgekit.runtime.serve, edgekit.runtime.pick, edgekit.cli.pick
    import edgekit.runtime.mqtt, edgekit.runtime.quantize, edgekit.runtime.artifacts, edgekit.cache, edgekit.locks
    import edgekit.runtime as rt
    from edgekit.runtime.bench import BenchConfig, bench_path

    out = sys.argv[1]
    after_import = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
    s = rt.load(out, target="tflite:fp32")
    logits = s.run(np.zeros((2, 8, 8, 1), np.float32))["logits"]
    s8 = rt.load(out, target="tflite:int8")
    logits8 = s8.run(np.zeros((2, 8, 8, 1), np.float32))["logits"]
    results = bench_path(out, BenchConfig(warmup=1, runs=5))
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
    print("RESULT " + json.dumps({{
        "after_import": after_import,
        "heavy": heavy,
        "engine": s.info["engine"],
        "shape": list(logits.shape),
        "shape8": list(logits8.shape),
        "status": [r.status for r in results],
        "runs": [r.runs for r in results],
        "accuracy": [r.accuracy for r in results],
    }}))
""").format(HEAVY=set(HEAVY))

_CLI_SCRIPT = textwrap.dedent("""
    import json, runpy, sys
    sys.argv = ["edgekit", "bench", sys.argv[1], "--runs", "5", "--warmup", "1", "--json", sys.argv[2]]
    code = None
    try:
        runpy.run_module("edgekit.cli", run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
    print("RESULT " + json.dumps({{"code": code, "heavy": heavy}}))
""").format(HEAVY=set(HEAVY))


def _result(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_runtime_load_run_bench_without_tensorflow(digits_out):
    out, _ = digits_out
    res = _result(subprocess.run([sys.executable, "-c", _RUNTIME_SCRIPT, str(out)], capture_output=True, text=True,
                                 timeout=120))
    assert res["after_import"] == []
    assert res["heavy"] == [], res["heavy"]
    assert res["engine"] != "tf.lite"
    assert res["shape"] == [2, 10] and res["shape8"] == [2, 10]
    assert res["status"] == ["ok"] * 4
    assert res["runs"] == [5] * 4
    assert all(a >= 95.0 for a in res["accuracy"])


def test_cli_bench_without_tensorflow(digits_out, tmp_path):
    out, _ = digits_out
    jpath = tmp_path / "bench.json"
    res = _result(subprocess.run([sys.executable, "-c", _CLI_SCRIPT, str(out), str(jpath)], capture_output=True,
                                 text=True, timeout=120))
    assert res["code"] == 0
    assert res["heavy"] == [], res["heavy"]
    doc = json.loads(jpath.read_text())
    assert [r["status"] for r in doc["results"]] == ["ok"] * 4
    assert [r["runs"] for r in doc["results"]] == [5] * 4


_SERVE_SCRIPT = textwrap.dedent("""
    import http.client, json, sys, threading
    import edgekit.runtime as rt
    from edgekit.runtime.metrics import Metrics
    from edgekit.runtime.serve import make_server, run_until_stopped

    server = make_server(rt.load(sys.argv[1], num_threads=1), port=0)
    threading.Thread(target=run_until_stopped, args=(server,), kwargs={{"handle_signals": False}}, daemon=True).start()
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    body = resp.read()
    server.stop()
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
    print("RESULT " + json.dumps({{"status": resp.status, "model_info": b"edgekit_model_info{{" in body, "heavy": heavy}}))
""").format(HEAVY=set(HEAVY))


def test_serve_with_metrics_without_tensorflow():
    # The committed artifact: no conversion needed, so this runs without the digits_out fixture.
    data = Path(__file__).resolve().parents[1] / "data" / "digits-int8"
    res = _result(subprocess.run([sys.executable, "-c", _SERVE_SCRIPT, str(data)], capture_output=True, text=True,
                                 timeout=120))
    assert res["heavy"] == [], res["heavy"]
    assert res["status"] in (200, 501)  # 501 where prometheus-client is not installed
    assert res["model_info"] is (res["status"] == 200)
