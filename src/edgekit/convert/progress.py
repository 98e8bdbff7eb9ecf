"""Progress of the long steps inside one target: calibration and validation, samples done / total.

At 224x224 calibrating int8 over 200 images or validating over 1,000 takes minutes, and a convert
that prints nothing for minutes looks hung. The steps that loop over samples live deep inside the
exporters (a TFLite representative-dataset generator, an onnxruntime calibration reader) and the
validation loop; rather than thread a callback through every exporter plug-in's ``export``
signature, :func:`edgekit.convert.pipeline.convert` opens :func:`reporting` around each target and
the loops ask :func:`counter` for a :class:`Counter`, which prints through the convert's progress
callback, or does nothing when no convert is reporting (an exporter called on its own).

A step says something at most every :data:`INTERVAL` seconds (``EDGEKIT_PROGRESS_INTERVAL``), plus a
last line when it has said anything before, so the zoo's 8x8 models, done in a fraction of a
second, print no extra lines at all.

Example:
    >>> lines = []
    >>> with reporting(lines.append, "  tflite:int8: ", interval=0):
    ...     tick = counter("calibration", 3)
    ...     for done in (1, 2, 3):
    ...         tick(done)
    >>> lines[-1].split(" (")[0]
    '  tflite:int8: calibration 3/3 samples'
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from edgekit.quiet import uncaptured

Say = Callable[[str], None]
# Seconds between two lines of one step: often enough to show a long step is alive, rarely enough
# that a log stays readable.
INTERVAL = 10.0


@dataclass(frozen=True)
class _Reporter:
    say: Say
    prefix: str
    interval: float


_CURRENT: contextvars.ContextVar[_Reporter | None] = contextvars.ContextVar("edgekit_progress", default=None)


def _interval() -> float:
    try:
        value = float(os.environ.get("EDGEKIT_PROGRESS_INTERVAL", INTERVAL))
    except ValueError:
        return INTERVAL
    return value if value >= 0 else INTERVAL


@contextlib.contextmanager
def reporting(say: Say, prefix: str = "", *, interval: float | None = None) -> Iterator[None]:
    """Counters made inside this block print through ``say``, each line starting with ``prefix``.

    Example:
        >>> with reporting(print, "  onnx:int8: ", interval=0):
        ...     counter("validation", 1)(1)  # doctest: +ELLIPSIS
          onnx:int8: validation 1/1 samples (100%, ...s)
    """
    token = _CURRENT.set(_Reporter(say, prefix, _interval() if interval is None else interval))
    try:
        yield
    finally:
        _CURRENT.reset(token)


class Counter:
    """``counter(done)`` after each batch; prints ``what done/total samples (pct, seconds)``."""

    def __init__(self, reporter: _Reporter | None, what: str, total: int) -> None:
        self._reporter, self.what, self.total = reporter, what, max(int(total), 0)
        self._t0 = self._last = time.perf_counter()
        self._shown = False

    def __call__(self, done: int) -> None:
        rep = self._reporter
        if rep is None:
            return
        now = time.perf_counter()
        final = done >= self.total
        # The last line only after an earlier one: a step too short to report stays silent.
        if (final and (self._shown or rep.interval == 0)) or (not final and now - self._last >= rep.interval):
            pct = f"{done / self.total:.0%}" if self.total else "-"
            with uncaptured():  # the converters' noise is captured while they calibrate; this line is ours
                rep.say(f"{rep.prefix}{self.what} {done}/{self.total} samples ({pct}, {now - self._t0:.1f}s)")
            self._last, self._shown = now, True


def counter(what: str, total: int) -> Counter:
    """A :class:`Counter` for the convert reporting now (silent when none is).

    Example:
        >>> counter("calibration", 200)(100)  # no convert is reporting: nothing happens
    """
    return Counter(_CURRENT.get(), what, total)


__all__ = ["Counter", "INTERVAL", "counter", "reporting"]
