"""Shared bits of the deploy tests: the committed int8 artifact, its eval data, a tiny HTTP client."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "digits-int8"  # committed: `edgekit convert digits-cnn -t tflite:int8`
IOT_APP = REPO / "examples" / "iot_app.py"


def eval_data() -> tuple[np.ndarray, np.ndarray]:
    with np.load(DATA / "eval.npz") as d:
        return d["x"], d["y"]


def manifest() -> dict[str, Any]:
    return json.loads((DATA / "manifest.json").read_text())


class Client:
    """One keep-alive connection; returns (status, headers, raw body)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        self.conn.request(method, path, body=body, headers=headers or {})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def close(self) -> None:
        self.conn.close()


def request(url: str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    c = Client(url)
    try:
        return c.request(method, path, body, headers)
    finally:
        c.close()


def start_server(**kwargs: Any):
    """An InferenceServer for the committed artifact on a free loopback port, served from a thread."""
    from edgekit.runtime import load
    from edgekit.runtime.serve import make_server, run_until_stopped

    server = make_server(load(DATA, num_threads=1), "127.0.0.1", 0, **kwargs)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(run_until_stopped(server, handle_signals=False)), daemon=True)
    thread.start()
    return server, thread, result
