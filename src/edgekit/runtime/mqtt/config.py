"""What an MQTT bridge connects to and its limits: :class:`MqttConfig`, broker addresses, topic rules.

Everything is checked when the config is built, so a typo fails at start, not at the first message.

Example:
    >>> cfg = MqttConfig(host="broker.local", input_topic="sensors/+/frame", output_topic="results")
    >>> cfg.broker, cfg.error_topic
    ('mqtt://broker.local:1883', 'results/errors')
    >>> topic_matches(cfg.input_topic, "sensors/cam1/frame")
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgekit.errors import InputError

PROTOCOLS = ("5", "3.1.1")


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
