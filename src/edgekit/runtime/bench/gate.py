"""Regression gate: compare a bench run with a baseline JSON and fail on the rules you set.

Rules are written ``METRIC+N%`` (may grow by at most N percent), ``METRIC+N`` (by at most N units),
``METRIC-N%`` / ``METRIC-N`` (may shrink by at most ...). Latency, size and memory regress upwards;
accuracy and throughput downwards, so ``p50+10%,accuracy-1`` reads "p50 may not grow more than 10 %,
accuracy may not drop more than 1 point".

Example:
    >>> rules = parse_rules("p50+10%,accuracy-1")
    >>> [(r.metric, r.sign, r.amount, r.percent) for r in rules]
    [('p50', '+', 10.0, True), ('accuracy', '-', 1.0, False)]
    >>> base = [{"target": "tflite:int8", "batch_size": 1, "num_threads": 2, "latency_ms": {"p50": 1.0}, "accuracy": 99.0}]
    >>> new = [{"target": "tflite:int8", "batch_size": 1, "num_threads": 2, "latency_ms": {"p50": 1.2}, "accuracy": 98.5}]
    >>> check(new, base, rules)
    ['tflite:int8 (batch 1, 2 threads): p50 1.2 vs baseline 1 (+20.0%) exceeds p50+10%']
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edgekit.errors import InputError

# metric name -> (how to read it from a result dict, unit)
METRICS: dict[str, tuple[Callable[[Mapping[str, Any]], Any], str]] = {
    **{k: (lambda r, k=k: (r.get("latency_ms") or {}).get(k), "ms") for k in ("p50", "p90", "p99", "mean", "min", "max")},
    "throughput": (lambda r: r.get("throughput"), "inf/s"),
    "accuracy": (lambda r: r.get("accuracy"), "points"),
    "size": (lambda r: r.get("size_bytes"), "bytes"),
    "load": (lambda r: r.get("load_ms"), "ms"),
    "first": (lambda r: r.get("first_ms"), "ms"),
    "cold_start": (lambda r: r.get("cold_start_ms"), "ms"),
    "rss": (lambda r: r.get("peak_rss_mb"), "MB"),
}
_RULE = re.compile(r"^\s*(?P<metric>[a-z_0-9]+)\s*(?P<sign>[+-])\s*(?P<amount>\d+(?:\.\d+)?)\s*(?P<pct>%?)\s*$")


@dataclass(frozen=True)
class Rule:
    """One tolerance: ``metric`` may move by ``amount`` (percent or units) in direction ``sign``."""

    metric: str
    sign: str
    amount: float
    percent: bool

    def __str__(self) -> str:
        return f"{self.metric}{self.sign}{self.amount:g}{'%' if self.percent else ''}"


def parse_rules(text: str) -> list[Rule]:
    """Parse ``"p50+10%,accuracy-1"``; an unknown metric or malformed rule is an :class:`InputError`."""
    rules = []
    for part in [p for p in text.split(",") if p.strip()]:
        m = _RULE.match(part)
        if not m:
            raise InputError(f"--fail-on rule {part.strip()!r} is not METRIC+N%, METRIC+N, METRIC-N% or METRIC-N (e.g. p50+10%,accuracy-1)")
        if m.group("metric") not in METRICS:
            raise InputError(f"--fail-on metric {m.group('metric')!r} is unknown; known: {', '.join(METRICS)}")
        rules.append(Rule(m.group("metric"), m.group("sign"), float(m.group("amount")), bool(m.group("pct"))))
    if not rules:
        raise InputError("--fail-on needs at least one rule, e.g. p50+10%,accuracy-1")
    return rules


def _key(r: Mapping[str, Any]) -> tuple[Any, ...]:
    return (r.get("target"), r.get("batch_size"), r.get("num_threads"), r.get("concurrency", 1))


def load_baseline(path: str | Path) -> list[dict[str, Any]]:
    """Results from a ``edgekit bench --json`` file."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"baseline {p} does not exist") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"baseline {p} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise InputError(f"baseline {p} is not an 'edgekit bench --json' file (no results list)")
    return doc["results"]


def check(current: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]], rules: Sequence[Rule]) -> list[str]:
    """Violations of ``rules`` by ``current`` against ``baseline`` (matched by target, batch, threads).

    A rule on a metric missing from either side is skipped, except that a target present in the
    baseline but missing or failed now is itself a violation.
    """
    base = {_key(r): r for r in baseline if r.get("status") in (None, "ok")}
    now = {_key(r): r for r in current}
    out = []
    for key, b in base.items():
        streams = f", {key[3]} streams" if key[3] != 1 else ""
        label = f"{key[0]} (batch {key[1]}, {key[2]} threads{streams})"
        c = now.get(key)
        if c is None or c.get("status") not in (None, "ok"):
            out.append(f"{label}: in the baseline but {'missing' if c is None else c.get('status')} now")
            continue
        for rule in rules:
            get, _ = METRICS[rule.metric]
            old, new = get(b), get(c)
            if old is None or new is None:
                continue
            delta = new - old if rule.sign == "+" else old - new
            limit = abs(old) * rule.amount / 100.0 if rule.percent else rule.amount
            if delta > limit + 1e-12:
                rel = f" ({(new - old) / old * 100:+.1f}%)" if old else ""
                out.append(f"{label}: {rule.metric} {new:g} vs baseline {old:g}{rel} exceeds {rule}")
    return out
