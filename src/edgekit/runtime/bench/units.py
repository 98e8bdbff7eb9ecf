"""Numbers people read: ``13.4 MiB``, ``47,390 inf/s``, ``2.24 ms``; never ``1.367e+04``.

One set of helpers for everything that shows bench numbers to a person (the HTML report, chart
axes, the CLI table). Three significant digits is what a latency or a size is worth on a shared
machine; more digits only look precise. Missing values are :data:`MISSING`.

Example:
    >>> size(14_051_000), rate(47_390.2), ms(2.2391), ms(0.031249)
    ('13.4 MiB', '47,390 inf/s', '2.24 ms', '0.0312 ms')
"""

from __future__ import annotations

import math

MISSING = "–"  # en dash: an unknown number, never a misleading 0
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB")


def sig(x: float | int | None, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits in plain notation, with thousands separators.

    Values of 10**digits and more keep all their integer digits (``47,390``, not ``4.74e+04``):
    rounding an integer part away reads as a typo. Tiny values keep leading zeros (``0.000312``).

    Example:
        >>> sig(47390.2), sig(2.2391), sig(0.000312449), sig(100), sig(99.7214, 4), sig(None)
        ('47,390', '2.24', '0.000312', '100', '99.72', '–')
    """
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return MISSING if x is None else str(x)
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - magnitude)
    text = f"{round(x, decimals):,.{decimals}f}"
    # round(0.0999, 2) is 0.1: the value gained a digit, drop the extra trailing zero it leaves.
    if decimals and len(text.replace(",", "").replace("-", "").replace(".", "").lstrip("0")) > digits:
        text = text[:-1]
    return text


def size(n_bytes: int | float | None) -> str:
    """A file size in binary units (what ``ls -lh`` and file managers show).

    Example:
        >>> size(812), size(173_440), size(14_051_000), size(None)
        ('812 B', '169 KiB', '13.4 MiB', '–')
    """
    if n_bytes is None:
        return MISSING
    value, unit = float(n_bytes), 0
    while abs(value) >= 1024 and unit < len(_BINARY) - 1:
        value, unit = value / 1024, unit + 1
    return f"{int(value)} B" if unit == 0 else f"{sig(value)} {_BINARY[unit]}"


def ms(x: float | None, unit: bool = True) -> str:
    """A latency in milliseconds, three significant digits (one unit across a column compares at a glance).

    Example:
        >>> ms(2.2391), ms(0.0312449), ms(1234.56), ms(12.0, unit=False), ms(None)
        ('2.24 ms', '0.0312 ms', '1,235 ms', '12.0', '–')
    """
    if x is None:
        return MISSING
    return f"{sig(x)} ms" if unit else sig(x)


def rate(per_second: float | None, unit: str = "inf/s") -> str:
    """A throughput: whole numbers from 100 up (``47,390 inf/s``), three significant digits below.

    Example:
        >>> rate(47390.2), rate(8.456), rate(None)
        ('47,390 inf/s', '8.46 inf/s', '–')
    """
    if per_second is None:
        return MISSING
    text = f"{round(per_second):,}" if abs(per_second) >= 100 else sig(per_second)
    return f"{text} {unit}" if unit else text


def percent(x: float | None, decimals: int = 2) -> str:
    """A percentage with fixed decimals (accuracy: ``99.72 %``; a column of them lines up).

    Example:
        >>> percent(99.7214), percent(100.0), percent(None)
        ('99.72 %', '100.00 %', '–')
    """
    return MISSING if x is None else f"{x:.{decimals}f} %"


def decibels(x: float | None) -> str:
    """A signal-to-noise ratio, one decimal (``38.9 dB``).

    Example:
        >>> decibels(38.872), decibels(None)
        ('38.9 dB', '–')
    """
    return MISSING if x is None else f"{x:.1f} dB"


def megabytes(x: float | None) -> str:
    """A memory figure already in MB (peak RSS), three significant digits.

    Example:
        >>> megabytes(135.94), megabytes(None)
        ('136 MB', '–')
    """
    return MISSING if x is None else f"{sig(x)} MB"
