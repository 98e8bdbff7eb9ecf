"""Prometheus ``/metrics``: ``edgekit serve`` over real HTTP, ``Metrics.serve`` on its own port, and
serve without prometheus-client. Scrapes are parsed with prometheus_client's own text parser."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request

import pytest
from deploy_helpers import DATA, Client, eval_data, manifest, request, start_server

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from edgekit.runtime.metrics import BUCKETS, Metrics  # noqa: E402

MAX_BODY = 4 << 10
ENDPOINTS = ("/healthz", "/metadata", "/predict", "/metrics", "other")


def _samples(text: str, parse=text_string_to_metric_families) -> list:
    return [s for family in parse(text) for s in family.samples]


def _value(samples: list, name: str, **labels: str) -> float | None:
    """The one sample called ``name`` whose labels include ``labels`` (None if there is none)."""
    hits = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(hits) <= 1, (name, labels, hits)
    return hits[0] if hits else None


def _counts(samples: list) -> dict[tuple[str, str], float]:
    return {(s.labels["endpoint"], s.labels["status"]): s.value for s in samples if s.name == "edgekit_requests_total"}


def _scrape(client: Client) -> list:
    status, headers, body = client.request("GET", "/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return _samples(body.decode())


def _image_json() -> bytes:
    x, _ = eval_data()
    return json.dumps({"inputs": {"image": x[:1].tolist()}}).encode()


def _expect_100_oversized(url: str) -> int:
    """A curl-style ``Expect: 100-continue`` upload over the limit: refused before the body is sent."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (MAX_BODY + 1))
        reply = b""
        while chunk := s.recv(1 << 16):  # the server closes after refusing
            reply += chunk
    return int(reply.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def served():
    server, thread, result = start_server(max_body=MAX_BODY, load_seconds=0.25)
    yield server
    server.stop()
    thread.join(15)
    assert not thread.is_alive()


def test_serve_counts_every_request_by_endpoint_and_status(served):
    """Exact counts per (endpoint, status), histogram count/sum consistent, in-flight at rest, model info."""
    c = Client(served.url)
    t_start = time.perf_counter()
    engine_seconds = 0.0
    try:
        for _ in range(3):
            status, _, raw = c.request("POST", "/predict", _image_json(), {"Content-Type": "application/json"})
            assert status == 200
            engine_seconds += json.loads(raw)["latency_ms"] / 1e3
        plan = [  # (method, path, body, headers, status); all keep the connection open
            ("POST", "/predict", b"{not json", {"Content-Type": "application/json"}, 400),
            ("POST", "/predict", b"1,2", {"Content-Type": "text/csv"}, 415),
            ("POST", "/predict", b"x" * (MAX_BODY + 1), {"Content-Type": "application/json"}, 413),
            ("GET", "/predict", None, {}, 405),
            ("BREW", "/predict", None, {}, 405),  # rejected by http.server before routing: still labelled
            ("GET", "/healthz", None, {}, 200),
            ("HEAD", "/healthz", None, {}, 200),
            ("GET", "/metadata", None, {}, 200),
            ("GET", "/nope", None, {}, 404),
            ("GET", "/secret/path/1", None, {}, 404),  # unknown paths share one label: no cardinality blow-up
            ("POST", "/metrics", b"{}", {"Content-Type": "application/json"}, 405),
            ("HEAD", "/metrics?x=1", None, {}, 200),  # the query string is not part of the endpoint
        ]
        for method, path, body, headers, want in plan:
            got, _, raw = c.request(method, path, body, headers)
            assert got == want, (method, path, raw)
            if got == 413:
                c.close()
                c = Client(served.url)  # a 413 without Expect closes the connection
        assert _expect_100_oversized(served.url) == 413
        elapsed = time.perf_counter() - t_start
        samples = _scrape(c)
    finally:
        c.close()

    assert _counts(samples) == {
        ("/predict", "200"): 3, ("/predict", "400"): 1, ("/predict", "415"): 1, ("/predict", "413"): 2,
        ("/predict", "405"): 2, ("/healthz", "200"): 2, ("/metadata", "200"): 1, ("other", "404"): 2,
        ("/metrics", "405"): 1, ("/metrics", "200"): 1,  # this scrape is counted after it renders
    }

    total = 0.0
    for endpoint in ENDPOINTS:
        n = sum(v for (e, _), v in _counts(samples).items() if e == endpoint)
        count = _value(samples, "edgekit_request_duration_seconds_count", endpoint=endpoint)
        assert count == n, endpoint
        buckets = [_value(samples, "edgekit_request_duration_seconds_bucket", endpoint=endpoint, le=str(le))
                   for le in BUCKETS] + [_value(samples, "edgekit_request_duration_seconds_bucket", endpoint=endpoint, le="+Inf")]
        assert buckets == sorted(buckets) and buckets[-1] == n, (endpoint, buckets)
        total += _value(samples, "edgekit_request_duration_seconds_sum", endpoint=endpoint)
        # Nothing left in flight but the scrape that is rendering this very text.
        assert _value(samples, "edgekit_requests_in_flight", endpoint=endpoint) == (1 if endpoint == "/metrics" else 0)
    # Requests ran one after another, so their durations add up to at most the wall time they took,
    # and a prediction's duration includes the engine time the server reported for it.
    assert 0 < total <= elapsed
    assert _value(samples, "edgekit_request_duration_seconds_sum", endpoint="/predict") >= engine_seconds > 0

    art = manifest()["artifacts"][0]
    info = [s for s in samples if s.name == "edgekit_model_info"]
    assert len(info) == 1 and info[0].value == 1
    labels = info[0].labels
    assert labels["target"] == art["target"] == "tflite:int8" and labels["sha256"] == art["sha256"]
    assert labels["format"] == "tflite" and labels["precision"] == "int8"
    assert labels["engine"] == served.meta["engine"] and labels["engine_version"] == served.meta["engine_version"]
    assert _value(samples, "edgekit_model_load_seconds") == 0.25

    # /healthz and /metrics count the same events: every request so far, this one not yet.
    status, _, raw = request(served.url, "GET", "/healthz")
    health = json.loads(raw)
    counted = sum(_counts(samples).values())
    assert health["requests"] == counted + 1  # + the scrape, counted once its text was rendered
    assert health["client_errors"] == sum(v for (_, s), v in _counts(samples).items() if s.startswith("4"))
    assert health["predictions"] == 3 and health["server_errors"] == 0


def test_each_scrape_sees_the_ones_before_it_and_openmetrics_is_negotiated(served):
    c = Client(served.url)
    try:
        before = _value(_scrape(c), "edgekit_requests_total", endpoint="/metrics", status="200") or 0
        after = _value(_scrape(c), "edgekit_requests_total", endpoint="/metrics", status="200")
        assert after == before + 1
        status, headers, body = c.request("GET", "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    finally:
        c.close()
    assert status == 200 and headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    samples = _samples(body.decode(), openmetrics_families)
    assert _value(samples, "edgekit_requests_total", endpoint="/metrics", status="200") == after + 1
    assert _value(samples, "edgekit_model_info", target="tflite:int8") == 1


def test_connection_limit_503_is_counted():
    """A 503 at the connection limit is an answer like any other: counted under "other" (and in /healthz as busy)."""
    server, thread, _ = start_server(max_connections=1)
    held = Client(server.url)
    try:
        with server.run_lock:  # the only slot is busy working until the lock is released
            worker = threading.Thread(target=lambda: held.request("POST", "/predict", _image_json(),
                                                                  {"Content-Type": "application/json"}))
            worker.start()
            deadline = time.monotonic() + 10
            while server.health()["connections"]["busy"] != 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert request(server.url, "GET", "/healthz")[0] == 503
        worker.join(30)
        samples = _scrape(held)  # through the held slot
        busy = server.health()["busy"]
    finally:
        held.close()
        server.stop()
        thread.join(15)
    assert _counts(samples) == {("/predict", "200"): 1, ("other", "503"): 1}
    assert busy == 1
    assert _value(samples, "edgekit_requests_in_flight", endpoint="other") == 0
    assert _value(samples, "edgekit_model_load_seconds") is None  # make_server was not told a load time


def test_no_metrics_turns_the_endpoint_off():
    server, thread, _ = start_server(metrics=False)
    try:
        status, _, raw = request(server.url, "GET", "/metrics")
        assert status == 404 and "--no-metrics" in json.loads(raw)["error"]
        assert json.loads(request(server.url, "GET", "/healthz")[2])["requests"] == 1  # /healthz counters still count
    finally:
        server.stop()
        thread.join(15)


def test_metrics_serve_on_its_own_port_and_registries_are_private():
    """The IoT app's use: no HTTP server of its own, so Metrics.serve exposes /metrics on a port."""
    info = {"target": "onnx:fp32", "format": "onnx", "precision": "fp32", "sha256": "ab" * 32, "engine": "onnxruntime"}
    a, b = Metrics(info), Metrics({**info, "target": "tflite:int8"}, process=False)
    for seconds in (0.0004, 0.003, 0.2):
        a.observe("frame", "ok", seconds)
    a.observe("frame", 500, 0.01)
    b.observe("frame", "ok", 1.0)
    with a.in_flight("frame"):
        srv = a.serve("127.0.0.1", 0)
        try:
            assert srv.server_port > 0
            with urllib.request.urlopen(f"http://127.0.0.1:{srv.server_port}/metrics", timeout=10) as resp:
                assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
                samples = _samples(resp.read().decode())
            for method, path, want in (("POST", "/metrics", 405), ("GET", "/", 404)):
                with pytest.raises(urllib.error.HTTPError) as err:
                    urllib.request.urlopen(urllib.request.Request(f"{srv.url}{path}", data=b"" if method == "POST" else None,
                                                                  method=method), timeout=10)
                assert err.value.code == want
        finally:
            srv.shutdown()
    assert _counts(samples) == {("frame", "ok"): 3, ("frame", "500"): 1}
    assert _value(samples, "edgekit_request_duration_seconds_count", endpoint="frame") == 4
    assert _value(samples, "edgekit_request_duration_seconds_sum", endpoint="frame") == pytest.approx(0.2134)
    assert _value(samples, "edgekit_request_duration_seconds_bucket", endpoint="frame", le="0.0005") == 1
    assert _value(samples, "edgekit_request_duration_seconds_bucket", endpoint="frame", le="0.25") == 4
    assert _value(samples, "edgekit_requests_in_flight", endpoint="frame") == 1  # scraped inside the block
    assert a.gauge("frame") == 0
    model = [s.labels for s in samples if s.name == "edgekit_model_info"]
    assert model == [{**info, "engine_version": "", "edgekit_version": model[0]["edgekit_version"]}]
    if sys.platform.startswith("linux"):
        assert _value(samples, "process_resident_memory_bytes") > 0
    # Two Metrics in one process: separate counts, and nothing in prometheus_client's global registry.
    assert a.count("frame") == 4 and b.count("frame") == 1
    assert b"edgekit_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)
    with pytest.raises(OSError):  # shut down means the port is closed
        socket.create_connection(("127.0.0.1", srv.server_port), timeout=2).close()


_NO_PROMETHEUS = textwrap.dedent("""
    import http.client, json, sys
    sys.modules["prometheus_client"] = None  # what an install without edgekit[metrics] looks like
    from edgekit.errors import MissingDependencyError
    from edgekit.runtime import load
    from edgekit.runtime.metrics import Metrics, available
    from edgekit.runtime.serve import make_server, run_until_stopped
    import threading

    try:
        Metrics({})
        raised = None
    except MissingDependencyError as exc:
        raised = [str(exc), exc.extra]
    server = make_server(load(sys.argv[1], num_threads=1), port=0)
    threading.Thread(target=run_until_stopped, args=(server,), kwargs={"handle_signals": False}, daemon=True).start()
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    answers = {}
    for path in ("/metrics", "/healthz"):
        conn.request("GET", path)
        resp = conn.getresponse()
        answers[path] = [resp.status, json.loads(resp.read())]
    server.stop()
    print("RESULT " + json.dumps({"available": available(), "raised": raised, "answers": answers}))
""")


def test_serve_without_prometheus_client_answers_501_and_serves_on():
    proc = subprocess.run([sys.executable, "-c", _NO_PROMETHEUS, str(DATA)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    hint = "pip install 'edgekit[metrics]'"
    assert res["available"] is False
    assert res["raised"][1] == "metrics" and hint in res["raised"][0] and "prometheus-client" in res["raised"][0]
    status, doc = res["answers"]["/metrics"]
    assert status == 501 and doc["type"] == "NotImplemented" and hint in doc["error"] and "\n" not in doc["error"]
    status, doc = res["answers"]["/healthz"]
    assert status == 200 and doc["status"] == "ok" and doc["requests"] == 1  # the 501 counted; serve works on
