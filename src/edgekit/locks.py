"""An advisory lock file, so processes that fill one cache entry (two ``edgekit convert`` runs, test
workers) wait for the first instead of doing the same work twice.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "entry"
    >>> with file_lock(path):
    ...     _ = path.write_text("built once")
    >>> path.read_text()
    'built once'
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent fills then only cost time (writes are atomic)
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (created beside ``path``) for the ``with`` block.

    The lock is released when the block ends or the process dies (flock), so a killed run never
    leaves a stale lock behind. The lock file itself is left in place: deleting it would let a
    waiter and a newcomer lock different files.
    """
    lock = Path(f"{os.fspath(path)}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
