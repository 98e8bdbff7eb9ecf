"""``load(path)``: a bare model file or an edgekit output folder to a :class:`Session`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgekit.errors import BackendError, ModelError
from edgekit.manifest import MANIFEST_NAME, PASSED, NOT_VALIDATED, Artifact, Manifest, artifact_bytes, sha256_file
from edgekit.runtime.backends import SUFFIXES, format_for_path, get_backend
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
    ranked = choose.rank(manifest.artifacts, device, _runnable)
    if ranked:
        best, why_class = ranked[0]
        others = ", ".join(a.target for a, _ in ranked[1:])
        return best, f"best for this device: {why_class}" + (f" (also runnable: {others})" if others else "")
    left_out = "; ".join(choose.skipped(manifest.artifacts, device, _runnable)) or "no artifacts"
    raise ModelError(f"no artifact in this folder passed validation and can run here ({left_out}); "
                     "pick one explicitly with target=... / --target")


def _runnable(a: Artifact) -> str | None:
    try:
        return get_backend(a.format).unavailable_reason()
    except BackendError as exc:
        return str(exc)


def load(path: str | os.PathLike[str], *, target: str | None = None, format: str | None = None,
         precision: str | None = None, num_threads: int | None = None,
         verify: bool = True, quantize_io: bool = True, **engine_options: Any) -> Session:
    """Open a model file or an edgekit output folder.

    Args:
        path: A ``.tflite`` file, or a folder (or ``manifest.json``) written by ``edgekit convert``.
        target: For folders: which artifact, e.g. ``"tflite:int8"``; default: the best validated
            artifact this device can run (``session.info["chosen"]`` says why).
        format: For folders: restrict the choice to one format (``"tflite"``, ``"onnx"`` ...).
        precision: For folders: restrict the choice to one precision (``"int8"`` ...).
        num_threads: Engine threads; default all cores this process may use.
        verify: Check the artifact's size and sha256 against the manifest before loading.
        quantize_io: Quantize float feeds for int8 inputs and dequantize int8 outputs.
        **engine_options: Backend-specific options (LiteRT: ``use_xnnpack``).

    Raises:
        ModelError: missing path, bad manifest, no matching artifact, integrity mismatch.
        BackendError: the engine cannot load the file (corrupt, wrong format).
        MissingDependencyError: the engine is not installed (message names the extra).

    Example:
        >>> s = load("digits.tflite", num_threads=2)  # doctest: +SKIP
    """
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p} does not exist")
    artifact: Artifact | None = None
    info: dict[str, Any] = {}
    if is_output_folder(p):
        folder = p if p.is_dir() else p.parent
        manifest = Manifest.load(folder)
        artifact, why = choose_artifact(manifest, target, format=format, precision=precision)
        file = artifact_path(folder, artifact)
        if verify:
            verify_artifact(file, artifact)
        fmt, precision = artifact.format, artifact.precision
        info["chosen"] = f"{artifact.target}: {why}"
    else:
        file, fmt, precision = p, format_for_path(p), None
    options = dict(engine_options)
    if num_threads is not None:
        options["num_threads"] = num_threads
    engine = get_backend(fmt).open(file, **options)
    return Session(engine, path=file, format=fmt, precision=precision, quantize_io=quantize_io, artifact=artifact, info=info)


def is_output_folder(p: Path) -> bool:
    """Whether ``p`` is an edgekit output folder (or its manifest) rather than one artifact.

    A folder with a known artifact suffix (``.mlpackage``, ``.tftrt``, ``.trt``) and no manifest
    inside is a bare artifact; any other folder is an output folder.

    Example:
        >>> is_output_folder(Path("out/manifest.json")), is_output_folder(Path("model.tflite"))
        (True, False)
    """
    if p.name == MANIFEST_NAME:
        return True
    if not p.is_dir():
        return False
    return (p / MANIFEST_NAME).exists() or p.suffix.lower() not in SUFFIXES


def artifact_path(folder: Path, artifact: Artifact) -> Path:
    """The artifact's file inside ``folder``; a manifest may not point outside its own folder."""
    file = (folder / str(artifact.path)).resolve()
    if not file.is_relative_to(folder.resolve()):
        raise ModelError(f"manifest artifact path {artifact.path!r} points outside {folder}: refusing to load it")
    return file


def verify_artifact(file: Path, artifact: Artifact) -> None:
    """Raise :class:`ModelError` unless ``file`` has the manifest's size and sha256."""
    if not file.exists():
        raise ModelError(f"artifact {file} listed in the manifest is missing")
    size = artifact_bytes(file)  # folder artifacts: the total of their files
    if artifact.bytes is not None and size != artifact.bytes:
        raise ModelError(
            f"artifact {file.name} is {size} bytes but the manifest says {artifact.bytes}: "
            "it was modified or truncated (re-copy it, or pass --no-verify to load anyway)"
        )
    if artifact.sha256 and sha256_file(file) != artifact.sha256:
        raise ModelError(f"artifact {file.name} does not match its sha256 in the manifest: it was modified (re-copy it, or pass --no-verify)")


__all__ = ["BackendError", "choose_artifact", "load", "verify_artifact"]
