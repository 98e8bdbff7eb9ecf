"""The paho client: TLS and auth, connect with back-off, the subscription, the bounded inbox, publishing.

paho is imported when a :class:`Connection` is made, not with this module: ``import
edgekit.runtime.mqtt`` works (and says which extra to install) without it.

Example:
    >>> conn = Connection(MqttConfig(output_topic="results"))  # nothing sent until start()
    >>> conn.pending(), conn.stats()["queue_depth"]
    (0, 0)
"""

from __future__ import annotations

import logging
import queue
import random
import socket
import threading
import time
from typing import Any

from edgekit.errors import BrokerError, InputError, MissingDependencyError
from edgekit.runtime.mqtt.config import MqttConfig
from edgekit.runtime.mqtt.messages import Inbound

# One logger for the whole bridge (not __name__): operators filter on "edgekit.mqtt".
log = logging.getLogger("edgekit.mqtt")


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise MissingDependencyError("paho-mqtt", "mqtt", "the MQTT bridge") from None
    return mqtt


def _no_delay(client: Any, userdata: Any, sock: Any) -> None:
    # Paho leaves Nagle on. The bridge writes a PUBACK and then the result a moment later; with
    # Nagle the second write waits for the broker's delayed ACK (40 ms on Linux) on every message.
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _guarded(callback: Any) -> Any:
    def run(*args: Any) -> None:
        try:
            callback(*args)
        except Exception:  # noqa: BLE001 - paho's network thread must survive our bugs
            log.exception("error in MQTT callback %s", callback.__name__)

    return run


class Connection:
    """One paho client: connect with back-off, renew the subscription on every connect, bounded inbox.

    Args:
        config: Broker, topics, limits.
        inbox: Where inbound messages go; default a new ``queue.Queue(config.queue_size)``. Must be
            bounded: when it is full the oldest entry is dropped (see :mod:`edgekit.runtime.mqtt`).

    Example:
        >>> conn = Connection(MqttConfig(input_topic="frames/#"))
        >>> conn.start()  # connects and subscribes, or raises BrokerError  # doctest: +SKIP
        >>> msg = conn.get(timeout=1.0)  # an Inbound or None  # doctest: +SKIP
        >>> conn.stop()  # doctest: +SKIP
    """

    def __init__(self, config: MqttConfig, inbox: "queue.Queue[Any] | None" = None) -> None:
        self._mqtt = mqtt = _paho()
        self.config = cfg = config
        self.inbox: queue.Queue[Any] = inbox if inbox is not None else queue.Queue(maxsize=cfg.queue_size)
        if self.inbox.maxsize < 1:
            raise InputError("the MQTT inbox must be a bounded queue (maxsize >= 1)")
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.accepting = True  # False once shutdown starts: later messages are counted as dropped
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(("received", "dropped", "connects", "connect_failures", "disconnects",
                                      "sent", "acked", "publish_failed", "queue_peak"), 0)
        self._refused: str | None = None
        self._closing = False
        self._last_drop_log = 0.0
        self.client_id = cfg.client_id or f"edgekit-{socket.gethostname()[:40]}-{random.getrandbits(32):08x}"
        v5 = cfg.protocol == "5"
        kwargs = {} if v5 else {"clean_session": cfg.session_expiry == 0}
        self._client = c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                       protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, **kwargs)
        # An exception escaping a callback would end paho's network thread; each callback is wrapped
        # in _guarded (logs it), and this is the backstop. Paho's own logger stays off: it logs an
        # ERROR line on every failed retry, which is noise while the back-off is doing its job.
        c.suppress_exceptions = True
        c.reconnect_delay_set(cfg.backoff_min * (1 + 0.5 * random.random()), cfg.backoff_max)
        c.max_queued_messages_set(cfg.max_pending)
        if cfg.tls:
            c.tls_set(ca_certs=cfg.ca_certs, certfile=cfg.certfile, keyfile=cfg.keyfile)
            c.tls_insecure_set(cfg.tls_insecure)
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password)
        if cfg.status_topic:
            c.will_set(cfg.status_topic, b"offline", qos=1, retain=True)
        c.on_connect, c.on_connect_fail = _guarded(self._on_connect), _guarded(self._on_connect_fail)
        c.on_disconnect, c.on_subscribe = _guarded(self._on_disconnect), _guarded(self._on_subscribe)
        c.on_message, c.on_publish = _guarded(self._on_message), _guarded(self._on_publish)
        c.on_socket_open = _guarded(_no_delay)
        self._connect_kwargs: dict[str, Any] = {}
        if v5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = int(cfg.session_expiry)
            # A persistent session must survive our own restarts too: never start clean then.
            self._connect_kwargs = {"clean_start": cfg.session_expiry == 0, "properties": props}
            self._props = (PacketTypes, Properties)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, abort: threading.Event | None = None) -> bool:
        """Connect (retrying with back-off for up to ``connect_timeout`` s), start paho's thread, subscribe.

        Returns False (nothing left running) if ``abort`` is set meanwhile, e.g. by SIGTERM.

        Raises:
            BrokerError: no connection in time, or the broker refused the connection/subscription.
        """
        abort = abort or threading.Event()
        cfg = self.config
        t0 = time.monotonic()
        deadline = t0 + cfg.connect_timeout if cfg.connect_timeout else None
        delay, tries = cfg.backoff_min, 0
        while True:
            tries += 1
            try:
                self._client.connect(cfg.host, cfg.port, cfg.keepalive, **self._connect_kwargs)
                break
            except (OSError, ValueError) as exc:  # refused, unreachable, DNS, TLS handshake
                reason = f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise BrokerError(f"cannot connect to the MQTT broker {cfg.broker}: {reason} ({tries} attempts in "
                                  f"{now - t0:.1f} s; is the broker running and the address right?)")
            log.info("broker %s not reachable (%s); retrying in %.1f s", cfg.broker, reason, delay)
            if abort.wait(delay if deadline is None else max(0.0, min(delay, deadline - now))):
                return False
            delay = min(delay * 2, cfg.backoff_max)
        self._client.loop_start()
        ready = self.subscribed if cfg.input_topic else self.connected
        wait_until = max(deadline or 0, time.monotonic() + 10)  # CONNACK/SUBACK normally take milliseconds
        while not ready.wait(0.05):
            if abort.is_set():
                self._shutdown_client()
                return False
            if self._refused or time.monotonic() > wait_until:
                why = self._refused or f"no CONNACK/SUBACK within {wait_until - t0:.0f} s"
                self._shutdown_client()
                raise BrokerError(f"MQTT broker {cfg.broker}: {why}")
        return True

    def stop(self, drain_seconds: float | None = None) -> None:
        """Wait for PUBACKs (up to ``drain_seconds``), publish ``offline``, disconnect, end paho's thread."""
        self.accepting = False
        deadline = time.monotonic() + (self.config.drain_seconds if drain_seconds is None else drain_seconds)
        while self.pending() > 0 and self.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.pending():
            log.warning("stopping with %d published messages not acknowledged by %s (%s)", self.pending(),
                        self.config.broker, "connected" if self.connected.is_set() else "broker unreachable")
        if self.config.status_topic and self.connected.is_set():
            info = self._client.publish(self.config.status_topic, b"offline", qos=1, retain=True)
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self._shutdown_client()

    def _shutdown_client(self) -> None:
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()

    # -- data ----------------------------------------------------------------------------------
    def get(self, timeout: float = 0.2) -> Inbound | None:
        """The next inbound message, or ``None`` after ``timeout`` seconds."""
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def publish(self, topic: str, data: bytes, *, correlation: bytes | None = None, retain: bool = False) -> bool:
        """Publish with the configured QoS; False (counted in ``publish_failed``) if paho's queue is full.

        While disconnected, QoS 1/2 messages wait in paho (up to ``max_pending``) and go out after
        the reconnect.
        """
        props = None
        if correlation is not None and self.config.protocol == "5":
            packet_types, properties = self._props
            props = properties(packet_types.PUBLISH)
            props.CorrelationData = correlation
        try:
            info = self._client.publish(topic, data, qos=self.config.qos, retain=retain, properties=props)
            rc = info.rc
        except ValueError as exc:  # a Response Topic from a sender that is not a valid topic
            log.warning("cannot publish to %r: %s", topic, exc)
            rc = None
        mqtt = self._mqtt
        ok = rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN) and (self.config.qos > 0 or rc == mqtt.MQTT_ERR_SUCCESS)
        self._count("sent" if ok else "publish_failed")
        if not ok and rc is not None:
            log.warning("result for %s dropped: %s (max_pending %d)", topic, mqtt.error_string(rc), self.config.max_pending)
        return ok

    def pending(self) -> int:
        """Messages published but not yet acknowledged by the broker."""
        with self._lock:
            return max(0, self._counts["sent"] - self._counts["acked"])

    def stats(self) -> dict[str, int]:
        """Transport counters (received, dropped, reconnects, connect failures, publishes, queue peak)."""
        with self._lock:
            c = dict(self._counts)
        c["reconnects"] = max(0, c.pop("connects") - 1)
        c["queue_depth"] = self.inbox.qsize()
        return c

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    # -- paho callbacks (network thread) -------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._refused = f"broker refused the connection: {reason_code}"
            log.warning("%s (%s)", self._refused, self.config.broker)
            return
        self._refused = None
        self._count("connects")
        if self.stats()["reconnects"]:
            # As visible as the "lost the broker" warning it ends.
            log.warning("reconnected to %s (session present: %s)", self.config.broker, bool(flags.session_present))
        self.connected.set()
        if self.config.status_topic:
            self.publish(self.config.status_topic, b"online", retain=True)
        if self.config.input_topic:
            if self.config.protocol == "5":
                from paho.mqtt.subscribeoptions import SubscribeOptions

                # noLocal: never receive our own publishes, whatever the topics.
                client.subscribe(self.config.input_topic, options=SubscribeOptions(qos=self.config.qos, noLocal=True))
            else:
                client.subscribe(self.config.input_topic, qos=self.config.qos)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        if any(rc.is_failure for rc in reason_codes):
            self._refused = f"broker refused the subscription to {self.config.input_topic!r}: {reason_codes[0]}"
            log.warning(self._refused)
        else:
            self.subscribed.set()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._count("connect_failures")
        log.info("broker %s not reachable; retrying with back-off (up to %.0f s)", self.config.broker, self.config.backoff_max)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._closing:
            self._count("disconnects")
            log.warning("lost the broker %s (%s); reconnecting with back-off %.1f..%.0f s",
                        self.config.broker, reason_code, self.config.backoff_min, self.config.backoff_max)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        self._count("acked")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if not self.accepting:
            self._count("received")
            self._count("dropped")
            return
        cfg, size = self.config, len(msg.payload)
        props = msg.properties
        item = Inbound(topic=msg.topic, payload=bytes(msg.payload) if size <= cfg.max_payload else b"", size=size,
                       received=time.monotonic(), correlation=getattr(props, "CorrelationData", None),
                       response_topic=getattr(props, "ResponseTopic", None), content_type=getattr(props, "ContentType", None))
        if size > cfg.max_payload:  # refused here so it never sits in the queue
            item.error = f"payload is {size} bytes, over the {cfg.max_payload}-byte limit (max_payload / --max-payload)"
        while True:
            try:
                self.inbox.put_nowait(item)
                break
            except queue.Full:
                try:
                    self.inbox.get_nowait()  # drop-oldest: the newest reading is the one worth answering
                    self._count("dropped")
                except queue.Empty:
                    pass
                now = time.monotonic()
                if now - self._last_drop_log > 10:
                    self._last_drop_log = now
                    log.warning("input queue full (%d): dropping the oldest messages (%d dropped so far)",
                                self.inbox.maxsize, self.stats()["dropped"])
        with self._lock:
            # Counted once queued: "received == n and the queue is empty" means the worker has them all.
            self._counts["received"] += 1
            self._counts["queue_peak"] = max(self._counts["queue_peak"], self.inbox.qsize())
