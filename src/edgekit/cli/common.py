"""What every ``edgekit`` command shares: one error -> exit-code wrapper, progress lines, cell formats.

Exit codes: 0 all good; 1 an artifact failed validation / export (the others are still written);
2 bad input (missing file, bad recipe, unsupported target, data that does not fit the model).
An :class:`~edgekit.errors.EdgekitError` raised anywhere in a command becomes ``error: <one line>``
on stderr and its ``exit_code``: commands raise, :class:`Group` reports, nobody repeats try/except.

Example:
    >>> say = Progress(quiet=True)
    >>> say("nothing printed")
    >>> fmt(1.23456, ".2f"), fmt(None, ".2f")
    ('1.23', '')
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from edgekit.errors import EdgekitError

# How a manifest status reads in a table.
MARK = {"passed": "✅ passed", "failed": "❎ failed", "error": "❌ error", "unsupported": "⛔ unsupported",
        "not_validated": "⚠ not validated"}


def fail(exc: EdgekitError) -> None:
    """Print ``error: <one line>`` on stderr and exit with the error's code (2 for bad input)."""
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


class Group(click.Group):
    """A click group whose commands (and sub-groups) report :class:`EdgekitError` as one line + exit code.

    Example:
        >>> from click.testing import CliRunner
        >>> from edgekit.errors import InputError
        >>> @click.group(cls=Group)
        ... def demo(): pass
        >>> @demo.command()
        ... def boom(): raise InputError("no such file x.npz")
        >>> res = CliRunner().invoke(demo, ["boom"])
        >>> res.exit_code, res.output
        (2, 'error: no such file x.npz\\n')
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgekitError as exc:
            fail(exc)


class Progress:
    """One line per step on stderr, with elapsed time, so long steps are visibly alive."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            click.echo(f"[{time.perf_counter() - self.t0:6.1f}s] {msg}", err=True)


def fmt(v: Any, spec: str) -> str:
    """``v`` formatted with ``spec``, or ``""`` for a missing number (an empty table cell)."""
    return "" if v is None else format(v, spec)


# `--choose` for the commands that open an output folder for a long run (serve, mqtt): one wording.
choose_option = click.option(
    "--choose", type=click.Choice(["rules", "measure"]), default="rules", show_default=True,
    help="Folders: the rule table's pick, or the artifact measured fastest here (cached; see edgekit pick).")
