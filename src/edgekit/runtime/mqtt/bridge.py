"""The inference side: one thread takes messages off a :class:`Connection`, runs the Session, publishes
results or error reports, drains at shutdown and keeps the counters.

Example:
    >>> bridge = Bridge(load("out/"), MqttConfig(input_topic="in", output_topic="out"))  # doctest: +SKIP
    >>> bridge.run_forever()["processed"]  # until SIGINT/SIGTERM  # doctest: +SKIP
    42
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from typing import Any

from edgekit.errors import EdgekitError, InputError
from edgekit.runtime.mqtt.config import MqttConfig
from edgekit.runtime.mqtt.connection import Connection
from edgekit.runtime.mqtt.messages import NPZ_EXPANSION, Inbound, PayloadTooLarge, parse_payload, to_feeds
from edgekit.runtime.serve import payload

# One logger for the whole bridge (not __name__): operators filter on "edgekit.mqtt".
log = logging.getLogger("edgekit.mqtt")
ENDPOINT = "mqtt"  # the metrics endpoint label


class _Throttle:
    """At most one log line per ``every`` seconds; the lines in between are counted, not lost."""

    def __init__(self, every: float = 1.0) -> None:
        self.every, self.last, self.skipped = every, 0.0, 0

    def __call__(self, level: int, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.skipped += 1
            return
        more = f" (+{self.skipped} more since the last line)" if self.skipped else ""
        self.last, self.skipped = now, 0
        log.log(level, msg + more, *args)


class Bridge:
    """A Session answering MQTT: a :class:`Connection` in, one inference thread, results and errors out.

    Args:
        session: The loaded model (:func:`edgekit.runtime.load`).
        config: Needs ``input_topic`` and ``output_topic``.
        metrics: An :class:`edgekit.runtime.metrics.Metrics` to count into (endpoint ``"mqtt"``,
            status ``ok`` / ``bad_payload`` / ``error``; latency from arrival to publish).
        run_lock: Held around ``session.run``; pass the lock of another user of the same Session
            (an HTTP server in the same process) so the two never run it at once.

    Example:
        >>> bridge = Bridge(load("out/"), MqttConfig(input_topic="in", output_topic="out"))  # doctest: +SKIP
        >>> bridge.start(); ...; bridge.stop()["processed"]  # doctest: +SKIP
        42
    """

    def __init__(self, session: Any, config: MqttConfig, *, metrics: Any = None,
                 run_lock: threading.Lock | None = None) -> None:
        if not config.input_topic or not config.output_topic:
            raise InputError("the MQTT bridge needs an input topic and an output topic")
        self.session, self.config, self.metrics = session, config, metrics
        self.run_lock = run_lock or threading.Lock()
        self.conn = Connection(config)
        a = session.artifact
        self.target = a.target if a is not None else f"{session.format}:{session.precision or '?'}"
        self._counts = dict.fromkeys(("processed", "bad_payload", "errors"), 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_requested = threading.Event()
        self._worker: threading.Thread | None = None
        self._started: float | None = None
        self._warn = _Throttle()

    def start(self) -> bool:
        """Connect and subscribe (see :meth:`Connection.start`), then start the inference thread.

        Returns False if :meth:`request_stop` came first (nothing is left running).

        Raises:
            BrokerError: the broker was not reachable within ``connect_timeout`` or refused us.
        """
        self._started = time.monotonic()
        if not self.conn.start(abort=self._stop_requested):
            return False
        self._worker = threading.Thread(target=self._work, name="edgekit-mqtt-infer", daemon=True)
        self._worker.start()
        return True

    def request_stop(self) -> None:
        """Ask :meth:`run_forever` to stop (safe from a signal handler or another thread)."""
        self._stop_requested.set()

    def stop(self) -> dict[str, Any]:
        """Stop taking messages, answer what is queued, wait for PUBACKs, disconnect; the final counters."""
        t0 = time.monotonic()
        self.conn.accepting = False
        self._stop.set()
        if self._worker is not None:
            self._worker.join(self.config.drain_seconds + 5)
        self.conn.stop(max(0.0, self.config.drain_seconds - (time.monotonic() - t0)))
        return self.stats()

    def run_forever(self, *, handle_signals: bool = True, on_ready: Any = None) -> dict[str, Any]:
        """Start (if not started), serve until SIGINT/SIGTERM or :meth:`request_stop`, stop; the counters.

        ``on_ready()`` is called once connected and subscribed (e.g. to print a ready line).

        Example:
            >>> threading.Timer(60, bridge.request_stop).start()  # doctest: +SKIP
            >>> bridge.run_forever()["errors"]  # doctest: +SKIP
            0
        """
        previous: dict[int, Any] = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: self.request_stop())
        try:
            if self._worker is None and not self.start():
                return self.stats()
            if on_ready is not None:
                on_ready()
            while not self._stop_requested.wait(0.5):
                pass
            return self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stats(self) -> dict[str, Any]:
        """Counters: received, processed, bad_payload, errors, dropped, published (acked), reconnects...

        Example:
            >>> sorted(bridge.stats())[:3]  # doctest: +SKIP
            ['bad_payload', 'connect_failures', 'disconnects']
        """
        with self._lock:
            counts = dict(self._counts)
        c = self.conn.stats()
        return {"received": c["received"], **counts, "dropped": c["dropped"], "published": c["acked"],
                "publish_failed": c["publish_failed"], "pending": max(0, c["sent"] - c["acked"]),
                "reconnects": c["reconnects"], "disconnects": c["disconnects"], "connect_failures": c["connect_failures"],
                "queue_peak": c["queue_peak"], "queue_size": self.config.queue_size,
                "uptime_s": round(time.monotonic() - self._started, 2) if self._started else 0.0}

    def _work(self) -> None:
        drain_until = None
        while True:
            if self._stop.is_set() and drain_until is None:
                drain_until = time.monotonic() + self.config.drain_seconds
            msg = self.conn.get(timeout=0.1)
            if msg is None:
                if drain_until is not None:
                    return
                continue
            self.handle(msg)
            if drain_until is not None and time.monotonic() > drain_until:
                left = 0
                while self.conn.get(timeout=0) is not None:
                    left += 1
                self.conn._count("dropped", left)  # queued but never answered: say so in the counters
                return

    def handle(self, msg: Inbound) -> str:
        """Answer one message: publish the result, or an error report; returns the status counted.

        Never raises: whatever goes wrong is reported on the error topic and the bridge goes on.
        """
        cfg = self.config
        ident: Any = msg.correlation_text
        status = "ok"
        in_flight = self.metrics.in_flight(ENDPOINT) if self.metrics is not None else contextlib.nullcontext()
        with in_flight:
            try:
                if msg.error:
                    raise PayloadTooLarge(msg.error)
                json_id, parsed = parse_payload(msg.payload, content_type=msg.content_type,
                                                max_unpacked=cfg.max_payload * NPZ_EXPANSION)
                ident = json_id if json_id is not None else ident
                feeds = to_feeds(parsed, self.session)
                t = time.perf_counter()
                with self.run_lock:
                    outputs = self.session.run(feeds)
                ms = (time.perf_counter() - t) * 1e3
                body = {"id": ident, "topic": msg.topic, "model": self.target, "outputs": payload.outputs_to_json(outputs),
                        "top1": payload.top1(outputs), "latency_ms": round(ms, 3)}
                self.conn.publish(msg.response_topic or cfg.output_topic, json.dumps(body).encode(),
                                  correlation=msg.correlation)
            except InputError as exc:
                status = "bad_payload"
                self._warn(logging.WARNING, "bad payload on %s (%d bytes): %s", msg.topic, msg.size, exc)
                self._report(msg, ident, status, exc)
            except Exception as exc:  # noqa: BLE001 - an engine failure or a bug: report it, keep serving
                status = "error"
                if isinstance(exc, EdgekitError):
                    self._warn(logging.ERROR, "inference failed on %s: %s", msg.topic, exc)
                else:
                    log.exception("unexpected error on a message from %s", msg.topic)
                self._report(msg, ident, status, exc)
        with self._lock:
            self._counts["processed" if status == "ok" else "bad_payload" if status == "bad_payload" else "errors"] += 1
        if self.metrics is not None:
            self.metrics.observe(ENDPOINT, status, time.monotonic() - msg.received)
        return status

    def _report(self, msg: Inbound, ident: Any, status: str, exc: BaseException) -> None:
        text = str(exc) if isinstance(exc, EdgekitError) else f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        doc = {"error": text, "type": type(exc).__name__, "status": status, "id": ident, "topic": msg.topic,
               "bytes": msg.size, "model": self.target}
        self.conn.publish(self.config.error_topic, json.dumps(doc).encode(), correlation=msg.correlation)
