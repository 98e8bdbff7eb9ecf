"""Calibration-set checks: is the representative data big enough and does it represent real inputs?

No converter warns about either, and both cause the "int8 was fine here, broken on the device" story:
a tiny calibration set fixes ranges from a handful of samples; unrepresentative data fixes ranges
that real inputs then overflow. We measure the second directly on the int8 artifact: run calibration
and evaluation samples through it, keep every intermediate tensor, and count values pinned at the
int8 limits (saturated). A layer that saturates much more on eval data than on calibration data is
named in the warning.

Example:
    >>> saturation(np.array([-128, 0, 127, 5], np.int8))
    0.5
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

MIN_SAMPLES = 100  # TFLite's guidance is 100-500 representative samples
SATURATION_FLOOR = 0.01  # below 1 % saturated values a layer is not worth a warning
# Calibration data pins its own extremes at the limits by construction (its max maps to 127), so
# eval is compared with it: flagged when eval saturates more than twice as often, plus one point.
SATURATION_RATIO = 2.0
SATURATION_MARGIN = 0.01


def saturation(q: np.ndarray, zero_point: int | None = None) -> float:
    """Fraction of values at the integer type's limits.

    When the zero point *is* the lower limit (ranges starting at 0, e.g. after ReLU), values there
    are real zeros, not clipping, so only the upper limit counts.
    """
    if q.size == 0:
        return 0.0
    info = np.iinfo(q.dtype)
    pinned = q == info.max
    if zero_point is None or zero_point != info.min:
        pinned |= q == info.min
    return float(np.count_nonzero(pinned)) / q.size


def _layer_saturation(model: Path, feeds: Sequence[Sequence[np.ndarray]], input_order: Sequence[int]) -> dict[str, float]:
    """Mean saturation per int8 activation tensor over ``feeds`` (one list of arrays per sample)."""
    from edgekit.runtime.backends.litert import open_interpreter

    it = open_interpreter(model, preserve_all_tensors=True)
    it.allocate_tensors()
    ins = sorted(it.get_input_details(), key=lambda d: d["index"])
    # Activation tensors: graph inputs and op outputs (constants such as weights are neither).
    outputs = {o for op in it._get_ops_details() for o in op["outputs"]} | {d["index"] for d in ins}
    acts = [d for d in it.get_tensor_details()
            if d["index"] in outputs and np.dtype(d["dtype"]) in (np.dtype(np.int8), np.dtype(np.int16)) and d["quantization"][0]]
    sums = {d["name"]: 0.0 for d in acts}
    for sample in feeds:
        for d, pos in zip(ins, input_order):
            x = sample[pos]
            if np.dtype(d["dtype"]) != x.dtype and d["quantization"][0]:
                scale, zp = d["quantization"]
                info = np.iinfo(d["dtype"])
                x = np.clip(np.round(x / scale) + zp, info.min, info.max).astype(d["dtype"])
            it.set_tensor(d["index"], x.astype(d["dtype"], copy=False))
        it.invoke()
        for d in acts:
            sums[d["name"]] += saturation(it.get_tensor(d["index"]), int(d["quantization"][1]))
    n = max(1, len(feeds))
    return {k: v / n for k, v in sums.items()}


def input_range_warnings(calib: Any, evald: Any, input_names: Sequence[str], threshold: float = 0.01) -> list[str]:
    """Inputs whose eval values fall outside the calibration data's [min, max] more than ``threshold`` of the time."""
    out = []
    for name, c, e in zip(input_names, calib.inputs, evald.inputs):
        if c.dtype.kind != "f" or c.size == 0 or e.size == 0:
            continue
        lo, hi = float(c.min()), float(c.max())
        span = max(hi - lo, 1e-12)
        outside = _share_outside(e, lo - 0.01 * span, hi + 0.01 * span)
        if outside > threshold:
            out.append(f"input {name!r}: {outside * 100:.1f}% of eval values fall outside the calibration data's range "
                       f"[{lo:.4g}, {hi:.4g}] (eval: [{float(e.min()):.4g}, {float(e.max()):.4g}]): calibrate on data "
                       "preprocessed exactly like real inputs")
    return out


# Values per comparison block: the boolean temporaries of a whole 1,000-sample 224x224 eval set were
# 290 MB on top of the convert's peak; 4 Mi values keep them at a few MB, and a memory-mapped eval
# file is read one block at a time.
_BLOCK_VALUES = 1 << 22


def _share_outside(e: np.ndarray, lo: float, hi: float) -> float:
    """The fraction of ``e``'s values below ``lo`` or above ``hi`` (NaN counts as inside, as before)."""
    rows = max(1, _BLOCK_VALUES // max(1, e[0].size))
    n = 0
    for i in range(0, len(e), rows):
        block = e[i:i + rows]
        n += int(np.count_nonzero(block < lo)) + int(np.count_nonzero(block > hi))
    return n / e.size


def calibration_warnings(calib: Any, evald: Any, model: Path, input_names: Sequence[str], *, max_samples: int = 100,
                         artifact_inputs: Sequence[str] | None = None) -> list[str]:
    """One-line warnings about the calibration set for an int8 ``.tflite`` artifact.

    Args:
        calib: The calibration Dataset.
        evald: The evaluation Dataset (held-out, real inputs).
        model: The int8 artifact.
        input_names: The source model's input names, in the datasets' order.
        max_samples: Samples of each set to run (cost: one invoke each).
        artifact_inputs: The artifact's input names in tensor-index order (default: same as input_names).
    """
    out = []
    if calib is not None and len(calib) < MIN_SAMPLES:
        out.append(f"calibration set has only {len(calib)} samples (< {MIN_SAMPLES}): activation ranges may miss real "
                   "inputs; TFLite's guidance is 100-500 representative samples")
    if calib is None or evald is None or evald.name == "random":
        return out
    order = [list(input_names).index(n) for n in (artifact_inputs or input_names)]
    try:
        cal = _layer_saturation(model, list(calib.take(max_samples).samples()), order)
        ev = _layer_saturation(model, list(evald.take(max_samples).samples()), order)
    except Exception as exc:  # noqa: BLE001 - a diagnostic must never fail the conversion
        return out + [f"could not check activation ranges on eval data ({type(exc).__name__}: {exc})"]
    out += input_range_warnings(calib, evald, input_names)
    flagged = sorted(((ev[k], cal.get(k, 0.0), k) for k in ev
                      if ev[k] > SATURATION_FLOOR and ev[k] > SATURATION_RATIO * cal.get(k, 0.0) + SATURATION_MARGIN),
                     reverse=True)
    if flagged:
        names = "; ".join(f"{k} ({e * 100:.1f}% saturated on eval vs {c * 100:.1f}% on calibration)" for e, c, k in flagged[:5])
        out.append(f"eval data falls outside the calibrated ranges in {len(flagged)} layer(s): {names}: the calibration "
                   "data may not be representative of real inputs")
    return out
