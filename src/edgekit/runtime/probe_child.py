"""The probe's child process: ``python -m edgekit.runtime.probe_child BACKEND FORMAT [MODEL]``.

Runs what ``load()`` would, one step at a time, printing a ``MARK stage ...`` line before each
(import, open, run) so that when the engine kills this process the parent knows where, and one
``MARK result {json}`` line at the end. ``BACKEND`` is the format's ``"module:Class"`` (a plug-in's
too: the parent passes its ``sys.path``). See :mod:`edgekit.runtime.probe`.

Example:
    >>> from edgekit.runtime.probe import BUNDLED
    >>> _ = child("edgekit.runtime.backends.litert:LiteRTBackend", "tflite", str(BUNDLED["tflite"]))  # doctest: +ELLIPSIS
    EDGEKIT-PROBE stage import
    ...
    EDGEKIT-PROBE result {"status": "runs"}
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.formats import FORMATS
from edgekit.runtime.probe import AVAILABLE, ERROR, MARK, RUNS, UNAVAILABLE, install_for


def child(backend: str, fmt: str, model: str) -> int:
    """Availability, then open ``model`` and run it once on ones; marks each stage; 0 unless killed."""

    def mark(what: str) -> None:
        print(f"{MARK} {what}", flush=True)

    def done(status: str, **extra: Any) -> int:
        mark("result " + json.dumps({"status": status, **extra}))
        return 0

    mark("stage import")
    import numpy as np

    from edgekit.registry import load_attr

    b = load_attr(backend)()
    err = b.unavailable()
    if err is not None:
        return done(UNAVAILABLE, reason=str(err), install=install_for(FORMATS.get(fmt) or _NoSpec(), err))
    hook = getattr(b, "probe_model", None)
    path = hook() if callable(hook) else (model or None)
    if not path:
        return done(AVAILABLE)
    mark("stage open")
    try:
        eng = b.open(Path(path))
        mark("stage run")
        feeds = [np.ones([d or 1 for d in s.shape], np.dtype(s.dtype)) for s in eng.inputs]
        eng.run(feeds)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        return done(ERROR, reason=f"{type(exc).__name__}: {exc}")
    return done(RUNS)


@dataclass(frozen=True)
class _NoSpec:
    install: str | None = None
    install_hint: str = "see `edgekit doctor`"


if __name__ == "__main__":
    sys.exit(child(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""))
