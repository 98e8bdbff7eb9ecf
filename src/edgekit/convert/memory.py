"""Give a finished target's memory back before the next target allocates its own.

A target leaves garbage in reference cycles that Python's generational collector reaches late: the
TFLite converter's graph and its calibration model, an onnxruntime session with its arena, the
validation engine. At 224x224 that is hundreds of MB per target, so six targets in one convert
stacked up instead of each reusing the last one's memory. After the collection, glibc's
``malloc_trim`` returns the freed heap pages to the system (glibc keeps them in its arenas
otherwise, and peak RSS would count them again as soon as another thread's arena grows).

Example:
    >>> release_memory()  # any time; a no-op beyond a gc pass where glibc is absent
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys


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


__all__ = ["release_memory"]
