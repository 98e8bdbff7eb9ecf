"""What the HTTP handler needs from the server that owns it: the Session, the limits, the counters.

The handler (:mod:`.handler`) is written against :class:`ServerState`, and the server
(:mod:`.server`) implements it, so imports run one way: server -> handler -> state.

Example:
    >>> stats = RequestStats()
    >>> with stats.track():
    ...     stats.record(200, predicted=True, endpoint="/predict", seconds=0.002)
    >>> stats.record(404)
    >>> stats.count("busy")
    >>> {k: v for k, v in stats.snapshot().items() if k != "uptime_s"}  # doctest: +NORMALIZE_WHITESPACE
    {'requests': 2, 'predictions': 1, 'client_errors': 1, 'server_errors': 0, 'inflight': 0,
     'busy': 1, 'evicted': 0, 'timeouts': 0, 'reloads': 0, 'reload_errors': 0}
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Protocol

from edgekit.runtime.session import Session

if TYPE_CHECKING:
    from edgekit.runtime.metrics import Metrics
    from edgekit.runtime.serve.connections import ConnectionTable
    from edgekit.runtime.serve.limits import ServeLimits

# Events that are not answers (or not only answers), counted for /healthz: connections refused
# at the limit with 503, closed to make room, requests that missed their deadline, model reloads.
EVENTS = ("busy", "evicted", "timeouts", "reloads", "reload_errors")


class RequestStats:
    """Thread-safe request counters for /healthz and the final line, forwarded to Prometheus if given.

    The handler reports each answer here once (:meth:`record`); with ``metrics`` the same call also
    feeds ``edgekit_requests_total`` and the latency histogram, so /healthz and /metrics can never
    disagree about what was counted. (The Prometheus in-flight gauge is the handler's: it ends
    when an answer is ready, while :attr:`inflight` lasts until it is written, for the shutdown drain.)

    Args:
        metrics: Where to forward counts (``None``: /healthz counters only).
    """

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._lock = threading.Lock()
        self.metrics = metrics
        self.started = time.monotonic()
        self.requests = self.predictions = self.client_errors = self.server_errors = self.inflight = 0
        self.events = dict.fromkeys(EVENTS, 0)

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Count the block as one in-flight request (what shutdown waits for).

        Example:
            >>> stats = RequestStats()
            >>> with stats.track():
            ...     stats.snapshot()["inflight"]
            1
        """
        with self._lock:
            self.inflight += 1
        try:
            yield
        finally:
            with self._lock:
                self.inflight -= 1

    def record(self, status: int, predicted: bool = False, endpoint: str = "other", seconds: float = 0.0) -> None:
        """Count one answered request (``seconds``: from request line read to response written).

        Example:
            >>> stats = RequestStats()
            >>> stats.record(503)
            >>> stats.snapshot()["server_errors"]
            1
        """
        with self._lock:
            self.requests += 1
            self.predictions += predicted
            if 400 <= status < 500:
                self.client_errors += 1
            elif status >= 500:
                self.server_errors += 1
        if self.metrics is not None:
            self.metrics.observe(endpoint, status, seconds)

    def count(self, event: str) -> None:
        """Count one of :data:`EVENTS` (a 503 at the limit is also :meth:`record`-ed as an answer).

        Example:
            >>> stats = RequestStats(); stats.count("evicted"); stats.snapshot()["evicted"]
            1
        """
        with self._lock:
            self.events[event] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": self.requests, "predictions": self.predictions, "client_errors": self.client_errors,
                    "server_errors": self.server_errors, "inflight": self.inflight, **self.events,
                    "uptime_s": round(time.monotonic() - self.started, 1)}


@dataclass(frozen=True)
class Served:
    """What a request runs on, swapped whole on reload so a request never mixes two models.

    Attributes:
        session: The loaded model.
        meta: What ``GET /metadata`` answers for it.
        max_batch: Samples per request for it (``ServeLimits.batch_limit``).
    """

    session: Session
    meta: dict[str, Any]
    max_batch: int


class ServerState(Protocol):
    """The server attributes a request handler reads.

    Attributes:
        served: The model requests run on now (replaced whole by a reload).
        limits: Per-request and per-connection limits.
        connections: The open connections: phases, deadlines, eviction (the handler moves its own along).
        loopback: Whether the server is bound to a loopback address (then the Host header is checked).
        reload_error: The last failed reload's one-line reason, or ``None``.
        stats: Request counters (forwarded to ``metrics`` when it is set).
        metrics: Prometheus metrics for ``GET /metrics``, or ``None`` when they are off.
        metrics_off: Why ``metrics`` is ``None``: the HTTP status and one line that /metrics answers.
        run_lock: Held around ``session.run`` (one engine call at a time).
        stopping: Set once shutdown began: new requests get 503.
        log_requests: Write an access log line per request to stderr.
    """

    served: Served
    limits: ServeLimits
    connections: ConnectionTable
    loopback: bool
    reload_error: str | None
    stats: RequestStats
    metrics: Metrics | None
    metrics_off: tuple[int, str] | None
    run_lock: threading.Lock
    stopping: threading.Event
    log_requests: bool

    def health(self) -> dict[str, Any]:
        """What ``GET /healthz`` answers: status, the served artifact, counters, connections."""
