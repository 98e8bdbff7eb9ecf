"""Runtime backends: one module per engine behind one protocol (see :mod:`.base`)."""

from edgekit.runtime.backends.base import (BACKENDS, SUFFIXES, Backend, BackendBase, Engine, format_for_path,
                                           get_backend)

__all__ = ["BACKENDS", "SUFFIXES", "Backend", "BackendBase", "Engine", "format_for_path", "get_backend"]
