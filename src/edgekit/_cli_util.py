"""What every ``edgekit`` command shares: one-line errors with the right exit code, and progress lines.

Example:
    >>> say = Progress(quiet=True)
    >>> say("nothing printed")
"""

from __future__ import annotations

import sys
import time

import click

from edgekit.errors import EdgekitError


def fail(exc: EdgekitError) -> None:
    """Print ``error: <one line>`` on stderr and exit with the error's code (2 for bad input)."""
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


class Progress:
    """One line per step on stderr, with elapsed time, so long steps are visibly alive."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            click.echo(f"[{time.perf_counter() - self.t0:6.1f}s] {msg}", err=True)
