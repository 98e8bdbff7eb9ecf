"""Open connections of ``edgekit serve``: what each one is doing, its deadline, who makes room.

Each connection is in one phase: ``idle`` (waiting for a request), ``headers`` (a request has
begun), ``body`` (headers in, body arriving), ``busy`` (the server is working on it) or
``finishing`` (writing the answer; idle or closed a moment later). A connection costs a thread, so slots are bounded (``max_connections``, and per
client address), but a slot held by a socket that has not sent a whole request is not work:
when a new connection finds the table full, the table closes an idle one first, then the one
that has been sending headers longest, then the slowest body, preferring the address that holds
the most. Only when every slot is busy is the newcomer refused (503), after a short grace if some slot is
finishing: a client that reads its answer and reconnects at once must not find its own last
connection still counted (that race made a one-slot test flaky). So 64 sockets trickling
headers cannot lock out a client that sends a request; they lose their slots instead.

Deadlines are totals, not per-``recv`` timeouts: :class:`DeadlineReader` sets the socket timeout
to what is left of the connection's deadline before every ``recv``, so a client sending one byte
a second is cut off at ``request_timeout`` like one that sends nothing.

Example:
    >>> table = ConnectionTable(max_connections=2, per_client=2)
    >>> a, _, _ = table.admit("sock-a", "10.0.0.1", idle_timeout=5)
    >>> b, _, _ = table.admit("sock-b", "10.0.0.1", idle_timeout=5)
    >>> table.claim(b)  # b has a whole request: it is working now
    True
    >>> c, victim, why = table.admit("sock-c", "10.0.0.2", idle_timeout=5)
    >>> victim is a and a.evicted and c is not None  # idle a made room for c
    True
    >>> table.claim(a)  # a closed connection never starts work
    False
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections import Counter
from typing import Any, Callable

IDLE, HEADERS, BODY, BUSY, FINISHING = "idle", "headers", "body", "busy", "finishing"
_EVICT_ORDER = {IDLE: 0, HEADERS: 1, BODY: 2}  # busy and finishing connections are never closed to make room
FINISH_GRACE = 0.5  # seconds a newcomer waits for a finishing connection before a 503


class Connection:
    """One open connection's phase and deadline (the handler moves it along; the table reads it).

    Attributes:
        sock: The connection's socket.
        host: The client address (the per-client limit's key).
        phase: ``idle``, ``headers``, ``body``, ``busy`` or ``finishing``.
        since: ``time.monotonic()`` when the current phase began.
        deadline: ``time.monotonic()`` by which the current wait must end.
        evicted: Set (under the table's lock) once the table closed it to make room.
    """

    __slots__ = ("sock", "host", "phase", "since", "deadline", "evicted")

    def __init__(self, sock: Any, host: str, idle_timeout: float) -> None:
        self.sock, self.host, self.evicted = sock, host, False
        self.idle(idle_timeout)

    def idle(self, idle_timeout: float) -> None:
        """Wait for the next request (at most ``idle_timeout`` seconds)."""
        self.phase, self.since = IDLE, time.monotonic()
        self.deadline = self.since + idle_timeout

    def begin(self, request_timeout: float) -> None:
        """A request's first byte arrived: the whole request must be in within ``request_timeout``."""
        self.phase, self.since = HEADERS, time.monotonic()
        self.deadline = self.since + request_timeout


class ConnectionTable:
    """Admits connections within the global and per-client limits, making room by eviction.

    Args:
        max_connections: Connections open at once (each has a thread).
        per_client: Connections one client address may hold.
    """

    def __init__(self, max_connections: int, per_client: int, grace: float = FINISH_GRACE) -> None:
        self.max_connections, self.per_client, self.grace = max_connections, per_client, grace
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a connection went idle or closed
        # Evicted connections stay listed (not counted) until their thread ends and releases them.
        self._open: dict[Any, Connection] = {}

    def admit(self, sock: Any, host: str, idle_timeout: float, *, per_client: bool = True
              ) -> tuple[Connection | None, Connection | None, str]:
        """``(connection, victim, why)``: the new connection (``None`` if refused, ``why`` says why)
        and the one to close to make room for it (``None`` if there was room). The caller closes
        the victim with :meth:`close`. ``per_client=False`` skips the per-address limit for this one."""
        until = time.monotonic() + self.grace
        with self._lock:
            while True:
                live = [c for c in self._open.values() if not c.evicted]
                mine = [c for c in live if c.host == host] if per_client else []
                victim, why = None, ""
                if per_client and len(mine) >= self.per_client:
                    pool = mine
                    why = (f"too many connections from {host} ({self.per_client}, all busy; "
                           "edgekit serve --max-connections-per-client), retry later")
                elif len(live) >= self.max_connections:
                    pool = live
                    why = "server busy: too many open connections, all busy (edgekit serve --max-connections), retry later"
                if why:
                    victim = self._victim(pool)
                    if victim is None:
                        left = until - time.monotonic()
                        if left > 0 and any(c.phase == FINISHING for c in pool):
                            self._changed.wait(left)  # one is writing its last bytes: it frees a slot in a moment
                            continue
                        return None, None, why
                    victim.evicted = True
                conn = self._open[sock] = Connection(sock, host, idle_timeout)
                return conn, victim, ""

    @staticmethod
    def _victim(conns: list[Connection]) -> Connection | None:
        candidates = [c for c in conns if c.phase in _EVICT_ORDER]
        if not candidates:
            return None
        per_host = Counter(c.host for c in conns)
        return min(candidates, key=lambda c: (_EVICT_ORDER[c.phase], -per_host[c.host], c.since))

    @staticmethod
    def close(conn: Connection) -> None:
        """Wake the victim's thread: its blocked ``recv`` returns end-of-file and the thread ends."""
        try:
            conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by its client

    def get(self, sock: Any) -> Connection | None:
        with self._lock:
            return self._open.get(sock)

    def release(self, sock: Any) -> None:
        """The connection's thread ended: free its slot (evicted ones were uncounted already)."""
        with self._lock:
            self._open.pop(sock, None)
            self._changed.notify_all()

    def claim(self, conn: Connection) -> bool:
        """Mark ``conn`` busy (no longer evictable); ``False`` if it was evicted first."""
        with self._lock:
            if conn.evicted:
                return False
            if conn.phase != FINISHING:
                conn.phase, conn.since = BUSY, time.monotonic()
            return True

    def finishing(self, conn: Connection) -> None:
        """``conn`` is writing its answer: a newcomer finding no room waits a moment for it."""
        with self._lock:
            conn.phase = FINISHING

    def idle(self, conn: Connection, idle_timeout: float) -> None:
        """``conn`` answered and waits for its next request (evictable again)."""
        with self._lock:
            conn.idle(idle_timeout)
            self._changed.notify_all()

    def counts(self) -> dict[str, int]:
        """Open (counted) connections by phase, and in all.

        Example:
            >>> ConnectionTable(4, 4).counts()
            {'open': 0, 'idle': 0, 'headers': 0, 'body': 0, 'busy': 0, 'finishing': 0}
        """
        with self._lock:
            live = [c.phase for c in self._open.values() if not c.evicted]
        by = Counter(live)
        return {"open": len(live), **{p: by.get(p, 0) for p in (IDLE, HEADERS, BODY, BUSY, FINISHING)}}


class DeadlineReader(io.RawIOBase):
    """A socket's read side that enforces its :class:`Connection`'s deadline as a total.

    Before each ``recv`` the socket timeout is set to what is left of ``conn.deadline``; past it,
    ``TimeoutError``. The first byte of a request moves the connection from ``idle`` to
    ``headers`` with a fresh ``request_timeout`` deadline. An evicted connection reads as closed.

    Args:
        sock: The connection's socket.
        conn: Its entry in the table.
        request_timeout: Seconds a request may take to arrive, from its first byte.
        on_timeout: Called once a started request (not an idle wait) runs out of time.
    """

    def __init__(self, sock: socket.socket, conn: Connection, request_timeout: float,
                 on_timeout: Callable[[], None] = lambda: None) -> None:
        super().__init__()
        self.sock, self.conn, self.request_timeout, self.on_timeout = sock, conn, request_timeout, on_timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        conn = self.conn
        if conn.evicted:
            return 0
        left = conn.deadline - time.monotonic()
        if left <= 0:
            self._expired()
        self.sock.settimeout(left)
        try:
            n = self.sock.recv_into(buffer)
        except TimeoutError:
            self._expired()
        except OSError:
            if conn.evicted:
                return 0
            raise
        if n and conn.phase == IDLE:
            conn.begin(self.request_timeout)
        return n

    def _expired(self) -> None:
        if self.conn.phase in (HEADERS, BODY):
            self.on_timeout()
            raise TimeoutError(f"request not received within {self.request_timeout:g} s")
        raise TimeoutError("idle keep-alive connection timed out")
