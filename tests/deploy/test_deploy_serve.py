"""`edgekit serve` end to end over real HTTP on 127.0.0.1: values, concurrency, malformed payloads."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from deploy_helpers import DATA, Client, eval_data, manifest, request, start_server

from edgekit.runtime import load
from edgekit.runtime.serve import DEFAULT_MAX_BODY, make_server, parse_size

MAX_BODY = 64 << 10  # small, so the 413 case needs only a small body


@pytest.fixture(scope="module")
def served():
    server, thread, result = start_server(max_body=MAX_BODY)
    yield server
    server.stop()
    thread.join(15)
    assert not thread.is_alive()
    assert result["server_errors"] == 0  # no request in this module may cause a 5xx


@pytest.fixture(scope="module")
def expected():
    """Logits of the first 64 eval samples, one at a time, straight from a Session."""
    x, y = eval_data()
    s = load(DATA, num_threads=1)
    return x[:64], y[:64], np.concatenate([s.run(x[i : i + 1])["logits"] for i in range(64)])


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _json(doc) -> bytes:
    return json.dumps(doc).encode()


def test_healthz_and_metadata(served):
    status, headers, body = request(served.url, "GET", "/healthz")
    assert status == 200 and headers["content-type"] == "application/json"
    health = json.loads(body)
    assert health["status"] == "ok" and health["target"] == "tflite:int8"

    status, _, body = request(served.url, "GET", "/metadata")
    meta = json.loads(body)
    art = manifest()["artifacts"][0]
    assert status == 200
    assert meta["target"] == "tflite:int8" and meta["format"] == "tflite" and meta["precision"] == "int8"
    assert meta["artifact"] == art["path"] == "tflite-int8.tflite"
    assert meta["validation"] == "passed"
    assert meta["engine"] in ("ai-edge-litert", "tflite_runtime", "tf.lite") and meta["num_threads"] == 1
    assert meta["inputs"] == art["inputs"] and meta["outputs"] == art["outputs"]
    assert meta["inputs"][0]["name"] == "image" and meta["inputs"][0]["shape"] == [None, 8, 8, 1]
    assert meta["max_body"] == MAX_BODY
    assert str(DATA) not in body.decode()  # no local paths leak over HTTP

    status, headers, body = request(served.url, "HEAD", "/healthz")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_predict_json_npy_npz_match_session(served, expected):
    x, _, want = expected
    batch = x[:5]
    c = Client(served.url)
    try:
        for body, ctype in ((_json({"inputs": {"image": batch.tolist()}}), "application/json"),
                            (_json(batch.tolist()), "application/json"),
                            (_json({"inputs": batch.tolist()}), "application/json; charset=utf-8"),
                            (_npy(batch), "application/x-npy"),
                            (_npy(batch.astype(np.float64)), "application/x-npy"),
                            (_npz(image=batch), "application/x-npz")):
            status, headers, raw = c.request("POST", "/predict", body, {"Content-Type": ctype})
            assert status == 200, raw
            doc = json.loads(raw)
            got = np.asarray(doc["outputs"]["logits"], np.float32)
            assert got.shape == (5, 10)
            np.testing.assert_allclose(got, want[:5], rtol=0, atol=1e-5)
            assert doc["latency_ms"] > 0
        status, headers, raw = c.request("POST", "/predict", _npy(batch),
                                         {"Content-Type": "application/x-npy", "Accept": "application/x-npz"})
        assert status == 200 and headers["content-type"] == "application/x-npz"
        with np.load(io.BytesIO(raw)) as out:
            assert out["logits"].dtype == np.float32
            np.testing.assert_allclose(out["logits"], want[:5], rtol=0, atol=1e-5)
    finally:
        c.close()


def test_concurrent_requests_all_correct(served, expected):
    x, y, want = expected
    threads, per_thread = 8, 25
    failures: list[str] = []
    correct = []

    def worker(k: int) -> None:
        c = Client(served.url)
        try:
            for j in range(per_thread):
                i = (k * per_thread + j) % len(x)
                as_npy = j % 2 == 1  # mix payload kinds and dtypes across threads
                body = _npy(x[i : i + 1]) if as_npy else _json({"inputs": {"image": x[i : i + 1].tolist()}})
                status, _, raw = c.request("POST", "/predict", body,
                                           {"Content-Type": "application/x-npy" if as_npy else "application/json"})
                if status != 200:
                    failures.append(f"{status}: {raw[:200]!r}")
                    continue
                got = np.asarray(json.loads(raw)["outputs"]["logits"], np.float32)
                if not np.allclose(got, want[i : i + 1], rtol=0, atol=1e-5):
                    failures.append(f"sample {i}: {got} != {want[i]}")
                correct.append(int(np.argmax(got)) == int(y[i]))
        finally:
            c.close()

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    assert failures == []
    assert len(correct) == threads * per_thread
    assert sum(correct) / len(correct) > 0.95  # the artifact's accuracy is 99.7 %


@pytest.mark.parametrize("method, path, body, headers, status, message", [
    ("POST", "/predict", b"{bad", {"Content-Type": "application/json"}, 400, "not valid JSON"),
    ("POST", "/predict", b"\xff\xfe", {"Content-Type": "application/json"}, 400, "not UTF-8"),
    ("POST", "/predict", _json({"inputs": {"image": np.zeros((1, 8, 8)).tolist()}}), {"Content-Type": "application/json"},
     400, "expects image[?x8x8x1]"),
    ("POST", "/predict", _json({"inputs": {"image": np.zeros((1, 8, 7, 1)).tolist()}}), {"Content-Type": "application/json"},
     400, "got shape (1, 8, 7, 1)"),
    ("POST", "/predict", _json({"inputs": {"image": [[["a"] * 8] * 8]}}), {"Content-Type": "application/json"},
     400, "must hold numbers"),
    ("POST", "/predict", _json({"inputs": {"image": [[1, 2], [3]]}}), {"Content-Type": "application/json"},
     400, "not a rectangular array"),
    ("POST", "/predict", _npy(np.zeros((1, 8, 8, 1), np.int32)), {"Content-Type": "application/x-npy"},
     400, "got dtype int32"),
    ("POST", "/predict", _json({"inputs": {"img": [[0]]}}), {"Content-Type": "application/json"},
     400, "unknown input name(s) ['img']"),
    ("POST", "/predict", _npz(img=np.zeros((1, 8, 8, 1), np.float32)), {"Content-Type": "application/x-npz"},
     400, "unknown input name(s) ['img']"),
    ("POST", "/predict", _json({"x": 1}), {"Content-Type": "application/json"}, 400, "no 'inputs' key"),
    ("POST", "/predict", b"not an npy", {"Content-Type": "application/x-npy"}, 400, "no NPY header"),
    ("POST", "/predict", _npz(image=np.zeros((1, 8, 8, 1), np.float32)), {"Content-Type": "application/x-npy"},
     400, "is a .npz archive"),
    ("POST", "/predict", b"PK not a zip", {"Content-Type": "application/x-npz"}, 400, "not a .npz archive"),
    ("POST", "/predict", b"", {"Content-Type": "application/json"}, 400, "empty body"),
    ("POST", "/predict", b"x" * (MAX_BODY + 1), {"Content-Type": "application/json"}, 413, f"over the {MAX_BODY}-byte limit"),
    ("POST", "/predict", b"1,2,3", {"Content-Type": "text/csv"}, 415, "'text/csv' is not supported"),
    ("GET", "/predict", None, {}, 405, "GET is not allowed on /predict"),
    ("POST", "/healthz", b"{}", {"Content-Type": "application/json"}, 405, "POST is not allowed on /healthz"),
    ("DELETE", "/metadata", None, {}, 405, "DELETE is not allowed"),
    ("GET", "/nope", None, {}, 404, "no such path '/nope'"),
    ("BREW", "/predict", None, {}, 405, "unsupported method 'BREW'"),
], ids=["bad-json", "not-utf8", "wrong-rank", "wrong-shape", "strings", "ragged", "wrong-dtype", "unknown-name",
        "npz-unknown-name", "no-inputs-key", "not-npy", "npz-as-npy", "not-npz", "empty", "too-large",
        "wrong-content-type", "get-predict", "post-healthz", "delete", "unknown-path", "unknown-method"])
def test_malformed_requests_get_a_json_4xx_and_the_connection_stays_usable(served, method, path, body, headers,
                                                                          status, message):
    c = Client(served.url)
    try:
        got, resp_headers, raw = c.request(method, path, body, headers)
        assert got == status, raw
        assert resp_headers["content-type"] == "application/json"
        doc = json.loads(raw)
        assert doc["status"] == status and message in doc["error"], doc
        if status == 405 and method != "BREW":
            assert resp_headers["allow"] in ("POST", "GET, HEAD")
        if resp_headers.get("connection") != "close":
            # The body was read or drained: the same keep-alive connection still answers correctly.
            again, _, raw2 = c.request("GET", "/healthz")
            assert again == 200 and json.loads(raw2)["status"] == "ok"
    finally:
        c.close()


def test_npz_zip_bomb_is_refused_on_its_headers(served):
    """A 31 KB archive declaring 500,000 samples is refused on its .npy header, before anything is allocated."""
    body = io.BytesIO()
    np.savez_compressed(body, image=np.zeros((500_000, 8, 8, 1), np.int8))  # 32 MB unpacked, ~31 KiB packed
    assert len(body.getvalue()) < MAX_BODY
    status, _, raw = request(served.url, "POST", "/predict", body.getvalue(), {"Content-Type": "application/x-npz"})
    doc = json.loads(raw)
    assert status == 413 and doc["type"] == "PayloadTooLarge", doc
    assert "batch of 500000 samples, over the limit of 4096 (edgekit serve --max-batch)" in doc["error"]


def test_no_server_errors_after_all_of_the_above(served):
    status, _, raw = request(served.url, "GET", "/healthz")
    health = json.loads(raw)
    assert status == 200 and health["server_errors"] == 0 and health["client_errors"] > 0


def test_parse_size():
    assert parse_size("16MiB") == DEFAULT_MAX_BODY == 16 * 1024 * 1024
    assert parse_size("1k") == 1024 and parse_size("2g") == 2 << 30 and parse_size("123") == 123
    from edgekit.errors import InputError

    for bad in ("0", "-1", "lots", "1.5M"):
        with pytest.raises(InputError, match="not a positive number of bytes"):
            parse_size(bad)


def _wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_connection_limit_answers_503_instead_of_spawning_threads():
    """503 only when every slot is busy working; the slot frees the moment its request is answered.

    The slot used to be held by an *idle* keep-alive connection and freed only when its handler
    thread noticed the client's close; now an idle (or slow) connection is closed to make room,
    so a slot can only be held by work, and this test holds one with the run lock.
    """
    server, thread, _ = start_server(max_connections=1)
    held = Client(server.url)
    x, _ = eval_data()
    try:
        answers = []
        with server.run_lock:
            worker = threading.Thread(target=lambda: answers.append(held.request("POST", "/predict", _npy(x[:1]),
                                                                                 {"Content-Type": "application/x-npy"})))
            worker.start()
            assert _wait_for(lambda: server.health()["connections"]["busy"] == 1)
            status, headers, raw = request(server.url, "GET", "/healthz")
            assert status == 503 and headers["retry-after"] == "1" and "all busy" in json.loads(raw)["error"]
        worker.join(30)
        assert answers and answers[0][0] == 200
        # The held connection is idle now: a new client takes its slot at once, no waiting for a close.
        status, _, raw = request(server.url, "GET", "/healthz")
        health = json.loads(raw)
        assert status == 200 and health["busy"] == 1 and health["evicted"] == 1
    finally:
        held.close()
        server.stop()
        thread.join(15)


def test_one_slot_serves_back_to_back_connections():
    """The flaky test's real cause: a slot counted until its thread read EOF, so a client that closed
    and reconnected at once found its own old connection still holding it (56 of 300 got 503 here)."""
    server, thread, _ = start_server(max_connections=1)
    try:
        statuses = [request(server.url, "GET", "/healthz")[0] for _ in range(100)]
        assert statuses == [200] * 100
    finally:
        server.stop()
        thread.join(15)


def test_a_connection_thread_that_cannot_start_leaves_no_slot_taken(monkeypatch):
    """``Thread.start`` failing (RuntimeError on a loaded machine) used to leave the slot counted forever."""
    server, thread, _ = start_server(max_connections=1)
    try:
        real_start, failed = threading.Thread.start, []

        def start(self):
            if self.name == "edgekit-conn" and not failed:
                failed.append(1)
                raise RuntimeError("can't start new thread")
            return real_start(self)

        monkeypatch.setattr(threading.Thread, "start", start)
        try:
            status = request(server.url, "GET", "/healthz")[0]
        except ConnectionError:
            status = None  # the refusal raced the client's request: the reply may be lost, the slot may not
        assert failed and status in (503, None)
        assert request(server.url, "GET", "/healthz")[0] == 200
        assert server.health()["connections"]["open"] <= 1
    finally:
        server.stop()
        thread.join(15)


def test_bad_port_is_a_clean_error():
    from edgekit.errors import InputError

    server, thread, _ = start_server()
    try:
        port = int(server.url.rsplit(":", 1)[1])
        with pytest.raises(InputError, match=f"cannot listen on 127.0.0.1:{port}"):
            make_server(load(DATA), "127.0.0.1", port)
    finally:
        server.stop()
        thread.join(15)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_serve_prints_port_and_stops_cleanly_on_signal(tmp_path, sig):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "edgekit.cli", "serve", str(DATA), "--port", "0", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()
        m = re.search(r"on (http://127\.0\.0\.1:(\d+))", first)
        assert m, first + proc.stderr.read()
        url = m.group(1)
        assert int(m.group(2)) > 0
        x, _ = eval_data()
        status, _, raw = request(url, "POST", "/predict", _json(x[:2].tolist()), {"Content-Type": "application/json"})
        assert status == 200 and np.asarray(json.loads(raw)["outputs"]["logits"]).shape == (2, 10)
        assert request(url, "GET", "/nope")[0] == 404
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert re.search(r"stopped: 2 requests, 1 predictions, 1 client errors, 0 server errors", out), out
    assert "Traceback" not in err


def test_cli_serve_missing_model_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgekit.cli", "serve", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "does not exist" in proc.stderr


def test_oversized_upload_with_expect_100_continue_is_refused_before_the_body_is_sent(served):
    c = Client(served.url)
    try:
        c.conn.putrequest("POST", "/predict")
        c.conn.putheader("Content-Type", "application/json")
        c.conn.putheader("Content-Length", str(1 << 30))  # 1 GiB announced, never sent
        c.conn.putheader("Expect", "100-continue")
        c.conn.endheaders()
        resp = c.conn.getresponse()
        doc = json.loads(resp.read())
        assert resp.status == 413 and resp.getheader("Connection") == "close"
        assert doc["type"] == "PayloadTooLarge" and f"{1 << 30} bytes" in doc["error"]
    finally:
        c.close()


def test_load_script_reports_zero_errors():
    proc = subprocess.run([sys.executable, str(DATA.parents[2] / "benchmarks" / "serve_load.py"), "--requests", "200",
                           "--concurrency", "4", "--threads", "1", "--max-seconds", "60", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (r["requests"], r["concurrency"], r["errors"]) == (200, 4, 0)
    assert 0 < r["p50_ms"] <= r["p99_ms"] and r["req_per_s"] > 0


def test_load_script_refuses_non_loopback_urls():
    proc = subprocess.run([sys.executable, str(DATA.parents[2] / "benchmarks" / "serve_load.py"), "--url",
                           "http://192.0.2.1:8080", "--requests", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "only targets loopback" in proc.stderr


def test_client_hanging_up_mid_upload_leaves_the_server_healthy(served):
    import socket

    for _ in range(3):
        with socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1])), timeout=5) as s:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[[1,")
    time.sleep(0.2)
    status, _, raw = request(served.url, "GET", "/healthz")
    assert status == 200 and json.loads(raw)["server_errors"] == 0
