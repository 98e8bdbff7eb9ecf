"""Which artifact of an output folder should this device run, and why.

The rules encode what we measured and what the engines document, not a guess that int8 always wins
(ANCHORS: on an x86 CPU without VNNI, full int8 TFLite was no faster than fp32). They only *order*
candidates that this device can run and that passed validation; ``edgekit bench`` is how you check.
The per-device order is written once, in each format's ``prefer`` ranks in :data:`edgekit.formats.FORMATS`.

Example:
    >>> from edgekit.manifest import Artifact
    >>> arts = [Artifact("tflite:fp32", "tflite", "fp32", "passed", path="a"),
    ...         Artifact("tflite:int8", "tflite", "int8", "passed", path="b")]
    >>> pi = {"machine": "aarch64", "cpu_flags": ["asimddp", "neon"], "gpus": [], "system": "Linux"}
    >>> rank(arts, pi, runnable=lambda a: None)[0][0].target
    'tflite:int8'
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from edgekit.formats import FORMATS, preference
from edgekit.manifest import NOT_VALIDATED, PASSED, Artifact


def device_class(device: dict[str, Any]) -> tuple[str, str]:
    """The device's class (a key of :data:`edgekit.formats.DEVICE_CLASSES`) and a one-line description.

    The preference order for a class is :func:`edgekit.formats.preference` of its key.

    Example:
        >>> device_class({"machine": "x86_64", "cpu_flags": ["avx2", "avx512_vnni"], "gpus": []})
        ('x86_vnni', 'x86 CPU with VNNI: int8 kernels pay off')
    """
    flags = set(device.get("cpu_flags") or ())
    if device.get("system") == "Darwin":
        return "mac", "macOS: CoreML first (Neural Engine / GPU)"
    if device.get("gpus"):
        return "gpu", f"NVIDIA GPU ({', '.join(device['gpus'])}): TensorRT, then ONNX Runtime CUDA"
    if device.get("machine") in ("aarch64", "arm64", "armv7l"):
        dot = "with dot-product int8 kernels" if flags & {"asimddp", "i8mm"} else "NEON"
        return "arm", f"ARM CPU ({dot}): int8 TFLite with XNNPACK first"
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "x86_vnni", "x86 CPU with VNNI: int8 kernels pay off"
    return "x86", "x86 CPU without VNNI: int8 is not reliably faster than fp32 here, fp32 first"


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
    order = preference(key)
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
