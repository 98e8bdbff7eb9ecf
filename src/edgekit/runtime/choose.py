"""Which artifact of an output folder should this device run, and why.

The rules encode what we measured and what the engines document, not a guess that int8 always wins
(ANCHORS: on an x86 CPU without VNNI, full int8 TFLite was no faster than fp32). They only *order*
candidates that this device can run and that passed validation; ``edgekit bench`` is how you check.

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

from edgekit.manifest import NOT_VALIDATED, PASSED, Artifact

# Preference order of (format, precision) per device class; earlier is better.
_GPU = [("tensorrt", "int8"), ("tensorrt", "fp16"), ("tensorrt", "fp32"), ("onnx", "fp16"), ("onnx", "fp32"),
        ("tftrt", "fp16"), ("tftrt", "fp32"), ("tflite", "fp16"), ("tflite", "fp32"), ("onnx", "int8"), ("tflite", "int8")]
_ARM = [("tflite", "int8"), ("tflite", "dynamic"), ("tflite", "fp16"), ("tflite", "fp32"), ("onnx", "int8"),
        ("onnx", "fp32"), ("tflite", "int16x8")]
_X86_VNNI = [("tflite", "int8"), ("onnx", "int8"), ("tflite", "fp32"), ("onnx", "fp32"), ("tflite", "dynamic"),
             ("tflite", "fp16"), ("onnx", "fp16")]
_X86 = [("tflite", "fp32"), ("onnx", "fp32"), ("tflite", "int8"), ("onnx", "int8"), ("tflite", "dynamic"),
        ("tflite", "fp16"), ("onnx", "fp16"), ("onnx", "dynamic")]
_MAC = [("coreml", "fp16"), ("coreml", "int8"), ("coreml", "fp32"), ("tflite", "fp32"), ("tflite", "int8")]


def device_class(device: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A one-line description of the device class and its preference order."""
    flags = set(device.get("cpu_flags") or ())
    if device.get("system") == "Darwin":
        return "macOS: CoreML first (Neural Engine / GPU)", _MAC
    if device.get("gpus"):
        return f"NVIDIA GPU ({', '.join(device['gpus'])}): TensorRT, then ONNX Runtime CUDA", _GPU
    if device.get("machine") in ("aarch64", "arm64", "armv7l"):
        dot = "with dot-product int8 kernels" if flags & {"asimddp", "i8mm"} else "NEON"
        return f"ARM CPU ({dot}): int8 TFLite with XNNPACK first", _ARM
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "x86 CPU with VNNI: int8 kernels pay off", _X86_VNNI
    return "x86 CPU without VNNI: int8 is not reliably faster than fp32 here, fp32 first", _X86


def rank(artifacts: Sequence[Artifact], device: dict[str, Any], runnable: Callable[[Artifact], str | None]
         ) -> list[tuple[Artifact, str]]:
    """Candidates this device can run, best first, each with why it is (or is not) first.

    Args:
        artifacts: The manifest's artifacts.
        device: :func:`edgekit.runtime.device.device_info` (or a fixture).
        runnable: Returns ``None`` when the artifact's backend can run here, else the reason.
    """
    why_class, order = device_class(device)
    pos = {fp: i for i, fp in enumerate(order)}
    out = []
    for i, a in enumerate(artifacts):
        if not a.path or a.status not in (PASSED, NOT_VALIDATED):
            continue
        if a.status == NOT_VALIDATED and device.get("system") != "Darwin":
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
        elif a.status == NOT_VALIDATED and device.get("system") != "Darwin":
            out.append(f"{a.target}: not validated and cannot run on this platform")
        else:
            reason = runnable(a)
            if reason:
                out.append(f"{a.target}: {reason}")
    return out
