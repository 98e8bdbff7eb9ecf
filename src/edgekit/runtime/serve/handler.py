"""The HTTP side of ``edgekit serve``: routing, limits, request hygiene, payload decoding, JSON errors.

Every client mistake answers a 4xx JSON error and keeps the connection usable where HTTP allows
(an unread body is drained so a keep-alive client still reads the reply). Checks run before the
work they guard: Host and token before the body is read, the JSON cap before the body is read,
array headers before arrays are allocated (see :mod:`.payload`, :mod:`.limits`). Reads go through
a :class:`.connections.DeadlineReader`, so a request must arrive whole within ``request_timeout``.
The server object that owns the Session, the limits and the counters implements
:class:`.state.ServerState` (it is :class:`edgekit.runtime.serve.InferenceServer`); this module
never imports it.

Example:
    >>> ROUTES["/predict"]
    ('POST',)
"""

from __future__ import annotations

import contextlib
import io
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
from edgekit.runtime.serve.access import bearer_ok, host_name, is_loopback_name
from edgekit.runtime.serve.connections import BODY, HEADERS, IDLE, Connection, DeadlineReader
from edgekit.runtime.serve.state import ServerState

log = logging.getLogger("edgekit.serve")

DISCARD_LIMIT = 64 << 20  # unread bodies up to this size are drained so keep-alive clients get the reply
CLOSE_DRAIN_LIMIT = 64 << 10  # ... and up to this size before closing (401, 403): see _finish_body
ROUTES = {"/healthz": ("GET", "HEAD"), "/metadata": ("GET", "HEAD"), "/predict": ("POST",),
          "/metrics": ("GET", "HEAD")}
ENDPOINTS = "GET /healthz, GET /metadata, POST /predict, GET /metrics"
# The endpoint label of requests that are not one of ROUTES (unknown paths, unparsable requests,
# connections refused at the limit): raw paths as labels would let any client grow /metrics forever.
OTHER = "other"
_KINDS = {400: "InputError", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
          408: "RequestTimeout", 411: "LengthRequired", 413: "PayloadTooLarge", 415: "UnsupportedMediaType",
          431: "HeadersTooLarge", 501: "NotImplemented", 503: "Unavailable"}
# How to raise each work limit, appended to its 413.
_HINTS = {"batch": "(edgekit serve --max-batch)", "decoded": "(edgekit serve --max-decoded)"}
_TYPES = f"{payload.JSON_TYPE}, {payload.NPY_TYPE} (np.save) or {payload.NPZ_TYPE} (np.savez)"


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
    # No per-recv timeout: each read gets what is left of the connection's deadline (DeadlineReader),
    # each write request_timeout (see _send).
    timeout = None
    # Per request, reset by parse_request and after each answer: one handler serves a whole
    # keep-alive connection, and an error raised before parse_request must not reuse the last ones.
    _t0: float | None = None
    _endpoint = OTHER
    _inflight: contextlib.ExitStack | None = None
    _conn: Connection

    def setup(self) -> None:
        super().setup()
        limits, stats = self.server.limits, self.server.stats
        conn = self.server.connections.get(self.request)
        # A handler used without the server's table (tests, embedding) still gets deadlines.
        self._conn = conn if conn is not None else Connection(self.request, str(self.client_address[0]), limits.idle_timeout)
        self.rfile.close()
        self.rfile = io.BufferedReader(DeadlineReader(self.connection, self._conn, limits.request_timeout,
                                                      on_timeout=lambda: stats.count("timeouts")), 1 << 16)

    def parse_request(self) -> bool:
        # The clock starts once the request line is in, so keep-alive idle time is not latency.
        self._t0, self._endpoint = time.perf_counter(), OTHER
        if self._conn.phase == IDLE:  # a pipelined request that was already buffered: its deadline starts now
            self._conn.begin(self.server.limits.request_timeout)
        ok = super().parse_request()
        if ok:
            self._endpoint = _label(self.path)
            if self._conn.phase in (IDLE, HEADERS):
                self._conn.phase = BODY
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
        self._check_host()
        if path != "/healthz":  # health checks (load balancers, systemd) need no token
            self._authorize()
        allowed = ROUTES.get(path)
        if allowed is None:
            raise _HttpError(404, f"no such path {path!r}; endpoints: {ENDPOINTS}")
        if self.command not in allowed:
            raise _HttpError(405, f"{self.command} is not allowed on {path}; use {allowed[0]}",
                             headers=(("Allow", ", ".join(allowed)),))
        if path == "/healthz":
            self._json(200, self.server.health())
        elif path == "/metadata":
            self._json(200, self.server.served.meta)
        elif path == "/metrics":
            self._metrics()
        else:
            self._predict()

    def _payload_kind(self) -> str:
        """``json``, ``npy`` or ``npz`` from the Content-Type (415 without one: guessing invites confusion)."""
        raw = self.headers.get("Content-Type")
        if not raw or not raw.strip():
            raise _HttpError(415, f"send a Content-Type with the body: {_TYPES}")
        ctype = raw.split(";")[0].strip().lower()
        if ctype == payload.JSON_TYPE or ctype.endswith("+json"):
            return "json"
        if ctype in (payload.NPY_TYPE, payload.NPZ_TYPE):
            return ctype.rsplit("-", 1)[1]
        raise _HttpError(415, f"Content-Type {ctype[:80]!r} is not supported; send {_TYPES}")

    def _check_json_size(self, kind: str, n: int | None) -> None:
        cap = self.server.limits.max_json_body
        if kind == "json" and n is not None and n > cap:
            raise _HttpError(413, f"JSON body is {n} bytes, over the {cap}-byte JSON limit (edgekit serve --max-json-body); "
                                  f"send large batches as {payload.NPY_TYPE}")

    def _predict(self) -> None:
        srv = self.server
        served, limits = srv.served, srv.limits  # one model for the whole request, even if a reload swaps it
        session = served.session
        kind = self._payload_kind()
        self._check_json_size(kind, self._content_length())
        body = self._read_body()
        if not srv.connections.claim(self._conn):
            raise ConnectionAbortedError("connection closed to make room for another")
        try:
            if kind == "json":
                # {"inputs": {name: <rank-deep lists>}} is the deepest form a request needs.
                depth = 2 + max((len(s.shape) for s in session.inputs), default=0)
                feeds: Any = payload.feeds_from_json(payload.parse_json(body, max_depth=depth), session.inputs,
                                                     quantize_io=session.quantize_io)
            elif kind == "npy":
                feeds = payload.feeds_from_arrays(payload.load_npy(body, max_bytes=limits.max_decoded, max_batch=served.max_batch,
                                                                   hints=_HINTS), session.inputs)
            else:
                feeds = payload.feeds_from_arrays(payload.load_npz(body, limits.max_decoded, max_batch=served.max_batch,
                                                                   hints=_HINTS), session.inputs)
            del body
            # One bare .npy array is the one input's: name it in the errors.
            named = feeds if isinstance(feeds, dict) or len(session.inputs) != 1 else {session.inputs[0].name: feeds}
            payload.check_batch(named, served.max_batch, _HINTS)
            if not limits.allow_nonfinite:
                payload.check_finite(named, "(edgekit serve --allow-nonfinite accepts them)")
            t = time.perf_counter()
            with srv.run_lock:
                outputs = session.run(feeds)
            ms = (time.perf_counter() - t) * 1e3
        except payload.PayloadTooLarge as exc:
            raise _HttpError(413, str(exc)) from None
        except InputError as exc:
            raise _HttpError(400, str(exc)) from None
        except MemoryError:
            raise _HttpError(413, f"request too large to decode in memory; send a smaller batch {_HINTS['batch']}") from None
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

    def _check_host(self) -> None:
        """Bound to loopback, answer only requests addressed to a loopback name (DNS rebinding).

        A web page the user visits can make the browser send requests to ``127.0.0.1`` under the
        page's own host name; checking Host keeps such pages from driving the model.
        """
        srv = self.server
        if not (srv.loopback and srv.limits.check_host):
            return
        values = self.headers.get_all("Host") or []
        if len(values) > 1:
            self.close_connection = True
            raise _HttpError(400, "more than one Host header")
        if not values:
            return  # HTTP/1.0 tools; browsers, the rebinding vector, always send Host
        name = host_name(values[0])
        if name is None or not (is_loopback_name(name) or name in srv.limits.allowed_hosts):
            self.close_connection = True
            raise _HttpError(403, f"Host {values[0][:100]!r} is not this server's: bound to loopback, it answers localhost names only "
                                  "(DNS-rebinding guard; edgekit serve --allow-host NAME adds one)")

    def _authorize(self) -> None:
        token = self.server.limits.token
        if not token:
            return
        header = self.headers.get("Authorization")
        if bearer_ok(header, token):
            return
        scheme = (header or "").strip()
        self.close_connection = True  # an unauthenticated body is not worth reading (beyond a small drain)
        challenge = 'Bearer realm="edgekit"' + (', error="invalid_token"' if scheme else "")
        why = "invalid bearer token" if scheme else "missing bearer token"
        raise _HttpError(401, f"{why}: send Authorization: Bearer <token> (edgekit serve --token / EDGEKIT_TOKEN)",
                         headers=(("WWW-Authenticate", challenge),))

    def handle_expect_100(self) -> bool:
        # curl sends "Expect: 100-continue" for large bodies: refuse one we would refuse anyway
        # before it is sent. Called from inside parse_request, once the path is known.
        self._endpoint = _label(self.path)
        self._body_done = False
        try:
            path = urlsplit(self.path).path
            self._check_host()
            if path != "/healthz":
                self._authorize()
            n = self._content_length()
            if n is not None and n > self.server.limits.max_body:
                self.close_connection = True
                raise _HttpError(413, self._too_large(n))
            if path == "/predict" and self.command == "POST":
                self._check_json_size(self._payload_kind(), n)
        except _HttpError as exc:
            self._body_done = True
            self.close_connection = True
            self._error(exc.status, exc.message, headers=exc.headers)
            return False
        return super().handle_expect_100()

    def _too_large(self, n: int | str) -> str:
        return f"body is {n} bytes, over the {self.server.limits.max_body}-byte limit (edgekit serve --max-body)"

    def _content_length(self) -> int | None:
        te = (self.headers.get("Transfer-Encoding") or "identity").lower()
        if te != "identity":
            self.close_connection = True
            raise _HttpError(411, f"Transfer-Encoding {te[:40]!r} is not supported: send the body with a Content-Length")
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return None
        if len(values) > 1:  # which one frames the body is ambiguous (request smuggling): refuse
            self.close_connection = True
            raise _HttpError(400, f"{len(values)} Content-Length headers; send exactly one")
        raw = values[0].strip()
        # ASCII digits only: str.isdigit() is also True for '²' and other Unicode digits, which int() refuses.
        if not (raw.isascii() and raw.isdigit()):
            self.close_connection = True
            # http.client decodes header bytes as latin-1; show them as the client most likely wrote them (UTF-8).
            shown = values[0][:40].encode("latin-1", "replace").decode("utf-8", "replace")
            raise _HttpError(400, f"bad Content-Length {shown!r}: send a whole number of bytes")
        if len(raw) > 18:  # more than any limit; int() of thousands of digits is itself slow
            self.close_connection = True
            raise _HttpError(413, self._too_large(f"{raw[:20]}..."))
        return int(raw)

    def _read_body(self) -> bytes:
        n = self._content_length()
        if n is None:
            raise _HttpError(411, "send a Content-Length header with the body")
        if n > self.server.limits.max_body:
            raise _HttpError(413, self._too_large(n))
        if n == 0:
            raise _HttpError(400, f"empty body; send {payload.JSON_SHAPE_HINT}, or .npy/.npz bytes")
        self._body_done = True
        try:
            data = self.rfile.read(n)
        except TimeoutError:
            self.close_connection = True
            raise _HttpError(408, f"request body not received within {self.server.limits.request_timeout:g} s "
                                  "(edgekit serve --request-timeout)") from None
        if len(data) != n:
            self.close_connection = True
            if self._conn.evicted:
                raise ConnectionAbortedError("connection closed to make room for another")
            raise _HttpError(400, f"body ended after {len(data)} of {n} bytes")
        return data

    def _finish_body(self) -> None:
        """Drain an unread request body so the client reads our reply; close if that is unreasonable.

        Even a connection about to close drains a small body: closing with unread bytes makes the
        kernel send a reset, which can destroy the reply before the client reads it.
        """
        if self._body_done:
            return
        self._body_done = True
        try:
            n = self._content_length() or 0
        except _HttpError:
            return
        if n > (CLOSE_DRAIN_LIMIT if self.close_connection else DISCARD_LIMIT):
            self.close_connection = True
            return
        try:
            while n > 0:
                chunk = self.rfile.read(min(n, 1 << 16))
                if not chunk:
                    self.close_connection = True
                    return
                n -= len(chunk)
        except TimeoutError:  # the deadline covers the drain too: answer, then close
            self.close_connection = True

    def _json(self, status: int, doc: Any, predicted: bool = False) -> None:
        self._send(status, json.dumps(doc).encode(), payload.JSON_TYPE, predicted=predicted)

    def _error(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        kind = _KINDS.get(status, "ServerError")
        self._send(status, json.dumps({"error": message, "status": status, "type": kind}).encode(), payload.JSON_TYPE, headers)

    def _send(self, status: int, body: bytes, ctype: str, headers: tuple[tuple[str, str], ...] = (),
              predicted: bool = False) -> None:
        self._finish_body()  # while the body drains the connection stays evictable
        table = self.server.connections
        if not table.claim(self._conn):
            self.close_connection = True
            raise ConnectionAbortedError("connection closed to make room for another")
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
        # A client that does not read its answer holds the thread at most this long.
        self.connection.settimeout(self.server.limits.request_timeout)
        table.finishing(self._conn)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        if not self.close_connection:
            table.idle(self._conn, self.server.limits.idle_timeout)

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
