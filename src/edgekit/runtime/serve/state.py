"""What the HTTP handler needs from the server that owns it: the Session, the limits, the counters.

The handler (:mod:`.handler`) is written against :class:`ServerState`, and the server
(:mod:`.server`) implements it, so imports run one way: server -> handler -> state.

Example:
    >>> stats = RequestStats()
    >>> stats.record(200, predicted=True); stats.record(404)
    >>> {k: v for k, v in stats.snapshot().items() if k != "uptime_s"}
    {'requests': 2, 'predictions': 1, 'client_errors': 1, 'server_errors': 0, 'inflight': 0}
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from edgekit.runtime.session import Session


class RequestStats:
    """Thread-safe request counters for /healthz and the final line."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.requests = self.predictions = self.client_errors = self.server_errors = self.inflight = 0

    def begin(self) -> None:
        with self._lock:
            self.inflight += 1

    def end(self) -> None:
        with self._lock:
            self.inflight -= 1

    def record(self, status: int, predicted: bool = False) -> None:
        with self._lock:
            self.requests += 1
            self.predictions += predicted
            if 400 <= status < 500:
                self.client_errors += 1
            elif status >= 500:
                self.server_errors += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": self.requests, "predictions": self.predictions, "client_errors": self.client_errors,
                    "server_errors": self.server_errors, "inflight": self.inflight,
                    "uptime_s": round(time.monotonic() - self.started, 1)}


class ServerState(Protocol):
    """The server attributes a request handler reads.

    Attributes:
        session: The loaded model.
        max_body: Largest accepted request body in bytes (413 above it).
        meta: What ``GET /metadata`` answers.
        stats: Request counters.
        run_lock: Held around ``session.run`` (one engine call at a time).
        stopping: Set once shutdown began: new requests get 503.
        log_requests: Write an access log line per request to stderr.
    """

    session: Session
    max_body: int
    meta: dict[str, Any]
    stats: RequestStats
    run_lock: threading.Lock
    stopping: threading.Event
    log_requests: bool
