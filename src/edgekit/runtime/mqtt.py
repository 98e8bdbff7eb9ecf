"""MQTT in, inference, MQTT out: the bridge behind ``edgekit mqtt`` and ``examples/iot_app.py --source mqtt``.

Design (what a fleet operator can rely on):

* **Payloads** are the ones ``edgekit serve`` takes: JSON (``{"id": ..., "inputs": {name: [[...]]}}``,
  ``{"inputs": [[...]]}`` or a bare nested list for a one-input model), ``.npy`` (``np.save``) or
  ``.npz`` (``np.savez``), told apart by the MQTT v5 Content Type when the sender sets one, else by
  their first bytes. Anything over ``max_payload`` bytes is refused before it is queued.
* **Correlation**: a result carries ``"id"`` (the JSON ``id``, else the MQTT v5 Correlation Data as
  text) and ``"topic"`` (the topic the input came on, so ``sensors/+/frame`` subscribers learn the
  device from it). Correlation Data is echoed as a v5 property, and a v5 Response Topic on the
  request wins over ``output_topic``: MQTT v5 request/response works as the spec describes.
* **Bounded queue, drop-oldest**: paho's network thread puts each message on a
  ``queue.Queue(maxsize=queue_size)``; one inference thread takes them. When the queue is full the
  *oldest* waiting message is dropped (counted in ``dropped``, logged at most every 10 s). Blocking
  the network thread instead would stall keepalive pings and PUBACKs, and the broker would cut the
  connection; and on a sensor stream the newest reading is the one worth answering. Memory is
  bounded by about ``queue_size * max_payload`` in, ``max_pending`` unacknowledged results out.
* **Delivery**: results and errors are published with ``qos`` (default 1, at least once). Paho keeps
  unacknowledged QoS 1 messages across a reconnect and re-sends them; past ``max_pending`` a result
  is dropped and counted in ``publish_failed`` rather than held without limit.
* **Reconnect**: paho's exponential back-off (``reconnect_delay_set``: doubling from ``backoff_min``
  to ``backoff_max``, reset after a good CONNACK). Each bridge draws its starting delay once from
  ``[backoff_min, 1.5 * backoff_min]`` so a fleet that lost the same broker does not come back in
  lockstep. The subscription is renewed in every ``on_connect``: a broker that restarted without
  persistence (or a clean session) has forgotten it. With ``client_id`` and ``session_expiry`` set,
  the broker keeps the session and queues QoS 1 inputs while the bridge is away.
* **The first connection** must succeed within ``connect_timeout`` seconds (same back-off), else
  :class:`BrokerError` says why: a wrong address fails loudly at start instead of retrying silently.
* **Bad payloads** (not JSON, wrong shape or dtype, too big) publish one JSON error on
  ``error_topic`` (``{"error": ..., "type": ..., "id": ..., "topic": ..., "bytes": ...}``) and the
  bridge goes on. An engine failure is reported the same way with ``"status": "error"``.
* **Shutdown** (SIGINT/SIGTERM in :meth:`Bridge.run_forever`): stop taking messages, answer what is
  queued and wait for PUBACKs (up to ``drain_seconds``), publish ``offline`` on ``status_topic``
  (also the broker-sent will), disconnect, return the counters.

Example:
    >>> from edgekit.runtime import load
    >>> cfg = MqttConfig(host="127.0.0.1", port=1883, input_topic="frames/+", output_topic="results")
    >>> cfg.error_topic
    'results/errors'
    >>> Bridge(load("out/"), cfg).run_forever()  # until SIGINT/SIGTERM  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import random
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from edgekit.errors import EdgekitError, InputError, MissingDependencyError
from edgekit.runtime.serve import payload

log = logging.getLogger("edgekit.mqtt")
PROTOCOLS = ("5", "3.1.1")
ENDPOINT = "mqtt"  # the metrics endpoint label
_CTYPES = {payload.JSON_TYPE: "json", payload.NPY_TYPE: "npy", payload.NPZ_TYPE: "npz"}
NPZ_EXPANSION = 4  # an .npz may unpack to this many times max_payload (zip bombs)


class BrokerError(EdgekitError):
    """The MQTT broker cannot be reached, or refused the connection or the subscription."""


class PayloadTooLarge(InputError):
    """A message over ``max_payload`` bytes (refused on arrival, reported on the error topic)."""


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise MissingDependencyError("paho-mqtt", "mqtt", "the MQTT bridge") from None
    return mqtt


def parse_broker(text: str) -> tuple[str, int, bool]:
    """``(host, port, tls)`` from ``host``, ``host:port``, ``[::1]:1883``, ``mqtt://h:p`` or ``mqtts://h``.

    Example:
        >>> parse_broker("broker.local"), parse_broker("mqtts://10.0.0.2"), parse_broker("[::1]:1884")
        (('broker.local', 1883, False), ('10.0.0.2', 8883, True), ('::1', 1884, False))
    """
    rest, tls = str(text).strip(), False
    for scheme, secure in (("mqtt://", False), ("mqtts://", True)):
        if rest.startswith(scheme):
            rest, tls = rest[len(scheme):], secure
    if rest.startswith("["):  # [IPv6]:port
        host, sep, tail = rest[1:].partition("]")
        port = tail[1:] if sep and tail.startswith(":") else "" if sep and not tail else "x"
    elif rest.count(":") == 1:
        host, port = rest.split(":")
        port = port or "x"  # "host:" is a typo, not a request for the default port
    else:  # a plain name, or a bare IPv6 address (no port possible without brackets)
        host, port = rest, ""
    if not host or "/" in host or (port and not port.isdigit()) or (port and not 0 < int(port) < 65536):
        raise InputError(f"broker address {text!r} is not host[:port] (e.g. 127.0.0.1:1883, broker.local, mqtts://host:8883)")
    return host, int(port) if port else (8883 if tls else 1883), tls


def parse_url(url: str) -> tuple[str, int, bool, str]:
    """``(host, port, tls, topic)`` from ``mqtt://host[:port]/topic/path`` (``mqtts://`` for TLS).

    Example:
        >>> parse_url("mqtt://127.0.0.1:1884/plant/results")
        ('127.0.0.1', 1884, False, 'plant/results')
    """
    scheme, sep, rest = str(url).partition("://")
    address, _, topic = rest.partition("/")
    if not sep or scheme not in ("mqtt", "mqtts") or not topic:
        raise InputError(f"{url!r} is not an MQTT URL: write mqtt://host[:port]/topic (mqtts:// for TLS)")
    host, port, tls = parse_broker(f"{scheme}://{address}")
    return host, port, tls, topic


def _check_topic(name: str, topic: str | None, *, wildcards: bool) -> None:
    if topic is None:
        return
    if not topic or "\0" in topic or len(topic.encode()) > 65535:
        raise InputError(f"{name} {topic!r} is not a valid MQTT topic (non-empty UTF-8, no NUL)")
    if not wildcards and ("+" in topic or "#" in topic):
        raise InputError(f"{name} {topic!r} has a wildcard (+ or #); only the input topic may")
    if wildcards and any(("+" in lvl and lvl != "+") or ("#" in lvl and lvl != "#") for lvl in topic.split("/")):
        raise InputError(f"input topic {topic!r}: + and # must fill a whole level (e.g. sensors/+/frame, plant/#)")
    if wildcards and "#" in topic and not topic.endswith("#"):
        raise InputError(f"input topic {topic!r}: # may only be the last level")


def topic_matches(filt: str, topic: str) -> bool:
    """Whether ``topic`` matches the subscription filter ``filt`` (``+`` one level, ``#`` the rest).

    Example:
        >>> topic_matches("sensors/+/frame", "sensors/cam1/frame"), topic_matches("a/#", "b/c")
        (True, False)
    """
    f, t = filt.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


@dataclass(frozen=True)
class MqttConfig:
    """Where the broker is, which topics, and the limits (checked here, not at the first message).

    Attributes:
        host, port: The broker. ``tls`` switches on TLS (system CAs unless ``ca_certs``).
        input_topic: Filter to subscribe to (``+``/``#`` allowed); ``None`` for a publish-only connection.
        output_topic: Where results go (a v5 Response Topic on the request overrides it).
        error_topic: Where bad-payload reports go; default ``<output_topic>/errors``.
        status_topic: If set, ``online``/``offline`` (retained; ``offline`` is also the will).
        client_id: Default ``edgekit-<hostname>-<random>``; set it for a persistent session.
        qos: For the subscription and every publish (1: at least once).
        keepalive: Seconds between pings when idle; the broker drops us after 1.5x that of silence.
        queue_size: Messages waiting for the inference thread (drop-oldest past it).
        max_payload: Largest payload in bytes; bigger ones are refused with an error report.
        max_pending: Published messages not yet acknowledged that paho may hold (e.g. while offline).
        backoff_min, backoff_max: Reconnect delay bounds in seconds (doubling in between).
        connect_timeout: Seconds the first connection may take (0: retry forever).
        session_expiry: Seconds the broker keeps our session after we disconnect (0: clean session).
        protocol: ``"5"`` or ``"3.1.1"``.
        drain_seconds: At shutdown, how long to answer queued messages and wait for PUBACKs.

    Example:
        >>> MqttConfig(input_topic="in", output_topic="out", qos=3)
        Traceback (most recent call last):
        ...
        edgekit.errors.InputError: qos must be 0, 1 or 2, got 3
    """

    host: str = "127.0.0.1"
    port: int = 1883
    input_topic: str | None = None
    output_topic: str | None = None
    error_topic: str | None = None
    status_topic: str | None = None
    client_id: str | None = None
    qos: int = 1
    keepalive: int = 60
    queue_size: int = 32
    max_payload: int = 1 << 20
    max_pending: int = 1000
    backoff_min: float = 1.0
    backoff_max: float = 60.0
    connect_timeout: float = 30.0
    session_expiry: int = 0
    protocol: str = "5"
    tls: bool = False
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    tls_insecure: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in logs or reprs
    drain_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not self.host or not 0 < self.port < 65536:
            raise InputError(f"broker {self.host!r}:{self.port} is not a host and a port in 1..65535")
        if self.qos not in (0, 1, 2):
            raise InputError(f"qos must be 0, 1 or 2, got {self.qos}")
        if self.protocol not in PROTOCOLS:
            raise InputError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        for name in ("keepalive", "queue_size", "max_payload", "max_pending"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.backoff_min <= self.backoff_max:
            raise InputError(f"back-off must satisfy 0 < min <= max, got min {self.backoff_min}, max {self.backoff_max}")
        if self.connect_timeout < 0 or self.session_expiry < 0 or self.drain_seconds < 0:
            raise InputError("connect_timeout, session_expiry and drain_seconds must be >= 0")
        if self.session_expiry and not self.client_id:
            raise InputError("a persistent session (session_expiry > 0) needs a fixed client_id: the broker finds the session by it")
        if (self.certfile or self.keyfile or self.ca_certs or self.tls_insecure) and not self.tls:
            raise InputError("ca_certs/certfile/keyfile/tls_insecure need tls=True (or an mqtts:// broker)")
        if self.password is not None and not self.username:
            raise InputError("a password needs a username")
        if self.output_topic and self.error_topic is None:
            object.__setattr__(self, "error_topic", f"{self.output_topic}/errors")
        _check_topic("input topic", self.input_topic, wildcards=True)
        for name in ("output_topic", "error_topic", "status_topic"):
            _check_topic(name.replace("_", " "), getattr(self, name), wildcards=False)
            # A bridge that consumes its own results would loop forever.
            if self.input_topic and getattr(self, name) and topic_matches(self.input_topic, getattr(self, name)):
                raise InputError(f"{name.replace('_', ' ')} {getattr(self, name)!r} matches the input topic {self.input_topic!r}: the bridge would answer its own messages")

    @property
    def broker(self) -> str:
        """``mqtt://host:port`` (``mqtts://`` with TLS), for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


@dataclass
class Inbound:
    """One received message as the inference thread sees it (``error`` set if refused on arrival)."""

    topic: str
    payload: bytes
    size: int
    received: float  # time.monotonic()
    correlation: bytes | None = None
    response_topic: str | None = None
    content_type: str | None = None
    error: str | None = None

    @property
    def correlation_text(self) -> str | None:
        """Correlation Data as text (hex if it is not UTF-8)."""
        if self.correlation is None:
            return None
        try:
            return self.correlation.decode("utf-8")
        except UnicodeDecodeError:
            return self.correlation.hex()


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
            bounded: when it is full the oldest entry is dropped (see the module docstring).

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


def payload_kind(data: bytes, content_type: str | None = None) -> str:
    """``"json"``, ``"npy"`` or ``"npz"``: the v5 Content Type if it names one, else the first bytes.

    Example:
        >>> payload_kind(b"\\x93NUMPY..."), payload_kind(b'{"inputs": []}'), payload_kind(b"x", "application/x-npz")
        ('npy', 'json', 'npz')
    """
    kind = _CTYPES.get((content_type or "").split(";")[0].strip().lower())
    if kind:
        return kind
    return "npy" if data[:6] == b"\x93NUMPY" else "npz" if data[:2] == b"PK" else "json"


def parse_payload(data: bytes, *, content_type: str | None = None, max_unpacked: int = 64 << 20) -> tuple[Any, Any]:
    """``(id, (kind, value))``: the JSON document and its ``"id"``, or the ``.npy`` / ``.npz`` arrays.

    Split from :func:`to_feeds` so an error report can name the ``id`` even when the inputs are bad.

    Raises:
        InputError: empty, not JSON / NPY / NPZ, or an ``.npz`` that unpacks past ``max_unpacked``.

    Example:
        >>> parse_payload(b'{"id": "cam-1/7", "inputs": [[1.0]]}')
        ('cam-1/7', ('json', {'id': 'cam-1/7', 'inputs': [[1.0]]}))
    """
    if not data:
        raise InputError("payload is empty: send JSON ({\"inputs\": ...}), .npy or .npz bytes")
    kind = payload_kind(data, content_type)
    if kind == "npy":
        return None, (kind, payload.load_npy(data, what="payload"))
    if kind == "npz":
        return None, (kind, payload.load_npz(data, max_unpacked, what="payload"))
    doc = payload.parse_json(data, what="payload")
    ident = doc.get("id") if isinstance(doc, dict) else None
    # Echo scalar ids as sent; anything else (a list, an object) as its JSON text.
    if not (ident is None or isinstance(ident, (str, int, float))):
        ident = json.dumps(ident)
    return ident, (kind, doc)


def to_feeds(parsed: Any, session: Any) -> Any:
    """Feeds for ``session.run`` from :func:`parse_payload`'s ``parsed`` (JSON numbers cast as serve does).

    Example:
        >>> to_feeds(parse_payload(b'[[1.0, 2.0]]')[1], load("model.tflite"))["x"]  # doctest: +SKIP
        array([[1., 2.]], dtype=float32)
    """
    kind, value = parsed
    if kind == "json":
        return payload.feeds_from_json(value, session.inputs, quantize_io=session.quantize_io)
    return payload.feeds_from_arrays(value, session.inputs)




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


__all__ = ["Bridge", "BrokerError", "Connection", "Inbound", "MqttConfig", "PayloadTooLarge", "parse_broker",
           "parse_payload", "parse_url", "payload_kind", "to_feeds", "topic_matches"]
