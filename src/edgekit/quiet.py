"""Keep engines' start-up noise out of the user's terminal.

TensorFlow, the TFLite converter and LiteRT print to the C-level stdout/stderr (file descriptors 1
and 2), where Python's ``contextlib.redirect_*`` cannot reach. :func:`captured_output` redirects the
descriptors themselves into a temporary file and hands the text back, so a failure can still show
the engine's own last words.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


class Captured:
    """Text an engine printed while :func:`captured_output` was active."""

    text: str = ""

    def tail(self, lines: int = 5) -> str:
        """The last non-empty lines, joined with ' | ' so they fit in a one-line error."""
        kept = [ln.strip() for ln in self.text.splitlines() if ln.strip()]
        return " | ".join(kept[-lines:])


# Captures in force, innermost last: (the temp file's fd, [(fd, saved copy of the original fd)]).
_ACTIVE: list[tuple[int, list[tuple[int, int]]]] = []


@contextlib.contextmanager
def captured_output(enabled: bool = True) -> Iterator[Captured]:
    """Redirect fds 1 and 2 to a temp file for the duration of the block.

    Example:
        >>> with captured_output() as cap:
        ...     os.write(1, b"noise from C++\\n") and None
        >>> cap.text
        'noise from C++\\n'
    """
    cap = Captured()
    if not enabled or os.environ.get("EDGEKIT_VERBOSE"):
        yield cap
        return
    _flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved: list[tuple[int, int]] = []
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(tmp.fileno(), fd)
        except OSError:  # no real descriptors (e.g. some embedded interpreters): stay loud
            for fd, old in saved:
                os.dup2(old, fd)
                os.close(old)
            yield cap
            return
        _ACTIVE.append((tmp.fileno(), saved))
        try:
            yield cap
        finally:
            _ACTIVE.remove((tmp.fileno(), saved))
            _flush()
            for fd, old in saved:
                os.dup2(old, fd)
                os.close(old)
            tmp.seek(0)
            cap.text = tmp.read().decode("utf-8", "replace")


@contextlib.contextmanager
def uncaptured() -> Iterator[None]:
    """Inside :func:`captured_output`, give fds 1 and 2 back to the terminal for a moment.

    For edgekit's own progress lines, printed from inside a converter's calibration loop while
    the converter's noise is being captured.

    Example:
        >>> with captured_output() as cap:
        ...     with uncaptured():
        ...         pass  # what is printed here reaches the terminal
        ...     os.write(1, b"noise\\n") and None
        >>> cap.text
        'noise\\n'
    """
    if not _ACTIVE:
        yield
        return
    tmp_fd, saved = _ACTIVE[-1]
    _flush()
    for fd, old in saved:
        os.dup2(old, fd)
    try:
        yield
    finally:
        _flush()
        for fd, _ in saved:
            os.dup2(tmp_fd, fd)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def quiet_tf_env() -> None:
    """Environment that must be set before TensorFlow is first imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # tfmot (pruning / QAT) needs Keras 2; leave Keras 3 as `keras` and use `tf_keras` explicitly.
    os.environ.setdefault("KMP_WARNINGS", "0")
