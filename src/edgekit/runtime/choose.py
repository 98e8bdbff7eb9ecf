"""Which artifact of an output folder should this device run, and why.

The rules encode what we measured and what the engines document, not a guess that int8 always wins
(ANCHORS: on an x86 CPU without VNNI, full int8 TFLite was no faster than fp32). They only *order*
candidates that this device can run and that passed validation; ``edgekit bench`` is how you check.
The per-device order is written once, in each format's ``prefer`` ranks in :data:`edgekit.formats.FORMATS`.

Where the rules are not enough, :mod:`edgekit.runtime.pick` measures; the measured choice is
decided and recorded here too (:func:`candidates`, :func:`decide`, :class:`Pick`), with the rule
order as the prior that breaks ties.

Example:
    >>> from edgekit.manifest import Artifact
    >>> arts = [Artifact("tflite:fp32", "tflite", "fp32", "passed", path="a"),
    ...         Artifact("tflite:int8", "tflite", "int8", "passed", path="b")]
    >>> pi = {"machine": "aarch64", "cpu_flags": ["asimddp", "neon"], "gpus": [], "system": "Linux"}
    >>> rank(arts, pi, runnable=lambda a: None)[0][0].target
    'tflite:int8'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from edgekit.formats import FORMATS, preference
from edgekit.manifest import NOT_VALIDATED, PASSED, Artifact, Manifest

PICK_SCHEMA = "edgekit.pick/1"
TIE = 0.03  # p50s closer than this to the fastest count as equally fast (run-to-run noise on a shared CPU)


ARM = ("aarch64", "arm64", "armv7l")
# A Jetson is an ARM CPU beside an integrated GPU: the GPU-only engines first, then the ARM CPU's order.
JETSON = "jetson"


def device_class(device: dict[str, Any]) -> tuple[str, str]:
    """The device's class and a one-line description.

    The class is a key of :data:`edgekit.formats.DEVICE_CLASSES`, or :data:`JETSON`, whose order
    is composed from two of them (:func:`class_order`).

    Example:
        >>> device_class({"machine": "x86_64", "cpu_flags": ["avx2", "avx512_vnni"], "gpus": []})
        ('x86_vnni', 'x86 CPU with VNNI: int8 kernels pay off')
        >>> device_class({"machine": "aarch64", "cpu_core": "Cortex-A72", "cpu_flags": ["asimd", "neon"], "gpus": []})[1]
        'ARM CPU (Cortex-A72, NEON without dot-product): int8 TFLite with XNNPACK first'
    """
    flags = set(device.get("cpu_flags") or ())
    arm = device.get("machine") in ARM
    core = f"{device['cpu_core']}, " if device.get("cpu_core") else ""
    dot = "with dot-product int8 kernels" if flags & {"asimddp", "i8mm"} else "NEON without dot-product"
    if device.get("system") == "Darwin":
        return "mac", "macOS: CoreML first (Neural Engine / GPU)"
    if arm and device.get("jetson"):
        # Orin's A78AE has dot-product; its GPU only helps through TensorRT (or TF-TRT): ONNX Runtime
        # from PyPI is CPU-only on aarch64, so without TensorRT the ARM CPU's order applies.
        return JETSON, (f"{device.get('board') or 'Jetson'} ({core}{dot}): TensorRT on the GPU first, "
                        "else int8 TFLite with XNNPACK on the CPU")
    if device.get("gpus"):
        return "gpu", f"NVIDIA GPU ({', '.join(device['gpus'])}): TensorRT, then ONNX Runtime CUDA"
    if arm:
        return "arm", f"ARM CPU ({core}{dot}): int8 TFLite with XNNPACK first"
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "x86_vnni", "x86 CPU with VNNI: int8 kernels pay off"
    return "x86", "x86 CPU without VNNI: int8 is not reliably faster than fp32 here, fp32 first"


def class_order(key: str) -> list[tuple[str, str]]:
    """``(format, precision)`` best first for a device class (:func:`device_class`'s key).

    :data:`JETSON`: the GPU class's order for the formats that run on a GPU only (no CPU class
    ranks them: TensorRT, TF-TRT), then the ARM class's order.

    Example:
        >>> class_order("jetson")[0], class_order("jetson")[-1] == class_order("arm")[-1]
        (('tensorrt', 'int8'), True)
        >>> ("onnx", "fp16") in class_order("jetson")
        False
    """
    if key != JETSON:
        return preference(key)
    cpu = {fmt for c in ("arm", "x86", "x86_vnni") for fmt, _ in preference(c)}
    return [fp for fp in preference("gpu") if fp[0] not in cpu] + preference("arm")


def _may_run_unvalidated(a: Artifact, device: dict[str, Any]) -> bool:
    # "not validated" means the converting machine could not run the format (CoreML off macOS). It
    # is a candidate only on a device of a platform its format is bound to: there it runs, and
    # nowhere else is it more than an unchecked guess.
    spec = FORMATS.get(a.format)
    return spec is not None and bool(spec.platforms) and spec.runs_on(str(device.get("system")))


def rank(artifacts: Sequence[Artifact], device: dict[str, Any], runnable: Callable[[Artifact], str | None]
         ) -> list[tuple[Artifact, str]]:
    """Candidates this device can run, best first, each with why it is (or is not) first.

    Args:
        artifacts: The manifest's artifacts.
        device: :func:`edgekit.runtime.device.device_info` (or a fixture).
        runnable: Returns ``None`` when the artifact's backend can run here, else the reason.
    """
    key, why_class = device_class(device)
    order = class_order(key)
    pos = {fp: i for i, fp in enumerate(order)}
    out = []
    for i, a in enumerate(artifacts):
        if not a.path or a.status not in (PASSED, NOT_VALIDATED):
            continue
        if a.status == NOT_VALIDATED and not _may_run_unvalidated(a, device):
            continue
        if runnable(a) is not None:
            continue
        key = pos.get((a.format, a.precision), len(order) + i)
        out.append((key, i, a))
    out.sort(key=lambda t: (t[0], t[1]))
    return [(a, why_class) for _, _, a in out]


def skipped(artifacts: Sequence[Artifact], device: dict[str, Any], runnable: Callable[[Artifact], str | None]) -> list[str]:
    """Why each artifact that :func:`rank` left out was left out (for explanations and ``doctor``)."""
    out = []
    for a in artifacts:
        if not a.path:
            out.append(f"{a.target}: no file ({a.status})")
        elif a.status not in (PASSED, NOT_VALIDATED):
            out.append(f"{a.target}: validation {a.status}")
        elif a.status == NOT_VALIDATED and not _may_run_unvalidated(a, device):
            out.append(f"{a.target}: not validated and cannot run on this platform")
        else:
            reason = runnable(a)
            if reason:
                out.append(f"{a.target}: {reason}")
    return out


@dataclass(frozen=True)
class Timing:
    """One candidate's measured figures.

    Attributes:
        target: The artifact's ``format:precision``.
        prior: Its position in the rule table's order for this device (0: the rules' choice).
        p50_ms: Median of the per-round medians of ``session.run`` (ms per call of one batch).
        p90_ms: 90th percentile over every timed call.
        runs: Timed calls in all rounds.
        round_p50_ms: Each round's median, in round order.
        first_ms: The first inference (after loading), not in the figures above.
        load_ms: Opening the artifact (engine load), not in the figures above.
        validation: The recorded validation, in one line (``"top-1 100.0 %, snr 110 dB"``).
    """

    target: str
    prior: int
    p50_ms: float
    p90_ms: float
    runs: int
    round_p50_ms: tuple[float, ...]
    first_ms: float
    load_ms: float
    validation: str = ""

    def throughput(self, batch_size: int) -> float:
        """Samples per second at the p50 latency.

        Example:
            >>> Timing("t", 0, 2.0, 2.5, 10, (2.0,), 3.0, 1.0).throughput(1)
            500.0
        """
        return round(batch_size * 1e3 / self.p50_ms, 2) if self.p50_ms > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["round_p50_ms"] = list(self.round_p50_ms)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Timing":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["round_p50_ms"] = tuple(d.get("round_p50_ms", ()))
        return cls(**d)


@dataclass(frozen=True)
class Pick:
    """A measured choice: which artifact, why, and the figures behind it.

    The fields up to ``engine_options`` are the stored record (JSON, schema :data:`PICK_SCHEMA`); ``cached``,
    ``source``, ``notes`` and ``took_s`` describe the call that returned it.

    Attributes:
        chosen: The chosen artifact's target.
        reason: Why, in one line with the measured figures.
        timings: Every candidate that was timed, in the rule table's order.
        skipped: Why each other artifact was not timed (failed validation, cannot run here ...).
        rules_choice: What the rule table alone would have chosen.
        batch_size: Samples per call that were timed.
        num_threads: Engine threads that were timed.
        device: A readable label of the device (:func:`edgekit.runtime.device.fingerprint`).
        device_key: :func:`edgekit.runtime.device.device_key` of the device that measured.
        key: The cache key (device, artifacts, batch, threads, filters, options).
        artifacts: Target -> sha256 of every artifact of the folder when it was measured.
        created: When it was measured (UTC, ISO 8601).
        budget_s: The timing budget it was given.
        seconds: How long the measurement took, loading included.
        max_accuracy_drop: The accuracy filter it was measured under (``None``: validation only).
        engine_options: Backend options the candidates were opened with (beyond threads).
        cached: Whether this call read it from a cache instead of measuring.
        source: The file it was read from or written to (``None`` when nothing was stored).
        notes: What this call noticed (a pick.json for other devices, a stale cache entry ...).
        took_s: How long this call took.
    """

    chosen: str
    reason: str
    timings: tuple[Timing, ...]
    skipped: tuple[str, ...]
    rules_choice: str
    batch_size: int
    num_threads: int
    device: str
    device_key: str
    key: str
    artifacts: Mapping[str, str | None]
    created: str
    budget_s: float
    seconds: float
    max_accuracy_drop: float | None = None
    engine_options: Mapping[str, Any] = field(default_factory=dict)
    cached: bool = False
    source: str | None = None
    notes: tuple[str, ...] = ()
    took_s: float = 0.0

    @property
    def measured(self) -> bool:
        """Whether anything was timed (a folder with one candidate has nothing to compare)."""
        return bool(self.timings)

    def timing(self, target: str) -> Timing:
        """The figures of one timed candidate (``KeyError`` when it was not timed)."""
        for t in self.timings:
            if t.target == target:
                return t
        raise KeyError(f"{target!r} was not timed; timed: {[t.target for t in self.timings]}")

    def explain(self) -> str:
        """One line for ``session.info["chosen"]``: the choice, the figures, the settings, where from.

        Example:
            >>> t = (Timing("tflite:int8", 0, 2.31, 2.5, 50, (2.31,), 5.0, 1.0), Timing("tflite:fp32", 1, 4.46, 4.6, 50, (4.46,), 5.0, 1.0))
            >>> p = Pick("tflite:int8", "measured fastest here (p50 2.31 ms vs tflite:fp32 4.46 ms)", t, (), "tflite:int8",
            ...          1, 2, "x86_64/AMD EPYC/2c", "k", "k", {}, "2026-12-02T10:00:00+00:00", 3.0, 3.4,
            ...          cached=True, source="/c/pick/k.json")
            >>> p.explain()
            'tflite:int8: measured fastest here (p50 2.31 ms vs tflite:fp32 4.46 ms); batch 1, 2 threads; cached 2026-12-02 from /c/pick/k.json'
        """
        where = (f"cached {self.created[:10]} from {self.source}" if self.cached
                 else f"measured now in {self.seconds:.1f} s" if self.measured else "nothing to measure")
        return f"{self.chosen}: {self.reason}; batch {self.batch_size}, {self.num_threads} thread{'s' * (self.num_threads != 1)}; {where}"

    def record(self) -> dict[str, Any]:
        """The stored form (what the cache file and ``pick.json`` hold)."""
        d: dict[str, Any] = {"schema": PICK_SCHEMA}
        for f in dataclasses.fields(self):
            if f.name in ("cached", "source", "notes", "took_s"):
                continue
            d[f.name] = getattr(self, f.name)
        d["timings"] = [t.to_dict() for t in self.timings]
        d["skipped"] = list(self.skipped)
        d["artifacts"] = dict(self.artifacts)
        d["engine_options"] = dict(self.engine_options)
        return d

    def to_dict(self) -> dict[str, Any]:
        """The stored record plus this call's ``cached``, ``source``, ``notes`` and ``took_s``.

        Example:
            >>> p = Pick("a", "r", (), (), "a", 1, 1, "d", "k", "k", {}, "", 3.0, 0.1)
            >>> Pick.from_record(p.to_dict()) == p, p.to_dict()["cached"]
            (True, False)
        """
        return {**self.record(), "cached": self.cached, "source": self.source, "notes": list(self.notes),
                "took_s": self.took_s}

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> "Pick":
        """Read a stored record (extra keys ignored); ``ValueError`` on another schema or a broken one."""
        if d.get("schema") != PICK_SCHEMA:
            raise ValueError(f"schema {d.get('schema')!r} is not {PICK_SCHEMA!r}")
        stored = {f.name for f in dataclasses.fields(cls)} - {"cached", "source", "notes", "took_s"}
        try:
            kw = {k: d[k] for k in stored if k in d}
            kw["timings"] = tuple(Timing.from_dict(t) for t in d["timings"])
            kw["skipped"] = tuple(d["skipped"])
            return cls(**kw)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"broken pick record: {exc}") from None


# ------------------------------------------------------------------ measured candidates


def accuracy_drop_bound(a: Artifact) -> tuple[float | None, str]:
    """The artifact's recorded accuracy drop in points, or an upper bound on it, and where it came from.

    With labelled eval data validation records the drop itself. Without, top-1 *disagreement* with
    the reference bounds it: the artifact can only lose accuracy on samples where it answers
    differently, so the drop is at most ``(1 - agreement) * 100`` points on those samples.

    Example:
        >>> accuracy_drop_bound(Artifact("t:int8", "t", "int8", "passed", validation={"top1_agreement": 0.99}))
        (1.0, 'top-1 disagreement with the reference')
    """
    v = a.validation or {}
    if v.get("accuracy_drop") is not None:
        return float(v["accuracy_drop"]), "accuracy drop on the eval set"
    if v.get("top1_agreement") is not None:
        return round((1.0 - float(v["top1_agreement"])) * 100.0, 4), "top-1 disagreement with the reference"
    return None, "no accuracy or top-1 agreement recorded"


def validation_summary(a: Artifact) -> str:
    """The recorded validation in one table cell.

    Example:
        >>> validation_summary(Artifact("t:fp32", "t", "fp32", "passed", validation={"top1_agreement": 1.0, "snr_db": 110.3}))
        'top-1 100.0 %, snr 110 dB'
    """
    v = a.validation or {}
    parts = []
    if v.get("accuracy") is not None:
        drop = v.get("accuracy_drop")
        parts.append(f"acc {v['accuracy']:.1f} %" + (f" (-{drop:.2f})" if drop is not None else ""))
    elif v.get("top1_agreement") is not None:
        parts.append(f"top-1 {100 * v['top1_agreement']:.1f} %")
    if v.get("snr_db") is not None:
        parts.append(f"snr {v['snr_db']:.0f} dB")
    return ", ".join(parts) or a.status


def candidates(manifest: Manifest, device: Mapping[str, Any], runnable: Callable[[Artifact], str | None],
               max_accuracy_drop: float | None = None) -> tuple[list[Artifact], list[str]]:
    """The artifacts worth timing here, in the rule table's order, and why each other one is not.

    Candidates are :func:`rank`'s: validated (or unvalidatable only off their platform) and
    ``runnable`` here (see :func:`edgekit.runtime.loader.runnable`). ``max_accuracy_drop`` (points) drops those whose
    recorded drop, or its bound (:func:`accuracy_drop_bound`), is larger or unknown.

    Example:
        >>> arts = (Artifact("tflite:fp32", "tflite", "fp32", "passed", path="a", validation={"top1_agreement": 1.0}),
        ...         Artifact("tflite:int8", "tflite", "int8", "passed", path="b", validation={"top1_agreement": 0.97}),
        ...         Artifact("tflite:fp16", "tflite", "fp16", "failed", path="c"))
        >>> c, why = candidates(Manifest({}, {}, arts), {"machine": "x86_64", "cpu_flags": [], "gpus": []}, lambda a: None, 1.0)
        >>> [a.target for a in c], why
        (['tflite:fp32'], ['tflite:fp16: validation failed', 'tflite:int8: top-1 disagreement with the reference 3.00 points > --max-accuracy-drop 1'])
    """
    dev = dict(device)
    ranked = [a for a, _ in rank(manifest.artifacts, dev, runnable)]
    left_out = skipped(manifest.artifacts, dev, runnable)
    if max_accuracy_drop is None:
        return ranked, left_out
    kept = []
    for a in ranked:
        drop, what = accuracy_drop_bound(a)
        if drop is None:
            left_out.append(f"{a.target}: {what}, so --max-accuracy-drop {max_accuracy_drop:g} cannot be checked")
        elif drop > max_accuracy_drop:
            left_out.append(f"{a.target}: {what} {drop:.2f} points > --max-accuracy-drop {max_accuracy_drop:g}")
        else:
            kept.append(a)
    return kept, left_out


def decide(timings: Sequence[Timing], tie: float = TIE) -> tuple[str, str]:
    """The chosen target among ``timings`` and why, by p50 with the tie rule.

    Candidates within ``tie`` of the fastest p50 count as equally fast; among them the first in
    the rule table's order (lowest ``prior``) wins.

    Example:
        >>> ts = [Timing("tflite:fp32", 0, 4.40, 4.6, 9, (4.4,), 5, 1), Timing("tflite:int8", 1, 4.35, 4.5, 9, (4.35,), 5, 1),
        ...       Timing("tflite:dynamic", 2, 9.0, 9.5, 9, (9.0,), 5, 1)]
        >>> decide(ts)[0]
        'tflite:fp32'
        >>> decide(ts, tie=0.0)
        ('tflite:int8', 'measured fastest here (p50 4.35 ms vs tflite:fp32 4.40 ms, tflite:dynamic 9.00 ms)')
    """
    if not timings:
        raise ValueError("nothing was timed")
    fastest = min(timings, key=lambda t: (t.p50_ms, t.prior))
    close = [t for t in timings if t.p50_ms <= fastest.p50_ms * (1 + tie)]
    chosen = min(close, key=lambda t: t.prior)
    others = ", ".join(f"{t.target} {t.p50_ms:.2f} ms" for t in sorted(timings, key=lambda t: t.p50_ms) if t is not chosen)
    figures = f"p50 {chosen.p50_ms:.2f} ms vs {others}" if others else f"p50 {chosen.p50_ms:.2f} ms"
    if chosen is fastest:
        return chosen.target, f"measured fastest here ({figures})"
    gap = chosen.p50_ms / fastest.p50_ms - 1
    return chosen.target, (f"within {100 * tie:g} % of the fastest ({fastest.target}, {100 * gap:.1f} % apart) and first "
                           f"in the rule table's order ({figures})")
