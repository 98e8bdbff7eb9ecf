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

from edgekit.errors import EdgekitError
from edgekit.manifest import Manifest
from edgekit.runtime.bench.config import SCHEMA, BenchConfig, BenchResult
from edgekit.runtime.device import device_info


def report(results: Sequence[BenchResult], config: BenchConfig, *, manifest: Manifest | None = None) -> dict[str, Any]:
    """The JSON document: schema, device, config, results, notes; with a folder's manifest, also its facts.

    Args:
        results: What :func:`~edgekit.runtime.bench.bench_path` returned.
        config: The (first) configuration benched.
        manifest: The output folder's manifest when a folder was benched: adds ``chosen``,
            ``validation``, ``eval`` and ``model`` (see :func:`folder_facts`). Additive to ``edgekit.bench/1``:
            readers of the older document ignore them.

    Example:
        >>> report([], BenchConfig())["schema"]
        'edgekit.bench/1'
    """
    device = device_info()
    doc = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "config": dataclasses.asdict(config),
        "results": [r.to_dict() for r in results],
        "notes": notes(results),
    }
    if manifest is not None:
        doc.update(folder_facts(manifest, device))
    return doc


# The validation numbers a reader compares artifacts by; per-output details stay in the manifest.
_VALIDATION_KEYS = ("samples", "accuracy", "reference_accuracy", "accuracy_drop", "top1_agreement", "snr_db",
                    "max_abs_err")


def folder_facts(manifest: Manifest, device: dict[str, Any] | None = None) -> dict[str, Any]:
    """What an output folder adds to a bench document: the artifact ``load()`` picks, validation, eval data.

    ``chosen`` is :func:`~edgekit.runtime.loader.choose_artifact` on ``device`` (``target`` is
    ``None`` and ``reason`` says why when no artifact qualifies); ``validation`` maps each target
    to its validation metrics against the reference model (the trade-off chart's quality measure
    when the eval data has no labels); ``eval`` is the manifest's description of the eval data;
    ``model`` the source model's name.

    Example:
        >>> from edgekit.manifest import Artifact
        >>> m = Manifest(recipe={}, source={}, artifacts=(Artifact("tflite:fp32", "tflite", "fp32", "passed",
        ...              path="a.tflite", validation={"snr_db": 134.5, "outputs": {}}),))
        >>> facts = folder_facts(m, {"machine": "x86_64", "cpu_flags": [], "gpus": []})
        >>> facts["chosen"]["target"], facts["validation"]
        ('tflite:fp32', {'tflite:fp32': {'snr_db': 134.5}})
    """
    from edgekit.runtime.loader import choose_artifact

    try:
        artifact, why = choose_artifact(manifest, device=device)
        chosen = {"target": artifact.target, "reason": why}
    except EdgekitError as exc:
        chosen = {"target": None, "reason": str(exc)}
    validation = {a.target: {k: a.validation[k] for k in _VALIDATION_KEYS if a.validation.get(k) is not None}
                  for a in manifest.artifacts}
    return {"chosen": chosen, "validation": validation, "eval": dict(manifest.eval_data),
            "model": manifest.source.get("name")}


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
