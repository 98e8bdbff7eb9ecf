"""The shape a ``manifest.json`` must have before :mod:`edgekit.manifest` builds objects from it.

A manifest travels with its artifacts to devices and may have been edited, truncated or written
by someone else: every typed field is checked here (types, finite and non-negative numbers, the
schema version), so a bad one is refused with the field's name instead of a traceback from
deep inside a dataclass, or a ``1e999`` shape that later asks for infinite memory. Free-form
sections (``recipe``, ``validation``, ``options`` ...) only have to be JSON objects.

Example:
    >>> check_manifest({"schema_version": 1, "artifacts": [{"target": "t:fp32", "format": "t",
    ...                 "precision": "fp32", "status": "passed", "bytes": -1}]})
    Traceback (most recent call last):
    ...
    ValueError: field 'artifacts[0].bytes': expected a non-negative integer or null, got -1
"""

from __future__ import annotations

import math
import re
from typing import Any

# The manifest versions this edgekit reads. 1 is the only one written so far.
SCHEMA_VERSIONS = (1,)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_OBJECTS = ("recipe", "source", "versions", "eval_data", "stages")
_STRINGS = ("target", "format", "precision", "status")
_OPTIONAL_STRINGS = ("error", "error_kind", "error_tool")


def _fail(where: str, expected: str, got: Any) -> None:
    shown = repr(got)
    raise ValueError(f"field {where!r}: expected {expected}, got {shown[:80] + '...' if len(shown) > 80 else shown}")


def _count(value: Any, where: str) -> None:
    """A non-negative integer (a size, a dimension) or null; JSON true/false are not numbers."""
    if value is not None and (type(value) is not int or value < 0):
        _fail(where, "a non-negative integer or null", value)


def _number(value: Any, where: str) -> None:
    if value is not None and (type(value) not in (int, float) or not math.isfinite(value)):
        _fail(where, "a finite number or null", value)


def _spec(d: Any, where: str) -> None:
    if not isinstance(d, dict):
        _fail(where, "a tensor spec object", d)
    for key in ("name", "dtype"):
        if not isinstance(d.get(key), str):
            _fail(f"{where}.{key}", "a string", d.get(key))
    shape = d.get("shape")
    if not isinstance(shape, list):
        _fail(f"{where}.shape", "a list of dimensions", shape)
    for i, dim in enumerate(shape):
        _count(dim, f"{where}.shape[{i}]")
    _number(d.get("scale"), f"{where}.scale")
    zp = d.get("zero_point")
    if zp is not None and type(zp) is not int:
        _fail(f"{where}.zero_point", "an integer or null", zp)


def _artifact(a: Any, where: str) -> None:
    if not isinstance(a, dict):
        _fail(where, "an artifact object", a)
    for key in _STRINGS:
        if not isinstance(a.get(key), str):
            _fail(f"{where}.{key}", "a string", a.get(key))
    for key in _OPTIONAL_STRINGS:
        if a.get(key) is not None and not isinstance(a[key], str):
            _fail(f"{where}.{key}", "a string or null", a[key])
    path = a.get("path")
    if path is not None and (not isinstance(path, str) or not path or "\0" in path):
        _fail(f"{where}.path", "a non-empty file name or null", path)
    for key in ("bytes", "gzip_bytes"):
        _count(a.get(key), f"{where}.{key}")
    sha = a.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not _SHA256.match(sha)):
        _fail(f"{where}.sha256", "64 lowercase hex digits or null", sha)
    _number(a.get("seconds"), f"{where}.seconds")
    for side in ("inputs", "outputs"):
        specs = a.get(side, [])
        if not isinstance(specs, list):
            _fail(f"{where}.{side}", "a list of tensor specs", specs)
        for i, s in enumerate(specs):
            _spec(s, f"{where}.{side}[{i}]")
    for key in ("validation", "options"):
        if not isinstance(a.get(key, {}), dict):
            _fail(f"{where}.{key}", "an object", a.get(key))
    if a.get("sparsity") is not None and not isinstance(a["sparsity"], dict):
        _fail(f"{where}.sparsity", "an object or null", a["sparsity"])
    notes = a.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        _fail(f"{where}.notes", "a list of strings", notes)


def check_manifest(d: Any) -> None:
    """Raise ``ValueError`` naming the first field of ``d`` (a parsed manifest) that is malformed.

    Args:
        d: The manifest's JSON, parsed.

    Example:
        >>> check_manifest({"schema_version": 7, "artifacts": []})
        Traceback (most recent call last):
        ...
        ValueError: field 'schema_version': this edgekit reads manifest schema version 1, got 7 (written by a newer edgekit? upgrade edgekit, or re-run 'edgekit convert')
        >>> check_manifest({"schema_version": 1, "artifacts": []}) is None
        True
    """
    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object, got {type(d).__name__}")
    version = d.get("schema_version")
    if type(version) is not int or version not in SCHEMA_VERSIONS:
        known = ", ".join(map(str, SCHEMA_VERSIONS))
        shown = "none" if version is None else repr(version)[:40]
        raise ValueError(f"field 'schema_version': this edgekit reads manifest schema version {known}, got {shown} "
                         "(written by a newer edgekit? upgrade edgekit, or re-run 'edgekit convert')")
    for key in _OBJECTS:
        if d.get(key) is not None and not isinstance(d[key], dict):
            _fail(key, "an object", d[key])
    if not isinstance(d.get("created", ""), str):
        _fail("created", "a string", d.get("created"))
    artifacts = d.get("artifacts", [])
    if not isinstance(artifacts, list):
        _fail("artifacts", "a list of artifacts", artifacts)
    for i, a in enumerate(artifacts):
        _artifact(a, f"artifacts[{i}]")
    file = (d.get("eval_data") or {}).get("file")
    if file is not None and (not isinstance(file, str) or not file or "\0" in file):
        _fail("eval_data.file", "a file name", file)


__all__ = ["SCHEMA_VERSIONS", "check_manifest"]
