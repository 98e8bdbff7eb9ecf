"""The bench JSON document (schema ``edgekit.bench/1``) and the findings worth a line in it.

Example:
    >>> from edgekit.runtime.bench.config import BenchResult
    >>> fp32 = BenchResult("m", "tflite:fp32", "tflite", "fp32", "ok", latency_ms={"p50": 1.0})
    >>> int8 = BenchResult("m", "tflite:int8", "tflite", "int8", "ok", latency_ms={"p50": 1.1})
    >>> notes([fp32, int8])[0].split(" (")[0]
    'tflite:int8 is not faster than tflite:fp32 here'
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any, Sequence

from edgekit.runtime.bench.config import SCHEMA, BenchConfig, BenchResult
from edgekit.runtime.device import device_info


def report(results: Sequence[BenchResult], config: BenchConfig) -> dict[str, Any]:
    """The JSON document: schema, device, config, results, and ratios against the fp32 artifact.

    Example:
        >>> report([], BenchConfig())["schema"]
        'edgekit.bench/1'
    """
    return {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device_info(),
        "config": dataclasses.asdict(config),
        "results": [r.to_dict() for r in results],
        "notes": notes(results),
    }


def notes(results: Sequence[BenchResult]) -> list[str]:
    """Findings worth a line: quantized artifacts that are not faster than fp32 of the same format."""
    out = []
    fp32 = {r.format: r for r in results if r.precision == "fp32" and r.status == "ok"}
    for r in results:
        ref = fp32.get(r.format)
        if r.status != "ok" or ref is None or r is ref or r.precision in ("fp32", "fp16"):
            continue
        ratio = r.latency_ms["p50"] / ref.latency_ms["p50"]
        if ratio >= 0.95:
            out.append(f"{r.target} is not faster than {ref.target} here (p50 {ratio:.2f}x): int8 needs int8 kernels "
                       "(VNNI / dot-product) to pay off; prefer the smaller file only if size matters more")
    return out
