"""The HTTP side of ``edgekit serve``: routing, body limits, payload decoding and JSON errors.

Every client mistake answers a 4xx JSON error and keeps the connection usable where HTTP allows
(an unread body is drained so a keep-alive client still reads the reply). The server object that
owns the Session, the limits and the counters implements :class:`.state.ServerState` (it is
:class:`edgekit.runtime.serve.InferenceServer`); this module never imports it.

Example:
    >>> ROUTES["/predict"]
    ('POST',)
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from edgekit import __version__
from edgekit.errors import EdgekitError, InputError
from edgekit.runtime.serve import payload
from edgekit.runtime.serve.state import ServerState

log = logging.getLogger("edgekit.serve")

NPZ_EXPANSION = 4  # an .npz may unpack to at most this many times max_body (zip bombs)
DISCARD_LIMIT = 64 << 20  # unread bodies up to this size are drained so keep-alive clients get the reply
ROUTES = {"/healthz": ("GET", "HEAD"), "/metadata": ("GET", "HEAD"), "/predict": ("POST",),
          "/metrics": ("GET", "HEAD")}
ENDPOINTS = "GET /healthz, GET /metadata, POST /predict, GET /metrics"
# The endpoint label of requests that are not one of ROUTES (unknown paths, unparsable requests,
# connections refused at the limit): raw paths as labels would let any client grow /metrics forever.
OTHER = "other"
_KINDS = {400: "InputError", 404: "NotFound", 405: "MethodNotAllowed", 411: "LengthRequired", 413: "PayloadTooLarge",
          415: "UnsupportedMediaType", 501: "NotImplemented", 503: "Unavailable"}


class _HttpError(Exception):
    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _label(target: str) -> str:
    path = urlsplit(target).path
    return path if path in ROUTES else OTHER


class PredictHandler(BaseHTTPRequestHandler):
    """One connection: routes requests, enforces body limits, answers JSON (see :mod:`edgekit.runtime.serve`)."""

    server: ServerState  # type: ignore[assignment]  # BaseHTTPRequestHandler types it as a plain socketserver
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection
    server_version = f"edgekit/{__version__}"
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's delayed
    # ACK (40 ms on Linux) and every request takes 40 ms.
    disable_nagle_algorithm = True
    timeout = 60  # seconds an idle keep-alive connection (or a stalled upload) may hold a thread
    # Per request, reset by parse_request and after each answer: one handler serves a whole
    # keep-alive connection, and an error raised before parse_request must not reuse the last ones.
    _t0: float | None = None
    _endpoint = OTHER
    _inflight: contextlib.ExitStack | None = None

    def parse_request(self) -> bool:
        # The clock starts once the request line is in, so keep-alive idle time is not latency.
        self._t0, self._endpoint = time.perf_counter(), OTHER
        ok = super().parse_request()
        if ok:
            self._endpoint = _label(self.path)
        return ok

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        self._body_done = False
        metrics = self.server.metrics
        # Two in-flight counts: stats.inflight (what shutdown drains) lasts until the last byte is
        # written; the Prometheus gauge ends in _send once the answer is ready (see there). Closing
        # the stack again here covers requests that end without an answer (the client hung up).
        self._inflight = contextlib.ExitStack()
        if metrics is not None:
            self._inflight.enter_context(metrics.in_flight(self._endpoint))
        with self.server.stats.track():
            try:
                self._route()
            except _HttpError as exc:
                self._error(exc.status, exc.message, headers=exc.headers)
            except (ConnectionError, TimeoutError):
                self.close_connection = True  # the client went away or stalled mid-request: nobody to answer
            except Exception as exc:  # noqa: BLE001 - a bug answers 500 and is logged; the server lives on
                log.exception("unexpected error on %s %s", self.command, self.path)
                self._error(500, f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
            finally:
                self._inflight.close()

    def _route(self) -> None:
        path = urlsplit(self.path).path
        if self.server.stopping.is_set():
            self.close_connection = True
            raise _HttpError(503, "server is shutting down")
        allowed = ROUTES.get(path)
        if allowed is None:
            raise _HttpError(404, f"no such path {path!r}; endpoints: {ENDPOINTS}")
        if self.command not in allowed:
            raise _HttpError(405, f"{self.command} is not allowed on {path}; use {allowed[0]}",
                             headers=(("Allow", ", ".join(allowed)),))
        if path == "/healthz":
            self._json(200, {"status": "ok", "target": self.server.meta["target"], **self.server.stats.snapshot()})
        elif path == "/metadata":
            self._json(200, self.server.meta)
        elif path == "/metrics":
            self._metrics()
        else:
            self._predict()

    def _predict(self) -> None:
        srv, session = self.server, self.server.session
        body = self._read_body()
        ctype = (self.headers.get("Content-Type") or payload.JSON_TYPE).split(";")[0].strip().lower()
        try:
            if ctype == payload.JSON_TYPE or ctype.endswith("+json"):
                feeds: Any = payload.feeds_from_json(payload.parse_json(body), session.inputs, quantize_io=session.quantize_io)
            elif ctype == payload.NPY_TYPE:
                feeds = payload.feeds_from_arrays(payload.load_npy(body), session.inputs)
            elif ctype == payload.NPZ_TYPE:
                feeds = payload.feeds_from_arrays(payload.load_npz(body, srv.max_body * NPZ_EXPANSION), session.inputs)
            else:
                raise _HttpError(415, f"Content-Type {ctype!r} is not supported; send {payload.JSON_TYPE}, "
                                      f"{payload.NPY_TYPE} (np.save) or {payload.NPZ_TYPE} (np.savez)")
            t = time.perf_counter()
            with srv.run_lock:
                outputs = session.run(feeds)
            ms = (time.perf_counter() - t) * 1e3
        except InputError as exc:
            raise _HttpError(400, str(exc)) from None
        except EdgekitError as exc:  # the engine failed on input it accepted: our side, not the client's
            raise _HttpError(500, str(exc)) from None
        if payload.NPZ_TYPE in (self.headers.get("Accept") or ""):
            self._send(200, payload.outputs_to_npz(outputs), payload.NPZ_TYPE, predicted=True)
        else:
            self._json(200, {"outputs": payload.outputs_to_json(outputs), "latency_ms": round(ms, 3)}, predicted=True)

    def _metrics(self) -> None:
        metrics = self.server.metrics
        if metrics is None:
            status, why = self.server.metrics_off or (404, "metrics are off")
            raise _HttpError(status, why)
        # The body is rendered before this scrape is counted: each scrape shows the ones before it.
        body, ctype = metrics.exposition(self.headers.get("Accept"))
        self._send(200, body, ctype)

    def handle_expect_100(self) -> bool:
        # curl sends "Expect: 100-continue" for large bodies: refuse an oversized one before it is sent.
        # Called from inside parse_request, once the path is known: label a refusal with it.
        self._endpoint = _label(self.path)
        self._body_done = False
        try:
            n = self._content_length()
        except _HttpError as exc:
            self._body_done = True
            self._error(exc.status, exc.message)
            return False
        if n is not None and n > self.server.max_body:
            self._body_done = True
            self.close_connection = True
            self._error(413, f"body is {n} bytes, over the {self.server.max_body}-byte limit (edgekit serve --max-body)")
            return False
        return super().handle_expect_100()

    def _content_length(self) -> int | None:
        te = (self.headers.get("Transfer-Encoding") or "identity").lower()
        if te != "identity":
            self.close_connection = True
            raise _HttpError(411, f"Transfer-Encoding {te!r} is not supported: send the body with a Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        if not raw.strip().isdigit():
            self.close_connection = True
            raise _HttpError(400, f"bad Content-Length {raw!r}")
        return int(raw)

    def _read_body(self) -> bytes:
        n = self._content_length()
        if n is None:
            raise _HttpError(411, "send a Content-Length header with the body")
        if n > self.server.max_body:
            raise _HttpError(413, f"body is {n} bytes, over the {self.server.max_body}-byte limit (edgekit serve --max-body)")
        if n == 0:
            raise _HttpError(400, f"empty body; send {payload.JSON_SHAPE_HINT}, or .npy/.npz bytes")
        data = self.rfile.read(n)
        self._body_done = True
        if len(data) != n:
            self.close_connection = True
            raise _HttpError(400, f"body ended after {len(data)} of {n} bytes")
        return data

    def _finish_body(self) -> None:
        """Drain an unread request body so the client reads our reply; close if that is unreasonable."""
        if self._body_done or self.close_connection:
            return
        self._body_done = True
        try:
            n = self._content_length() or 0
        except _HttpError:
            return
        if n > DISCARD_LIMIT:
            self.close_connection = True
            return
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 16))
            if not chunk:
                self.close_connection = True
                return
            n -= len(chunk)

    def _json(self, status: int, doc: Any, predicted: bool = False) -> None:
        self._send(status, json.dumps(doc).encode(), payload.JSON_TYPE, predicted=predicted)

    def _error(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        kind = _KINDS.get(status, "ServerError")
        self._send(status, json.dumps({"error": message, "status": status, "type": kind}).encode(), payload.JSON_TYPE, headers)

    def _send(self, status: int, body: bytes, ctype: str, headers: tuple[tuple[str, str], ...] = (),
              predicted: bool = False) -> None:
        self._finish_body()
        if self.server.stopping.is_set():
            self.close_connection = True
        # Count the request (and end its Prometheus in-flight time) once the answer is ready, before any byte of
        # it goes out: a client that reads a response and then scrapes /metrics or /healthz always
        # finds it counted. So latency is time to a ready response; a slow reader's download is not in it.
        t0, endpoint = self._t0, self._endpoint
        self._t0, self._endpoint = None, OTHER
        if self._inflight is not None:
            self._inflight.close()
        self.server.stats.record(status, predicted, endpoint, time.perf_counter() - t0 if t0 is not None else 0.0)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Requests http.server rejects before routing (bad request line, oversized headers, unknown
        # method): answer JSON like every other error. An unknown method is the client's mistake (405).
        self._body_done = True
        self.close_connection = True
        status = 405 if code == 501 else code
        text = f"unsupported method {self.command!r}; endpoints: {ENDPOINTS}" if code == 501 else (message or explain or "bad request")
        self._error(status, text)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if self.server.log_requests:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")
