"""Two small helpers every registry in edgekit uses: lazy "module:attr" loading and typo hints.

Example:
    >>> did_you_mean("tfilte", ["tflite", "onnx"])
    " (did you mean 'tflite'?)"
    >>> load_attr("os.path:join")("a", "b")
    'a/b'
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Iterable


def did_you_mean(word: str, options: Iterable[str], template: str = " (did you mean {!r}?)") -> str:
    """``template`` filled with the closest option, or ``""`` when nothing is close."""
    hint = difflib.get_close_matches(str(word), list(options), n=1)
    return template.format(hint[0]) if hint else ""


def load_attr(spec: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute (registries stay import-free)."""
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)
