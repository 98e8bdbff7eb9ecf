"""One generic registry for every plug-in kind (exporters, backends, stages, zoo models).

A registry maps names to lazy ``"module:attr"`` strings, so listing what exists imports nothing;
:meth:`Registry.get` imports the one asked for. Unknown names raise one line with a did-you-mean
hint. The entries can be a live view of another table (``FORMATS``): a format added there shows up
in every registry that reads it, with no second edit.

Example:
    >>> paths = Registry("path helper", {"join": "os.path:join"}, instantiate=False)
    >>> paths.get("join")("a", "b")
    'a/b'
    >>> paths.get("jion")
    Traceback (most recent call last):
    ...
    edgekit.errors.UnsupportedError: unknown path helper 'jion' (did you mean 'join'?); known: join
    >>> did_you_mean("tfilte", ["tflite", "onnx"])
    " (did you mean 'tflite'?)"
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Generic, Iterable, Iterator, Mapping, TypeVar

from edgekit.errors import EdgekitError, UnsupportedError

T = TypeVar("T")


def did_you_mean(word: str, options: Iterable[str], template: str = " (did you mean {!r}?)", cutoff: float = 0.6) -> str:
    """``template`` filled with the closest option, or ``""`` when nothing is close.

    ``cutoff`` is difflib's similarity floor; short names (layer ``"d2"`` vs ``"d1"``) need ~0.5.

    Example:
        >>> did_you_mean("int9", ["int8", "fp16"])
        " (did you mean 'int8'?)"
    """
    hint = difflib.get_close_matches(str(word), list(options), n=1, cutoff=cutoff)
    return template.format(hint[0]) if hint else ""


def load_attr(spec: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute (registries stay import-free).

    Example:
        >>> load_attr("os.path:join")("a", "b")
        'a/b'
    """
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def unknown(kind: str, name: str, known: Iterable[str], error: type[EdgekitError] = UnsupportedError,
            known_label: str = "known") -> EdgekitError:
    """The one-line error for a name that is not among ``known``, with a did-you-mean hint.

    Example:
        >>> str(unknown("precision", "int9", ["int8", "fp16"]))
        "unknown precision 'int9' (did you mean 'int8'?); known: int8, fp16"
    """
    known = list(known)
    return error(f"unknown {kind} {name!r}{did_you_mean(name, known)}; {known_label}: {', '.join(known) or 'none'}")


def missing(*checks: Callable[[], Any]) -> EdgekitError | None:
    """The first :class:`~edgekit.errors.MissingDependencyError` that ``checks`` raise, else ``None``.

    Each check imports (or finds) what a plug-in needs and raises ``MissingDependencyError`` when it
    is not installed; the error comes back as a value, as :meth:`Plugin.unavailable` reports it.

    Example:
        >>> from edgekit.errors import MissingDependencyError
        >>> def need_engine():
        ...     raise MissingDependencyError("someengine", "demo")
        >>> missing(lambda: None), missing(need_engine).extra
        (None, 'demo')
    """
    from edgekit.errors import MissingDependencyError

    for check in checks:
        try:
            check()
        except MissingDependencyError as exc:
            return exc
    return None


class Plugin:
    """What every plug-in that may not run here shares: a typed :meth:`unavailable` and its text.

    Exporters and backends derive from it: callers that act on the reason read the typed error
    (``MissingDependencyError.extra`` says what to install); callers that only print it use
    :meth:`unavailable_reason`, so the two can never disagree.

    Example:
        >>> class Nowhere(Plugin):
        ...     def unavailable(self):
        ...         return UnsupportedError("no engine here")
        >>> Nowhere().unavailable_reason(), Plugin().unavailable() is None
        ('no engine here', True)
    """

    def unavailable(self) -> EdgekitError | None:
        """``None`` when it runs here (the default: numpy only), else why not, as a typed error."""
        return None

    def unavailable_reason(self) -> str | None:
        """:meth:`unavailable` as one line of text, ``None`` when it runs here."""
        err = self.unavailable()
        return None if err is None else str(err)


class Registry(Generic[T]):
    """Names -> lazily imported plug-ins of one kind.

    Args:
        kind: What the entries are, for messages (``"format"``, ``"stage"``).
        entries: ``name -> "module:attr"``, or a callable returning that mapping (read on every
            call, so the registry follows a live table).
        error: The exception raised for an unknown name.
        instantiate: Call the loaded attribute (a class) with no arguments in :meth:`get`.
    """

    def __init__(self, kind: str, entries: Mapping[str, str] | Callable[[], Mapping[str, str]], *,
                 error: type[EdgekitError] = UnsupportedError, instantiate: bool = True,
                 known_label: str = "known") -> None:
        self.kind = kind
        self._entries = entries
        self._error = error
        self._instantiate = instantiate
        self._known_label = known_label

    def entries(self) -> Mapping[str, str]:
        """The current ``name -> "module:attr"`` mapping."""
        return self._entries() if callable(self._entries) else self._entries

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self.entries())

    def __contains__(self, name: object) -> bool:
        return name in self.entries()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.entries())

    def check(self, name: str) -> str:
        """``name`` itself when registered, else the one-line error with a hint."""
        if name not in self.entries():
            raise unknown(self.kind, name, self.names(), self._error, self._known_label)
        return name

    def load(self, name: str) -> Any:
        """The registered attribute (a class, usually), imported now."""
        return load_attr(self.entries()[self.check(name)])

    def get(self, name: str) -> T:
        """The plug-in registered as ``name`` (an instance when ``instantiate``)."""
        attr = self.load(name)
        return attr() if self._instantiate else attr
