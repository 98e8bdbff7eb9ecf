"""`edgekit serve` against hostile clients, over real sockets on 127.0.0.1 with the real engine.

Each attack of issue #12 that concerns HTTP gets a one-line 4xx and leaves the server alive:
payloads that ask for more work than their bytes suggest, malformed framing, NaN, slow and idle
sockets that hog connections, missing tokens, foreign Host headers; and ``--reload`` swaps a
folder in only when it verifies. Memory is measured on a server in a subprocess (VmHWM/VmRSS).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from deploy_helpers import DATA, Client, eval_data, request, start_server

from edgekit.runtime import load
from edgekit.runtime.serve import ServeLimits, make_server, run_until_stopped
from edgekit.runtime.serve.reload import Reloader


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _npy_header(shape, dtype="<f4") -> bytes:
    """A v1.0 .npy header declaring ``shape`` (no data follows unless the caller adds it)."""
    text = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def _zip_bomb() -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, image=np.zeros((500_000, 8, 8, 1), np.int8))
    return buf.getvalue()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _raw(url: str, data: bytes, timeout: float = 10.0) -> tuple[int, dict, dict]:
    """Send raw bytes, read one response: (status, headers, JSON body)."""
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=timeout) as s:
        s.sendall(data)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        n = int(headers.get("content-length", 0))
        while len(body) < n:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            body += chunk
    return int(lines[0].split()[1]), headers, json.loads(body) if body else {}


def _post(ctype: str | None, body: bytes, extra: str = "") -> bytes:
    head = "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n" + (f"Content-Type: {ctype}\r\n" if ctype else "")
    return (head + f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def _deep_json(depth: int, escape: bool = False) -> bytes:
    # A backslash in a string makes the cheap depth scan step aside: the parser's own limit must hold.
    return (b'{"note": "a\\nb", "inputs": ' if escape else b"") + b"[" * depth + b"0" + b"]" * depth + (b"}" if escape else b"")



def _image_json(value: str = "0", n: int = 1) -> bytes:
    row = "[" + ", ".join(["[0]"] * 8) + "]"
    first = "[" + ", ".join([f"[{value}]"] + ["[0]"] * 7) + "]"
    sample = "[" + ", ".join([first] + [row] * 7) + "]"
    return ('{"inputs": {"image": [' + ", ".join([sample] * n) + "]}}").encode()


@pytest.fixture(scope="module")
def served():
    server, thread, result = start_server(limits=ServeLimits(max_body=16 << 20))
    yield server
    server.stop()
    thread.join(15)
    assert result["server_errors"] == 0  # no attack in this module may cause a 5xx


ATTACKS = [
    ("content-length-superscript", ("POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                    "Content-Length: \u00b2\r\n\r\n[]").encode("latin-1"), 400, "bad Content-Length"),
    ("content-length-twice", b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
     b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n[]", 400, "2 Content-Length headers"),
    ("content-length-5000-digits", b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
     b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n", 413, "over the 16777216-byte limit"),
    ("json-5000-deep", _post("application/json", _deep_json(5000)), 400, "nests deeper than the 6 levels this model's inputs need"),
    ("json-5000-deep-escaped", _post("application/json", _deep_json(5000, escape=True)), 400, "nests too deeply"),
    ("json-5000-digit-int", _post("application/json", b"[" + b"9" * 5000 + b"]"), 400, "a number JSON cannot carry"),
    ("json-nan", _post("application/json", _image_json("NaN")), 400, "holds 1 NaN or infinite value(s)"),
    ("json-infinity", _post("application/json", _image_json("-Infinity")), 400, "--allow-nonfinite"),
    ("json-1e999", _post("application/json", _image_json("1e999")), 400, "NaN or infinite"),
    ("json-over-json-cap", _post("application/json", b"[" + b"0," * (1 << 19) + b"0]"), 413,
     "over the 1048576-byte JSON limit (edgekit serve --max-json-body)"),
    ("npy-nan", _post("application/x-npy", _npy(np.full((1, 8, 8, 1), np.nan, np.float32))), 400, "input 'image' holds 64 NaN"),
    ("npy-header-954GiB", _post("application/x-npy", _npy_header((1 << 28, 8, 8, 1), "<f8") + b"\0" * 64), 413,
     "over the limit of 4096 (edgekit serve --max-batch)"),
    ("npy-header-lies", _post("application/x-npy", _npy_header((100, 8, 8, 1)) + b"\0" * 256), 400,
     "declares (100, 8, 8, 1) float32 (25600 bytes) but only 256 bytes follow"),
    ("npy-batch-262000", _post("application/x-npy", _npy(np.zeros((262_000, 8, 8, 1), np.int8))), 413,
     "batch of 262000 samples, over the limit of 4096"),
    ("npz-zip-bomb", _post("application/x-npz", _zip_bomb()), 413, "batch of 500000 samples"),
    ("no-content-type", _post(None, _image_json()), 415, "send a Content-Type"),
]


@pytest.mark.parametrize("data, status, message", [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_hostile_requests_get_a_one_line_4xx(served, caplog, data, status, message):
    with caplog.at_level(logging.WARNING, logger="edgekit.serve"):
        got, headers, doc = _raw(served.url, data)
    assert (got, doc.get("status")) == (status, status), doc
    assert message in doc["error"] and "\n" not in doc["error"], doc
    assert headers["content-type"] == "application/json"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []  # no tracebacks for client mistakes
    assert request(served.url, "GET", "/healthz")[0] == 200


def test_nonfinite_can_be_allowed():
    server, thread, _ = start_server(limits=ServeLimits(allow_nonfinite=True))
    try:
        status, _, raw = request(server.url, "POST", "/predict", _image_json("Infinity"), {"Content-Type": "application/json"})
        assert "NaN or infinite" not in json.loads(raw).get("error", "")  # the engine's verdict, not the payload check
        assert json.loads(request(server.url, "GET", "/metadata")[2])["limits"]["allow_nonfinite"] is True
    finally:
        server.stop()
        thread.join(15)


def test_max_batch_default_comes_from_the_model_and_the_flag_overrides_it(served):
    meta = json.loads(request(served.url, "GET", "/metadata")[2])
    assert meta["max_batch"] == 4096 and meta["limits"]["max_json_body"] == 1 << 20 and meta["limits"]["auth"] is None
    server, thread, _ = start_server(limits=ServeLimits(max_batch=2))
    try:
        x, _ = eval_data()
        assert request(server.url, "POST", "/predict", _npy(x[:2]), {"Content-Type": "application/x-npy"})[0] == 200
        status, _, raw = request(server.url, "POST", "/predict", _image_json(n=3), {"Content-Type": "application/json"})
        assert status == 413 and "batch of 3 samples, over the limit of 2 (edgekit serve --max-batch)" in json.loads(raw)["error"]
    finally:
        server.stop()
        thread.join(15)


def test_bearer_token():
    server, thread, _ = start_server(limits=ServeLimits(token="s3cret"))
    body, ctype = _image_json(), {"Content-Type": "application/json"}
    try:
        status, headers, raw = request(server.url, "POST", "/predict", body, ctype)
        assert status == 401 and headers["www-authenticate"] == 'Bearer realm="edgekit"' and "missing bearer token" in json.loads(raw)["error"]
        status, headers, _ = request(server.url, "POST", "/predict", body, {**ctype, "Authorization": "Bearer s3cre"})
        assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]
        assert request(server.url, "GET", "/metadata")[0] == 401
        assert request(server.url, "GET", "/healthz")[0] == 200  # open for health checks
        assert request(server.url, "POST", "/predict", body, {**ctype, "Authorization": "Bearer s3cret"})[0] == 200
        assert "s3cret" not in request(server.url, "GET", "/metadata", headers={"Authorization": "bearer s3cret"})[2].decode()
    finally:
        server.stop()
        thread.join(15)


@pytest.mark.parametrize("host, status", [("evil.example", 403), ("evil.example:80", 403), ("127.0.0.1.nip.io", 403),
                                          ("localhost", 200), ("LOCALHOST:8080", 200), ("[::1]:1", 200), ("127.0.0.1", 200),
                                          ("app.localhost", 200), ("pi.local:8080", 200), ("bad:host:x", 403)])
def test_host_header_is_checked_on_loopback(host, status, served):
    server = served
    if host.startswith("pi.local"):
        server, thread, _ = start_server(limits=ServeLimits(allowed_hosts=("pi.local",)))
    try:
        got, _, doc = _raw(server.url, f"GET /metadata HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert got == status, doc
        if status == 403:
            assert "DNS-rebinding guard" in doc["error"] and doc["type"] == "Forbidden"
    finally:
        if server is not served:
            server.stop()
            thread.join(15)


class _Slow:
    """Sockets that hold connections without finishing a request: idle ones and header tricklers."""

    def __init__(self, port: int, idle: int, trickle: int, every: float = 0.1) -> None:
        self.socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(idle + trickle)]
        self.tricklers = self.socks[idle:]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, args=(every,), daemon=True)
        self.thread.start()

    def _trickle(self, every: float) -> None:
        request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 10_000
        i = 0
        while not self.stop.wait(every):
            for s in self.tricklers:
                try:
                    s.send(request[i % len(request) : i % len(request) + 1])
                except OSError:
                    pass  # evicted or timed out: that is the point
            i += 1

    def closed(self, s: socket.socket) -> bool:
        s.settimeout(0.05)
        try:
            return s.recv(1 << 16) == b""
        except (TimeoutError, BlockingIOError):
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for s in self.socks:
            s.close()


def test_64_slow_sockets_do_not_lock_out_a_normal_client():
    server, thread, _ = start_server(limits=ServeLimits(max_connections=64, request_timeout=2.0, idle_timeout=30.0))
    slow = _Slow(_port(server.url), idle=32, trickle=32)
    try:
        assert _wait_for(lambda: server.health()["connections"]["open"] == 64)  # every slot held, none doing work
        t = time.monotonic()
        c = Client(server.url, timeout=5)
        status, _, raw = c.request("POST", "/predict", _image_json(), {"Content-Type": "application/json"})
        c.close()
        assert status == 200 and time.monotonic() - t < 3, raw
        health = json.loads(request(server.url, "GET", "/healthz")[2])
        # The newcomers took slots from idle sockets; none was refused, since none of those was working.
        assert health["evicted"] >= 1 and health["busy"] == 0 and health["connections"]["open"] <= 64, health
        # Tricklers still open are cut off at the 2 s request deadline, however steadily they send.
        assert _wait_for(lambda: all(slow.closed(s) for s in slow.tricklers), 4)
        assert json.loads(request(server.url, "GET", "/healthz")[2])["timeouts"] >= 1
    finally:
        slow.close()
        server.stop()
        thread.join(15)


def test_per_client_cap_takes_slots_back_from_the_address_that_holds_them():
    """Set explicitly, the per-client cap applies on loopback too: 8 idle sockets keep 4 slots."""
    server, thread, _ = start_server(limits=ServeLimits(max_connections=16, max_connections_per_client=4, idle_timeout=30.0))
    slow = _Slow(_port(server.url), idle=8, trickle=0)
    try:
        assert _wait_for(lambda: server.health()["evicted"] == 4)
        assert server.health()["connections"]["open"] == 4
        assert sum(slow.closed(s) for s in slow.socks) == 4  # the oldest four, closed without a word
        assert request(server.url, "GET", "/healthz")[0] == 200
        with server.run_lock:  # four busy connections from one address: the fifth gets 503 naming the flag
            clients = [Client(server.url) for _ in range(4)]
            workers = [threading.Thread(target=c.request, args=("POST", "/predict", _image_json(), {"Content-Type": "application/json"}))
                       for c in clients]
            for w in workers:
                w.start()
            assert _wait_for(lambda: server.health()["connections"]["busy"] == 4)
            status, _, raw = request(server.url, "GET", "/healthz")
            assert status == 503 and "--max-connections-per-client" in json.loads(raw)["error"]
        for w in workers:
            w.join(30)
        for c in clients:
            c.close()
    finally:
        slow.close()
        server.stop()
        thread.join(15)


def _wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_trickled_body_gets_408_at_the_deadline_and_idle_connections_close():
    server, thread, _ = start_server(limits=ServeLimits(request_timeout=1.0, idle_timeout=0.5))
    try:
        with socket.create_connection(("127.0.0.1", _port(server.url)), timeout=5) as s:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
            t = time.monotonic()
            reply, sending = b"", True
            for _ in range(40):  # one byte every 0.1 s: each recv is quick, the total is not
                if sending:
                    try:
                        s.send(b"[")
                    except OSError:
                        sending = False  # the server closed after answering: read what it sent
                s.settimeout(0.1)
                try:
                    reply += s.recv(1 << 16)
                except TimeoutError:
                    continue
                if reply:
                    break
            s.settimeout(5)
            try:
                while chunk := s.recv(1 << 16):  # the rest of the answer, up to the server's close
                    reply += chunk
            except ConnectionResetError:
                pass  # a byte we sent after its close: the answer is already in
            assert reply.startswith(b"HTTP/1.1 408") and b"edgekit serve --request-timeout" in reply, reply
            assert 0.8 < time.monotonic() - t < 2.5
        c = Client(server.url)
        assert c.request("GET", "/healthz")[0] == 200
        time.sleep(1.0)
        assert c.conn.sock is not None and c.conn.sock.recv(1) == b""  # the server closed the idle keep-alive
        c.close()
        health = json.loads(request(server.url, "GET", "/healthz")[2])
        assert health["timeouts"] == 1 and health["client_errors"] == 1 and health["server_errors"] == 0
    finally:
        server.stop()
        thread.join(15)


def _rss(pid: int) -> dict[str, int]:
    fields = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", open(f"/proc/{pid}/status").read(), re.M))
    return {k: int(v) >> 10 for k, v in fields.items()}  # MiB


def test_work_limits_keep_server_memory_flat():
    """The issue's payloads against a CLI server in a subprocess: peak and after RSS stay near the baseline."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "edgekit.cli", "serve", str(DATA), "--port", "0", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        m = re.search(r"on (http://127\.0\.0\.1:\d+)", proc.stdout.readline())
        assert m, proc.stderr.read()
        url = m.group(1)
        x, _ = eval_data()
        for _ in range(3):  # warm: the engine, numpy, the JSON and npz paths
            assert request(url, "POST", "/predict", _npy(x[:4]), {"Content-Type": "application/x-npy"})[0] == 200
            assert request(url, "POST", "/predict", _image_json(n=2), {"Content-Type": "application/json"})[0] == 200
        base = _rss(proc.pid)["VmRSS"]
        attacks = [("npz-zip-bomb", "application/x-npz", _zip_bomb(), 413),
                   ("npy-batch-262000", "application/x-npy", _npy(np.zeros((262_000, 8, 8, 1), np.int8)), 413),
                   ("npy-header-954GiB", "application/x-npy", _npy_header((1 << 28, 8, 8, 1), "<f8") + b"\0" * 64, 413),
                   ("json-16MB", "application/json", b"[" + b"0," * 7_999_999 + b"0]", 413)]
        report = []
        for name, ctype, body, want in attacks:
            t = time.monotonic()
            status = request(url, "POST", "/predict", body, {"Content-Type": ctype})[0]
            report.append(f"{name}: {status} in {time.monotonic() - t:.2f} s, rss {_rss(proc.pid)}")
            assert status == want, report
        after = _rss(proc.pid)
        print(f"baseline {base} MiB; " + "; ".join(report))
        # The bodies themselves (16 MB) pass through memory; nothing the size of what they declare does.
        assert after["VmHWM"] - base < 80, report
        assert after["VmRSS"] - base < 40, report
        assert request(url, "GET", "/healthz")[0] == 200
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert "Traceback" not in err, err


def _folder(tmp_path, name="out"):
    out = tmp_path / name
    shutil.copytree(DATA, out)
    return out


def _rename_artifact(folder, new_name: str, sha256: str | None = None) -> None:
    """Rewrite ``folder`` as another valid output folder: the artifact under a new name (or a wrong sha256)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    art = manifest["artifacts"][0]
    (folder / art["path"]).rename(folder / new_name)
    art["path"] = new_name
    art["sha256"] = sha256 or hashlib.sha256((folder / new_name).read_bytes()).hexdigest()
    tmp = folder / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest))
    os.replace(tmp, folder / "manifest.json")


def test_reload_swaps_a_verified_folder_and_keeps_serving_through_a_bad_one(tmp_path, caplog):
    folder = _folder(tmp_path)
    server = make_server(load(folder, num_threads=1), "127.0.0.1", 0)
    thread = threading.Thread(target=run_until_stopped, args=(server,), kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    lines: list[str] = []
    reloader = Reloader(server, folder, lambda: load(folder, num_threads=1, verify=True), interval=0.05, notify=lines.append)
    x, _ = eval_data()
    predict = lambda: request(server.url, "POST", "/predict", _npy(x[:2]), {"Content-Type": "application/x-npy"})  # noqa: E731
    try:
        before = json.loads(request(server.url, "GET", "/healthz")[2])
        assert before["artifact"] == "tflite-int8.tflite" and len(before["sha256"]) == 64 and before["reloads"] == 0
        want = json.loads(predict()[2])["outputs"]

        _rename_artifact(folder, "broken.tflite", sha256="0" * 64)  # a folder that does not verify
        assert not reloader.poll()  # changed: waits one poll for the change to settle
        assert not reloader.poll() and not reloader.poll()  # fails once; not retried until the folder changes again
        health = json.loads(request(server.url, "GET", "/healthz")[2])
        assert health["reload_errors"] == 1 and health["artifact"] == "tflite-int8.tflite", health
        assert "sha256" in health["reload_error"] and len(lines) == 1 and "still serving the previous model" in lines[0]
        assert json.loads(predict()[2])["outputs"] == want  # the old model serves on

        reloader.start()  # the polling thread picks up the repaired folder
        _rename_artifact(folder, "tflite-int8-v2.tflite")
        deadline = time.monotonic() + 10
        while json.loads(request(server.url, "GET", "/healthz")[2])["reloads"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        health = json.loads(request(server.url, "GET", "/healthz")[2])
        assert health["reloads"] == 1 and health["artifact"] == "tflite-int8-v2.tflite" and health["reload_error"] is None
        assert health["sha256"] == before["sha256"] and health["reload_errors"] == 1
        assert json.loads(request(server.url, "GET", "/metadata")[2])["artifact"] == "tflite-int8-v2.tflite"
        assert json.loads(predict()[2])["outputs"] == want
        assert "reloaded" in lines[-1]
    finally:
        reloader.stop()
        server.stop()
        thread.join(15)
    assert server.stats.snapshot()["server_errors"] == 0


def test_cli_serve_token_from_env_and_reload(tmp_path):
    folder = _folder(tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "EDGEKIT_TOKEN": "tok-123"}
    proc = subprocess.Popen([sys.executable, "-m", "edgekit.cli", "serve", str(folder), "--port", "0", "--threads", "1",
                             "--reload", "--reload-interval", "0.1", "--max-batch", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    auth = {"Authorization": "Bearer tok-123"}
    try:
        m = re.search(r"on (http://127\.0\.0\.1:\d+)", proc.stdout.readline())
        assert m, proc.stderr.read()
        url = m.group(1)
        assert request(url, "GET", "/metadata")[0] == 401
        meta = json.loads(request(url, "GET", "/metadata", headers=auth)[2])
        assert meta["max_batch"] == 8 and meta["limits"]["auth"] == "bearer" and "tok-123" not in json.dumps(meta)
        _rename_artifact(folder, "v2.tflite")
        assert _wait_for(lambda: json.loads(request(url, "GET", "/healthz")[2])["reloads"] == 1)
        assert json.loads(request(url, "GET", "/metadata", headers=auth)[2])["artifact"] == "v2.tflite"
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "reloaded" in err and "now serving tflite:int8" in err and "Traceback" not in err and "tok-123" not in out + err
    assert "stopped:" in out
