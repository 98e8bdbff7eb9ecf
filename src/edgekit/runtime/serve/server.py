"""``edgekit serve``: a small HTTP inference server for a model file or an edgekit output folder.

Endpoints:

* ``GET /healthz`` -> ``{"status": "ok", ...}``
* ``GET /metadata`` -> input/output specs, the chosen artifact and why, the engine
* ``GET /metrics`` -> Prometheus text (see :mod:`edgekit.runtime.metrics`; needs ``edgekit[metrics]``,
  else 501 naming the install command)
* ``POST /predict`` with ``application/json`` (``{"inputs": {name: nested lists}}`` or a bare list for
  a one-input model), ``application/x-npy`` (one array) or ``application/x-npz`` (named arrays) ->
  ``{"outputs": {name: nested lists}, "latency_ms": ...}``, or ``.npz`` with ``Accept: application/x-npz``

Client mistakes get a 4xx with ``{"error": message, "status": code, "type": ...}``: 400 bad JSON,
shape, dtype or names; 404 unknown path; 405 wrong method; 411 no Content-Length; 413 body over
``max_body``; 415 other content types. The standard library's ``http.server`` only: nothing to
install on the device. It binds 127.0.0.1 unless told otherwise because it has no authentication.

Example:
    >>> from edgekit.runtime import load
    >>> server = make_server(load("out/"), port=0)  # doctest: +SKIP
    >>> run_until_stopped(server)  # blocks until SIGINT/SIGTERM or server.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import signal
import socket
import socketserver
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any, TextIO

from edgekit import __version__
from edgekit.errors import InputError, MissingDependencyError
from edgekit.runtime.metrics import Metrics, model_info
from edgekit.runtime.serve.handler import ENDPOINTS, OTHER, ROUTES, PredictHandler
from edgekit.runtime.serve.state import RequestStats
from edgekit.runtime.session import Session

log = logging.getLogger("edgekit.serve")
DEFAULT_MAX_BODY = 16 << 20


def parse_size(text: str | int) -> int:
    """Bytes from ``16777216``, ``16M``, ``16MiB``, ``512k``, ``1G`` (binary units).

    Example:
        >>> parse_size("16MiB"), parse_size("512k"), parse_size(100)
        (16777216, 524288, 100)
    """
    m = re.fullmatch(r"\s*(\d+)\s*([kmg]?)(?:i?b)?\s*", str(text), re.I)
    if not m or int(m.group(1)) < 1:
        raise InputError(f"size {text!r} is not a positive number of bytes, e.g. 16MiB, 512k or 1048576")
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]


def metadata(session: Session, max_body: int = DEFAULT_MAX_BODY) -> dict[str, Any]:
    """What ``GET /metadata`` returns: specs, artifact, engine (file names only, no local paths).

    Example:
        >>> metadata(load("out/"))["inputs"][0]["name"]  # doctest: +SKIP
        'image'
    """
    a = session.artifact
    info = session.info
    return {
        "artifact": getattr(session.path, "name", str(session.path)),
        "target": a.target if a else f"{session.format}:{session.precision or '?'}",
        "format": session.format,
        "precision": session.precision,
        "validation": a.status if a else None,
        "chosen": info.get("chosen"),
        "engine": info.get("engine"),
        "engine_version": info.get("engine_version"),
        "num_threads": info.get("num_threads"),
        "inputs": [s.to_dict() for s in session.inputs],
        "outputs": [s.to_dict() for s in session.outputs],
        "quantize_io": session.quantize_io,
        "max_body": max_body,
        "edgekit": __version__,
    }


class InferenceServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that owns one Session and serves it (see the module docstring).

    Attributes:
        session: The loaded model.
        max_body: Largest accepted request body in bytes (413 above it).
        max_connections: Open connections served at once; more get an immediate 503 (bounded threads).
        stats: Request counters (also fed to ``metrics``).
        metrics: What ``GET /metrics`` exposes, or ``None`` (then ``metrics_off`` says why).
        metrics_off: ``(status, message)`` that /metrics answers when ``metrics`` is ``None``.
    """

    daemon_threads = True  # idle keep-alive connections must not hold the process at exit
    block_on_close = False  # run_until_stopped drains in-flight requests itself, with a deadline
    request_queue_size = 64

    def __init__(self, session: Session, address: tuple[str, int], *, max_body: int = DEFAULT_MAX_BODY,
                 max_connections: int = 64, log_requests: bool = False, metrics: bool = True,
                 load_seconds: float | None = None) -> None:
        if max_body < 1 or max_connections < 1:
            raise InputError(f"max_body and max_connections must be >= 1 (got {max_body}, {max_connections})")
        self.session = session
        self.max_body = max_body
        self.max_connections = max_connections
        self.log_requests = log_requests
        self.metrics: Metrics | None = None
        self.metrics_off: tuple[int, str] | None = None
        if not metrics:
            self.metrics_off = (404, "metrics are off (edgekit serve --no-metrics); endpoints: GET /healthz, GET /metadata, POST /predict")
        else:
            try:
                self.metrics = Metrics(model_info(session), load_seconds=load_seconds, endpoints=(*ROUTES, OTHER))
            except MissingDependencyError as exc:
                # The rest of serve needs nothing but the standard library: serve on, say how to turn it on.
                self.metrics_off = (501, f"/metrics is off: {exc}")
        self.stats = RequestStats(self.metrics)
        self.meta = metadata(session, max_body)
        # Session serialises engine calls but keeps per-call caches outside its lock; one lock here
        # makes run() atomic. Decoding and encoding (most of a request's time) stay parallel.
        self.run_lock = threading.Lock()
        self.stopping = threading.Event()
        self._stop_requested = threading.Event()
        self._conn_lock = threading.Lock()
        self._connections = 0
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        try:
            super().__init__(address, PredictHandler)
        except OSError as exc:
            raise InputError(f"cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc} (pick another --port, or 0 for a free one)") from None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}" if ":" not in str(host) else f"http://[{host}]:{port}"

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds on a device
        # with no working DNS; the name is only used in CGI environments.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def stop(self) -> None:
        """Ask :func:`run_until_stopped` to shut down (thread-safe; what SIGINT/SIGTERM do)."""
        self._stop_requested.set()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            busy = self._connections >= self.max_connections
            if not busy:
                self._connections += 1
        if busy:
            body = json.dumps({"error": "server busy: too many open connections, retry later", "status": 503,
                               "type": "Busy"}).encode()
            # Counted before it is sent, like every answer (see PredictHandler._send); it is refused
            # before its request is read, so there is no path and it counts under "other".
            self.stats.record(503, endpoint=OTHER)
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (reset, broken pipe, idle timeout) are normal on a device: no traceback.
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            log.error("error on a connection from %s", client_address[0], exc_info=True)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._connections -= 1


def make_server(session: Session, host: str = "127.0.0.1", port: int = 8080, *, max_body: int = DEFAULT_MAX_BODY,
                max_connections: int = 64, log_requests: bool = False, metrics: bool = True,
                load_seconds: float | None = None) -> InferenceServer:
    """Bind a server for ``session`` (port 0 picks a free port: read it from ``server.url``).

    ``metrics=True`` serves Prometheus ``GET /metrics`` when prometheus-client is installed (501
    naming ``pip install 'edgekit[metrics]'`` when not); ``load_seconds`` becomes
    ``edgekit_model_load_seconds``.

    Example:
        >>> server = make_server(load("out/"), port=0)  # doctest: +SKIP
        >>> server.url  # doctest: +SKIP
        'http://127.0.0.1:41234'
    """
    return InferenceServer(session, (host, port), max_body=max_body, max_connections=max_connections,
                           log_requests=log_requests, metrics=metrics, load_seconds=load_seconds)


def run_until_stopped(server: InferenceServer, *, drain_seconds: float = 10.0, handle_signals: bool = True) -> dict[str, Any]:
    """Serve until SIGINT/SIGTERM (or :meth:`InferenceServer.stop`), then shut down gracefully.

    Shutdown stops accepting, lets in-flight requests finish (up to ``drain_seconds``; new requests
    on open connections get 503), closes the socket and returns the final counters.

    Example:
        >>> server = make_server(load("out/"), port=0)  # doctest: +SKIP
        >>> threading.Timer(5, server.stop).start()  # doctest: +SKIP
        >>> run_until_stopped(server)["server_errors"]  # doctest: +SKIP
        0
    """
    previous: dict[int, Any] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: server.stop())
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="edgekit-serve", daemon=True)
    loop.start()
    try:
        while not server._stop_requested.wait(0.5):
            pass
    finally:
        server.stopping.set()
        server.shutdown()  # returns once serve_forever has left its loop: no new connections
        deadline = time.monotonic() + drain_seconds
        while server.stats.snapshot()["inflight"] and time.monotonic() < deadline:
            time.sleep(0.02)
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return server.stats.snapshot()


def serve(path: str, *, host: str = "127.0.0.1", port: int = 8080, target: str | None = None,
          num_threads: int | None = None, max_body: int = DEFAULT_MAX_BODY, max_connections: int = 64,
          verify: bool = True, log_requests: bool = False, metrics: bool = True, choose: str = "rules",
          out: TextIO | None = None) -> dict[str, Any]:
    """Load ``path`` (model file or edgekit output folder) and serve it until SIGINT/SIGTERM.

    Prints ``edgekit serve: <target> on http://HOST:PORT`` first (the real port when ``port=0``)
    and a ``stopped: ...`` line with the counters at the end. ``choose="measure"`` serves the
    artifact measured fastest on this device (see :func:`edgekit.runtime.load`).

    Example:
        >>> serve("out/", port=0)  # doctest: +SKIP
    """
    from edgekit.runtime.loader import load

    out = out or sys.stdout
    t0 = time.perf_counter()
    session = load(path, target=target, num_threads=num_threads, verify=verify, choose=choose)
    load_seconds = time.perf_counter() - t0
    server = make_server(session, host, port, max_body=max_body, max_connections=max_connections, log_requests=log_requests,
                         metrics=metrics, load_seconds=load_seconds)
    meta = server.meta
    if not _is_loopback(host):
        print(f"warning: listening on {host}: edgekit serve has no authentication; anyone who can reach this port can run the model",
              file=sys.stderr)
    if metrics and server.metrics is None and server.metrics_off:
        print(f"note: {server.metrics_off[1]}", file=sys.stderr)
    print(f"edgekit serve: {meta['target']} ({meta['engine']} {meta['engine_version']}, {meta['num_threads']} threads) "
          f"on {server.url}  [{ENDPOINTS}]", file=out, flush=True)
    stats = run_until_stopped(server)
    print(f"stopped: {stats['requests']} requests, {stats['predictions']} predictions, {stats['client_errors']} client errors, "
          f"{stats['server_errors']} server errors, up {stats['uptime_s']} s", file=out, flush=True)
    return stats


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
