"""The backend protocol: one inference engine behind ``open(path) -> Engine``.

Which backend runs which format, and which file suffixes a format has, is read from
:data:`edgekit.formats.FORMATS`: a format registered there is loadable here with no second edit.
Engines are imported lazily inside each backend, so ``import edgekit.runtime`` costs numpy only.

Example:
    >>> get_backend("tflite").name
    'litert'
    >>> SUFFIXES[".tflite"], ".bin" in SUFFIXES
    ('tflite', False)
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from edgekit import formats
from edgekit.errors import BackendError, EdgekitError, InputError, UnsupportedError
from edgekit.files import read_regular
from edgekit.manifest import TensorSpec
from edgekit.registry import Plugin, Registry

# The most bytes of a model file read into memory, for every engine that runs from bytes.
MAX_MODEL_BYTES = int(os.environ.get("EDGEKIT_MAX_MODEL_BYTES") or 4 << 30)


def read_model_file(path: Path, kind: str) -> bytes:
    """A single-file model's bytes, read once (regular files of at most :data:`MAX_MODEL_BYTES` only).

    Args:
        path: The model file.
        kind: What it should be, for the message (``".tflite"``, ``".onnx"``).

    Example:
        >>> read_model_file(Path("/dev/zero"), ".tflite")
        Traceback (most recent call last):
        ...
        edgekit.errors.BackendError: model file /dev/zero is a character device, not a regular file: refusing to read it
    """
    if path.is_dir():
        raise BackendError(f"{path} is a folder, not a {kind} file")
    return read_regular(path, max_bytes=MAX_MODEL_BYTES, what="model file", error=BackendError)


@runtime_checkable
class Engine(Protocol):
    """An opened model: engine-level specs and a positional run. Not thread-safe by itself.

    Optional fast calls a one-input engine may add (Session uses them when present, else ``run``):
    ``run1(array) -> outputs``, and ``run1_into(shape, write, src) -> outputs``, which calls
    ``write(view, src)`` with a writable view of the engine's own input tensor at ``shape`` (so a
    conversion such as float -> int8 lands in engine memory without a further copy), then runs.
    Set either to ``None`` or leave it out when the engine cannot offer it.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Arrays already in engine dtype and in ``inputs`` order; outputs in ``outputs`` order."""

    def info(self) -> dict[str, Any]:
        """Engine name, version and settings, for results and ``doctor``."""


@runtime_checkable
class Backend(Protocol):
    """One engine for one artifact format."""

    name: ClassVar[str]
    format: ClassVar[str]

    def unavailable(self) -> EdgekitError | None:
        """``None`` if the engine runs here, else why not, as a typed error.

        A missing engine is a :class:`~edgekit.errors.MissingDependencyError` (its ``.extra`` says
        what to install); a platform or hardware the engine does not run on is an
        :class:`~edgekit.errors.UnsupportedError` or :class:`~edgekit.errors.BackendError`.
        """

    def unavailable_reason(self) -> str | None:
        """``unavailable()`` as one line of text (``None`` if the engine runs here)."""

    def open(self, path: Path, **options: Any) -> Engine:
        """Open ``path``; raise :class:`BackendError` (one line) for anything malformed.

        A backend whose ``from_bytes`` is true also takes ``content=`` (the file's bytes, already
        read and verified by the caller) and runs from those bytes, never touching ``path`` again.
        """


class BackendBase(Plugin):
    """What every backend shares: the text form of :meth:`unavailable`.

    Subclasses implement ``unavailable()`` (typed) and ``open()``; callers that only print a reason
    use :meth:`unavailable_reason`, so the two can never disagree.

    Example:
        >>> class Nowhere(BackendBase):
        ...     def unavailable(self):
        ...         return BackendError("no engine here")
        >>> Nowhere().unavailable_reason()
        'no engine here'
    """

    def wrong_platform(self, why: str) -> UnsupportedError | None:
        """``UnsupportedError(why)`` when this OS is not among the format's ``platforms`` (FORMATS), else ``None``."""
        spec = formats.FORMATS.get(self.format)
        if spec is not None and not spec.runs_on(platform.system()):
            return UnsupportedError(why)
        return None

    # Whether ``open(path, content=bytes)`` runs the model from those bytes (LiteRT, ONNX Runtime).
    # Folder artifacts (CoreML .mlpackage, TF-TRT, TensorRT) are opened by path.
    from_bytes: ClassVar[bool] = False

    # Keyword options ``open()`` accepts, and the engine's name in messages about them.
    open_options: ClassVar[tuple[str, ...]] = ()
    engine_label: ClassVar[str] = ""

    def check_open_options(self, options: Mapping[str, Any]) -> None:
        """Refuse an ``open()`` option this engine does not take, naming the ones it does.

        Example:
            >>> class Demo(BackendBase):
            ...     open_options, engine_label = ("num_threads",), "Demo"
            >>> Demo().check_open_options({"threads": 2})
            Traceback (most recent call last):
            ...
            edgekit.errors.InputError: unknown Demo option(s) ['threads']; known: num_threads
        """
        unknown = set(options) - set(self.open_options)
        if unknown:
            raise InputError(f"unknown {self.engine_label or type(self).__name__} option(s) {sorted(unknown)}; "
                             f"known: {', '.join(self.open_options)}")

    def guess_precision(self, path: Path) -> str:
        """A bare artifact's precision read from the file itself, or ``"?"`` if this engine cannot tell.

        Optional: only for tables that list bare files (``edgekit bench model.tflite``); a manifest
        says the precision exactly.
        """
        return "?"


def _backend_entries() -> dict[str, str]:
    return {name: spec.backend for name, spec in formats.FORMATS.items()}


# Format -> lazy "module:Class" of its backend, read from FORMATS on every call.
BACKENDS: Registry[Backend] = Registry("format", _backend_entries, error=BackendError, known_label="available")


class _Suffixes(Mapping[str, str]):
    """A read-only live view of every artifact suffix -> format in :data:`edgekit.formats.FORMATS`.

    Folders count too: ``.mlpackage`` (CoreML), ``.tftrt`` (a TF-TRT SavedModel), ``.trt`` (ONNX +
    build settings + per-device TensorRT engine cache).
    """

    def __getitem__(self, suffix: str) -> str:
        return formats.suffixes()[suffix]

    def __iter__(self) -> Iterator[str]:
        return iter(formats.suffixes())

    def __len__(self) -> int:
        return len(formats.suffixes())

    def __repr__(self) -> str:
        return f"SUFFIXES({formats.suffixes()!r})"


# File (or artifact folder) suffix -> format, for loading bare models.
SUFFIXES: Mapping[str, str] = _Suffixes()


def get_backend(fmt: str) -> Backend:
    """The backend registered for artifact format ``fmt``.

    Example:
        >>> get_backend("tflite").name
        'litert'
        >>> get_backend("tflit")
        Traceback (most recent call last):
        ...
        edgekit.errors.BackendError: unknown format 'tflit' (did you mean 'tflite'?); available: coreml, onnx, tensorrt, tflite, tftrt
    """
    return BACKENDS.get(fmt)


def format_for_path(path: Path) -> str:
    """Artifact format from a file's suffix, or a :class:`BackendError` listing the known ones.

    Example:
        >>> format_for_path(Path("model.TFLITE")), format_for_path(Path("m.mlpackage"))
        ('tflite', 'coreml')
    """
    fmt = formats.format_for_suffix(path.suffix)
    if fmt is None:
        raise BackendError(
            f"cannot tell the format of {path.name}: unknown suffix {path.suffix or '(none)'!r}; "
            f"supported: {', '.join(sorted(SUFFIXES))} or an edgekit output folder with manifest.json"
        )
    return fmt
