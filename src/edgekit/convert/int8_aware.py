"""What the pipeline does after an int8 artifact is validated: calibration-set checks always, and the
accuracy-aware search when the recipe asks for it and plain int8 missed the budget.

Kept apart from :mod:`edgekit.convert.pipeline` so the pipeline stays one idea; it calls
:func:`after_int8` with a ``convert_one(target) -> Artifact`` callback that exports and validates
exactly like any other target.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from edgekit.convert.accuracy_aware import Candidate, search
from edgekit.convert.calib_checks import calibration_warnings, input_range_warnings
from edgekit.convert.recipe import Recipe, Target
from edgekit.convert.validate import judge
from edgekit.manifest import FAILED, PASSED, Artifact

SEARCH_FORMATS = ("tflite", "onnx")


def _candidate(art: Artifact, target: Target) -> Candidate:
    return Candidate(tuple(target.opts.get("keep_float") or ()), target.precision, dict(art.validation or {}), art.bytes,
                     art.error or "")


def checks(art: Artifact, out: Path, calib: Any, evald: Any, input_names: list[str]) -> Artifact:
    """Attach calibration-set warnings to a validated int8 / int16x8 artifact."""
    if art.precision not in ("int8", "int16x8") or art.status not in (PASSED, FAILED) or not art.path:
        return art
    if art.format == "tflite":
        from edgekit.runtime.backends.litert import LiteRTEngine

        eng = LiteRTEngine(out / art.path, num_threads=1)
        order = [n for n, _ in sorted(eng._in, key=lambda t: t[1])]
        warnings = calibration_warnings(calib, evald, out / art.path, input_names, artifact_inputs=order)
    else:
        warnings = calibration_warnings(calib, None, out / art.path, input_names)
        if calib is not None and evald is not None and evald.name != "random":
            warnings += input_range_warnings(calib, evald, input_names)
    if not warnings:
        return art
    return dataclasses.replace(art, validation={**art.validation, "calibration_warnings": warnings})


def after_int8(art: Artifact, target: Target, recipe: Recipe, source: Any, calib: Any, out: Path,
               convert_one: Callable[[Target], Artifact], say: Callable[[str], None]) -> tuple[Artifact, Target]:
    """Run the accuracy-aware search if it applies; returns the artifact to keep and its target.

    Applies when ``recipe.accuracy_aware`` is on, the target is ``tflite:int8`` or ``onnx:int8``
    without a ``keep_float`` already (a saved recipe re-runs without searching), and the plain
    artifact failed validation.
    """
    if not (recipe.accuracy_aware and target.precision == "int8" and target.format in SEARCH_FORMATS
            and art.status == FAILED and not target.opts.get("keep_float")):
        return art, target
    tol = recipe.tolerance("int8")

    def meets(c: Candidate) -> bool:
        return bool(c.metrics) and not c.metrics.get("error") and not judge(c.metrics, tol)

    say(f"  {target.display}: misses the budget; ranking layers by int8 sensitivity")
    try:
        layers = _sensitivity(target, source, calib)
    except Exception as exc:  # noqa: BLE001 - the plain artifact stays; say why no search happened
        msg = f"accuracy-aware search could not rank layers: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        say(f"  {target.display}: {msg}")
        return dataclasses.replace(art, validation={**art.validation, "accuracy_aware": {"message": msg}}), target
    made: dict[tuple[str, ...], tuple[Artifact, Target]] = {}

    def evaluate(keep: tuple[str, ...]) -> Candidate:
        t = dataclasses.replace(target, options=tuple(sorted({**target.opts, "keep_float": tuple(keep)}.items())))
        a = convert_one(t)
        made[keep] = (a, t)
        return _candidate(a, t)

    int16 = None
    if target.format == "tflite":
        def int16() -> Candidate:
            t = Target("tflite", "int16x8")
            a = convert_one(t)
            made[("int16x8",)] = (a, t)
            return _candidate(a, t)

    result = search(layers, evaluate, meets, first=_candidate(art, target), try_int16x8=int16, progress=say)
    report = {
        "budget": dataclasses.asdict(tol),
        "message": result.message,
        "conversions": result.conversions,
        "layers_total": len(layers),
        "layers": [layer.to_dict() for layer in layers],
        "tried": [c.to_dict(len(layers), {layer.name for layer in layers}) for c in result.tried],
    }
    if result.best is None or result.best is result.tried[0]:
        say(f"  {target.display}: {result.message}")
        _cleanup(out, made, keep=None)
        return dataclasses.replace(art, validation={**art.validation, "accuracy_aware": report}), target
    key = ("int16x8",) if result.best.precision == "int16x8" else result.best.keep_float
    best_art, best_target = made[key]
    _cleanup(out, made, keep=key)
    if art.path and art.path != best_art.path:
        (out / art.path).unlink(missing_ok=True)  # the plain int8 file: its numbers live on in the report
    report["layers_float"] = len([n for n in result.best.keep_float if n in {layer.name for layer in layers}])
    say(f"  {target.display}: {result.message} -> {best_target.display} ({best_art.status})")
    return dataclasses.replace(best_art, validation={**best_art.validation, "accuracy_aware": report}), best_target


def _sensitivity(target: Target, source: Any, calib: Any) -> list[Any]:
    if target.format == "onnx":
        from edgekit.convert.exporters.onnx import layer_sensitivity

        return layer_sensitivity(source, calib, {k: v for k, v in target.opts.items() if k != "keep_float"})
    from edgekit.convert.exporters.tflite import TFLiteExporter, positional_representative
    from edgekit.convert.sensitivity import tflite_sensitivity

    exp = TFLiteExporter()
    return tflite_sensitivity(lambda: exp.converter(source, "int8", "float", calib),
                              positional_representative(exp, source, calib))


def _cleanup(out: Path, made: dict[tuple[str, ...], tuple[Artifact, Target]], keep: tuple[str, ...] | None) -> None:
    from edgekit.convert import _files

    for key, (a, _) in made.items():
        if key != keep and a.path:
            _files.remove(out / a.path)
