"""Prometheus metrics for apps that serve a model: ``edgekit serve``, the IoT app, the MQTT bridge.

One :class:`Metrics` per server, each with its own ``CollectorRegistry``, so several servers in one
process (tests, an app that serves two models) never collide and nothing lands in
``prometheus_client``'s global default registry. prometheus-client is optional
(``pip install 'edgekit[metrics]'``) and imported only when a :class:`Metrics` is made.

Metrics (``endpoint`` is whatever the app calls its entry points, e.g. ``/predict`` or an MQTT topic
kind; keep the set of values small and fixed, never raw user input):

* ``edgekit_requests_total{endpoint,status}``: requests answered, by status (``"200"``, ``"413"``, ``"error"``)
* ``edgekit_request_duration_seconds{endpoint}``: histogram, 100 µs to 10 s
* ``edgekit_requests_in_flight{endpoint}``: requests being handled now
* ``edgekit_model_info{target,format,precision,sha256,engine,engine_version,edgekit_version}``: always 1
* ``edgekit_model_load_seconds``: how long loading the model took (when the app says)
* ``process_*`` / ``python_info``: the standard process collectors (``process_*`` on Linux only)

Example:
    >>> m = Metrics({"target": "tflite:int8", "format": "tflite", "precision": "int8",
    ...              "sha256": "ab12", "engine": "ai-edge-litert"})
    >>> with m.in_flight("/predict"):
    ...     m.observe("/predict", 200, 0.004)
    >>> body, ctype = m.exposition()
    >>> b'edgekit_requests_total{endpoint="/predict",status="200"} 1.0' in body
    True
    >>> ctype.startswith("text/plain")
    True
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Iterator, Mapping

from edgekit import __version__
from edgekit.errors import InputError, MissingDependencyError
from edgekit.manifest import sha256_file

# Edge inference spans a tiny MLP on a desktop CPU (~50 µs) to a big CNN on a Pi (seconds); the
# default prometheus buckets start at 5 ms and would lump every fast model into one bucket.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INFO_KEYS = ("target", "format", "precision", "sha256", "engine", "engine_version")
INSTALL_HINT = "pip install 'edgekit[metrics]'"


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise MissingDependencyError("prometheus-client", "metrics", "Prometheus metrics") from None
    return prometheus_client


def available() -> bool:
    """Whether prometheus-client can be imported (so a :class:`Metrics` can be made).

    Example:
        >>> isinstance(available(), bool)
        True
    """
    try:
        _prometheus()
    except MissingDependencyError:
        return False
    return True


def model_info(session: Any) -> dict[str, str]:
    """The ``info`` a :class:`Metrics` wants, read from a loaded :class:`edgekit.runtime.Session`.

    Loaded from an edgekit output folder, target and sha256 come from the manifest (already checked
    against the file unless ``verify=False``). A bare model file has neither: the target is
    ``format:precision`` (``?`` when unknown, as ``/metadata`` says) and the sha256 is computed once
    here, because "which exact model is this device running" is what the label is for.

    Example:
        >>> model_info(load("out/"))["target"]  # doctest: +SKIP
        'tflite:int8'
    """
    a = session.artifact
    sha = a.sha256 if a is not None else None
    if not sha:
        try:
            sha = sha256_file(session.path) if session.path is not None else ""
        except OSError:  # a path the engine could open but we cannot re-read: leave the label empty
            sha = ""
    return {
        "target": a.target if a is not None else f"{session.format}:{session.precision or '?'}",
        "format": session.format,
        "precision": session.precision or "",
        "sha256": sha,
        "engine": session.info.get("engine") or "",
        "engine_version": session.info.get("engine_version") or "",
    }


class Metrics:
    """Request counters, a latency histogram, an in-flight gauge and model info in a private registry.

    Args:
        info: Model labels: ``target``, ``format``, ``precision``, ``sha256``, ``engine`` and
            optionally ``engine_version`` (see :func:`model_info`). Missing or ``None`` values
            become empty labels; extra keys become extra labels. ``edgekit_version`` is added.
        load_seconds: How long loading the model took; exported as ``edgekit_model_load_seconds``.
        process: Also export the standard process/platform collectors (CPU, memory, open fds).
        endpoints: Endpoints known up front: their in-flight gauge and latency histogram exist (at 0)
            from the first scrape, so dashboards and ``rate()`` see them before the first request.

    Attributes:
        registry: The private ``prometheus_client.CollectorRegistry`` (add your own metrics here).

    Raises:
        MissingDependencyError: prometheus-client is not installed (``pip install 'edgekit[metrics]'``).

    Example:
        >>> m = Metrics({"target": "onnx:fp32", "format": "onnx", "precision": "fp32", "sha256": "",
        ...              "engine": "onnxruntime"})
        >>> m.observe("/healthz", 200, 0.0002)
        >>> b'edgekit_model_info{' in m.exposition()[0]
        True
    """

    def __init__(self, info: Mapping[str, Any], *, load_seconds: float | None = None, process: bool = True,
                 endpoints: Iterable[str] = ()) -> None:
        pc = _prometheus()
        self._pc = pc
        self.registry = pc.CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._requests = pc.Counter("edgekit_requests", "Requests answered, by endpoint and status.",
                                    ("endpoint", "status"), registry=reg)
        self._duration = pc.Histogram("edgekit_request_duration_seconds",
                                      "Time from request received to response sent, by endpoint.",
                                      ("endpoint",), buckets=BUCKETS, registry=reg)
        self._in_flight = pc.Gauge("edgekit_requests_in_flight", "Requests being handled now, by endpoint.",
                                   ("endpoint",), registry=reg)
        for endpoint in endpoints:
            self._duration.labels(endpoint)
            self._in_flight.labels(endpoint)
        self._model = pc.Info("edgekit_model", "The model being served (value is always 1).", registry=reg)
        self.info: dict[str, str] = {}
        self.set_model(info)
        if load_seconds is not None:
            pc.Gauge("edgekit_model_load_seconds", "Seconds it took to load the model.", registry=reg).set(load_seconds)
        if process:
            # Cheap: read from /proc (Linux) and sys at scrape time only; empty elsewhere.
            pc.ProcessCollector(registry=reg)
            pc.PlatformCollector(registry=reg)

    def set_model(self, info: Mapping[str, Any]) -> None:
        """Describe the model now served in ``edgekit_model_info`` (``serve --reload`` swapped it in).

        Example:
            >>> m = Metrics({"target": "tflite:fp32"}, process=False)
            >>> m.set_model({"target": "tflite:int8"})
            >>> m.info["target"], b'target="tflite:int8"' in m.exposition()[0]
            ('tflite:int8', True)
        """
        labels = {key: "" for key in INFO_KEYS}
        labels.update({str(k): "" if v is None else str(v) for k, v in info.items()})
        labels["edgekit_version"] = __version__
        self._model.info(labels)  # an Info holds one label set: the old model's is replaced, not kept
        self.info = labels

    def observe(self, endpoint: str, status: str | int, seconds: float) -> None:
        """Count one answered request and its latency.

        Example:
            >>> m = Metrics({}, process=False)
            >>> m.observe("/predict", 400, 0.001); m.observe("/predict", "200", 0.002)
            >>> m.count("/predict", 400), m.count("/predict")
            (1.0, 2.0)
        """
        self._requests.labels(endpoint, str(status)).inc()
        self._duration.labels(endpoint).observe(max(0.0, seconds))

    @contextlib.contextmanager
    def in_flight(self, endpoint: str) -> Iterator[None]:
        """Count the block as one in-flight request on ``endpoint`` (a gauge, thread-safe).

        Example:
            >>> m = Metrics({}, process=False)
            >>> with m.in_flight("/predict"):
            ...     m.gauge("/predict")
            1.0
            >>> m.gauge("/predict")
            0.0
        """
        gauge = self._in_flight.labels(endpoint)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def count(self, endpoint: str, status: str | int | None = None) -> float:
        """Requests counted so far on ``endpoint`` (with ``status``, or all of them); for tests and logs.

        Example:
            >>> Metrics({}, process=False).count("/predict")
            0.0
        """
        total = 0.0
        for metric in self._requests.collect():
            for s in metric.samples:
                if (s.name.endswith("_total") and s.labels["endpoint"] == endpoint
                        and (status is None or s.labels["status"] == str(status))):
                    total += s.value
        return total

    def gauge(self, endpoint: str) -> float:
        """Requests in flight on ``endpoint`` now.

        Example:
            >>> Metrics({}, process=False).gauge("/predict")
            0.0
        """
        for metric in self._in_flight.collect():
            for s in metric.samples:
                if s.labels["endpoint"] == endpoint:
                    return s.value
        return 0.0

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The scrape body and its Content-Type: Prometheus text, or OpenMetrics if ``accept`` asks.

        Example:
            >>> body, ctype = Metrics({}, process=False).exposition()
            >>> ctype
            'text/plain; version=0.0.4; charset=utf-8'
        """
        encoder, ctype = self._pc.exposition.choose_encoder(accept or "")
        return encoder(self.registry), ctype

    def serve(self, host: str = "127.0.0.1", port: int = 9100) -> "MetricsServer":
        """Expose ``GET /metrics`` on its own port from a background thread (for apps without HTTP).

        Port 0 picks a free one: read it from ``.server_port``. Call ``.shutdown()`` to stop it.

        Example:
            >>> m = Metrics({}, process=False)
            >>> srv = m.serve("127.0.0.1", 0)
            >>> import urllib.request
            >>> urllib.request.urlopen(f"{srv.url}/metrics").status
            200
            >>> srv.shutdown()
        """
        return MetricsServer(self, host, port)


class _MetricsHandler(BaseHTTPRequestHandler):
    server: "MetricsServer"  # type: ignore[assignment]
    disable_nagle_algorithm = True  # see edgekit.runtime.serve.handler: headers and body are two writes
    timeout = 30

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != "/metrics":
            self._answer(404, f"no such path {path!r}; GET /metrics".encode(), "text/plain; charset=utf-8")
        elif self.command not in ("GET", "HEAD"):
            self._answer(405, f"{self.command} is not allowed on /metrics; use GET".encode(), "text/plain; charset=utf-8",
                         (("Allow", "GET, HEAD"),))
        else:
            body, ctype = self.server.metrics.exposition(self.headers.get("Accept"))
            self._answer(200, body, ctype)

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _answer(self, status: int, body: bytes, ctype: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes every 15 s would flood stderr
        pass


class MetricsServer(ThreadingHTTPServer):
    """``GET /metrics`` for one :class:`Metrics`, served from a daemon thread (see :meth:`Metrics.serve`).

    Attributes:
        metrics: What it exposes.
        server_port: The bound port (the real one when asked for port 0).
        url: ``http://host:port``.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            super().__init__((host, port), _MetricsHandler)
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port} for /metrics: {exc.strerror or exc} (pick another port, or 0)") from None
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edgekit-metrics", daemon=True)
        self._thread.start()

    def server_bind(self) -> None:
        # Skip HTTPServer's FQDN lookup: it stalls for seconds on a device without working DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def url(self) -> str:
        host = self.server_name
        return f"http://[{host}]:{self.server_port}" if ":" in host else f"http://{host}:{self.server_port}"

    def shutdown(self) -> None:
        """Stop serving, close the socket and wait for the thread (idempotent)."""
        if self._thread.is_alive():
            super().shutdown()
            self._thread.join(5)
        self.server_close()


__all__ = ["BUCKETS", "INSTALL_HINT", "Metrics", "MetricsServer", "available", "model_info"]
