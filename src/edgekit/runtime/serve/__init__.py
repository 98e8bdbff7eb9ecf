"""``edgekit serve``: a small HTTP inference server, and the payload codecs apps share with it.

* :mod:`.server`: the server that owns a Session (:func:`serve`, :func:`make_server`, shutdown)
* :mod:`.handler`: one connection: routing, body limits, JSON errors
* :mod:`.access`: the bearer token and the Host check (DNS rebinding)
* :mod:`.limits`: :class:`ServeLimits`, what one request and one client may cost
* :mod:`.connections`: connection phases, total deadlines, eviction when full
* :mod:`.reload`: ``--reload``, swapping in a changed, verified folder
* :mod:`.state`: what the handler needs from the server, and the request counters
* :mod:`.payload`: JSON / ``.npy`` / ``.npz`` to feeds and outputs back, header-checked before
  allocating (also for embedding apps)

Imports run one way: server -> handler, reload -> access, connections, limits, state, payload.

Example:
    >>> parse_size("16MiB")
    16777216
    >>> server = make_server(load("out/"), port=0)  # doctest: +SKIP
"""

from __future__ import annotations

from edgekit.runtime.serve import payload
from edgekit.runtime.serve.limits import ServeLimits, model_max_batch
from edgekit.runtime.serve.server import (DEFAULT_MAX_BODY, InferenceServer, make_server, metadata, parse_size,
                                          run_until_stopped, serve)

__all__ = ["DEFAULT_MAX_BODY", "InferenceServer", "ServeLimits", "make_server", "metadata", "model_max_batch",
           "parse_size", "payload", "run_until_stopped", "serve"]
