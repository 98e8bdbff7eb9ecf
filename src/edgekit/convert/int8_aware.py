"""What the pipeline does after an int8 artifact is validated: calibration-set checks always, and the
accuracy-aware search when the recipe asks for it and plain int8 missed the budget.

Kept apart from :mod:`edgekit.convert.pipeline` so the pipeline stays one idea; it calls
:func:`after_int8` with a ``convert_one(target) -> Artifact`` callback that exports and validates
exactly like any other target. Nothing here knows a format: the search runs for formats whose
``FormatSpec.int8_search`` is set, through their exporter's
:class:`~edgekit.convert.exporters.Int8Search` methods, and an exporter may add its own
calibration checks (``calibration_warnings``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

from edgekit import formats
from edgekit.convert.accuracy_aware import Candidate, search
from edgekit.convert.calib_checks import calibration_warnings, input_range_warnings
from edgekit.convert.exporters import check_target, get_exporter, supports_int8_search
from edgekit.convert.recipe import Recipe, Target
from edgekit.convert.validate import judge
from edgekit.errors import RecipeError
from edgekit.manifest import FAILED, PASSED, Artifact

INT8_PRECISIONS = ("int8", "int16x8")


def _candidate(art: Artifact, target: Target) -> Candidate:
    return Candidate(tuple(target.opts.get("keep_float") or ()), target.precision, dict(art.validation or {}), art.bytes,
                     art.error or "")


def generic_calibration_warnings(artifact: Path, calib: Any, evald: Any, input_names: Sequence[str]) -> list[str]:
    """What can be said about the calibration set without running the artifact layer by layer:
    its size, and eval inputs outside its range."""
    warnings = calibration_warnings(calib, None, artifact, input_names)
    if calib is not None and evald is not None and evald.name != "random":
        warnings += input_range_warnings(calib, evald, input_names)
    return warnings


def checks(art: Artifact, out: Path, calib: Any, evald: Any, input_names: list[str]) -> Artifact:
    """Attach calibration-set warnings to a validated int8 / int16x8 artifact.

    The exporter's own ``calibration_warnings(artifact, calib, evald, input_names)`` when it has
    one (TFLite also measures per-layer saturation), else :func:`generic_calibration_warnings`.
    """
    if art.precision not in INT8_PRECISIONS or art.status not in (PASSED, FAILED) or not art.path:
        return art
    own = getattr(get_exporter(art.format), "calibration_warnings", None)
    warnings = (own or generic_calibration_warnings)(out / art.path, calib, evald, input_names)
    if not warnings:
        return art
    return dataclasses.replace(art, validation={**art.validation, "calibration_warnings": warnings})


def searchable(fmt: str) -> bool:
    """Whether the accuracy-aware search can run for ``fmt``: the table says so and its exporter
    implements :class:`~edgekit.convert.exporters.Int8Search`.

    Example:
        >>> searchable("tflite"), searchable("coreml")
        (True, False)
    """
    spec = formats.FORMATS.get(fmt)
    return bool(spec and spec.int8_search) and supports_int8_search(get_exporter(fmt))


def after_int8(art: Artifact, target: Target, recipe: Recipe, source: Any, calib: Any, out: Path,
               convert_one: Callable[[Target], Artifact], say: Callable[[str], None]) -> tuple[Artifact, Target]:
    """Run the accuracy-aware search if it applies; returns the artifact to keep and its target.

    Applies when ``recipe.accuracy_aware`` is on, the target is int8 in a :func:`searchable` format
    without a ``keep_float`` already (a saved recipe re-runs without searching), and the plain
    artifact failed validation.
    """
    if not (recipe.accuracy_aware and target.precision == "int8" and art.status == FAILED
            and not target.opts.get("keep_float") and searchable(target.format)):
        return art, target
    exporter = get_exporter(target.format)
    try:
        # Every candidate adds keep_float to the target's options: refuse now, not mid-search, when
        # the target's other options cannot go with it (tflite's explicit io=int8).
        check_target(target.format, target.precision, {**target.opts, "keep_float": ("layer",)})
    except RecipeError as exc:
        msg = f"accuracy-aware search cannot keep layers in float here: {exc}"
        say(f"  {target.display}: {msg}")
        return dataclasses.replace(art, validation={**art.validation, "accuracy_aware": {"message": msg}}), target
    tol = recipe.tolerance("int8")

    def meets(c: Candidate) -> bool:
        return bool(c.metrics) and not c.metrics.get("error") and not judge(c.metrics, tol)

    say(f"  {target.display}: misses the budget; ranking layers by int8 sensitivity")
    try:
        layers = exporter.layer_sensitivity(source, calib, {k: v for k, v in target.opts.items() if k != "keep_float"})
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

    fallback = getattr(exporter, "int16_fallback", None)
    fallback_precision = fallback() if fallback is not None else None
    int16 = None
    if fallback_precision:
        def int16() -> Candidate:
            t = Target(target.format, fallback_precision)
            a = convert_one(t)
            made[(fallback_precision,)] = (a, t)
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
    key = (fallback_precision,) if fallback_precision and result.best.precision == fallback_precision \
        else result.best.keep_float
    best_art, best_target = made[key]
    _cleanup(out, made, keep=key)
    if art.path and art.path != best_art.path:
        (out / art.path).unlink(missing_ok=True)  # the plain int8 file: its numbers live on in the report
    report["layers_float"] = len([n for n in result.best.keep_float if n in {layer.name for layer in layers}])
    say(f"  {target.display}: {result.message} -> {best_target.display} ({best_art.status})")
    return dataclasses.replace(best_art, validation={**best_art.validation, "accuracy_aware": report}), best_target


def _cleanup(out: Path, made: dict[tuple[str, ...], tuple[Artifact, Target]], keep: tuple[str, ...] | None) -> None:
    from edgekit.convert import _files

    for key, (a, _) in made.items():
        if key != keep and a.path:
            _files.remove(out / a.path)
