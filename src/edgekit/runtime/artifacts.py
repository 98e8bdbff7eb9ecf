"""One artifact of an output folder: where its file is, whether it is intact, whether it runs here, and
opening it. Shared by :mod:`edgekit.runtime.loader` (rules) and :mod:`edgekit.runtime.pick` (measured).

Example:
    >>> is_output_folder(Path("out/manifest.json"))
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgekit.errors import BackendError, ModelError
from edgekit.manifest import MANIFEST_NAME, Artifact, artifact_bytes, sha256_file
from edgekit.runtime.backends import SUFFIXES, get_backend
from edgekit.runtime.session import Session


def runnable(a: Artifact) -> str | None:
    """``None`` when ``a``'s backend can run on this machine, else why not (engine missing, wrong OS).

    Example:
        >>> runnable(Artifact("tflite:fp32", "tflite", "fp32", "passed", path="a.tflite")) is None
        True
    """
    try:
        return get_backend(a.format).unavailable_reason()
    except BackendError as exc:
        return str(exc)


def options_for(format: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options among ``options`` that ``format``'s backend takes (a measured choice may land on any engine).

    Example:
        >>> options_for("onnx", {"num_threads": 2, "use_xnnpack": False})
        {'num_threads': 2}
    """
    known = set(getattr(get_backend(format), "open_options", ()) or ()) | {"num_threads"}
    return {k: v for k, v in options.items() if k in known}


def open_artifact(folder: str | os.PathLike[str], artifact: Artifact, *, verify: bool = True, quantize_io: bool = True,
                  info: dict[str, Any] | None = None, uint8_divisor: float | None = None, **options: Any) -> Session:
    """A :class:`Session` on one artifact of an output folder (checked against the manifest first).

    Args:
        folder: The output folder holding ``artifact``.
        artifact: One of the folder manifest's artifacts.
        verify: Check size and sha256 before loading.
        quantize_io: Quantize float feeds for int8 inputs and dequantize int8 outputs.
        info: Extra ``session.info`` entries (``chosen``, ``pick``).
        uint8_divisor: What a uint8 feed means (see :attr:`Session.uint8_divisor`).
        **options: Backend open options (``num_threads``, ``use_xnnpack`` ...).

    Example:
        >>> m = Manifest.load("out/")  # doctest: +SKIP
        >>> open_artifact("out/", m.artifact("tflite:int8"), num_threads=2).precision  # doctest: +SKIP
        'int8'
    """
    file = artifact_path(Path(folder), artifact)
    if verify:
        verify_artifact(file, artifact)
    engine = get_backend(artifact.format).open(file, **options)
    return Session(engine, path=file, format=artifact.format, precision=artifact.precision, quantize_io=quantize_io,
                   artifact=artifact, info=info, uint8_divisor=uint8_divisor)


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


__all__ = ["artifact_path", "is_output_folder", "open_artifact", "options_for", "runnable", "verify_artifact"]
