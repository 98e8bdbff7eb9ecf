"""Who may ask ``edgekit serve``: the bearer token and the Host check (DNS rebinding).

Example:
    >>> bearer_ok("Bearer s3cret", "s3cret"), bearer_ok("Bearer guess", "s3cret"), bearer_ok(None, "s3cret")
    (True, False, False)
"""

from __future__ import annotations

import hmac
import ipaddress


def bearer_ok(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` as a bearer token (constant-time compare).

    Example:
        >>> bearer_ok("bearer  s3cret ", "s3cret")
        True
    """
    scheme, _, given = (header or "").strip().partition(" ")
    # compare_digest takes as long whatever the first wrong byte: the token cannot be guessed by timing.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def host_name(value: str) -> str | None:
    """The name in a Host header, lower-cased, port and trailing dot dropped; ``None`` if malformed.

    Example:
        >>> host_name("LocalHost:8080"), host_name("[::1]:80"), host_name("127.0.0.1"), host_name("a:b:c")
        ('localhost', '::1', '127.0.0.1', None)
    """
    v = value.strip().lower()
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return None
        name, rest = v[1:end], v[end + 1:]
    else:
        name, colon, port = v.partition(":")
        rest = colon + port
    if rest and not (rest[0] == ":" and rest[1:].isascii() and rest[1:].isdigit()):
        return None
    return name.rstrip(".")


def is_loopback_name(name: str) -> bool:
    """Whether a host name can only mean this machine: ``localhost`` (and ``*.localhost``) or a loopback IP.

    Example:
        >>> [is_loopback_name(n) for n in ("localhost", "app.localhost", "127.0.0.2", "::1", "evil.example")]
        [True, True, True, True, False]
    """
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
