"""``edgekit bench``: time a model file or every artifact of an output folder, side by side.

Numbers, regression gates, history and reports come from :mod:`edgekit.runtime.bench`; this module
turns flags into :class:`~edgekit.runtime.bench.BenchConfig` sweeps and prints the table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import click

from edgekit.cli.common import MARK, fmt


def _int_list(text: str | None, flag: str) -> list[int | None]:
    from edgekit.errors import InputError

    if not text:
        return [None]
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{flag} {text!r} must be an integer or a comma list, e.g. 1,2,4") from None


@click.command()
@click.argument("path", type=click.Path())
@click.option("--target", help="Only this artifact of a folder (format:precision, a format or a precision).")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed runs after the first inference.")
@click.option("--runs", type=int, default=100, show_default=True, help="Timed runs.")
@click.option("--max-seconds", type=float, help="Stop each timed loop after this many seconds.")
@click.option("--batch", "batch_sizes", default="1", show_default=True, help="Samples per call; a comma list sweeps (1,8,32).")
@click.option("--threads", "threads", help="Engine threads of each stream (default: all cores, shared out between "
              "--concurrency streams); a comma list sweeps (1,2,4).")
@click.option("--concurrency", "concurrency", default="1", show_default=True,
              help="Throughput mode: this many Sessions on their own threads at once, reporting aggregate inf/s; "
                   "a comma list sweeps (1,2).")
@click.option("--cold-start/--no-cold-start", default=True, show_default=True,
              help="Also time a fresh process from start to first result.")
@click.option("--eval", "eval_path", type=click.Path(), help="Labelled .npz for accuracy (folders use their eval.npz).")
@click.option("--no-verify", is_flag=True, help="Skip the size/sha256 check against the manifest.")
@click.option("--json", "json_path", type=click.Path(allow_dash=True), help="Write results as JSON ('-' for stdout).")
@click.option("--csv", "csv_path", type=click.Path(allow_dash=True), help="Write results as CSV ('-' for stdout).")
@click.option("--report", "report_path", type=click.Path(), help="Write an HTML report with charts.")
@click.option("--baseline", type=click.Path(), help="A previous --json result to compare with (see --fail-on).")
@click.option("--fail-on", "fail_on", default="p50+10%,accuracy-1", show_default=True,
              help="Regression rules against --baseline, e.g. 'p50+10%,accuracy-1,size+5%'.")
@click.option("--store/--no-store", default=True, show_default=True,
              help="Append results to the local results store ($EDGEKIT_RESULTS or ~/.local/share/edgekit/results.sqlite).")
@click.option("--history", is_flag=True, help="Show this model's stored results across runs and devices (no benching).")
def bench(path: str, target: str | None, warmup: int, runs: int, max_seconds: float | None, batch_sizes: str,
          threads: str | None, concurrency: str, cold_start: bool, eval_path: str | None, no_verify: bool, json_path: str | None,
          csv_path: str | None, report_path: str | None, baseline: str | None, fail_on: str, store: bool, history: bool) -> None:
    """Time PATH (a model file, or every artifact of an edgekit output folder) side by side.

    \b
    Examples:
      edgekit bench out/
      edgekit bench model.tflite --threads 1,2,4 --batch 1,8 --runs 500
      edgekit bench out/ --concurrency 1,2 --threads 1,2 --max-seconds 10
      edgekit bench out/ --json new.json --baseline old.json --fail-on 'p50+10%,accuracy-1'
      edgekit bench out/ --report report.html
      edgekit bench out/ --history
    """
    from edgekit.runtime.bench import BenchConfig, bench_path, report

    if history:
        _print_history(path)
        return
    rules = None
    if baseline:
        from edgekit.runtime.bench.gate import load_baseline, parse_rules

        rules, base = parse_rules(fail_on), load_baseline(baseline)
    configs = [BenchConfig(warmup=warmup, runs=runs, max_seconds=max_seconds, batch_size=b, num_threads=t,
                           cold_start=cold_start, concurrency=k)
               for k in _int_list(concurrency, "--concurrency") for t in _int_list(threads, "--threads")
               for b in _int_list(batch_sizes, "--batch")]
    results = bench_path(path, configs, target=target, eval_path=eval_path, verify=not no_verify)
    from edgekit.manifest import MANIFEST_NAME, Manifest

    folder = Path(path)
    # A folder's facts (what load() picks and why, validation metrics, eval data) go into the JSON too.
    manifest = Manifest.load(folder) if folder.is_dir() or folder.name == MANIFEST_NAME else None
    doc = report(results, configs[0], manifest=manifest)
    doc["config"]["sweep"] = [{"concurrency": c.concurrency, "num_threads": c.num_threads, "batch_size": c.batch_size}
                              for c in configs]
    if store:
        from edgekit.runtime.bench.history import ResultStore, model_key_for

        name, key = model_key_for(path)
        ResultStore().append(doc["results"], device=doc["device"], model=name, model_key=key, created=doc["created"])
    if report_path:
        from edgekit.runtime.bench.html_report import write_report

        write_report(doc, report_path, manifest)
    if json_path:
        _write(json_path, json.dumps(doc, indent=2) + "\n")
    if csv_path:
        _write(csv_path, _csv(results))
    if json_path != "-" and csv_path != "-":
        _print_bench(results, doc, show_pick=target is None)
    code = 0 if all(r.status in ("ok", "skipped") for r in results) else 1
    if rules is not None:
        from edgekit.runtime.bench.gate import check

        violations = check(doc["results"], base, rules)
        for v in violations:
            click.echo(f"regression: {v}", err=True)
        if violations:
            code = 1
        elif json_path != "-":
            click.echo(f"no regression against {baseline} ({', '.join(map(str, rules))})", err=True)
    sys.exit(code)


def _print_history(path: str) -> None:
    from edgekit.cli.table import render
    from edgekit.runtime.bench.history import ResultStore, model_key_for

    name, key = model_key_for(path)
    rows = ResultStore().history(key)
    if not rows:
        click.echo(f"no stored results for {name} yet: run 'edgekit bench {path}' first")
        return
    render(["when", "target", "device", "engine", "batch", "threads", "p50 ms", "p99 ms", "inf/s", "acc %", "KiB"],
           [[r["created"], r["target"], r["device"], f"{r['engine'] or ''} {r['engine_version'] or ''}".strip(),
             r["batch_size"], r["num_threads"], fmt(r["p50_ms"], ".3f"), fmt(r["p99_ms"], ".3f"),
             fmt(r["throughput"], ".0f"), fmt(r["accuracy"], ".2f"),
             fmt(r["size_bytes"] / 1024 if r["size_bytes"] else None, ".1f")] for r in rows],
           title=f"edgekit bench history — {name}")


def _write(path: str, text: str) -> None:
    if path == "-":
        click.echo(text, nl=False)
    else:
        from edgekit.manifest import atomic_write_bytes

        atomic_write_bytes(path, text.encode())


def _csv(results: Sequence[Any]) -> str:
    import csv
    import io

    rows = [r.flat() for r in results]
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def _validation(r: Any) -> str:
    seen = MARK.get(r.validation or "", r.validation or "-")
    if r.status == "ok":
        return seen
    return f"⏭ skipped ({seen})" if r.status == "skipped" else f"❌ {r.status}"


def _print_bench(results: Sequence[Any], doc: dict[str, Any], show_pick: bool = True) -> None:
    from edgekit.cli.table import render

    ok = [r for r in results if r.status == "ok"]
    fp32 = {(r.format, r.batch_size, r.num_threads, r.concurrency): r for r in ok if r.precision == "fp32"}
    fp32_size = {r.format: r.size_bytes for r in ok if r.precision == "fp32"}
    # The streams column only appears in throughput mode: a plain bench keeps its familiar table.
    streams = any(r.concurrency > 1 for r in results)
    rows = []
    for r in results:
        lat = r.latency_ms or {}
        ref = fp32.get((r.format, r.batch_size, r.num_threads, r.concurrency))
        rows.append([
            r.target,
            f"{r.engine.replace('ai-edge-', '')} {r.engine_version}".strip() or "-",
            _validation(r),
            fmt(r.size_bytes / 1024 if r.size_bytes else None, ".1f"),
            fmt(r.size_bytes / fp32_size[r.format] if r.size_bytes and fp32_size.get(r.format) else None, ".2f"),
            fmt(r.accuracy, ".2f"),
            r.batch_size,
            r.num_threads or "",
            *([r.concurrency] if streams else []),
            fmt(r.cold_start_ms, ".0f"),
            fmt(r.load_ms, ".1f"),
            fmt(r.first_ms, ".3f"),
            fmt(lat.get("p50"), ".3f"),
            fmt(lat.get("p90"), ".3f"),
            fmt(lat.get("p99"), ".3f"),
            f"{lat['mean']:.3f}±{lat['std']:.3f}" if lat else "",
            fmt(lat["p50"] / ref.latency_ms["p50"] if lat and ref else None, ".2f"),
            fmt(r.throughput, ".0f"),
            fmt(r.peak_rss_mb, ".1f"),
        ])
    dev = doc["device"]
    title = f"edgekit bench — {dev['cpu']} ({dev['cores']} cores{', ' + dev['board'] if dev.get('board') else ''})"
    render(["target", "engine", "validation", "KiB", "×fp32", "acc %", "batch", "threads",
            *(["streams"] if streams else []), "cold ms", "load ms", "first ms", "p50 ms", "p90 ms", "p99 ms",
            "mean±std ms", "p50 ×fp32", "inf/s", "peak RSS MB"], rows, title=title)
    for r in results:
        if r.error:
            click.echo(f"  {r.target}: {r.error}")
        for w in r.warnings:
            click.echo(f"  {r.target}: warning: {w}")
    for n in doc["notes"]:
        click.echo(f"  note: {n}")
    chosen = doc.get("chosen") or {}
    # Folders benched whole: what load("out/") runs here, so the table is read against it (with
    # --target the table holds one artifact and the pick would name others).
    if show_pick and chosen.get("target"):
        click.echo(f"  load() picks {chosen['target']}: {chosen['reason']} (edgekit pick measures instead)")
