"""Accuracy-aware int8: meet a budget by keeping the most sensitive layers in float, with few conversions.

The search is plain logic over a ranked layer list and an ``evaluate(keep_float)`` callback (which
converts and validates), so it is the same for TFLite (denylisted nodes) and ONNX (nodes to
exclude) and testable without an engine.

Order of work, each step only when the previous one missed the budget:
    1. plain int8 (the pipeline already has it: 0 extra conversions when it meets the budget);
    2. the float-heavy end: every ranked layer but the least sensitive kept in float (all of them
       would be the float model). If even that misses, stop with a message (the problem is
       elsewhere: calibration data, a layer that is not quantized);
    3. binary search for the smallest top-k (k layers plus their producers) that meets the budget:
       ~log2(N) conversions, assuming more float layers never hurt (true in practice, and the
       float-heavy end checks the assumption's end point);
    4. optionally int16x8 (16-bit activations, int8 weights) when 2 fails.

Example:
    >>> from edgekit.convert.sensitivity import LayerError
    >>> layers = [LayerError(n, "FC", 1.0, "rmse/scale", i + 1) for i, n in enumerate("abcdefgh")]
    >>> def evaluate(keep):  # pretend the budget needs 'a' and 'b' in float
    ...     return Candidate(keep, "int8", {"accuracy_drop": 0.5 if {"a", "b"} <= set(keep) else 9.0}, 100)
    >>> r = search(layers, evaluate, lambda c: c.metrics["accuracy_drop"] <= 1.0, first=evaluate(()))
    >>> r.best.keep_float, r.conversions
    (('a', 'b'), 4)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from edgekit.convert.sensitivity import LayerError, keep_float_set


@dataclass(frozen=True)
class Candidate:
    """One conversion the search tried."""

    keep_float: tuple[str, ...]
    precision: str
    metrics: dict[str, Any]
    bytes: int | None = None
    note: str = ""

    def to_dict(self, total_layers: int, ranked: set[str] | None = None) -> dict[str, Any]:
        """Plain data for the manifest; ``ranked`` (the ranked layer names) makes the int8 share
        count layers, not the extra nodes (ONNX's Gemm before a Relu) that come along with them."""
        floats = len([n for n in self.keep_float if ranked is None or n in ranked])
        return {
            "precision": self.precision,
            "keep_float": list(self.keep_float),
            "layers_int8_pct": round(100.0 * (total_layers - floats) / total_layers, 1) if total_layers else None,
            "accuracy": self.metrics.get("accuracy"),
            "accuracy_drop": self.metrics.get("accuracy_drop"),
            "snr_db": self.metrics.get("snr_db"),
            "top1_agreement": self.metrics.get("top1_agreement"),
            "bytes": self.bytes,
            "note": self.note,
        }


@dataclass
class SearchResult:
    """The chosen candidate (``None`` if nothing met the budget), everything tried, and why."""

    best: Candidate | None
    tried: list[Candidate] = field(default_factory=list)
    message: str = ""

    @property
    def conversions(self) -> int:
        """Conversions beyond the plain int8 one the pipeline made anyway."""
        return len([c for c in self.tried if c.note != "plain int8"])


def search(layers: Sequence[LayerError], evaluate: Callable[[tuple[str, ...]], Candidate],
           meets: Callable[[Candidate], bool], *, first: Candidate,
           try_int16x8: Callable[[], Candidate] | None = None,
           progress: Callable[[str], None] | None = None) -> SearchResult:
    """Find the smallest set of float layers that meets the budget (see the module docstring)."""
    say = progress or (lambda _m: None)
    first = Candidate(first.keep_float, first.precision, first.metrics, first.bytes, "plain int8")
    result = SearchResult(best=None, tried=[first])
    if meets(first):
        result.best, result.message = first, "plain int8 meets the budget: nothing kept in float"
        return result
    n = len(layers)
    if n == 0:
        result.message = "no quantized layers were found to keep in float"
        return _fallback(result, try_int16x8, meets, say)
    everything = {layer.name for layer in layers}

    def all_float(keep: tuple[str, ...]) -> bool:
        # Keeping every ranked layer float is the float model, not an int8 answer (and TFLite's
        # debugger refuses to build it); it is known to meet the budget, so it is never converted.
        return everything <= set(keep)

    # The float-heavy end: everything but the least sensitive layer float (all of them is the float model).
    heavy_keep = keep_float_set(layers, n - 1)
    best: Candidate | None = None
    if n > 1 and not all_float(heavy_keep):
        heavy = evaluate(heavy_keep)
        heavy = Candidate(heavy.keep_float, heavy.precision, heavy.metrics, heavy.bytes,
                          f"top {n - 1} of {n} ranked layers in float")
        result.tried.append(heavy)
        say(f"    float-heavy end ({len(heavy.keep_float)} layers float): {_brief(heavy)}")
        if not meets(heavy):
            result.message = (f"even with {n - 1} of {n} quantized layers kept in float the budget is missed ({_brief(heavy)}): "
                              "check the calibration data is representative, or that the loss is not in fp32 itself")
            return _fallback(result, try_int16x8, meets, say)
        best = heavy
    lo, hi = 0, (n - 1 if best is not None else n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        keep = keep_float_set(layers, mid)
        if all_float(keep):
            hi = mid  # the float model: meets, but is no int8 answer; look for fewer
            continue
        cand = evaluate(keep)
        cand = Candidate(cand.keep_float, cand.precision, cand.metrics, cand.bytes, f"top {mid} layers (+ producers) in float")
        result.tried.append(cand)
        ok = meets(cand)
        say(f"    top {mid} in float ({len(cand.keep_float)} layers): {_brief(cand)} -> {'meets' if ok else 'misses'}")
        if ok:
            hi, best = mid, cand
        else:
            lo = mid
    if best is None:
        result.message = (f"only keeping all {n} quantized layers in float meets the budget, which is the float model: "
                          "use an fp32/fp16 target, or int16x8")
        return _fallback(result, try_int16x8, meets, say)
    result.best = best
    ranked_kept = sum(1 for layer in layers if layer.name in best.keep_float)
    nodes = f" ({len(best.keep_float)} graph nodes)" if len(best.keep_float) != ranked_kept else ""
    result.message = f"kept {ranked_kept} of {n} quantized layers in float{nodes} to meet the budget"
    return result


def _fallback(result: SearchResult, try_int16x8: Callable[[], Candidate] | None, meets: Callable[[Candidate], bool],
              say: Callable[[str], None]) -> SearchResult:
    if try_int16x8 is None:
        return result
    cand = try_int16x8()
    cand = Candidate(cand.keep_float, "int16x8", cand.metrics, cand.bytes, "16-bit activations, int8 weights")
    result.tried.append(cand)
    say(f"    int16x8: {_brief(cand)}")
    if meets(cand):
        result.best = cand
        result.message += "; int16x8 (16-bit activations, int8 weights) meets it instead"
    return result


def _brief(c: Candidate) -> str:
    m = c.metrics
    parts = []
    if m.get("accuracy_drop") is not None:
        parts.append(f"accuracy drop {m['accuracy_drop']:.2f}")
    if m.get("snr_db") is not None:
        parts.append(f"snr {m['snr_db']:.1f} dB")
    if m.get("top1_agreement") is not None:
        parts.append(f"top-1 {m['top1_agreement'] * 100:.1f}%")
    return ", ".join(parts) or "no metrics"
