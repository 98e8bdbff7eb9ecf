"""Give a finished target's memory back before the next target allocates its own.

A target leaves garbage in reference cycles that Python's generational collector reaches late: the
TFLite converter's graph and its calibration model, an onnxruntime session with its arena, the
validation engine. At 224x224 that is hundreds of MB per target, so six targets in one convert
stacked up instead of each reusing the last one's memory. After the collection, glibc's
``malloc_trim`` returns the freed heap pages to the system (glibc keeps them in its arenas
otherwise, and peak RSS would count them again as soon as another thread's arena grows).

A full collection walks every object the process holds: about 0.45 s once TensorFlow and a model
are loaded (400,000 objects), which at two collections per target cost a digits convert more than
its conversions did. Inside :func:`collect_new_only` the objects that were alive when it began are
frozen (``gc.freeze``), so each collection walks only what the targets made since.

Example:
    >>> release_memory()  # any time; a no-op beyond a gc pass where glibc is absent
    >>> with collect_new_only():
    ...     release_memory()  # walks only the objects made inside the block
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import sys
from collections.abc import Iterator


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None


def release_memory() -> None:
    """Collect garbage cycles now and hand freed heap pages back to the system."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@contextlib.contextmanager
def collect_new_only() -> Iterator[None]:
    """Within the block, collections leave out the objects that were alive when it began.

    The block starts with one full :func:`release_memory`, so no garbage is frozen with the live
    objects, and ends with ``gc.unfreeze``: what the block left behind (the source model, once the
    caller drops it) is collected as usual afterwards. A process that froze its own heap (a
    pre-fork server) is left as it is, and its collections stay full ones.
    """
    if gc.get_freeze_count():
        yield
        return
    release_memory()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


__all__ = ["collect_new_only", "release_memory"]
