"""Validate an artifact against the reference model: numbers, not "it converted".

Metrics (per artifact, on held-out data):
    ``max_abs_err``: largest |artifact - reference| over every output element.
    ``rel_max_abs_err``: the same divided by ``max(1, peak |reference|)``, so logits of any scale
        are judged alike (this is what the ``max_abs_err`` tolerance checks).
    ``snr_db``: 10 log10(signal power / error power), the worst output; capped at
        :data:`SNR_CAP_DB` for exact matches (JSON has no infinity).
    ``top1_agreement``: fraction of samples whose arg-max matches the reference (first output
        with a class axis).
    ``accuracy`` / ``reference_accuracy`` / ``accuracy_drop`` (points): with integer labels.

Example:
    >>> ref = [np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)]
    >>> m = compare(ref, [ref[0] + 0.01], labels=np.array([1, 0]), names=["p"])
    >>> m["top1_agreement"], m["accuracy"], round(m["max_abs_err"], 4)
    (1.0, 100.0, 0.01)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edgekit.convert.recipe import Tolerance
from edgekit.errors import InputError

SNR_CAP_DB = 200.0


def snr_db(reference: np.ndarray, actual: np.ndarray) -> float:
    """Signal-to-noise ratio of ``actual`` against ``reference`` in dB (capped, see module doc).

    Example:
        >>> snr_db(np.ones(4), np.ones(4) * 1.1)
        20.0
    """
    ref = np.asarray(reference, np.float64)
    err = np.asarray(actual, np.float64) - ref
    noise = float(np.sum(err * err))
    signal = float(np.sum(ref * ref))
    if noise == 0.0:
        return SNR_CAP_DB
    if signal == 0.0:
        return -SNR_CAP_DB
    return float(min(SNR_CAP_DB, round(10.0 * np.log10(signal / noise), 4)))


def _class_axis(arr: np.ndarray) -> bool:
    return arr.ndim == 2 and arr.shape[1] > 1


def compare(reference: Sequence[np.ndarray], actual: Sequence[np.ndarray], *, labels: np.ndarray | None = None,
            names: Sequence[str] | None = None) -> dict[str, Any]:
    """Metrics of ``actual`` outputs against ``reference`` outputs (same order, same shapes)."""
    names = list(names or [f"output_{i}" for i in range(len(reference))])
    if len(actual) != len(reference):
        raise InputError(f"artifact has {len(actual)} outputs but the reference has {len(reference)}")
    per: dict[str, dict[str, float]] = {}
    max_abs = 0.0
    rel = 0.0
    worst_snr = SNR_CAP_DB
    nonfinite = 0
    for name, ref, act in zip(names, reference, actual):
        ref = np.asarray(ref, np.float32)
        act = np.asarray(act, np.float32)
        if ref.shape != act.shape:
            raise InputError(f"output {name!r}: artifact shape {act.shape} differs from the reference's {ref.shape}")
        # NaN/inf from a broken artifact must fail loudly, not vanish inside max() and mean().
        bad = int(np.count_nonzero(~np.isfinite(act)) - np.count_nonzero(~np.isfinite(ref)))
        nonfinite += max(0, bad)
        ok = np.isfinite(act) & np.isfinite(ref)
        diff = np.abs(act.astype(np.float64) - ref.astype(np.float64))[ok]
        m = float(diff.max()) if diff.size else 0.0
        s = snr_db(ref[ok], act[ok]) if bad <= 0 else -SNR_CAP_DB
        per[name] = {"max_abs_err": m, "mean_abs_err": float(diff.mean()) if diff.size else 0.0, "snr_db": s,
                     "nonfinite": max(0, bad)}
        max_abs = max(max_abs, m)
        rel = max(rel, m / max(1.0, float(np.abs(ref).max()) if ref.size else 1.0))
        worst_snr = min(worst_snr, s)
    out: dict[str, Any] = {
        "samples": int(len(reference[0])) if reference else 0,
        "max_abs_err": max_abs,
        "rel_max_abs_err": rel,
        "snr_db": worst_snr,
        "nonfinite": nonfinite,
        "outputs": per,
        "top1_agreement": None,
        "accuracy": None,
        "reference_accuracy": None,
        "accuracy_drop": None,
    }
    cls = next((i for i, r in enumerate(reference) if _class_axis(np.asarray(r))), None)
    if cls is not None:
        ref_top = np.argmax(reference[cls], axis=1)
        act_top = np.argmax(actual[cls], axis=1)
        out["top1_agreement"] = float(np.mean(ref_top == act_top))
        if labels is not None and np.asarray(labels).ndim == 1 and np.asarray(labels).dtype.kind in "iu":
            lab = np.asarray(labels)
            out["reference_accuracy"] = round(float(np.mean(ref_top == lab)) * 100.0, 4)
            out["accuracy"] = round(float(np.mean(act_top == lab)) * 100.0, 4)
            out["accuracy_drop"] = round(out["reference_accuracy"] - out["accuracy"], 4)
    return out


def judge(metrics: dict[str, Any], tol: Tolerance) -> list[str]:
    """Reasons the metrics break the tolerance (empty list: passed).

    Example:
        >>> judge({"snr_db": 10.0, "rel_max_abs_err": 0.0}, Tolerance(min_snr_db=20.0))
        ['snr 10.0 dB < 20 dB']
    """
    why: list[str] = []
    if metrics.get("nonfinite"):
        why.append(f"{metrics['nonfinite']} NaN/inf output values where the reference is finite")
    if tol.max_abs_err is not None and metrics.get("rel_max_abs_err") is not None and metrics["rel_max_abs_err"] > tol.max_abs_err:
        why.append(f"max abs err {metrics['max_abs_err']:.3g} (relative {metrics['rel_max_abs_err']:.3g}) > {tol.max_abs_err:g}")
    if tol.min_snr_db is not None and metrics.get("snr_db") is not None and metrics["snr_db"] < tol.min_snr_db:
        why.append(f"snr {metrics['snr_db']:.1f} dB < {tol.min_snr_db:g} dB")
    if tol.min_top1_agreement is not None and metrics.get("top1_agreement") is not None \
            and metrics["top1_agreement"] < tol.min_top1_agreement:
        why.append(f"top-1 agreement {metrics['top1_agreement']:.3f} < {tol.min_top1_agreement:g}")
    if tol.max_accuracy_drop is not None and metrics.get("accuracy_drop") is not None \
            and metrics["accuracy_drop"] > tol.max_accuracy_drop:
        why.append(f"accuracy drop {metrics['accuracy_drop']:.2f} points > {tol.max_accuracy_drop:g}")
    return why
