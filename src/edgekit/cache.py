"""Where edgekit keeps what it can rebuild: trained zoo models, TensorRT engines, measured picks.

One root for all of them, ``$EDGEKIT_CACHE`` or ``~/.cache/edgekit``, so one variable moves (or
isolates, as the tests do) every cache at once.

Example:
    >>> import os, tempfile
    >>> os.environ["EDGEKIT_CACHE"] = tempfile.mkdtemp()
    >>> cache_dir("pick").is_dir(), cache_dir("pick").parent == cache_root()
    (True, True)
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$EDGEKIT_CACHE``, else ``~/.cache/edgekit`` (not created)."""
    return Path(os.environ.get("EDGEKIT_CACHE") or Path.home() / ".cache" / "edgekit")


def cache_dir(*parts: str, create: bool = True) -> Path:
    """A folder under :func:`cache_root`, created (with parents) unless ``create=False``."""
    path = cache_root().joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
