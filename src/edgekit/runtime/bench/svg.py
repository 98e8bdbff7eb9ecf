"""The report's two charts as inline SVG, drawn here with nothing but the standard library.

Why not matplotlib PNGs: the runtime is slim (a Pi or a Jetson writes its own report without a
plotting stack), SVG stays crisp at any zoom and prints well, a chart is a few KiB of text instead
of ~100 KiB of base64, and tests can read what was drawn (ids, classes, titles) instead of
guessing from pixels. Every mark carries a ``<title>``: the browser shows it as a tooltip, no JS.

Example:
    >>> from edgekit.runtime.bench.tradeoff import ACCURACY, Point
    >>> pts = [Point("tflite:fp32", 0.03, 99.7, 640_000, True, True),
    ...        Point("tflite:int8", 0.05, 99.5, 170_000, False, False)]
    >>> svg = tradeoff_svg(ACCURACY, pts)
    >>> svg.startswith('<svg id="tradeoff-chart"'), svg.count('class="point pareto'), 'class="chosen-ring"' in svg
    (True, 1, True)
"""

from __future__ import annotations

import html
import math
from typing import Any, Callable, Mapping, Sequence

from edgekit.runtime.bench import units
from edgekit.runtime.bench.tradeoff import Metric, Point

# Colour per format (colour-blind safe Okabe-Ito order); unknown formats take the next free one.
_FORMAT_COLOURS = {"tflite": "#0072B2", "onnx": "#E69F00", "coreml": "#009E73", "tensorrt": "#CC79A7",
                   "tftrt": "#56B4E9"}
_SPARE = ("#D55E00", "#999999", "#F0E442", "#000000")
CHOSEN = "#D55E00"  # the ring around what load() picks: the one warm colour no format uses
_MAX_STRIP = 200  # samples drawn per row; more only blackens the strip and bloats the page


def colour(fmt: str) -> str:
    """The chart colour of a format (stable across charts and runs).

    Example:
        >>> colour("tflite"), colour("onnx")
        ('#0072B2', '#E69F00')
    """
    return _FORMAT_COLOURS.get(fmt) or _SPARE[sum(map(ord, fmt)) % len(_SPARE)]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering ``[lo, hi]``.

    Example:
        >>> nice_ticks(0, 0.047)
        [0.0, 0.01, 0.02, 0.03, 0.04, 0.05]
        >>> nice_ticks(38.0, 136.0)
        [20.0, 40.0, 60.0, 80.0, 100.0, 120.0, 140.0]
    """
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks, t = [], first
    while t <= hi + step * (1 - 1e-9):
        ticks.append(float(round(t, 12)))
        t += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks for a log axis covering ``[lo, hi]`` (both > 0).

    Example:
        >>> log_ticks(0.03, 0.4)
        [0.02, 0.05, 0.1, 0.2, 0.5]
    """
    values, k = [], math.floor(math.log10(lo)) - 1
    while not values or values[-1] < hi:
        values.extend(round(m * 10.0 ** k, 12) for m in (1, 2, 5))
        k += 1
    first = max(v for v in values if v <= lo)
    last = min(v for v in values if v >= hi)
    return [v for v in values if first <= v <= last]


def tick_label(t: float) -> str:
    """A tick value without trailing zeros (``0.05``, ``99.8``, ``1,000``): ticks are round on purpose.

    Example:
        >>> tick_label(0.05), tick_label(99.80000001), tick_label(1000.0), tick_label(0.0)
        ('0.05', '99.8', '1,000', '0')
    """
    text = units.sig(t, 6)
    return text.rstrip("0").rstrip(".") if "." in text else text


def _scale(lo: float, hi: float, a: float, b: float, log: bool = False) -> Callable[[float], float]:
    if log:
        llo, lhi = math.log10(lo), math.log10(hi)
        return lambda v: a + (math.log10(max(v, lo)) - llo) / (lhi - llo or 1.0) * (b - a)
    return lambda v: a + (v - lo) / ((hi - lo) or 1.0) * (b - a)


def _t(x: float, y: float, text: str, cls: str = "", anchor: str = "start", extra: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{c}{extra}>{html.escape(text)}</text>'


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    pos = (len(sorted_values) - 1) * q
    i = int(pos)
    j = min(i + 1, len(sorted_values) - 1)
    return sorted_values[i] + (sorted_values[j] - sorted_values[i]) * (pos - i)


def latency_svg(rows: Sequence[Mapping[str, Any]], chosen: str | None = None, width: int = 1000) -> str | None:
    """Per-artifact latency distributions: box (quartiles), whiskers (1.5 IQR), median, every call as a dot.

    Args:
        rows: Bench result dicts; those without ``samples_ms`` are left out.
        chosen: Target ``load()`` picks; its label is marked.
        width: Pixel width of the chart.

    Returns:
        ``<svg id="latency-chart">`` markup, or ``None`` when no row has samples.

    Example:
        >>> svg = latency_svg([{"target": "tflite:fp32", "format": "tflite", "samples_ms": [0.03, 0.031, 0.05]}])
        >>> svg.count('class="box"'), "median 0.0310 ms" in svg
        (1, True)
    """
    rows = [r for r in rows if r.get("samples_ms")]
    if not rows:
        return None
    multi = len({(r.get("batch_size"), r.get("num_threads"), r.get("concurrency")) for r in rows}) > 1
    left, right, top, row_h = 250, 260, 16, 34
    height = top + row_h * len(rows) + 48
    stats = []
    for r in rows:
        s = sorted(float(v) for v in r["samples_ms"])
        q1, med, q3 = _quantile(s, 0.25), _quantile(s, 0.5), _quantile(s, 0.75)
        lo_w = min(v for v in s if v >= q1 - 1.5 * (q3 - q1))
        hi_w = max(v for v in s if v <= q3 + 1.5 * (q3 - q1))
        stats.append((s, q1, med, q3, lo_w, hi_w, _quantile(s, 0.99)))
    # The axis ends past the longest whisker, not at the slowest call or p99: on a busy machine a
    # few 100x outliers would squash every box against zero. Calls beyond are counted at the edge.
    x_hi = max(st[5] for st in stats) * 1.1
    ticks = nice_ticks(0.0, x_hi)
    x = _scale(0.0, ticks[-1], left, width - right)
    out = [f'<svg id="latency-chart" class="chart" role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}"><title>Latency per call, per artifact</title>']
    axis_y = top + row_h * len(rows)
    for t in ticks:
        out.append(f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top - 6}" y2="{axis_y}"/>')
        out.append(_t(x(t), axis_y + 16, tick_label(t), "tick", "middle"))
    out.append(_t((left + width - right) / 2, axis_y + 38, "latency per call (ms)", "axis-title", "middle"))
    for i, (r, (s, q1, med, q3, lo_w, hi_w, p99)) in enumerate(zip(rows, stats)):
        cy = top + row_h * i + row_h / 2
        col = colour(str(r.get("format", "")))
        label = str(r.get("target"))
        if multi:
            label += f" b{r.get('batch_size')} t{r.get('num_threads')}"
            if (r.get("concurrency") or 1) > 1:
                label += f" ×{r.get('concurrency')}"
        is_chosen = chosen is not None and r.get("target") == chosen
        out.append(_t(left - 10, cy + 4, ("★ " if is_chosen else "") + label, "row-label chosen" if is_chosen else "row-label",
                      "end"))
        step = max(1, len(s) // _MAX_STRIP)
        dots = []
        for k, v in enumerate(s[::step]):
            # Deterministic jitter (golden-ratio sequence): the same data draws the same picture.
            jy = cy + ((k * 0.618034) % 1.0 - 0.5) * row_h * 0.6
            if v <= ticks[-1]:  # slower calls are counted at the axis end, not piled up on it
                dots.append(f'<circle cx="{x(v):.1f}" cy="{jy:.1f}" r="1.6"/>')
        out.append(f'<g class="strip" fill="{col}">{"".join(dots)}</g>')
        beyond = sum(v > ticks[-1] for v in s)
        if beyond:
            out.append(f'<text x="{x(ticks[-1]) + 4:.1f}" y="{cy + 4:.1f}" class="beyond" fill="{col}">'
                       f'<title>{beyond} calls slower than {html.escape(units.ms(ticks[-1]))}</title>+{beyond} ▸</text>')
        h = row_h * 0.5
        tip = html.escape(f"{label}: median {units.ms(med)}, quartiles {units.ms(q1)}–{units.ms(q3)}, "
                          f"p99 {units.ms(p99)}, {len(s)} calls")
        out.append(f'<g class="box-plot"><title>{tip}</title>'
                   f'<line class="whisker" x1="{x(lo_w):.1f}" x2="{x(q1):.1f}" y1="{cy:.1f}" y2="{cy:.1f}"/>'
                   f'<line class="whisker" x1="{x(q3):.1f}" x2="{x(hi_w):.1f}" y1="{cy:.1f}" y2="{cy:.1f}"/>'
                   f'<rect class="box" x="{x(q1):.1f}" y="{cy - h / 2:.1f}" width="{max(1.0, x(q3) - x(q1)):.1f}" '
                   f'height="{h:.1f}" stroke="{col}"/>'
                   f'<line class="median" x1="{x(med):.1f}" x2="{x(med):.1f}" y1="{cy - h / 2:.1f}" y2="{cy + h / 2:.1f}"/>'
                   '</g>')
        out.append(_t(width - right + 44, cy + 4, f"median {units.ms(med)} · p99 {units.ms(p99)}", "value"))
    out.append(f'<line class="axis" x1="{left}" x2="{width - right}" y1="{axis_y}" y2="{axis_y}"/></svg>')
    return "".join(out)


def tradeoff_svg(metric: Metric, points: Sequence[Point], formats: Mapping[str, str] | None = None,
                 width: int = 1000, height: int = 500) -> str | None:
    """Quality vs p50 latency; marker area proportional to file size; Pareto front and ``load()``'s pick marked.

    Args:
        metric: What the y axis shows (see :func:`edgekit.runtime.bench.tradeoff.choose_metric`).
        points: One per artifact (see :func:`edgekit.runtime.bench.tradeoff.points`).
        formats: Target -> format, for colours (default: the part of the target before ``:``).
        width: Pixel width of the chart.
        height: Pixel height of the chart.

    Returns:
        ``<svg id="tradeoff-chart">`` markup, or ``None`` without points.

    Example:
        >>> from edgekit.runtime.bench.tradeoff import SNR, Point
        >>> svg = tradeoff_svg(SNR, [Point("onnx:int8", 0.1, 38.3, 180_000, True, False)])
        >>> "SNR vs the reference (dB)" in svg, 'class="pareto-line"' in svg
        (True, True)
    """
    if not points:
        return None
    left, right, top, bottom = 80, 330, 30, 60
    lats = [p.latency_ms for p in points]
    qs = [p.quality for p in points]
    log = min(lats) > 0 and max(lats) / min(lats) > 20  # a 20x spread on a linear axis piles the fast ones at 0
    if log:
        xt = log_ticks(min(lats) / 1.3, max(lats) * 1.3)
    else:
        xt = nice_ticks(0.0, max(lats) * 1.1, count=6)
    x = _scale(xt[0], xt[-1], left, width - right, log)
    floor = 0.5 if metric.unit == "%" else 2.0  # equal values still get an axis a reader can place them on
    pad = max(floor, 0.15 * (max(qs) - min(qs)))
    yt = nice_ticks(min(qs) - pad, max(qs) + pad)
    if metric.unit == "%" and max(qs) <= 100.0 < yt[-1]:
        yt = [t for t in yt if t <= 100.0] + ([100.0] if yt[-1] > 100.0 and 100.0 not in yt else [])  # no 101 %
    y = _scale(yt[0], yt[-1], height - bottom, top)
    out = [f'<svg id="tradeoff-chart" class="chart" role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}"><title>{html.escape(metric.label)} vs p50 latency</title>']
    for t in xt:
        out.append(f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{height - bottom}"/>')
        out.append(_t(x(t), height - bottom + 18, tick_label(t), "tick", "middle"))
    for t in yt:
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>')
        out.append(_t(left - 8, y(t) + 4, tick_label(t), "tick", "end"))
    out.append(f'<rect class="frame" x="{left}" y="{top}" width="{width - right - left}" height="{height - bottom - top}"/>')
    out.append(_t((left + width - right) / 2, height - 18, "p50 latency per call (ms" + (", log scale)" if log else ")"),
                  "axis-title", "middle"))
    out.append(_t(18, (top + height - bottom) / 2, metric.label, "axis-title", "middle",
                  f' transform="rotate(-90 18 {(top + height - bottom) / 2:.1f})"'))
    front = sorted((p for p in points if p.pareto), key=lambda p: (p.latency_ms, -p.quality))
    if front:
        # The staircase of what is attainable: from each front point, right to the next one's latency, then up.
        path = [f"M{x(front[0].latency_ms):.1f},{y(front[0].quality):.1f}"]
        for a, b in zip(front, front[1:]):
            path.append(f"H{x(b.latency_ms):.1f}V{y(b.quality):.1f}")
        path.append(f"H{width - right:.1f}")
        out.append(f'<path class="pareto-line" d="{"".join(path)}"><title>Pareto front</title></path>')
    biggest = max((p.size_bytes or 0) for p in points) or 1
    radius = {p.target: max(4.0, 26.0 * math.sqrt((p.size_bytes or 0) / biggest)) for p in points}
    number = {p.target: i + 1 for i, p in enumerate(points)}
    placed: list[tuple[float, float]] = []
    labels = []
    for p in sorted(points, key=lambda p: -radius[p.target]):  # big first, so small markers stay visible on top
        cx, cy, r = x(p.latency_ms), y(p.quality), radius[p.target]
        fmt = (formats or {}).get(p.target) or p.target.split(":")[0]
        tip = html.escape(f"{p.target}: p50 {units.ms(p.latency_ms)}, {_value(metric, p.quality)}, "
                          f"{units.size(p.size_bytes)}" + (", Pareto front" if p.pareto else ", dominated")
                          + (", load() picks this" if p.chosen else ""))
        cls = "point pareto" if p.pareto else "point dominated"
        out.append(f'<g class="{cls}" data-target="{html.escape(p.target)}"><title>{tip}</title>'
                   f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{colour(fmt)}" stroke="{colour(fmt)}"/></g>')
        if p.chosen:
            out.append(f'<circle class="chosen-ring" cx="{cx:.1f}" cy="{cy:.1f}" r="{r + 5:.1f}" stroke="{CHOSEN}"/>')
        # Number labels, nudged off each other: equal-accuracy artifacts of similar speed overlap.
        for dx, dy in ((0, 0), (0, -r - 9), (0, r + 13), (r + 10, 4), (-r - 10, 4), (0, -r - 23)):
            lx, ly = cx + dx, cy + dy + 4
            if all(abs(lx - px) > 14 or abs(ly - py) > 13 for px, py in placed):
                break
        placed.append((lx, ly))
        # White on a solid marker; dark on a faded (dominated) one or beside a marker.
        inside = (dx, dy) == (0, 0) and r >= 8 and p.pareto
        labels.append(_t(lx, ly, str(number[p.target]), "num num-in" if inside else "num", "middle"))
    out.extend(labels)
    lx, ly = width - right + 24, top + 10
    out.append(_t(lx, ly, "artifacts (marker area ∝ file size)", "legend-title"))
    for p in points:
        ly += 40
        fmt = (formats or {}).get(p.target) or p.target.split(":")[0]
        out.append(f'<circle cx="{lx + 8}" cy="{ly - 5}" r="9" fill="{colour(fmt)}"/>')
        out.append(_t(lx + 8, ly - 1, str(number[p.target]), "num num-in", "middle"))
        out.append(_t(lx + 24, ly, p.target + ("  ◎ load() picks" if p.chosen else ""),
                      "legend chosen" if p.chosen else "legend"))
        out.append(_t(lx + 24, ly + 15, f"{units.ms(p.latency_ms)} · {_value(metric, p.quality)} · {units.size(p.size_bytes)}"
                      + (" · Pareto front" if p.pareto else " · dominated"), "legend-sub"))
    out.append("</svg>")
    return "".join(out)


def _value(metric: Metric, v: float) -> str:
    return units.percent(v) if metric.unit == "%" else units.decibels(v)


# The charts' look, in the page's <style> (one place, so the SVG markup stays small).
CSS = """
.chart{display:block;max-width:100%;height:auto;font-size:12px}
.chart .grid{stroke:#e4e4e4}.chart .axis{stroke:#555}.chart .frame{fill:none;stroke:#bbb}
.chart .tick{fill:#555;font-size:11px}.chart .axis-title{fill:#333;font-size:12px}
.chart .row-label{fill:#222}.chart .row-label.chosen{font-weight:bold;fill:#D55E00}
.chart .value{fill:#333;font-variant-numeric:tabular-nums}
.chart .strip circle{fill-opacity:.35}.chart .box{fill:#fff;fill-opacity:.6;stroke-width:1.5}
.chart .whisker{stroke:#444}.chart .median{stroke:#111;stroke-width:2.5}
.chart .point circle{fill-opacity:.8;stroke-width:1.5}.chart .point.dominated circle{fill-opacity:.22;stroke-dasharray:3 2}
.chart .chosen-ring{fill:none;stroke-width:3}
.chart .pareto-line{fill:none;stroke:#333;stroke-width:1.5;stroke-dasharray:6 4}
.chart .num{font-size:11px;font-weight:bold;fill:#222}.chart .num-in{fill:#fff}
.chart .legend{fill:#222;font-size:12px}.chart .legend.chosen{font-weight:bold;fill:#D55E00}
.chart .legend-sub{fill:#666;font-size:11px}.chart .beyond{font-size:11px}.chart .legend-title{fill:#333;font-weight:bold}
"""
