"""``edgekit serve --reload``: pick up a new output folder atomically, or keep serving the old one.

A :class:`Reloader` polls the served folder (the manifest and the files next to it: name, size,
mtime) every ``interval`` seconds. Once a change has settled (the same for two polls in a row, so
a folder still being copied is not loaded half-written), it loads the folder in the background
with the same options as at start, *verified* against the manifest, and swaps the new Session in
whole (:meth:`InferenceServer.swap`). A folder that fails to load keeps the old Session serving;
the failure is logged once per change, counted in /healthz (``reload_errors``) and shown there
(``reload_error``) until a later reload succeeds.

Example:
    >>> reloader = Reloader(server, "out/", lambda: load("out/"), interval=2.0)  # doctest: +SKIP
    >>> reloader.start()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable

from edgekit.errors import EdgekitError
from edgekit.runtime.session import Session

log = logging.getLogger("edgekit.serve")


def signature(path: str | os.PathLike[str]) -> tuple[Any, ...]:
    """What changes when a folder (or a model file) is replaced: each file's name, size and mtime.

    Example:
        >>> signature("/nonexistent/folder")
        ()
    """
    p = Path(path)
    try:
        if not p.is_dir():
            st = p.stat()
            return ((p.name, st.st_size, st.st_mtime_ns, st.st_ino),)
        out = []
        with os.scandir(p) as entries:
            for e in entries:
                try:
                    st = e.stat()
                except OSError:
                    continue  # removed while listing: the next poll sees the settled state
                out.append((e.name, st.st_size, st.st_mtime_ns, st.st_ino))
        return tuple(sorted(out))
    except OSError:
        return ()


class Reloader:
    """Poll ``path`` and swap a freshly loaded, verified Session into ``server`` when it changes.

    Args:
        server: What to swap into (an :class:`~edgekit.runtime.serve.InferenceServer`: ``swap``,
            ``stats``, ``reload_error``).
        path: The served folder (or model file).
        load: Loads ``path`` as at start (same target, threads, choice; verified).
        interval: Seconds between polls.
        notify: Where the one line per reload (or failed reload) goes (default: the ``edgekit.serve`` log).
    """

    def __init__(self, server: Any, path: str | os.PathLike[str], load: Callable[[], Session], interval: float = 2.0,
                 notify: Callable[[str], None] | None = None) -> None:
        self.server, self.path, self.load, self.interval = server, Path(path), load, interval
        self.notify = notify or log.warning
        self._seen = signature(self.path)  # what is being served now
        self._pending: tuple[Any, ...] | None = None
        self._failed: tuple[Any, ...] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="edgekit-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> bool:
        """One poll; ``True`` if it swapped a new Session in."""
        sig = signature(self.path)
        if sig == self._seen or sig == self._failed or not sig:
            self._pending = None
            return False
        if sig != self._pending:  # changed since the last poll: wait until it settles
            self._pending = sig
            return False
        self._pending = None
        try:
            session = self.load()
        except (EdgekitError, OSError, ValueError, MemoryError) as exc:
            self._failed = sig
            why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            self.server.reload_error = why
            self.server.stats.count("reload_errors")
            self.notify(f"reload of {self.path} failed, still serving the previous model: {why}")
            return False
        if signature(self.path) != sig:  # changed again while loading: load the settled state next
            return False
        self.server.swap(session)
        self._seen, self._failed = sig, None
        self.server.stats.count("reloads")
        meta = self.server.meta
        self.notify(f"reloaded {self.path}: now serving {meta['target']} (sha256 {(meta.get('sha256') or '?')[:12]})")
        return True
