"""``edgekit pick``: measure which artifact of an output folder is fastest here, and remember it.

The measuring, caching and tie rule live in :mod:`edgekit.runtime.pick`; this module turns flags
into one :func:`~edgekit.runtime.pick.pick` call and prints the table.
"""

from __future__ import annotations

import json
from typing import Any

import click

from edgekit.cli.common import fmt


@click.command()
@click.argument("path", type=click.Path())
@click.option("--batch", "batch_size", type=int, default=1, show_default=True, help="Samples per timed call.")
@click.option("--threads", type=int, help="Engine threads (default: all cores this process may use).")
# Not imported here to show the default: the runtime half loads only when the command runs.
@click.option("--budget", type=float, default=None,
              help="Seconds of warm-up + timing for all candidates together  [default: 3.0, pick.DEFAULT_BUDGET].")
@click.option("--max-accuracy-drop", type=float,
              help="Also skip artifacts whose recorded accuracy drop (or top-1 disagreement) exceeds this many points.")
@click.option("--write", is_flag=True, help="Also store the decision in pick.json beside the manifest (for identical devices).")
@click.option("--force", is_flag=True, help="Measure again even if a decision is cached, and replace it.")
@click.option("--no-cache", is_flag=True, help="Ignore cached decisions and store nothing in the user cache.")
@click.option("--no-verify", is_flag=True, help="Skip the size/sha256 check against the manifest.")
@click.option("--json", "as_json", is_flag=True, help="Print the decision and figures as JSON instead of a table.")
def pick(path: str, batch_size: int, threads: int | None, budget: float | None, max_accuracy_drop: float | None,
         write: bool, force: bool, no_cache: bool, no_verify: bool, as_json: bool) -> None:
    """Time every validated artifact of PATH that runs here and choose the fastest (cached per device).

    `load(PATH, choose="measure")` reads the same cached decision (or measures once and caches it).

    \b
    Examples:
      edgekit pick out/
      edgekit pick out/ --batch 8 --threads 2 --budget 5
      edgekit pick out/ --write        # pick.json beside the manifest, for a fleet of identical devices
      edgekit pick out/ --force --json
    """
    from edgekit.runtime.pick import pick as run_pick

    p = run_pick(path, batch_size=batch_size, num_threads=threads, budget=budget, max_accuracy_drop=max_accuracy_drop,
                 force=force, use_cache=not no_cache, write=write, verify=not no_verify)
    if as_json:
        click.echo(json.dumps(p.to_dict(), indent=2))
        return
    _print(p, path)


def _print(p: Any, path: str) -> None:
    from edgekit.cli.table import render

    if p.timings:
        best = min(t.p50_ms for t in p.timings)
        rows = [[("→ " if t.target == p.chosen else "  ") + t.target, t.prior + 1, fmt(t.p50_ms, ".3f"), fmt(t.p90_ms, ".3f"),
                 fmt(t.throughput(p.batch_size), ".1f"), fmt(t.p50_ms / best, ".2f") + "×", t.runs, len(t.round_p50_ms),
                 t.validation] for t in p.timings]
        render(["target", "rules #", "p50 ms", "p90 ms", "inf/s", "vs best", "runs", "rounds", "validation"], rows,
               title=f"edgekit pick — {p.device} (batch {p.batch_size}, {p.num_threads} threads)")
    click.echo(f"chose {p.chosen}: {p.reason}")
    if p.chosen != p.rules_choice:
        click.echo(f"  the rule table alone would have chosen {p.rules_choice}")
    for s in p.skipped:
        click.echo(f"  not timed: {s}")
    for n in p.notes:
        click.echo(f"  note: {n}")
    if p.cached:
        click.echo(f"from cache: {p.source} (measured {p.created}, in {p.seconds:.1f} s); took {p.took_s:.3f} s "
                   "(--force measures again)")
    elif p.timings:
        where = f"; stored in {p.source}" if p.source else "; not stored (--no-cache)"
        click.echo(f"measured in {p.took_s:.1f} s (budget {p.budget_s:g} s + loading){where}")
    else:
        click.echo(f"nothing to measure; took {p.took_s:.2f} s")
