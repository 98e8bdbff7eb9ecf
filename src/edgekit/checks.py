"""Checks on values users give us (recipes, flags, options, data settings), written once.

Each check returns the value in its normal form or raises a one-line error of the caller's choosing
(``RecipeError`` for recipes and options, ``DataError`` for data sources, ``InputError`` for flags)
that says what was received, what is allowed and how to fix it.

Example:
    >>> positive_int(3, "calib_limit")
    3
    >>> positive_int(True, "calib_limit")
    Traceback (most recent call last):
    ...
    edgekit.errors.RecipeError: calib_limit must be a positive integer, got True
    >>> one_of("minmx", ("minmax", "entropy"), "onnx option calibration")
    Traceback (most recent call last):
    ...
    edgekit.errors.RecipeError: onnx option calibration='minmx' is not one of minmax, entropy (did you mean 'minmax'?)
"""

from __future__ import annotations

import numbers
from typing import Any, Iterable

from edgekit.errors import EdgekitError, RecipeError
from edgekit.registry import did_you_mean, unknown


def _fail(error: type[EdgekitError], message: str, fix: str) -> EdgekitError:
    return error(f"{message}: {fix}" if fix else message)


def positive_int(value: Any, what: str, *, fix: str = "", error: type[EdgekitError] = RecipeError,
                 allow_none: bool = False) -> int | None:
    """``value`` as an ``int`` >= 1 (numpy integers too); bools are refused (``True`` is not a count).

    Args:
        value: What the user gave.
        what: Its name in the message (``"calib_limit"``, ``"--epochs"``, ``"tensorrt option max_batch"``).
        fix: Appended after a colon: how to fix it.
        error: The exception type to raise.
        allow_none: ``None`` passes through (e.g. "no limit").

    Example:
        >>> positive_int(None, "eval_limit", allow_none=True) is None
        True
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        extra = " or null" if allow_none else ""
        raise _fail(error, f"{what} must be a positive integer{extra}, got {value!r}", fix)
    return int(value)


def non_negative_int(value: Any, what: str, *, fix: str = "", error: type[EdgekitError] = RecipeError) -> int:
    """``value`` as an ``int`` >= 0 (a seed, a count that may be zero).

    Example:
        >>> non_negative_int(0, "seed")
        0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise _fail(error, f"{what} must be a non-negative integer, got {value!r}", fix)
    return int(value)


def one_of(value: Any, allowed: Iterable[Any], what: str, *, error: type[EdgekitError] = RecipeError) -> Any:
    """``value`` itself when it is in ``allowed``, else an error listing them with a did-you-mean hint.

    Example:
        >>> one_of("io", ("io", "keep_float"), "tflite option")
        'io'
    """
    allowed = tuple(allowed)
    if value in allowed:
        return value
    names = [str(a) for a in allowed]
    raise error(f"{what}={value!r} is not one of {', '.join(names)}{did_you_mean(str(value), names)}")


def known_key(key: str, known: Iterable[str], what: str, *, error: type[EdgekitError] = RecipeError) -> str:
    """``key`` itself when it is a known name, else ``unknown <what> 'key' (did you mean ...); known: ...``.

    Example:
        >>> known_key("calib_limt", ["calib_limit", "eval_limit"], "recipe key")
        Traceback (most recent call last):
        ...
        edgekit.errors.RecipeError: unknown recipe key 'calib_limt' (did you mean 'calib_limit'?); known: calib_limit, eval_limit
    """
    known = list(known)
    if key in known:
        return key
    raise unknown(what, key, known, error)
