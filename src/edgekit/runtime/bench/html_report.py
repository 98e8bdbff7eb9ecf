"""``edgekit bench --report out.html``: one self-contained page (PNG charts embedded as base64).

It shows the results table, a latency distribution per artifact, and accuracy vs latency with
marker area proportional to file size, which is the trade-off people choose an artifact by.
matplotlib is optional (``pip install 'edgekit[report]'``) and imported only here.

Example:
    >>> html = render_html({"device": {"cpu": "x", "cores": 1}, "config": {}, "results": [], "notes": []})  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html as _html
import io
from pathlib import Path
from typing import Any, Mapping

from edgekit.errors import MissingDependencyError


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on a Pi or in CI
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("matplotlib", "report", "bench --report charts") from None
    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def latency_chart(results: list[Mapping[str, Any]]) -> str | None:
    """Box + strip plot of per-call latency per artifact (base64 PNG), or None without samples."""
    rows = [r for r in results if r.get("samples_ms")]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.5))
    data = [r["samples_ms"] for r in rows]
    labels = [_label(r) for r in rows]
    ax.boxplot(data, vert=False, showfliers=False)
    for i, d in enumerate(data, 1):
        ax.scatter(d, [i] * len(d), s=4, alpha=0.25)
    ax.set_yticks(range(1, len(rows) + 1), labels)
    ax.set_xlabel("latency per call (ms)")
    ax.set_title("Latency distribution")
    return _png(fig)


def tradeoff_chart(results: list[Mapping[str, Any]]) -> str | None:
    """Accuracy vs p50 latency, marker area ~ file size (base64 PNG), or None without accuracy."""
    rows = [r for r in results if r.get("accuracy") is not None and r.get("latency_ms")]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    biggest = max(r.get("size_bytes") or 1 for r in rows)
    markers = "osD^vP*X"
    for i, r in enumerate(rows):
        size = 60 + 1200 * (r.get("size_bytes") or 0) / biggest
        # A legend, not annotations: points of similar latency would print over each other.
        ax.scatter(r["latency_ms"]["p50"], r["accuracy"], s=size, alpha=0.55, marker=markers[i % len(markers)],
                   label=f"{_label(r)} · {(r.get('size_bytes') or 0) / 1024:.0f} KiB")
    accs = [r["accuracy"] for r in rows]
    ax.set_ylim(min(accs) - 1.0, max(accs) + 0.5)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), markerscale=0.4, frameon=False)
    ax.set_xlabel("p50 latency (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy vs latency (marker area ~ file size)")
    return _png(fig)


def _label(r: Mapping[str, Any]) -> str:
    extra = f" b{r.get('batch_size')}" if r.get("batch_size", 1) != 1 else ""
    return f"{r.get('target')}{extra} t{r.get('num_threads')}"


_COLUMNS = [("target", "target"), ("engine", "engine"), ("validation", "validation"), ("size KiB", "size"),
            ("acc %", "accuracy"), ("batch", "batch_size"), ("threads", "num_threads"), ("cold start ms", "cold_start_ms"),
            ("load ms", "load_ms"), ("first ms", "first_ms"), ("p50 ms", "p50"), ("p90 ms", "p90"), ("p99 ms", "p99"),
            ("cv", "cv"), ("inf/s", "throughput"), ("peak RSS MB", "peak_rss_mb")]


def _cell(r: Mapping[str, Any], key: str) -> str:
    lat = r.get("latency_ms") or {}
    v: Any
    if key in ("p50", "p90", "p99"):
        v = lat.get(key)
    elif key == "size":
        v = (r.get("size_bytes") or 0) / 1024 if r.get("size_bytes") else None
    elif key == "engine":
        v = f"{r.get('engine', '')} {r.get('engine_version', '')}".strip()
    else:
        v = r.get(key)
    if isinstance(v, float):
        v = f"{v:.4g}"
    return _html.escape("" if v is None else str(v))


def render_html(doc: Mapping[str, Any], extra_sections: list[tuple[str, str]] | None = None) -> str:
    """The report page for a bench JSON document (see :func:`edgekit.runtime.bench.report`)."""
    results = list(doc.get("results", []))
    dev = doc.get("device", {})
    head = "".join(f"<th>{_html.escape(h)}</th>" for h, _ in _COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r, k)}</td>" for _, k in _COLUMNS) + "</tr>" for r in results)
    charts = []
    for title, png in (("Latency distribution", latency_chart(results)), ("Accuracy vs latency vs size", tradeoff_chart(results))):
        if png:
            charts.append(f'<h2>{title}</h2><img alt="{title}" src="data:image/png;base64,{png}">')
    notes = [*doc.get("notes", []), *(f"{r.get('target')}: {w}" for r in results for w in r.get("warnings", []))]
    notes += [f"{r.get('target')}: {r.get('error')}" for r in results if r.get("error")]
    note_html = "".join(f"<li>{_html.escape(n)}</li>" for n in notes)
    extra = "".join(f"<h2>{_html.escape(t)}</h2>{h}" for t, h in (extra_sections or []))
    device_line = _html.escape(
        f"{dev.get('cpu', '?')} · {dev.get('cores', '?')} cores · {dev.get('machine', '')} · board {dev.get('board') or '-'}"
        f" · GPUs {', '.join(dev.get('gpus') or []) or '-'} · python {dev.get('python', '')}")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>edgekit bench report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>edgekit bench report</h1>
<p>{device_line}<br>created {_html.escape(str(doc.get('created', '')))} · schema {_html.escape(str(doc.get('schema', '')))}</p>
<h2>Results</h2><table><tr>{head}</tr>{body}</table>
{''.join(charts)}
{'<h2>Notes</h2><ul>' + note_html + '</ul>' if note_html else ''}
{extra}
</body></html>
"""


def layer_sections(manifest: Any) -> list[tuple[str, str]]:
    """Per-layer sensitivity tables for artifacts made by accuracy-aware int8 (see the manifest)."""
    sections = []
    for a in getattr(manifest, "artifacts", ()):
        aware = (a.validation or {}).get("accuracy_aware")
        if not aware or not aware.get("layers"):
            continue
        kept = set(a.options.get("keep_float") or ())
        rows = "".join(
            f"<tr><td>{layer['rank']}</td><td>{_html.escape(layer['name'])}</td><td>{_html.escape(layer['op'])}</td>"
            f"<td>{layer['score']:.4g}</td><td>{_html.escape(layer['metric'])}</td>"
            f"<td>{'float' if layer['name'] in kept else 'int8'}</td></tr>"
            for layer in aware["layers"])
        tried = "".join(
            f"<tr><td>{_html.escape(str(t.get('note')))}</td><td>{t.get('precision')}</td><td>{len(t.get('keep_float') or [])}</td>"
            f"<td>{t.get('layers_int8_pct')}</td><td>{t.get('accuracy')}</td><td>{t.get('accuracy_drop')}</td>"
            f"<td>{t.get('bytes')}</td></tr>" for t in aware.get("tried", []))
        sections.append((
            f"Per-layer int8 sensitivity: {a.target}",
            f"<p>{_html.escape(aware.get('message', ''))} · conversions beyond plain int8: {aware.get('conversions')}</p>"
            "<table><tr><th>rank</th><th>layer</th><th>op</th><th>score</th><th>metric</th><th>kept as</th></tr>"
            f"{rows}</table><h3>Candidates tried</h3><table><tr><th>candidate</th><th>precision</th><th>float layers</th>"
            f"<th>% int8</th><th>accuracy</th><th>drop</th><th>bytes</th></tr>{tried}</table>"))
    return sections


def write_report(doc: Mapping[str, Any], path: str | Path, manifest: Any = None) -> Path:
    """Render and write the report atomically (with per-layer tables when a manifest has them)."""
    from edgekit.manifest import atomic_write_bytes

    return atomic_write_bytes(path, render_html(doc, layer_sections(manifest) if manifest is not None else None).encode())
