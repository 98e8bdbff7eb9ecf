"""Reading files we did not write: regular files only, read once, with a size cap.

A manifest, a model or an eval set may be a FIFO (reading it blocks forever), a device
(``/dev/zero`` never ends), a socket, or a symlink to one of those. Everything here checks with
``stat`` that the path is a regular file *before* opening it, opens it with ``O_NONBLOCK`` (so a
FIFO swapped in between the check and the open cannot block), checks the opened descriptor again
and reads at most the size it reports. Errors are one line, of the type the caller asks for,
naming the file.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
    >>> _ = p.write_bytes(b"hello")
    >>> read_regular(p, max_bytes=1 << 20)
    b'hello'
    >>> read_regular(p, max_bytes=3)
    Traceback (most recent call last):
    ...
    edgekit.errors.ModelError: a.bin is 5 bytes, over the 3-byte limit for a file
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edgekit.errors import EdgekitError, ModelError

# What a path can be instead of a regular file, for the messages.
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path: str | os.PathLike[str], *, what: str = "file",
                  error: type[EdgekitError] = ModelError) -> os.stat_result:
    """``os.stat`` of ``path`` (links followed) if it is a regular file, else ``error`` saying what it is.

    Args:
        path: The file.
        what: What the file is, for the message (``"artifact"``, ``"eval data"`` ...).
        error: The exception type to raise.

    Example:
        >>> check_regular("/dev/null", what="artifact")
        Traceback (most recent call last):
        ...
        edgekit.errors.ModelError: artifact /dev/null is a character device, not a regular file: refusing to read it
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {path} is {_kind(st.st_mode)}, not a regular file: refusing to read it")
    return st


def read_regular(path: str | os.PathLike[str], *, max_bytes: int, what: str = "file",
                 error: type[EdgekitError] = ModelError) -> bytes:
    """The whole content of the regular file ``path``, read once, refusing anything over ``max_bytes``.

    The size is checked on the opened descriptor before anything is read, so a huge file costs
    nothing; a file that grows while being read is cut at the size it had when opened (a caller
    that verifies a digest then sees a mismatch, not a half-read file that passes).

    Args:
        path: The file.
        max_bytes: The most bytes to accept.
        what: What the file is, for the messages.
        error: The exception type to raise.

    Raises:
        ``error``: missing, not a regular file (FIFO, device, socket, folder), too large, unreadable.

    Example:
        >>> read_regular("/dev/zero", max_bytes=10, what="model")
        Traceback (most recent call last):
        ...
        edgekit.errors.ModelError: model /dev/zero is a character device, not a regular file: refusing to read it
    """
    check_regular(path, what=what, error=error)
    name = Path(path).name
    try:
        # O_NONBLOCK: should the path have become a FIFO since the check, open() must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"cannot open {what} {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between stat() and open()
            raise error(f"{what} {path} is {_kind(st.st_mode)}, not a regular file: refusing to read it")
        if st.st_size > max_bytes:
            raise error(f"{name} is {st.st_size} bytes, over the {max_bytes}-byte limit for a {what}")
        chunks, left = [], st.st_size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:  # truncated while we read: what we have is what the digest will judge
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


__all__ = ["check_regular", "read_regular"]
