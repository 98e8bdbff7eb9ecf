"""What one request and one client may cost ``edgekit serve``: bytes, batch, connections, time.

A body limit alone does not bound the work: 31 KB of compressed ``.npz`` can declare a batch of
500,000 and grow the engine by gigabytes, 1 MB of JSON costs ~40 MB to parse, and 64 sockets that
never finish their headers can hold every connection slot. :class:`ServeLimits` holds each limit
once; the handler checks them before the work they bound (headers before arrays are allocated,
the JSON cap before the body is read), and every refusal names the flag that raises it.

Example:
    >>> limits = ServeLimits(max_connections=64)
    >>> limits.per_client, limits.max_json_body
    (16, 1048576)
    >>> ServeLimits(request_timeout=0)
    Traceback (most recent call last):
    ...
    edgekit.errors.InputError: request_timeout must be > 0 seconds (got 0)
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.errors import InputError
from edgekit.runtime.session import OPAQUE_ACTIVATION_FACTOR

DEFAULT_MAX_BODY = 16 << 20
DEFAULT_MAX_JSON_BODY = 1 << 20  # JSON costs ~40x its size to parse into Python lists
DEFAULT_MAX_DECODED = 64 << 20  # arrays after decoding (.npy/.npz), across all inputs of a request
BATCH_BUDGET = 256 << 20  # engine bytes one request may make the interpreter allocate
MAX_BATCH_CAP = 4096


@dataclass(frozen=True)
class ServeLimits:
    """Per-request and per-connection limits of ``edgekit serve`` (each one a CLI flag).

    Attributes:
        max_body: Largest request body in bytes (413 above it; ``--max-body``).
        max_json_body: Largest JSON body (413; ``--max-json-body``): JSON costs ~40x its size to parse.
        max_decoded: Bytes of all input arrays after decoding a ``.npy``/``.npz`` body, checked on
            their headers before anything is allocated (413; ``--max-decoded``).
        max_batch: Samples per request (413; ``--max-batch``); ``None`` sizes it from the model
            (:func:`model_max_batch`).
        max_connections: Connections served at once. When full, the idle or slowest-to-send
            connection is closed to make room; only when all are busy does a new one get 503.
        max_connections_per_client: The same per client address. ``None``: ``max_connections // 4``
            for remote addresses only: loopback clients all share one address (a load test, a local
            app and a reverse proxy would crowd each other out), so ``max_connections`` bounds
            them. Set explicitly, it applies to every address.
        request_timeout: Seconds from a request's first byte to its last (headers and body); a
            client that trickles bytes is cut off at this deadline, not per ``recv``.
        idle_timeout: Seconds a keep-alive connection may wait for its next request.
        allow_nonfinite: Accept NaN/Infinity in float inputs (refused by default: an int8 model
            quantizes NaN to a number and answers plausibly).
        token: Bearer token required on every endpoint but ``/healthz`` (``None``: no authentication).
        allowed_hosts: Host names accepted besides the loopback names when bound to loopback.
        check_host: Refuse other Host headers when bound to loopback (DNS rebinding).
    """

    max_body: int = DEFAULT_MAX_BODY
    max_json_body: int = DEFAULT_MAX_JSON_BODY
    max_decoded: int = DEFAULT_MAX_DECODED
    max_batch: int | None = None
    max_connections: int = 64
    max_connections_per_client: int | None = None
    request_timeout: float = 10.0
    idle_timeout: float = 5.0
    allow_nonfinite: bool = False
    token: str | None = field(default=None, repr=False)  # never printed
    allowed_hosts: tuple[str, ...] = ()
    check_host: bool = True

    def __post_init__(self) -> None:
        for name in ("max_body", "max_json_body", "max_decoded", "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a whole number >= 1 (got {value!r})")
        for name in ("max_batch", "max_connections_per_client"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(f"{name} must be a whole number >= 1, or None for the default (got {value!r})")
        for name in ("request_timeout", "idle_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise InputError(f"{name} must be > 0 seconds (got {value!r})")
        if self.token is not None and (not self.token or not self.token.isascii() or not self.token.isprintable()
                                       or " " in self.token):
            raise InputError("token must be non-empty printable ASCII without spaces (it travels in an HTTP header)")
        object.__setattr__(self, "allowed_hosts", tuple(h.lower().rstrip(".") for h in self.allowed_hosts))

    @property
    def per_client(self) -> int:
        """Connections one client address may hold (``max_connections // 4`` unless set)."""
        return self.max_connections_per_client or max(1, self.max_connections // 4)

    def caps(self, host: str) -> bool:
        """Whether the per-client limit applies to connections from ``host`` (see the attribute).

        Example:
            >>> ServeLimits().caps("10.0.0.7"), ServeLimits().caps("127.0.0.1"), ServeLimits(max_connections_per_client=8).caps("::1")
            (True, False, True)
        """
        if self.max_connections_per_client is not None:
            return True
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return True
        ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:127.0.0.1 on a dual-stack socket
        return not ip.is_loopback

    def batch_limit(self, session: Any) -> int:
        """``max_batch`` if set, else :func:`model_max_batch` for ``session``."""
        return self.max_batch if self.max_batch is not None else model_max_batch(session)

    def to_dict(self) -> dict[str, Any]:
        """The limits as /metadata shows them (the token only as whether one is required).

        Example:
            >>> ServeLimits(token="s3cret").to_dict()["auth"]
            'bearer'
        """
        return {"max_body": self.max_body, "max_json_body": self.max_json_body, "max_decoded": self.max_decoded,
                "max_connections": self.max_connections, "max_connections_per_client": self.per_client,
                "request_timeout_s": self.request_timeout, "idle_timeout_s": self.idle_timeout,
                "allow_nonfinite": self.allow_nonfinite, "auth": "bearer" if self.token else None}


def model_max_batch(session: Any, budget: int = BATCH_BUDGET) -> int:
    """Samples per request that keep the engine within ``budget`` bytes, clamped to [1, 4096].

    Uses ``session.sample_bytes`` (engine tensor bytes per sample) where the Session knows it, else
    the input bytes per sample times :data:`edgekit.runtime.session.OPAQUE_ACTIVATION_FACTOR`.
    Dynamic dimensions other than the batch count as 1 (the decoded-bytes limit bounds them).

    Example:
        >>> from types import SimpleNamespace
        >>> from edgekit.manifest import TensorSpec
        >>> digits = SimpleNamespace(inputs=(TensorSpec("image", (None, 8, 8, 1), "int8"),))
        >>> model_max_batch(digits), model_max_batch(digits, budget=64 << 10)
        (4096, 32)
    """
    per = getattr(session, "sample_bytes", None)
    if not isinstance(per, int) or isinstance(per, bool) or per < 1:
        per = OPAQUE_ACTIVATION_FACTOR * sum(math.prod(d or 1 for d in spec.shape[1:]) * np.dtype(spec.dtype).itemsize
                                             for spec in session.inputs)
    return max(1, min(MAX_BATCH_CAP, budget // max(1, per)))
