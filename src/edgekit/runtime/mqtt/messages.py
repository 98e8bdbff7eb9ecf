"""One MQTT message in (:class:`Inbound`) and its payload decoded into feeds.

Payloads are the ones ``edgekit serve`` takes (JSON, ``.npy``, ``.npz``); the codecs are
:mod:`edgekit.runtime.serve.payload`'s, so both front ends accept and refuse the same bytes.

Example:
    >>> ident, parsed = parse_payload(b'{"id": 7, "inputs": [[0.5]]}')
    >>> ident, parsed[0]
    (7, 'json')
    >>> Inbound(topic="t", payload=b"", size=0, received=0.0, correlation=b"\\xff").correlation_text
    'ff'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edgekit.errors import InputError
from edgekit.runtime.serve import payload

_CTYPES = {payload.JSON_TYPE: "json", payload.NPY_TYPE: "npy", payload.NPZ_TYPE: "npz"}
NPZ_EXPANSION = 4  # an .npz may unpack to this many times max_payload (zip bombs)


class PayloadTooLarge(InputError):
    """A message over ``max_payload`` bytes (refused on arrival, reported on the error topic)."""


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


def to_feeds(parsed: Any, session: Any, *, allow_nonfinite: bool = False) -> Any:
    """Feeds for ``session.run`` from :func:`parse_payload`'s ``parsed`` (JSON numbers cast as serve does).

    NaN and infinities are refused unless ``allow_nonfinite``, as serve refuses them: an int8 model
    would quantize them to some integer and publish a plausible answer.

    Example:
        >>> to_feeds(parse_payload(b'[[1.0, 2.0]]')[1], load("model.tflite"))["x"]  # doctest: +SKIP
        array([[1., 2.]], dtype=float32)
    """
    kind, value = parsed
    if kind == "json":
        feeds = payload.feeds_from_json(value, session.inputs, quantize_io=session.quantize_io)
    else:
        feeds = payload.feeds_from_arrays(value, session.inputs)
    if not allow_nonfinite:
        named = feeds if isinstance(feeds, dict) or len(session.inputs) != 1 else {session.inputs[0].name: feeds}
        payload.check_finite(named)
    return feeds
