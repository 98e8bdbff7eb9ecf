"""``edgekit serve``: a small HTTP inference server for a model file or an edgekit output folder.

Endpoints:

* ``GET /healthz`` -> ``{"status": "ok", ...}``
* ``GET /metadata`` -> input/output specs, the chosen artifact and why, the engine
* ``GET /metrics`` -> Prometheus text (see :mod:`edgekit.runtime.metrics`; needs ``edgekit[metrics]``,
  else 501 naming the install command)
* ``POST /predict`` with ``application/json`` (``{"inputs": {name: nested lists}}`` or a bare list for
  a one-input model), ``application/x-npy`` (one array) or ``application/x-npz`` (named arrays) ->
  ``{"outputs": {name: nested lists}, "latency_ms": ...}``, or ``.npz`` with ``Accept: application/x-npz``

Client mistakes get a 4xx with ``{"error": message, "status": code, "type": ...}``, one line, no
traceback in the log: 400 bad JSON, shape, dtype, names, NaN/Infinity (unless ``allow_nonfinite``),
nesting deeper than the inputs need, a bad or repeated Content-Length; 401 a missing or wrong
bearer token (when ``token`` is set; ``/healthz`` stays open for health checks); 403 a Host header
that is not a loopback name while bound to loopback (DNS rebinding); 404 unknown path; 405 wrong
method; 408 a body not received within ``request_timeout``; 411 no Content-Length; 413 a body over
``max_body`` (``max_json_body`` for JSON), arrays over ``max_decoded`` bytes or ``max_batch``
samples (checked on ``.npy``/``.npz`` headers before anything is allocated); 415 a missing or
other Content-Type. 503 means every connection slot is busy working; slots held by idle or slow
clients are taken back instead (see :mod:`.connections`). All limits are one
:class:`~edgekit.runtime.serve.limits.ServeLimits`; /metadata shows them, /healthz counts 503s
(``busy``), connections closed to make room (``evicted``), deadline misses (``timeouts``) and
reloads. The standard library's ``http.server`` only: nothing to install on the device. It binds
127.0.0.1 unless told otherwise; ``token`` adds bearer authentication.

Example:
    >>> from edgekit.runtime import load
    >>> server = make_server(load("out/"), port=0)  # doctest: +SKIP
    >>> run_until_stopped(server)  # blocks until SIGINT/SIGTERM or server.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
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
from edgekit.runtime.serve.connections import ConnectionTable
from edgekit.runtime.serve.handler import ENDPOINTS, OTHER, ROUTES, PredictHandler
from edgekit.runtime.serve.limits import DEFAULT_MAX_BODY, ServeLimits
from edgekit.runtime.serve.reload import Reloader
from edgekit.runtime.serve.state import RequestStats, Served
from edgekit.runtime.session import Session

log = logging.getLogger("edgekit.serve")


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


def metadata(session: Session, max_body: int = DEFAULT_MAX_BODY, *, limits: ServeLimits | None = None,
             max_batch: int | None = None) -> dict[str, Any]:
    """What ``GET /metadata`` returns: specs, artifact, engine, limits (file names only, no local paths).

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
        "sha256": a.sha256 if a else None,
        "max_body": limits.max_body if limits else max_body,
        "max_batch": max_batch if max_batch is not None else (limits or ServeLimits()).batch_limit(session),
        "limits": (limits or ServeLimits(max_body=max_body)).to_dict(),
        "edgekit": __version__,
    }


class InferenceServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that owns one Session and serves it (see the module docstring).

    Attributes:
        served: The model requests run on (``session``, ``meta``, ``max_batch``), replaced whole by
            :meth:`swap`; ``session`` and ``meta`` read it.
        limits: Request and connection limits (:class:`ServeLimits`).
        max_body: ``limits.max_body``.
        max_connections: ``limits.max_connections``: connection threads at once. When full, an idle
            or slow-to-send connection is closed to make room; only when all are busy working does a
            new one get an immediate 503.
        loopback: Bound to a loopback address (the Host header is checked then).
        connections: The open connections (:class:`~edgekit.runtime.serve.connections.ConnectionTable`).
        reload_error: The last failed reload's reason (``None`` after a success or if none failed).
        stats: Request counters (also fed to ``metrics``).
        metrics: What ``GET /metrics`` exposes, or ``None`` (then ``metrics_off`` says why).
        metrics_off: ``(status, message)`` that /metrics answers when ``metrics`` is ``None``.
    """

    daemon_threads = True  # idle keep-alive connections must not hold the process at exit
    block_on_close = False  # run_until_stopped drains in-flight requests itself, with a deadline
    request_queue_size = 64

    def __init__(self, session: Session, address: tuple[str, int], *, limits: ServeLimits | None = None,
                 max_body: int | None = None, max_connections: int | None = None, log_requests: bool = False,
                 metrics: bool = True, load_seconds: float | None = None) -> None:
        limits = limits or ServeLimits()
        overrides = {k: v for k, v in (("max_body", max_body), ("max_connections", max_connections)) if v is not None}
        self.limits = dataclasses.replace(limits, **overrides) if overrides else limits
        self.max_body, self.max_connections = self.limits.max_body, self.limits.max_connections
        self.loopback = _is_loopback(address[0])
        self.reload_error: str | None = None
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
        self.served = self._served(session)
        # Session serialises engine calls but keeps per-call caches outside its lock; one lock here
        # makes run() atomic. Decoding and encoding (most of a request's time) stay parallel.
        self.run_lock = threading.Lock()
        self.stopping = threading.Event()
        self._stop_requested = threading.Event()
        self.connections = ConnectionTable(self.limits.max_connections, self.limits.per_client)
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        try:
            super().__init__(address, PredictHandler)
        except OSError as exc:
            raise InputError(f"cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc} (pick another --port, or 0 for a free one)") from None

    @property
    def session(self) -> Session:
        return self.served.session

    @property
    def meta(self) -> dict[str, Any]:
        return self.served.meta

    def _served(self, session: Session) -> Served:
        max_batch = self.limits.batch_limit(session)
        return Served(session, metadata(session, limits=self.limits, max_batch=max_batch), max_batch)

    def swap(self, session: Session) -> None:
        """Serve ``session`` from now on (what ``--reload`` does with a new, verified folder).

        Requests already decoding keep the model they started with; the run lock makes the swap
        wait for the engine call in progress, so no call sees a half-replaced server.
        """
        served = self._served(session)
        with self.run_lock:
            self.served = served
            self.reload_error = None
        if self.metrics is not None:
            self.metrics.set_model(model_info(session))

    def health(self) -> dict[str, Any]:
        """What ``GET /healthz`` answers (see :mod:`edgekit.runtime.serve`)."""
        meta = self.served.meta
        return {"status": "ok", "target": meta["target"], "artifact": meta["artifact"], "sha256": meta["sha256"],
                **self.stats.snapshot(), "connections": self.connections.counts(), "reload_error": self.reload_error}

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
        # Runs on the accept loop: admit within the limits (closing an idle or slow connection to
        # make room), then one thread per connection. The slot is released by the thread's own
        # finally, and here if the thread never starts: no path leaves a slot counted.
        host = str(client_address[0])
        conn, victim, why = self.connections.admit(request, host, self.limits.idle_timeout, per_client=self.limits.caps(host))
        if victim is not None:
            self.stats.count("evicted")
            self.connections.close(victim)
        if conn is None:
            self._refuse(request, why)
            return
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address), name="edgekit-conn", daemon=True)
        try:
            thread.start()
        except Exception as exc:  # RuntimeError("can't start new thread") on a loaded device
            self.connections.release(request)
            self._refuse(request, "server busy: cannot start a connection thread, retry later")
            log.error("cannot start a connection thread: %s", exc)

    def _refuse(self, request: Any, why: str) -> None:
        body = json.dumps({"error": why, "status": 503, "type": "Busy"}).encode()
        # Counted before it is sent, like every answer (see PredictHandler._send); it is refused
        # before its request is read, so there is no path and it counts under "other".
        self.stats.count("busy")
        self.stats.record(503, endpoint=OTHER)
        try:
            request.settimeout(1.0)  # the accept loop must not wait on a client that does not read
            request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                            b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            # Read what the client already sent: closing with unread bytes makes the kernel reset
            # the connection, and a reset can destroy the 503 before the client reads it.
            request.setblocking(False)
            request.recv(1 << 16)
        except OSError:
            pass
        self.shutdown_request(request)

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - handle_error decides what is worth a log line
            self.handle_error(request, client_address)
        finally:
            try:
                self.shutdown_request(request)
            finally:
                self.connections.release(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (reset, broken pipe, idle timeout) are normal on a device: no traceback.
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            log.error("error on a connection from %s", client_address[0], exc_info=True)


def make_server(session: Session, host: str = "127.0.0.1", port: int = 8080, *, limits: ServeLimits | None = None,
                max_body: int | None = None, max_connections: int | None = None, log_requests: bool = False,
                metrics: bool = True, load_seconds: float | None = None) -> InferenceServer:
    """Bind a server for ``session`` (port 0 picks a free port: read it from ``server.url``).

    ``limits`` bounds requests and connections (:class:`ServeLimits`; defaults otherwise);
    ``max_body`` / ``max_connections``, when given, override those two fields of it.

    ``metrics=True`` serves Prometheus ``GET /metrics`` when prometheus-client is installed (501
    naming ``pip install 'edgekit[metrics]'`` when not); ``load_seconds`` becomes
    ``edgekit_model_load_seconds``.

    Example:
        >>> server = make_server(load("out/"), port=0)  # doctest: +SKIP
        >>> server.url  # doctest: +SKIP
        'http://127.0.0.1:41234'
    """
    return InferenceServer(session, (host, port), limits=limits, max_body=max_body, max_connections=max_connections,
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
          num_threads: int | None = None, limits: ServeLimits | None = None, max_body: int | None = None,
          max_connections: int | None = None, verify: bool = True, log_requests: bool = False, metrics: bool = True,
          choose: str = "rules", reload: bool = False, reload_interval: float = 2.0,
          out: TextIO | None = None) -> dict[str, Any]:
    """Load ``path`` (model file or edgekit output folder) and serve it until SIGINT/SIGTERM.

    Prints ``edgekit serve: <target> on http://HOST:PORT`` first (the real port when ``port=0``)
    and a ``stopped: ...`` line with the counters at the end. ``choose="measure"`` serves the
    artifact measured fastest on this device (see :func:`edgekit.runtime.load`). ``reload=True``
    polls ``path`` every ``reload_interval`` seconds and swaps in a changed folder once it loads
    and verifies (see :mod:`.reload`); one that fails leaves the running model serving.

    Example:
        >>> serve("out/", port=0)  # doctest: +SKIP
    """
    from edgekit.runtime.loader import load

    out = out or sys.stdout
    t0 = time.perf_counter()
    session = load(path, target=target, num_threads=num_threads, verify=verify, choose=choose)
    load_seconds = time.perf_counter() - t0
    server = make_server(session, host, port, limits=limits, max_body=max_body, max_connections=max_connections,
                         log_requests=log_requests, metrics=metrics, load_seconds=load_seconds)
    meta = server.meta
    if not _is_loopback(host) and not server.limits.token:
        print(f"warning: listening on {host} without --token: anyone who can reach this port can run the model",
              file=sys.stderr)
    if metrics and server.metrics is None and server.metrics_off:
        print(f"note: {server.metrics_off[1]}", file=sys.stderr)
    print(f"edgekit serve: {meta['target']} ({meta['engine']} {meta['engine_version']}, {meta['num_threads']} threads) "
          f"on {server.url}  [{ENDPOINTS}]", file=out, flush=True)
    reloader = None
    if reload:
        # Reloads are always verified against the manifest: a half-copied folder must not be served.
        reloader = Reloader(server, path, lambda: load(path, target=target, num_threads=num_threads, verify=True, choose=choose),
                            interval=reload_interval, notify=lambda line: print(line, file=sys.stderr, flush=True))
        reloader.start()
    try:
        stats = run_until_stopped(server)
    finally:
        if reloader is not None:
            reloader.stop()
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
