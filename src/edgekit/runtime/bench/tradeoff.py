"""Quality vs latency: which artifacts are worth considering (the Pareto front) and by what measure.

Quality is the task accuracy when the eval data has labels. A user's own unlabelled data still
says how faithful each artifact is to the reference model (the manifest's validation metrics):
top-1 agreement for classifiers, else the signal-to-noise ratio of the outputs. An artifact is on
the Pareto front when no other one is at least as fast *and* at least as good, and strictly better
in one of the two.

Example:
    >>> pareto_front([(1.0, 99.0), (2.0, 99.5), (3.0, 99.0)])
    [True, True, False]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class Metric:
    """A quality measure the trade-off chart can plot (higher is better).

    Attributes:
        key: Where the value comes from: ``accuracy`` (bench result, else the manifest's validation),
            ``top1_agreement`` or ``snr_db`` (the manifest's validation against the reference).
        label: Axis title.
        unit: ``"%"`` or ``"dB"``.
        why: One sentence for the page: why this measure and not accuracy.
    """

    key: str
    label: str
    unit: str
    why: str


ACCURACY = Metric("accuracy", "accuracy (%)", "%", "task accuracy on the labelled eval data")
AGREEMENT = Metric("top1_agreement", "top-1 agreement with the reference (%)", "%",
                   "the eval data has no labels: how often each artifact's top class matches the original model's")
SNR = Metric("snr_db", "SNR vs the reference (dB)", "dB",
             "the eval data has no labels and the outputs are not class scores: signal-to-noise ratio "
             "of each artifact's outputs against the original model's")
METRICS = (ACCURACY, AGREEMENT, SNR)


def quality(row: Mapping[str, Any], validation: Mapping[str, Any] | None, metric: Metric) -> float | None:
    """One artifact's value of ``metric`` (agreement as a percentage), or ``None``.

    Accuracy measured by bench on this device wins over the conversion-time figure.

    Example:
        >>> quality({"accuracy": None}, {"accuracy": 99.7, "top1_agreement": 0.995}, AGREEMENT)
        99.5
    """
    v = validation or {}
    if metric.key == ACCURACY.key:
        value = row.get("accuracy") if row.get("accuracy") is not None else v.get("accuracy")
    else:
        value = v.get(metric.key)
        if value is not None and metric.key == AGREEMENT.key:
            value = float(value) * 100.0
    return None if value is None else float(value)


def choose_metric(rows: Sequence[Mapping[str, Any]], validation: Mapping[str, Mapping[str, Any]]) -> Metric | None:
    """The quality measure every row has: accuracy, else top-1 agreement, else SNR; ``None``: nothing to plot.

    Every row, or the chart would compare accuracy of some artifacts with agreement of others.
    Top-1 agreement gives way to SNR when all artifacts agree equally often (all 100 % on an
    easy eval set): a measure with no spread cannot separate them, SNR still can.

    Example:
        >>> rows = [{"target": "a", "accuracy": None}, {"target": "b", "accuracy": None}]
        >>> v = {"a": {"snr_db": 40.0, "top1_agreement": 1.0}, "b": {"snr_db": 130.0, "top1_agreement": 1.0}}
        >>> choose_metric(rows, v).key
        'snr_db'
    """
    if not rows:
        return None

    def values(metric: Metric) -> list[float] | None:
        vs = [quality(r, validation.get(str(r.get("target"))), metric) for r in rows]
        return None if any(v is None for v in vs) else [float(v) for v in vs if v is not None]

    if values(ACCURACY) is not None:
        return ACCURACY
    agreement, snr = values(AGREEMENT), values(SNR)
    if agreement is not None and (len(set(agreement)) > 1 or snr is None):
        return AGREEMENT
    if snr is not None and agreement is not None:
        return dataclasses.replace(SNR, why=f"the eval data has no labels and every artifact agrees with the original "
                                            f"model's top class equally often ({agreement[0]:.2f} %): the signal-to-noise "
                                            "ratio of the outputs against the original model's separates them")
    return SNR if snr is not None else None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For ``(latency, quality)`` points: which are not dominated (lower latency, higher quality).

    ``j`` dominates ``i`` when it is no slower, no worse, and strictly better in one; equal points
    are both kept (neither dominates the other).

    Example:
        >>> pareto_front([(1.0, 90.0), (1.0, 90.0), (0.5, 80.0), (2.0, 85.0)])
        [True, True, True, False]
    """
    front = []
    for i, (lat, q) in enumerate(points):
        dominated = any(l2 <= lat and q2 >= q and (l2 < lat or q2 > q) for j, (l2, q2) in enumerate(points) if j != i)
        front.append(not dominated)
    return front


@dataclass(frozen=True)
class Point:
    """One artifact on the trade-off chart.

    Attributes:
        target: ``format:precision``.
        latency_ms: p50 per call.
        quality: Value of the chart's metric.
        size_bytes: File size (marker area).
        pareto: On the Pareto front.
        chosen: The artifact ``load()`` would pick.
    """

    target: str
    latency_ms: float
    quality: float
    size_bytes: int | None
    pareto: bool
    chosen: bool


_SETTING = ("batch_size", "num_threads", "concurrency")  # what a sweep varies (concurrency: throughput mode)


def points(doc: Mapping[str, Any]) -> tuple[Metric | None, list[Point], dict[str, Any]]:
    """The chart's metric, its points and the setting they were timed at, from a bench document.

    A sweep times each artifact at several settings; per-call latency at batch 8 (or with two
    streams sharing the cores) is not comparable with batch 1, so the chart takes the first setting
    of the sweep (the table has every one).

    Example:
        >>> doc = {"results": [{"target": "t:fp32", "status": "ok", "latency_ms": {"p50": 1.0}, "accuracy": 99.0,
        ...                     "batch_size": 1, "num_threads": 2, "size_bytes": 10}], "chosen": {"target": "t:fp32"}}
        >>> metric, pts, setting = points(doc)
        >>> metric.key, pts[0].pareto, pts[0].chosen, setting
        ('accuracy', True, True, {'batch_size': 1, 'num_threads': 2})
    """
    ok = [r for r in doc.get("results", []) if r.get("status") == "ok" and (r.get("latency_ms") or {}).get("p50")]
    if not ok:
        return None, [], {}
    keys = [k for k in _SETTING if k in ok[0]]
    setting = {k: ok[0].get(k) for k in keys}
    rows = [r for r in ok if {k: r.get(k) for k in keys} == setting]
    validation = doc.get("validation") or {}
    metric = choose_metric(rows, validation)
    if metric is None:
        return None, [], setting
    values = [quality(r, validation.get(str(r.get("target"))), metric) for r in rows]
    lat = [float(r["latency_ms"]["p50"]) for r in rows]
    front = pareto_front(list(zip(lat, [float(v) for v in values if v is not None])))
    chosen = (doc.get("chosen") or {}).get("target")
    return metric, [Point(str(r.get("target")), lt, float(v), r.get("size_bytes"), f,
                          r.get("target") == chosen)
                    for r, lt, v, f in zip(rows, lat, values, front) if v is not None], setting
