"""examples/iot_app.py: stdin and folder sources, stdout and HTTP publishing, bad inputs, signals, bounded queue."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from deploy_helpers import DATA, IOT_APP, eval_data

from edgekit.runtime import load


def _app_module():
    spec = importlib.util.spec_from_file_location("iot_app", IOT_APP)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(args, stdin_text, timeout=60):
    return subprocess.run([sys.executable, str(IOT_APP), str(DATA), *args], input=stdin_text,
                          capture_output=True, text=True, timeout=timeout)


def _stats(stderr: str) -> dict:
    lines = [json.loads(ln) for ln in stderr.splitlines() if ln.startswith('{"event": "stats"')]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def samples():
    x, y = eval_data()
    s = load(DATA, num_threads=1)
    return x[:6], y[:6], s.run(x[:6])["logits"]


def test_stdin_mode_publishes_each_result_and_skips_bad_lines(samples):
    x, y, logits = samples
    lines = [
        json.dumps({"id": "a", "inputs": {"image": x[0:1].tolist()}}),
        json.dumps({"id": 7, "inputs": x[1:2].tolist()}),
        "{not json",
        json.dumps(x[2:3].tolist()),
        json.dumps({"id": "bad-shape", "inputs": {"image": [[1.0, 2.0]]}}),
        "",
        json.dumps({"inputs": {"image": x[3:6].tolist()}}),
    ]
    proc = _run([], "\n".join(lines) + "\n")
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert [r["source"] for r in results] == ["stdin:1", "stdin:2", "stdin:4", "stdin:7"]
    assert [r["id"] for r in results] == ["a", "7", None, None]
    got = np.concatenate([np.asarray(r["outputs"]["logits"], np.float32) for r in results])
    np.testing.assert_allclose(got, logits, rtol=0, atol=1e-5)
    assert sum((r["top1"] for r in results), []) == np.argmax(logits, axis=1).tolist()
    skips = [ln for ln in proc.stderr.splitlines() if ln.startswith("WARNING skip ")]
    assert len(skips) == 2
    assert "stdin:3: line is not valid JSON" in skips[0] and "stdin:5: input 'image' got shape (1, 2)" in skips[1]
    assert _stats(proc.stderr) | {"uptime_s": 0} == {"event": "stats", "processed": 4, "errors": 2, "published": 4,
                                                      "publish_failed": 0, "uptime_s": 0}


def test_folder_mode_processes_files_moves_them_and_stops_on_sigterm(tmp_path, samples):
    x, y, logits = samples
    watch = tmp_path / "in"
    watch.mkdir()
    for i in range(3):
        np.save(watch / f"frame-{i}.npy", x[i : i + 1])
    np.savez(watch / "named.npz", image=x[3:5])
    np.save(watch / "wrong.npy", np.zeros((1, 4), np.float32))
    (watch / "garbage.npy").write_bytes(b"\x00" * 100)
    (watch / "notes.txt").write_text("ignored: not .npy/.npz")
    proc = subprocess.Popen([sys.executable, str(IOT_APP), str(DATA), "--source", "folder", "--watch", str(watch),
                             "--poll", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = {p.name for p in (watch / "processed").glob("*")} | {p.name for p in (watch / "failed").glob("*")}
            if len(done) == 6:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert sorted(p.name for p in (watch / "processed").iterdir()) == ["frame-0.npy", "frame-1.npy", "frame-2.npy", "named.npz"]
    assert sorted(p.name for p in (watch / "failed").iterdir()) == ["garbage.npy", "wrong.npy"]
    assert sorted(p.name for p in watch.iterdir()) == ["failed", "notes.txt", "processed"]
    results = {r["id"]: r for r in map(json.loads, out.splitlines())}
    assert set(results) == {"frame-0", "frame-1", "frame-2", "named"}
    for i in range(3):
        np.testing.assert_allclose(results[f"frame-{i}"]["outputs"]["logits"], logits[i : i + 1], rtol=0, atol=1e-5)
    assert results["named"]["top1"] == np.argmax(logits[3:5], axis=1).tolist()
    assert "no NPY header" in err and "got shape (1, 4)" in err
    stats = _stats(err)
    assert (stats["processed"], stats["errors"], stats["published"]) == (4, 2, 4)


class _Collector(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_http_callback_receives_each_result_and_a_dead_url_is_logged_not_fatal(samples):
    x, _, logits = samples
    _Collector.received = []
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    lines = "\n".join(json.dumps({"id": i, "inputs": x[i : i + 1].tolist()}) for i in range(3)) + "\n"
    try:
        proc = _run(["--publish", f"http://127.0.0.1:{sink.server_address[1]}/results"], lines)
    finally:
        sink.shutdown()
        sink.server_close()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert [r["id"] for r in _Collector.received] == ["0", "1", "2"]
    np.testing.assert_allclose([r["outputs"]["logits"][0] for r in _Collector.received], logits[:3], rtol=0, atol=1e-5)

    # The same port, now closed: every POST fails, the app logs it and carries on.
    proc = _run(["--publish", f"http://127.0.0.1:{sink.server_address[1]}/results"], lines)
    assert proc.returncode == 0
    stats = _stats(proc.stderr)
    assert (stats["processed"], stats["published"], stats["publish_failed"]) == (3, 0, 3)
    assert proc.stderr.count("publish failed for stdin:") == 3


def test_sigint_while_waiting_on_stdin_exits_0_with_stats():
    proc = subprocess.Popen([sys.executable, str(IOT_APP), str(DATA)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        x, _ = eval_data()
        proc.stdin.write(json.dumps(x[:1].tolist()) + "\n")
        proc.stdin.flush()
        first = proc.stdout.readline()  # the app is up and has answered; stdin stays open
        assert json.loads(first)["source"] == "stdin:1"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert _stats(err)["processed"] == 1 and "Traceback" not in err


def test_reader_blocks_on_a_full_queue_and_drops_overlong_lines():
    app = _app_module()
    text = "".join(f"[{i}]\n" for i in range(100))
    stream = io.StringIO(text)
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    t = threading.Thread(target=app.read_stdin, args=(q, stop, stream), daemon=True)
    t.start()
    time.sleep(0.3)
    assert q.qsize() == 2 and 0 < stream.tell() < len(text)  # back-pressure: the rest is still unread
    stop.set()
    t.join(5)
    assert not t.is_alive()

    q = queue.Queue(maxsize=8)
    app.read_stdin(q, threading.Event(), io.StringIO("[1]\n" + "9" * 50 + "\n[2]\n"), max_line=10)
    items = [q.get() for _ in range(3)]
    assert [i.data for i in items] == ["[1]\n", None, "[2]\n"]
    assert items[1].error == "line is longer than 10 characters" and q.get() is app._EOF


def test_folder_poll_takes_only_stable_files_and_stays_bounded(tmp_path):
    app = _app_module()
    for i in range(50):
        np.save(tmp_path / f"{i:02d}.npy", np.zeros(1))
    seen: dict = {}
    assert list(app.stable_files(tmp_path, 4, seen)) == []  # first sight: not yet known to be complete
    assert len(seen) == 4
    taken = [p.name for p in app.stable_files(tmp_path, 4, seen)]
    assert len(taken) == 4 and len(seen) == 4
    growing = tmp_path / taken[0]
    st = growing.stat()
    with open(growing, "ab") as f:  # a writer still appending (mtime kept: it stays among the oldest)
        f.write(b"more")
    os.utime(growing, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert [p.name for p in app.stable_files(tmp_path, 4, seen)] == taken[1:]
    assert [p.name for p in app.stable_files(tmp_path, 4, seen)] == taken  # stable again: taken now


def test_bad_arguments_and_missing_model():
    proc = _run(["--source", "folder"], "")
    assert proc.returncode == 2 and "--source folder needs --watch DIR" in proc.stderr
    proc = subprocess.run([sys.executable, str(IOT_APP), "/nonexistent/model"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("does not exist")


def test_metrics_port_exposes_the_same_prometheus_series_as_serve(tmp_path, samples):
    parser = pytest.importorskip("prometheus_client.parser", reason="needs edgekit[metrics]")
    import re
    import urllib.request

    x, _, _ = samples
    watch = tmp_path / "in"
    watch.mkdir()
    proc = subprocess.Popen([sys.executable, str(IOT_APP), str(DATA), "--source", "folder", "--watch", str(watch),
                             "--poll", "0.1", "--metrics-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        url = None
        for line in proc.stderr:  # "INFO metrics on http://127.0.0.1:PORT/metrics" comes before "ready"
            m = re.search(r"metrics on (http://\S+)", line)
            if m:
                url = m.group(1)
                break
        assert url, "no metrics line"
        for i in range(2):
            np.save(watch / f"frame-{i}.npy", x[i : i + 1])
        np.save(watch / "wrong.npy", np.zeros((1, 4), np.float32))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list(watch.glob("*.npy"))) > 0:
            time.sleep(0.1)
        text = ""
        while time.monotonic() < deadline:  # the count lands just after the file is moved
            text = urllib.request.urlopen(url, timeout=10).read().decode()
            if 'status="bad_input"' in text and re.search(r'status="ok"\} 2\.0', text):
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    counts = {s.labels["status"]: s.value for s in families["edgekit_requests"].samples
              if s.name == "edgekit_requests_total" and s.labels.get("endpoint") == "frame"}
    assert counts == {"ok": 2.0, "bad_input": 1.0}
    hist = {s.name: s.value for s in families["edgekit_request_duration_seconds"].samples if s.labels.get("endpoint") == "frame"
            and "le" not in s.labels}
    assert hist["edgekit_request_duration_seconds_count"] == 3.0 and hist["edgekit_request_duration_seconds_sum"] > 0
    info = next(s for f in families.values() for s in f.samples if s.name == "edgekit_model_info")
    manifest = json.loads((DATA / "manifest.json").read_text())
    assert info.labels["target"] == manifest["artifacts"][0]["target"]
    assert info.labels["sha256"] == manifest["artifacts"][0]["sha256"]
