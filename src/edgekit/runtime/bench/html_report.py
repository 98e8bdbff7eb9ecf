"""``edgekit bench --report out.html``: one self-contained page a person reads to choose an artifact.

What it shows, top to bottom: the device (only the fields that are known), which artifact
``load()`` picks and why, the results table (readable numbers, the Pareto front and the pick
marked), quality vs latency with marker area proportional to file size (accuracy with labelled eval
data, else top-1 agreement or SNR against the reference model from the manifest's validation), and
the latency distribution of every artifact. Charts are inline SVG drawn by :mod:`.svg`; a
Content-Security-Policy forbids the page any network or script, so it renders the same offline.

Example:
    >>> page = render_html({"device": {"cpu": "AMD EPYC", "cores": 2, "gpus": []}, "results": [], "notes": []})
    >>> "AMD EPYC · 2 cores" in page and "GPUs" not in page and "http://" not in page
    True
"""

from __future__ import annotations

import html as _html
from pathlib import Path
from typing import Any, Callable, Mapping

from edgekit.runtime.bench import svg, units
from edgekit.runtime.bench.tradeoff import points as tradeoff_points

# No network, no script, styles inline, images only as data: URIs. A stray external reference is
# then refused by the browser (and reported on its console) instead of leaking a request.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_PAGE_CSS = """
body{font-family:system-ui,sans-serif;margin:24px 32px;max-width:1240px;color:#222}
.scroll{overflow-x:auto}
h1{margin:0 0 4px;font-size:24px}h2{margin:28px 0 8px;font-size:18px}
.device{color:#444;margin:0 0 2px}.meta{color:#777;font-size:12px;margin:0}
.chosen-box{border-left:5px solid #D55E00;background:#fff4ec;padding:8px 12px;margin:16px 0}
.chosen-box.none{border-color:#999;background:#f4f4f4}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
td,th{border-bottom:1px solid #ddd;padding:4px 6px;text-align:right;white-space:nowrap}
th{background:#f6f6f6;font-weight:600}td:first-child,th:first-child{text-align:left}
tr.chosen td{background:#fff4ec;font-weight:600}td.bad{color:#b00}
.caption{color:#555;font-size:13px;max-width:1000px}
"""


def device_line(dev: Mapping[str, Any]) -> str:
    """The device in one line, with only the fields that are known (no ``board -``, no ``GPUs -``).

    Example:
        >>> device_line({"cpu": "AMD EPYC", "cores": 2, "machine": "x86_64", "board": None, "gpus": [],
        ...              "system": "Linux", "python": "3.11.7", "cpu_flags": ["avx2", "fma"]})
        'AMD EPYC · 2 cores · x86_64 · AVX2 FMA · Linux · Python 3.11.7'
        >>> device_line({"cpu": "Cortex-A76", "cores": 4, "board": "Raspberry Pi 5 Model B Rev 1.0", "gpus": ["Orin"],
        ...              "l4t": "36.4"})
        'Raspberry Pi 5 Model B Rev 1.0 · Cortex-A76 · 4 cores · L4T 36.4 · GPUs: Orin'
    """
    cores = dev.get("cores")
    parts = [dev.get("board"), dev.get("cpu"), f"{cores} cores" if cores else None, dev.get("machine"),
             " ".join(f.upper() for f in dev.get("cpu_flags") or ()) or None,
             f"L4T {dev['l4t']}" if dev.get("l4t") else None,
             f"GPUs: {', '.join(dev['gpus'])}" if dev.get("gpus") else None,
             dev.get("system"),
             f"Python {dev['python']}" if dev.get("python") else None]
    return " · ".join(str(p) for p in parts if p not in (None, ""))


def _val(r: Mapping[str, Any], key: str, validation: Mapping[str, Mapping[str, Any]]) -> Any:
    return (validation.get(str(r.get("target"))) or {}).get(key)


# (header, cell) per column; every number goes through units, so each reads the same way everywhere.
_Cell = Callable[[Mapping[str, Any], Mapping[str, Mapping[str, Any]]], str]

# One row per artifact: what it is and how good it is (validation is per artifact, not per setting).
_ARTIFACT_COLUMNS: list[tuple[str, _Cell]] = [
    ("target", lambda r, v: str(r.get("target"))),
    ("validation", lambda r, v: str(r.get("validation") or units.MISSING)),
    ("bench", lambda r, v: str(r.get("status") or units.MISSING)),
    ("size", lambda r, v: units.size(r.get("size_bytes"))),
    ("accuracy", lambda r, v: units.percent(r.get("accuracy") if r.get("accuracy") is not None
                                            else _val(r, "accuracy", v))),
    ("accuracy drop", lambda r, v: units.sig(_val(r, "accuracy_drop", v), 2) + " pts"
     if _val(r, "accuracy_drop", v) is not None else units.MISSING),
    ("top-1 agreement", lambda r, v: units.percent(None if _val(r, "top1_agreement", v) is None
                                                   else 100.0 * _val(r, "top1_agreement", v))),
    ("SNR vs reference", lambda r, v: units.decibels(_val(r, "snr_db", v))),
]

# One row per artifact and setting: how fast it runs.
_TIMING_COLUMNS: list[tuple[str, _Cell]] = [
    ("target", lambda r, v: str(r.get("target"))),
    ("engine", lambda r, v: f"{str(r.get('engine') or '').replace('ai-edge-', '')} {r.get('engine_version') or ''}".strip()
     or units.MISSING),
    ("batch", lambda r, v: str(r.get("batch_size") or units.MISSING)),
    ("threads", lambda r, v: str(r.get("num_threads") or units.MISSING)),
    ("streams", lambda r, v: str(r.get("concurrency") or units.MISSING)),
    ("cold start", lambda r, v: units.ms(r.get("cold_start_ms"))),
    ("load", lambda r, v: units.ms(r.get("load_ms"))),
    ("first call", lambda r, v: units.ms(r.get("first_ms"))),
    ("p50", lambda r, v: units.ms((r.get("latency_ms") or {}).get("p50"))),
    ("p90", lambda r, v: units.ms((r.get("latency_ms") or {}).get("p90"))),
    ("p99", lambda r, v: units.ms((r.get("latency_ms") or {}).get("p99"))),
    ("robust cv", lambda r, v: units.sig(r.get("robust_cv"), 2)),
    ("throughput", lambda r, v: units.rate(r.get("throughput"))),
    ("peak RSS", lambda r, v: units.megabytes(r.get("peak_rss_mb"))),
]


def _table(table_id: str, columns: list[tuple[str, _Cell]], rows: list[Mapping[str, Any]], doc: Mapping[str, Any],
           marks: list[str] | None = None) -> str:
    validation = doc.get("validation") or {}
    chosen = (doc.get("chosen") or {}).get("target")
    grid = [[cell(r, validation) for _, cell in columns] for r in rows]
    # A column nobody has a number for (cold start with --no-cold-start, accuracy without labels)
    # only pushes the ones that matter off the screen.
    # Streams only matter in throughput mode: a plain bench keeps its familiar columns.
    keep = [i for i in range(len(columns))
            if i == 0 or any(row[i] not in ((units.MISSING, "1") if columns[i][0] == "streams" else (units.MISSING,))
                             for row in grid)]
    head = "".join(f"<th>{_html.escape(columns[i][0])}</th>" for i in keep) + ("<th>Pareto front</th>" if marks else "")
    body = []
    for n, (r, cells) in enumerate(zip(rows, grid)):
        if r.get("target") == chosen:
            cells[0] = "★ " + cells[0]
        tds = "".join(f"<td{' class=bad' if columns[i][0] == 'bench' and r.get('status') != 'ok' else ''}>"
                      f"{_html.escape(cells[i])}</td>" for i in keep)
        mark = f"<td>{marks[n]}</td>" if marks else ""
        cls = ' class="chosen"' if r.get("target") == chosen else ""
        body.append(f"<tr{cls}>{tds}{mark}</tr>")
    return f'<div class="scroll"><table id="{table_id}"><tr>{head}</tr>{"".join(body)}</table></div>'


def _tables(doc: Mapping[str, Any], pareto: set[str]) -> str:
    results = list(doc.get("results", []))
    first: dict[str, Mapping[str, Any]] = {}
    for r in results:
        first.setdefault(str(r.get("target")), r)
    per_artifact = list(first.values())
    marks = ["✓" if str(r.get("target")) in pareto else "" for r in per_artifact]
    return ("<h2>Artifacts</h2>" + _table("artifacts", _ARTIFACT_COLUMNS, per_artifact, doc, marks)
            + "<h2>Timing</h2>" + _table("timing", _TIMING_COLUMNS, results, doc))


def _chosen_box(doc: Mapping[str, Any]) -> str:
    chosen = doc.get("chosen")
    if not chosen:
        return ""
    if chosen.get("target") is None:
        return f'<p id="chosen" class="chosen-box none">load() would pick nothing here: {_html.escape(str(chosen.get("reason")))}</p>'
    return (f'<p id="chosen" class="chosen-box"><strong>load() picks {_html.escape(str(chosen["target"]))}</strong> '
            f'(★ in the table, ringed in the chart): {_html.escape(str(chosen.get("reason", "")))}</p>')


def _tradeoff_section(doc: Mapping[str, Any]) -> tuple[str, set[str]]:
    metric, pts, setting = tradeoff_points(doc)
    formats = {str(r.get("target")): str(r.get("format")) for r in doc.get("results", [])}
    chart = svg.tradeoff_svg(metric, pts, formats) if metric is not None else None
    if metric is None or chart is None:
        why = ("no artifact was benched" if not setting else
               "no benched artifact has an accuracy, a top-1 agreement or an SNR to plot: bench an output folder "
               "written by edgekit convert (its manifest has them), or pass --eval with labelled data")
        return f'<h2>Quality vs latency</h2><p class="caption">{_html.escape(why)}.</p>', set()
    threads = f", {setting['num_threads']} threads" if setting.get("num_threads") else ""
    if (setting.get("concurrency") or 1) > 1:
        threads += f", {setting['concurrency']} streams at once"
    caption = (f"Y axis: {metric.label}: {metric.why}. Timed at batch {setting.get('batch_size')}{threads}. "
               "Dashed staircase: the Pareto front (no other artifact is both faster and better than a point on it); "
               "faded, dashed markers are dominated. "
               + ("The ringed marker is what load() picks." if any(p.chosen for p in pts) else ""))
    pareto = {p.target for p in pts if p.pareto}
    return (f'<h2>Quality vs latency</h2><p class="caption">{_html.escape(caption)}</p>{chart}', pareto)


def render_html(doc: Mapping[str, Any], extra_sections: list[tuple[str, str]] | None = None) -> str:
    """The report page for a bench JSON document (see :func:`edgekit.runtime.bench.report`).

    Args:
        doc: The bench document; its ``chosen``, ``validation`` and ``eval`` (present when a
            folder was benched, see :func:`edgekit.runtime.bench.document.folder_facts`) add the
            pick and the unlabelled quality measures.
        extra_sections: ``(title, html)`` pairs appended at the end (per-layer tables).

    Example:
        >>> doc = {"device": {"cpu": "x", "cores": 1}, "results": [{"target": "tflite:fp32", "format": "tflite",
        ...        "status": "ok", "latency_ms": {"p50": 0.03}, "samples_ms": [0.03, 0.031], "size_bytes": 642824,
        ...        "batch_size": 1, "num_threads": 2}], "validation": {"tflite:fp32": {"snr_db": 134.5}},
        ...        "chosen": {"target": "tflite:fp32", "reason": "best for this device"}}
        >>> page = render_html(doc)
        >>> 'id="tradeoff-chart"' in page, 'id="latency-chart"' in page, "628 KiB" in page
        (True, True, True)
    """
    results = list(doc.get("results", []))
    chosen = (doc.get("chosen") or {}).get("target")
    tradeoff, pareto = _tradeoff_section(doc)
    latency = svg.latency_svg(results, chosen)
    latency_html = ('<h2>Latency distribution</h2><p class="caption">Every timed call as a dot (calls slower than the axis are counted at its end: +n); box: quartiles, '
                    f"bar: median, whiskers: 1.5 × IQR.</p>{latency}") if latency else ""
    notes = [*doc.get("notes", []), *(f"{r.get('target')}: {w}" for r in results for w in r.get("warnings", []))]
    notes += [f"{r.get('target')}: {r.get('error')}" for r in results if r.get("error")]
    note_html = "".join(f"<li>{_html.escape(n)}</li>" for n in notes)
    extra = "".join(f"<h2>{_html.escape(t)}</h2>{h}" for t, h in (extra_sections or []))
    ev = doc.get("eval") or {}
    eval_line = (f" · eval data {ev.get('source')} ({ev.get('samples')} samples, "
                 f"{'labelled' if ev.get('labels') else 'no labels'})") if ev.get("source") else ""
    model = doc.get("model")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgekit bench{': ' + _html.escape(str(model)) if model else ''}</title>
<style>{_PAGE_CSS}{svg.CSS}</style></head><body>
<h1>edgekit bench{': ' + _html.escape(str(model)) if model else ''}</h1>
<p class="device" id="device">{_html.escape(device_line(doc.get('device') or {}))}</p>
<p class="meta">created {_html.escape(str(doc.get('created', units.MISSING)))} · schema {_html.escape(str(doc.get('schema', units.MISSING)))}{_html.escape(eval_line)}</p>
{_chosen_box(doc)}
{_tables(doc, pareto)}
{tradeoff}
{latency_html}
{'<h2>Notes</h2><ul>' + note_html + '</ul>' if note_html else ''}
{extra}
</body></html>
"""


def layer_sections(manifest: Any) -> list[tuple[str, str]]:
    """Per-layer sensitivity tables for artifacts made by accuracy-aware int8 (see the manifest).

    Example:
        >>> layer_sections(None)
        []
    """
    sections = []
    for a in getattr(manifest, "artifacts", ()):
        aware = (a.validation or {}).get("accuracy_aware")
        if not aware or not aware.get("layers"):
            continue
        kept = set(a.options.get("keep_float") or ())
        rows = "".join(
            f"<tr><td>{layer['rank']}</td><td>{_html.escape(layer['name'])}</td><td>{_html.escape(layer['op'])}</td>"
            f"<td>{units.sig(layer['score'], 4)}</td><td>{_html.escape(layer['metric'])}</td>"
            f"<td>{'float' if layer['name'] in kept else 'int8'}</td></tr>"
            for layer in aware["layers"])
        tried = "".join(
            f"<tr><td>{_html.escape(str(t.get('note')))}</td><td>{t.get('precision')}</td><td>{len(t.get('keep_float') or [])}</td>"
            f"<td>{t.get('layers_int8_pct')}</td><td>{units.percent(t.get('accuracy'))}</td><td>{t.get('accuracy_drop')}</td>"
            f"<td>{units.size(t.get('bytes'))}</td></tr>" for t in aware.get("tried", []))
        sections.append((
            f"Per-layer int8 sensitivity: {a.target}",
            f"<p>{_html.escape(aware.get('message', ''))} · conversions beyond plain int8: {aware.get('conversions')}</p>"
            "<table><tr><th>rank</th><th>layer</th><th>op</th><th>score</th><th>metric</th><th>kept as</th></tr>"
            f"{rows}</table><h3>Candidates tried</h3><table><tr><th>candidate</th><th>precision</th><th>float layers</th>"
            f"<th>% int8</th><th>accuracy</th><th>drop</th><th>size</th></tr>{tried}</table>"))
    return sections


def write_report(doc: Mapping[str, Any], path: str | Path, manifest: Any = None) -> Path:
    """Render and write the report atomically; with a manifest, add its facts and per-layer tables.

    A document made without the manifest (``report(results, config)``) gets the folder's facts
    (``chosen``, ``validation``, ``eval``) here, judged on the device the document recorded; the
    caller's ``doc`` is not modified.

    Example:
        >>> write_report(report(bench_path("out/"), BenchConfig()), "r.html", Manifest.load("out/"))  # doctest: +SKIP
    """
    from edgekit.manifest import atomic_write_bytes

    if manifest is not None and "chosen" not in doc:
        from edgekit.runtime.bench.document import folder_facts

        doc = {**doc, **folder_facts(manifest, doc.get("device"))}
    sections = layer_sections(manifest) if manifest is not None else None
    return atomic_write_bytes(path, render_html(doc, sections).encode())
