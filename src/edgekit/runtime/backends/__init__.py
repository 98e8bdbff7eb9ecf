"""Runtime backends: one module per engine behind one protocol (see :mod:`.base`)."""

from edgekit.runtime.backends.base import REGISTRY, SUFFIXES, Backend, Engine, format_for_path, get_backend

__all__ = ["REGISTRY", "SUFFIXES", "Backend", "Engine", "format_for_path", "get_backend"]
