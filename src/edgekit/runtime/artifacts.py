"""One artifact of an output folder: where its file is, whether it is intact, whether it runs here, and
opening it. Shared by :mod:`edgekit.runtime.loader` (rules) and :mod:`edgekit.runtime.pick` (measured).

Example:
    >>> is_output_folder(Path("out/manifest.json"))
    True
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from edgekit.errors import BackendError, ModelError
from edgekit.files import check_regular, read_regular
from edgekit.manifest import MANIFEST_NAME, Artifact, artifact_bytes, sha256_file
from edgekit.runtime.backends import SUFFIXES, get_backend
from edgekit.runtime.backends.base import MAX_MODEL_BYTES
from edgekit.runtime.session import Session


def runnable(a: Artifact) -> str | None:
    """``None`` when ``a``'s backend can run on this machine, else why not (engine missing, wrong OS,
    or an engine a probe saw crash on this CPU).

    The crash verdict is read from the probe cache (:func:`edgekit.runtime.probe.known_crash`):
    ``edgekit doctor`` fills it, and ``EDGEKIT_PROBE=1`` has this call probe an engine once (in a
    child process) when it has no verdict yet. Refusing here, before the engine is loaded, is what
    turns a segfault into a one-line error naming the alternative.

    Example:
        >>> runnable(Artifact("tflite:fp32", "tflite", "fp32", "passed", path="a.tflite")) is None
        True
    """
    try:
        reason = get_backend(a.format).unavailable_reason()
    except BackendError as exc:
        return str(exc)
    if reason is None:
        from edgekit.runtime.probe import known_crash  # lazy: the probe module is only needed here

        reason = known_crash(a.format)
    return reason


def refuse_crashing_engine(format: str, what: str) -> None:
    """Raise :class:`ModelError` when a probe saw ``format``'s engine crash on this CPU (cached verdict).

    Loading it would kill the process with a signal and no message; this names the fix instead.

    Example:
        >>> refuse_crashing_engine("tflite", "model.tflite")  # no verdict, or it runs: nothing to say
    """
    from edgekit.runtime.probe import known_crash  # lazy: the probe module is only needed here

    crash = known_crash(format)
    if crash:
        raise ModelError(f"{what}: {crash}")


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

    Single-file artifacts of engines that load from memory (``.tflite``, ``.onnx``) are read once;
    those very bytes are checked against the manifest's size and sha256 and handed to the engine,
    so the file changing on disk afterwards (truncated, replaced) cannot crash or change the
    Session. Folder artifacts (``.mlpackage``, ``.tftrt``, ``.trt``) are verified, then opened by path.
    The opened engine must also be what the manifest says the artifact is (tensor types, precision):
    entries swapped in the manifest, sha256 and all, are refused.

    Args:
        folder: The output folder holding ``artifact``.
        artifact: One of the folder manifest's artifacts.
        verify: Check size and sha256 before loading (an artifact without a sha256 is refused
            unless this is off).
        quantize_io: Quantize float feeds for int8 inputs and dequantize int8 outputs.
        info: Extra ``session.info`` entries (``chosen``, ``pick``).
        uint8_divisor: What a uint8 feed means (see :attr:`Session.uint8_divisor`).
        **options: Backend open options (``num_threads``, ``use_xnnpack`` ...).

    Raises:
        ModelError: path outside the folder, missing or non-regular file, size/sha256 mismatch,
            no sha256 (with ``verify``), an engine that does not match the manifest entry.
        BackendError: the engine cannot load the bytes.

    Example:
        >>> m = Manifest.load("out/")  # doctest: +SKIP
        >>> open_artifact("out/", m.artifact("tflite:int8"), num_threads=2).precision  # doctest: +SKIP
        'int8'
    """
    file = artifact_path(Path(folder), artifact)
    refuse_crashing_engine(artifact.format, artifact.target)
    backend = get_backend(artifact.format)
    if getattr(backend, "from_bytes", False) and not file.is_dir():
        data = read_artifact(file, artifact, verify=verify)
        engine = backend.open(file, content=data, **options)
    else:
        if verify:
            verify_artifact(file, artifact)
        engine = backend.open(file, **options)
    check_engine(engine, artifact, file)
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
    return inside(folder, str(artifact.path), f"manifest artifact path {artifact.path!r}")


def inside(folder: Path, name: str, what: str) -> Path:
    """``folder / name`` resolved, refused (:class:`ModelError`) if it leaves ``folder`` (``..``, absolute, links).

    For every file a manifest names: artifacts and ``eval_data.file``.

    Example:
        >>> inside(Path("out"), "../x.npz", "manifest eval_data.file '../x.npz'")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        edgekit.errors.ModelError: manifest eval_data.file '../x.npz' points outside out: refusing to load it
    """
    file = (folder / name).resolve()
    if not file.is_relative_to(folder.resolve()):
        raise ModelError(f"{what} points outside {folder}: refusing to load it")
    return file


_NO_VERIFY = "re-copy it, or pass --no-verify (verify=False) to load it anyway"


def read_artifact(file: Path, artifact: Artifact, *, verify: bool = True) -> bytes:
    """The bytes of a single-file artifact, read once; with ``verify``, checked against the manifest.

    Only regular files are read (a FIFO, device or socket in the folder is refused instead of
    blocking); the size is checked before reading, the sha256 on exactly the bytes returned.

    Args:
        file: The artifact's file (from :func:`artifact_path`).
        artifact: Its manifest entry.
        verify: Check size and sha256 (and refuse an entry without a sha256).

    Raises:
        ModelError: missing, not a regular file, size or sha256 mismatch, no sha256 to check.

    Example:
        >>> data = read_artifact(Path("out/tflite-int8.tflite"), m.artifact("tflite:int8"))  # doctest: +SKIP
    """
    if not file.exists():
        raise ModelError(f"artifact {file} listed in the manifest is missing")
    st = check_regular(file, what="artifact")
    if verify:
        _check_recorded(file, artifact)
        _check_size(file, st.st_size, artifact)
    data = read_regular(file, max_bytes=MAX_MODEL_BYTES, what="artifact")
    if verify:
        _check_size(file, len(data), artifact)  # changed between the stat and the read
        if hashlib.sha256(data).hexdigest() != artifact.sha256:
            raise ModelError(f"artifact {file.name} does not match its sha256 in the manifest: it was modified ({_NO_VERIFY})")
    return data


def _check_recorded(file: Path, artifact: Artifact) -> None:
    if not artifact.sha256:
        raise ModelError(f"artifact {file.name} has no sha256 in the manifest, so it cannot be verified: "
                         "re-run 'edgekit convert', or pass --no-verify (verify=False) to load it unchecked")


def _check_size(file: Path, size: int, artifact: Artifact) -> None:
    if artifact.bytes is not None and size != artifact.bytes:
        raise ModelError(f"artifact {file.name} is {size} bytes but the manifest says {artifact.bytes}: "
                         f"it was modified or truncated ({_NO_VERIFY})")


def verify_artifact(file: Path, artifact: Artifact) -> None:
    """Raise :class:`ModelError` unless ``file`` has the manifest's size and sha256.

    A single file must be a regular file (FIFOs and devices are refused, not read); a folder
    artifact is checked over all its files. An entry without a sha256 is refused: the caller
    skips this check altogether for ``--no-verify``.

    Example:
        >>> verify_artifact(Path("out/tflite-int8.tflite"), m.artifact("tflite:int8"))  # doctest: +SKIP
    """
    if not file.exists():
        raise ModelError(f"artifact {file} listed in the manifest is missing")
    if not file.is_dir():
        read_artifact(file, artifact, verify=True)
        return
    _check_recorded(file, artifact)
    _check_size(file, artifact_bytes(file), artifact)  # folder artifacts: the total of their files
    if sha256_file(file) != artifact.sha256:
        raise ModelError(f"artifact {file.name} does not match its sha256 in the manifest: it was modified ({_NO_VERIFY})")


# Precision families a .tflite file's tensor types tell apart for sure (int8 vs dynamic is a guess).
_FAMILY = {"fp32": "fp32", "fp16": "fp16", "int8": "quantized", "dynamic": "quantized", "int16x8": "quantized"}


def check_engine(engine: Any, artifact: Artifact, file: Path) -> None:
    """Raise :class:`ModelError` if the opened ``engine`` is not what ``artifact`` says it is.

    The manifest records the engine's own tensor specs at convert time (dtype, quantization), and
    the precision; an entry pointing at another artifact's file (entries swapped, sha256 and all)
    shows up here, before an fp32 file could run as "tflite:int8 passed".

    Example:
        >>> check_engine(engine, m.artifact("tflite:int8"), Path("out/tflite-fp32.tflite"))  # doctest: +SKIP
        Traceback (most recent call last):
        ...
        edgekit.errors.ModelError: manifest entry tflite:int8 points at tflite-fp32.tflite, which is not that artifact: ...
    """
    def kinds(specs: Any) -> list[tuple[str, Any, Any]]:
        return [(s.dtype, None if s.scale is None else round(float(s.scale), 6), s.zero_point) for s in specs]

    why = None
    for side in ("inputs", "outputs"):
        want, got = getattr(artifact, side), getattr(engine, side, ())
        if want and kinds(want) != kinds(got):
            why = (f"its {side} are {', '.join(s.describe() for s in got)} but the manifest records "
                   f"{', '.join(s.describe() for s in want)}")
            break
    guess = getattr(engine, "guess_precision", None)
    if why is None and callable(guess):
        found = guess()
        if artifact.format == "tflite":
            if artifact.precision in _FAMILY and found in _FAMILY and _FAMILY[found] != _FAMILY[artifact.precision]:
                why = f"it holds a {found} model but the manifest says {artifact.precision}"
        elif found not in ("?", artifact.precision):  # edgekit stamped the precision into the file itself
            why = f"it is stamped {found} but the manifest says {artifact.precision}"
    if why:
        raise ModelError(f"manifest entry {artifact.target} points at {file.name}, which is not that artifact: {why} "
                         "(were the manifest's entries swapped or edited? re-run 'edgekit convert')")


__all__ = ["artifact_path", "check_engine", "inside", "is_output_folder", "open_artifact", "options_for",
           "read_artifact", "refuse_crashing_engine", "runnable", "verify_artifact"]
