"""Print a table with rich when it is installed, plain aligned text otherwise (the slim runtime)."""

from __future__ import annotations

import sys
from typing import Any, Sequence, TextIO


def render(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None,
           file: TextIO | None = None) -> None:
    """Print ``rows`` under ``headers``.

    Example:
        >>> import io; buf = io.StringIO()
        >>> render(["target", "ms"], [["tflite:fp32", 1.2]], file=buf)
        >>> "tflite:fp32" in buf.getvalue()
        True
    """
    out = file or sys.stdout
    cells = [["" if c is None else str(c) for c in r] for r in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        _plain(headers, cells, title, out)
        return
    table = Table(title=title, show_lines=False, header_style="bold")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right", overflow="fold")
    from rich.markup import escape

    for r in cells:
        table.add_row(*(escape(c) for c in r))  # cells are data: "image[?x8x8x1]", "pip install 'edgekit[onnx]'"
    Console(file=out, width=max(100, min(260, _width(headers, cells))), soft_wrap=False).print(table)


def _width(headers: Sequence[str], cells: Sequence[Sequence[str]]) -> int:
    widths = [len(h) for h in headers]
    for r in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, r)]
    return sum(widths) + 3 * len(widths) + 4


def _plain(headers: Sequence[str], cells: Sequence[Sequence[str]], title: str | None, out: TextIO) -> None:
    widths = [len(h) for h in headers]
    for r in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, r)]
    if title:
        print(title, file=out)
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))), file=out)
