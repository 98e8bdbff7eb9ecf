"""The manifest: what a conversion produced, shared by the convert and runtime halves.

Plain stdlib dataclasses and JSON, so the runtime can read a manifest with nothing but numpy
installed. A manifest is written atomically (temp file + rename) beside its artifacts.

Example:
    >>> spec = TensorSpec(name="image", shape=(None, 8, 8, 1), dtype="float32")
    >>> TensorSpec.from_dict(spec.to_dict()) == spec
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

from edgekit.errors import ERROR_KINDS, ModelError
from edgekit.files import check_regular, read_regular
from edgekit.manifest_check import SCHEMA_VERSIONS, check_manifest

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
assert SCHEMA_VERSION in SCHEMA_VERSIONS  # the version we write is one we read
# Manifests are a few KiB (35 KB with every format x precision); one this large is not ours, and is
# refused before it is read: parsed, JSON costs ~7x its size in memory.
MAX_MANIFEST_BYTES = 2 << 20

# Artifact statuses. "passed"/"failed" are validation verdicts; the others say why there is none.
PASSED = "passed"
FAILED = "failed"  # exported, but outside tolerance
ERROR = "error"  # export (or loading the artifact) failed
UNSUPPORTED = "unsupported"  # this format x precision or engine is not available here
NOT_VALIDATED = "not_validated"  # exported; cannot be run on this platform (never "passed")
STATUSES = (PASSED, FAILED, ERROR, UNSUPPORTED, NOT_VALIDATED)


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the engine sees it.

    Attributes:
        name: The tensor's name (the signature name where the format has one).
        shape: Dimensions; ``None`` for a dynamic one (usually the batch).
        dtype: numpy dtype name, e.g. ``"float32"`` or ``"int8"``.
        scale: Quantization scale for int8/uint8 tensors, else ``None``.
        zero_point: Quantization zero point for int8/uint8 tensors, else ``None``.

    Example:
        >>> TensorSpec("x", (1, 4), "int8", scale=0.5, zero_point=-3).quantized
        True
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(None if d is None or d < 0 else int(d) for d in self.shape))

    @property
    def quantized(self) -> bool:
        """Whether values are stored as integers with an affine (scale, zero point) mapping."""
        return self.scale is not None and self.scale != 0.0

    def describe(self) -> str:
        """Human form, e.g. ``image[?x8x8x1] float32``."""
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        q = f" (scale={self.scale:.6g}, zero_point={self.zero_point})" if self.quantized else ""
        return f"{self.name}[{dims}] {self.dtype}{q}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorSpec":
        return cls(
            name=str(d["name"]),
            shape=tuple(d["shape"]),
            dtype=str(d["dtype"]),
            scale=d.get("scale"),
            zero_point=d.get("zero_point"),
        )


@dataclass(frozen=True)
class Artifact:
    """One converted model file and what we know about it.

    Attributes:
        target: ``"format:precision"``, e.g. ``"tflite:int8"``.
        format: Exporter name, e.g. ``"tflite"``.
        precision: ``"fp32"``, ``"fp16"``, ``"dynamic"``, ``"int8"`` ...
        status: One of :data:`STATUSES`.
        path: File name relative to the manifest's folder (``None`` if nothing was written). Some
            formats write a folder (CoreML ``.mlpackage``, TF-TRT ``.tftrt``, TensorRT ``.trt``).
        bytes: File size; for a folder, the total of its files (:func:`artifact_bytes`).
        gzip_bytes: Size after gzip -9 (what pruning pays off in); for a folder, the sum of its
            files gzipped one by one.
        sha256: Hex digest of the file (of a folder: its files' relative paths and contents in
            sorted order, see :func:`sha256_file`), checked by the runtime before loading.
        inputs: Tensor specs as the engine sees them (int8 I/O carries scale/zero point).
        outputs: Ditto for outputs.
        validation: Numbers against the reference model (see :mod:`edgekit.convert.validate`).
        options: Exporter options that made this artifact.
        error: Why the artifact failed or is unsupported (one line), else ``None``.
        seconds: Wall time of the export.
        sparsity: Zero weights in the file's kernels (``weights``, ``zeros``, ``sparsity``) where
            the format can be read (TFLite), else ``None``: pruning shows up here.
        error_kind: Who ``error`` is down to, one of :data:`edgekit.errors.ERROR_KINDS`
            (``edgekit``, ``converter``, ``engine``, ``unsupported``), recorded where the error was
            raised; ``None`` without an error, and for a validation verdict (``failed``).
        error_tool: The third-party converter or quantizer that refused the model, when
            ``error_kind`` is ``converter`` (``"tf2onnx"``, ``"TFLite converter"``...).
        notes: One-line facts about the artifact from its exporter (e.g. it needs the Flex delegate).

    Example:
        >>> a = Artifact("onnx:int8", "onnx", "int8", "error", error="onnx:int8 failed: x",
        ...              error_kind="converter", error_tool="onnxruntime.quantization")
        >>> Artifact.from_dict(a.to_dict()) == a
        True
        >>> Artifact.from_dict({"target": "t:fp32", "format": "t", "precision": "fp32", "status": "passed"}).notes
        ()
    """

    target: str
    format: str
    precision: str
    status: str
    path: str | None = None
    bytes: int | None = None
    gzip_bytes: int | None = None
    sha256: str | None = None
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    validation: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float | None = None
    sparsity: dict[str, Any] | None = None
    error_kind: str | None = None
    error_tool: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"artifact status {self.status!r} is not one of {STATUSES}")
        if self.error_kind is not None and self.error_kind not in ERROR_KINDS:
            raise ValueError(f"artifact error_kind {self.error_kind!r} is not one of {ERROR_KINDS}")
        object.__setattr__(self, "notes", tuple(self.notes))  # JSON gives a list

    @property
    def ok(self) -> bool:
        """True when the artifact exists and did not fail validation."""
        return self.status in (PASSED, NOT_VALIDATED)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["inputs"] = [t.to_dict() for t in self.inputs]
        d["outputs"] = [t.to_dict() for t in self.outputs]
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Artifact":
        d = dict(d)
        d["inputs"] = tuple(TensorSpec.from_dict(t) for t in d.get("inputs", ()))
        d["outputs"] = tuple(TensorSpec.from_dict(t) for t in d.get("outputs", ()))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class Manifest:
    """Everything one ``convert`` run produced, as written to ``manifest.json``.

    Example:
        >>> m = Manifest(recipe={}, source={"name": "digits-cnn"}, artifacts=())
        >>> Manifest.from_dict(m.to_dict()).source["name"]
        'digits-cnn'
    """

    recipe: dict[str, Any]
    source: dict[str, Any]
    artifacts: tuple[Artifact, ...]
    versions: dict[str, str] = field(default_factory=dict)
    eval_data: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    schema_version: int = SCHEMA_VERSION
    # What the training-time stages did (prune/QAT configs, per-layer sparsity, fine-tuning
    # history); empty when the recipe has none. Older manifests without it load as empty.
    stages: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no artifact failed or errored (unsupported targets count as failures too)."""
        return all(a.ok for a in self.artifacts)

    def artifact(self, target: str) -> Artifact:
        """The artifact for ``"format:precision"``; ``KeyError`` listing the targets if absent."""
        for a in self.artifacts:
            if a.target == target:
                return a
        raise KeyError(f"no artifact {target!r} in manifest; it has {[a.target for a in self.artifacts]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "created": self.created,
            "versions": dict(self.versions),
            "source": dict(self.source),
            "recipe": self.recipe,
            "eval_data": dict(self.eval_data),
            "stages": dict(self.stages),
            "artifacts": [a.to_dict() for a in self.artifacts],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        return cls(
            recipe=d.get("recipe", {}),
            source=d.get("source", {}),
            artifacts=tuple(Artifact.from_dict(a) for a in d.get("artifacts", ())),
            versions=d.get("versions", {}),
            eval_data=d.get("eval_data", {}),
            created=d.get("created", ""),
            schema_version=int(d.get("schema_version", SCHEMA_VERSION)),
            stages=d.get("stages") or {},
        )

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``manifest.json`` into ``folder`` atomically and return its path."""
        path = Path(folder) / MANIFEST_NAME
        atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n").encode())
        return path

    @classmethod
    def load(cls, folder_or_file: str | os.PathLike[str]) -> "Manifest":
        """Read a manifest from its folder or from the ``manifest.json`` path itself.

        The file must be a regular file of at most :data:`MAX_MANIFEST_BYTES` (checked before it
        is read); every typed field is checked (:func:`edgekit.manifest_check.check_manifest`),
        and the schema version must be one this edgekit reads.

        Raises:
            ModelError: one line naming the manifest and, for a bad field, the field.

        Example:
            >>> import tempfile, pathlib
            >>> d = pathlib.Path(tempfile.mkdtemp())
            >>> art = '{"target": "tflite:fp32", "format": "tflite", "precision": "fp32", "status": "passed", "bytes": 1e999}'
            >>> _ = (d / "manifest.json").write_text('{"schema_version": 1, "artifacts": [%s]}' % art)
            >>> Manifest.load(d)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            edgekit.errors.ModelError: .../manifest.json is not a valid edgekit manifest: field 'artifacts[0].bytes': expected a non-negative integer or null, got inf
        """
        path = Path(folder_or_file)
        if path.is_dir():
            path = path / MANIFEST_NAME
        if not path.exists():
            raise ModelError(f"no manifest at {path}: run 'edgekit convert ... -o {path.parent}' first")
        raw = read_regular(path, max_bytes=MAX_MANIFEST_BYTES, what="manifest")
        try:
            data = json.loads(raw.decode("utf-8"))
            check_manifest(data)
            return cls.from_dict(data)
        except RecursionError:
            raise ModelError(f"{path} is not a valid edgekit manifest: JSON nested too deeply") from None
        except MemoryError:
            raise ModelError(f"{path} is not a valid edgekit manifest: out of memory while parsing it") from None
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, UnicodeDecodeError) as exc:
            raise ModelError(f"{path} is not a valid edgekit manifest: {exc}") from None


def _json_default(o: Any) -> Any:
    # numpy scalars sneak into validation numbers; store them as plain numbers.
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot store {type(o).__name__} in a manifest")


def _umask() -> int:
    # Linux reports the umask without changing it; elsewhere set-and-restore (a brief race only).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def umask_modes(path: str | os.PathLike[str]) -> Path:
    """Give ``path`` (a file, or a folder and everything under it) the modes a plain write gives.

    That is ``0666 & ~umask`` for files (``0777 & ~umask`` for files that were executable) and
    ``0777 & ~umask`` for folders: 0644 / 0755 under the usual umask 022. Call it on anything
    staged in ``tempfile.mkstemp`` / ``mkdtemp`` (0600 / 0700) or written by a tool that picks its
    own modes (coremltools leaves a ``.mlpackage``'s weights folder 0700), before renaming it into
    place: artifacts are copied to devices and read by service users, who must be able to open them.
    Symbolic links are left alone (their target is not ours to change).

    Args:
        path: The file or folder tree to fix.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> import tempfile, pathlib, stat
        >>> d = pathlib.Path(tempfile.mkdtemp())  # 0700, like every mkdtemp folder
        >>> _ = (d / "weights.bin").write_bytes(b"w")
        >>> _ = umask_modes(d)
        >>> oct(stat.S_IMODE(d.stat().st_mode)) == oct(0o777 & ~_umask())
        True
        >>> oct(stat.S_IMODE((d / "weights.bin").stat().st_mode)) == oct(0o666 & ~_umask())
        True
    """
    root = Path(path)
    mask = _umask()

    def fix(p: str, st_mode: int) -> None:
        if stat.S_ISDIR(st_mode) or st_mode & 0o111:
            os.chmod(p, 0o777 & ~mask)
        else:
            os.chmod(p, 0o666 & ~mask)

    st = os.lstat(root)
    if stat.S_ISLNK(st.st_mode):
        return root
    fix(str(root), st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        for top, dirs, files in os.walk(root):  # os.walk does not follow links to folders
            for name in dirs + files:
                q = os.path.join(top, name)
                m = os.lstat(q).st_mode
                if not stat.S_ISLNK(m):
                    fix(q, m)
    return root


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` whole, or not at all, with the mode a plain write gives.

    Writes go to a temporary file beside ``path``, which is renamed over it on success and removed
    on any error. ``mkstemp`` creates files 0600; the mode is reset from the umask (0644 under the
    usual 022) before the rename, so a service user on the device can read what was copied there.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
        >>> with atomic_open(p) as f:
        ...     _ = f.write(b"hi")
        >>> p.read_bytes(), oct(p.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
        (b'hi', True)
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask_modes(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never half.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
        >>> atomic_write_bytes(p, b"hi").read_bytes()
        b'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        f.write(data)
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file (or of every file under a folder, in sorted path order)."""
    p = Path(path)
    h = hashlib.sha256()
    files: Iterable[Path] = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        check_regular(f, what="file")  # a FIFO or device would block or never end
        # O_NONBLOCK: a FIFO swapped in after the check cannot block the open.
        fd = os.open(f, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ModelError(f"{f} is not a regular file: refusing to read it")
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def artifact_bytes(path: str | os.PathLike[str]) -> int:
    """Size of an artifact: the file's size, or the total of every file under a folder artifact
    (a CoreML ``.mlpackage``, a TF-TRT SavedModel, a TensorRT ``.trt`` folder).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "a").write_bytes(b"12"); _ = (d / "b").write_bytes(b"345")
        >>> artifact_bytes(d), artifact_bytes(d / "a")
        (5, 2)
    """
    p = Path(path)
    if p.is_dir():
        return sum(q.stat().st_size for q in p.rglob("*") if q.is_file())
    return p.stat().st_size
