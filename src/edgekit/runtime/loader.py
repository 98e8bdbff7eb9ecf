"""``load(path)``: a bare model file or an edgekit output folder to a :class:`Session`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgekit.errors import BackendError, InputError, ModelError
from edgekit.manifest import PASSED, NOT_VALIDATED, Artifact, Manifest
from edgekit.runtime.backends import format_for_path, get_backend
from edgekit.runtime.artifacts import (is_output_folder, open_artifact, options_for, refuse_crashing_engine, runnable,
                                       verify_artifact)
from edgekit.runtime.session import Session


def choose_artifact(manifest: Manifest, target: str | None = None, *, format: str | None = None,
                    precision: str | None = None, device: dict[str, Any] | None = None) -> tuple[Artifact, str]:
    """Pick the artifact to load and say why.

    With ``target`` (``"tflite:int8"``, or just a format or precision) or ``format=``/``precision=``,
    the first matching artifact that exists is used. Otherwise the best artifact this device can run
    among those that passed validation (see :mod:`edgekit.runtime.choose`).

    Example:
        >>> m = Manifest(recipe={}, source={}, artifacts=(Artifact("tflite:fp32", "tflite", "fp32", "passed", path="a.tflite"),))
        >>> choose_artifact(m, device={"machine": "x86_64", "cpu_flags": [], "gpus": []})[0].target
        'tflite:fp32'
    """
    from edgekit.runtime import choose

    present = [a for a in manifest.artifacts if a.path]
    if target or format or precision:
        for a in present:
            if target and target not in (a.target, a.format, a.precision):
                continue
            if (format and a.format != format) or (precision and a.precision != precision):
                continue
            asked = ", ".join(([repr(target)] if target else []) +
                              [f"{k}={v!r}" for k, v in (("format", format), ("precision", precision)) if v])
            why = f"requested {asked}"
            if a.status not in (PASSED, NOT_VALIDATED):
                why += f" (warning: its validation status is {a.status!r})"
            return a, why
        wanted = target or ":".join(x or "*" for x in (format, precision))
        raise ModelError(f"no artifact matches {wanted!r}; this folder has {[a.target for a in present] or 'none'}")
    if device is None:
        from edgekit.runtime.device import device_info

        device = device_info()
    ranked = choose.rank(manifest.artifacts, device, runnable)
    if ranked:
        best, why_class = ranked[0]
        others = ", ".join(a.target for a, _ in ranked[1:])
        return best, f"best for this device: {why_class}" + (f" (also runnable: {others})" if others else "")
    left_out = "; ".join(choose.skipped(manifest.artifacts, device, runnable)) or "no artifacts"
    raise ModelError(f"no artifact in this folder passed validation and can run here ({left_out}); "
                     "pick one explicitly with target=... / --target")


CHOICES = ("rules", "measure")


def load(path: str | os.PathLike[str], *, target: str | None = None, format: str | None = None,
         precision: str | None = None, num_threads: int | None = None,
         verify: bool = True, quantize_io: bool = True, choose: str = "rules", batch_size: int = 1,
         budget: float | None = None, uint8_divisor: float | None = None, **engine_options: Any) -> Session:
    """Open a model file or an edgekit output folder.

    Args:
        path: A ``.tflite`` file, or a folder (or ``manifest.json``) written by ``edgekit convert``.
        target: For folders: which artifact, e.g. ``"tflite:int8"``; default: the best validated
            artifact this device can run (``session.info["chosen"]`` says why). Wins over ``choose``.
        format: For folders: restrict the choice to one format (``"tflite"``, ``"onnx"`` ...).
        precision: For folders: restrict the choice to one precision (``"int8"`` ...).
        num_threads: Engine threads; default all cores this process may use.
        verify: Check the artifact's size and sha256 against the manifest before loading (the
            bytes checked are the bytes the engine runs; an artifact without a sha256 is refused
            unless this is off, ``--no-verify``).
        quantize_io: Quantize float feeds for int8 inputs and dequantize int8 outputs.
        choose: For folders without ``target``/``format``/``precision``: ``"rules"`` (default) takes
            the rule table's choice for this device class; ``"measure"`` takes the artifact measured
            fastest on this device (a cached measurement from ``pick.json`` beside the manifest or
            the user cache, else a short one now, then cached; see :mod:`edgekit.runtime.pick`).
            ``session.info["pick"]`` then holds the figures.
        batch_size: With ``choose="measure"``: the batch size to measure at (part of the cache key).
        budget: With ``choose="measure"``: seconds a fresh measurement may take (default
            :data:`edgekit.runtime.pick.DEFAULT_BUDGET`).
        uint8_divisor: What a uint8 feed to a float or int8 input means (``255``: pixels 0..255 taken
            as 0..1, bit-identical to dividing yourself); ``None`` refuses such feeds. See
            :attr:`Session.uint8_divisor`.
        **engine_options: Backend-specific options (LiteRT: ``use_xnnpack``).

    Models are read once into memory (regular files only: a FIFO or device is refused) and run
    from those bytes, so a file changed on disk later cannot crash or change the Session.

    Raises:
        ModelError: missing path, bad manifest, no matching artifact, integrity mismatch, a manifest
            entry whose file is another artifact (swapped entries).
        BackendError: the engine cannot load the file (corrupt, wrong format, too large tensors).
        MissingDependencyError: the engine is not installed (message names the extra).
        InputError: ``choose`` is not one of :data:`CHOICES`.

    Example:
        >>> s = load("digits.tflite", num_threads=2)  # doctest: +SKIP
        >>> s = load("out/", choose="measure")  # doctest: +SKIP
        >>> s.info["chosen"]  # doctest: +SKIP
        'tflite:int8: measured fastest here (p50 2.31 ms vs tflite:fp32 4.46 ms); batch 1, 2 threads; ...'
    """
    if choose not in CHOICES:
        raise InputError(f"choose={choose!r} is not one of {', '.join(CHOICES)}")
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p} does not exist")
    options = dict(engine_options)
    if num_threads is not None:
        options["num_threads"] = num_threads
    if not is_output_folder(p):
        refuse_crashing_engine(format_for_path(p), p.name)
        engine = get_backend(format_for_path(p)).open(p, **options)
        return Session(engine, path=p, format=format_for_path(p), precision=None, quantize_io=quantize_io,
                       uint8_divisor=uint8_divisor)
    folder = p if p.is_dir() else p.parent
    manifest = Manifest.load(folder)
    info: dict[str, Any] = {}
    if choose == "measure" and not (target or format or precision):
        from edgekit.runtime.pick import pick

        measured = pick(folder, batch_size=batch_size, num_threads=num_threads, budget=budget, verify=verify,
                        quantize_io=quantize_io, engine_options=engine_options, manifest=manifest)
        artifact = manifest.artifact(measured.chosen)
        info["chosen"] = measured.explain()
        info["pick"] = measured.to_dict()
        options = options_for(artifact.format, options)  # as it was timed: options of other engines dropped
    else:
        artifact, why = choose_artifact(manifest, target, format=format, precision=precision)
        info["chosen"] = f"{artifact.target}: {why}"
    return open_artifact(folder, artifact, verify=verify, quantize_io=quantize_io, info=info,
                         uint8_divisor=uint8_divisor, **options)


__all__ = ["CHOICES", "BackendError", "choose_artifact", "load", "open_artifact", "options_for", "runnable", "verify_artifact"]
