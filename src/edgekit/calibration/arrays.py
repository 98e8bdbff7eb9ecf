"""Datasets from arrays in memory and from ``.npz`` / ``.npy`` files.

Files are loaded with ``allow_pickle=False``: a data file must never be able to run code.

Example:
    >>> import numpy as np
    >>> from_arrays({"a": np.zeros((4, 2)), "b": np.ones((4, 3))}).num_inputs
    2
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgekit.calibration.dataset import Dataset
from edgekit.errors import DataError

# Key conventions, in order of preference (np.savez(path, x=..., y=...) is the common case).
X_KEYS = ("x", "inputs", "images", "data")
Y_KEYS = ("y", "labels", "label", "targets")
CLASSES_KEY = "classes"
_MULTI_X = re.compile(r"^x_?(\d+)$")  # x0, x1, ... or x_0, x_1, ...
_NPY_MAGIC = b"\x93NUMPY"


def from_arrays(x: Any, y: Any = None, name: str = "arrays") -> Dataset:
    """A dataset from arrays already in memory.

    Args:
        x: One array ``(N, ...)``; a list or tuple of arrays (several model inputs, in order); or
            a dict name -> array (several inputs, in insertion order). A list always means
            several inputs: pass ``np.asarray(...)`` for one input given as nested lists.
        y: ``(N,)`` labels or ``None``.
        name: Description used in messages.

    Raises:
        DataError: Non-numeric or ragged data, different row counts, zero rows, bad labels.

    Example:
        >>> import numpy as np
        >>> ds = from_arrays(np.zeros((3, 8, 8, 1)), y=[0, 1, 2])
        >>> len(ds), ds.labels.tolist()
        (3, [0, 1, 2])
    """
    if isinstance(x, Mapping):
        inputs = tuple(x.values())
    elif isinstance(x, (list, tuple)):
        inputs = tuple(x)
    else:
        inputs = (x,)
    return Dataset(inputs, y, name)


def _existing_file(path: str | os.PathLike, kind: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p} does not exist: pass the path of an existing {kind} file")
    if not p.is_file():
        raise DataError(f"{p} is not a file: pass the path of a {kind} file")
    return p


def _pick(keys: list[str], candidates: tuple[str, ...], path: Path, what: str, option: str) -> str | None:
    """The one candidate key present, ``None`` if none; DataError if several (we will not guess)."""
    found = [k for k in candidates if k in keys]
    if len(found) > 1:
        raise DataError(
            f"{path} has several possible {what} arrays {found} (keys: {keys}): pass {option}='name' to choose one"
        )
    return found[0] if found else None


def _resolve_keys(keys: list[str], x_key: str | None, y_key: str | None, path: Path) -> tuple[list[str], str | None]:
    """Which npz keys hold the inputs and the labels (see :func:`from_npz` for the rules)."""
    how = "pass x_key='name' (comma-separated for several inputs) and y_key='name' for labels"
    if x_key is not None:
        x_names = [k.strip() for k in str(x_key).split(",") if k.strip()]
        missing = [k for k in x_names if k not in keys]
        if not x_names or missing:
            raise DataError(f"{path} has no array {missing or x_key!r} for x_key; it has keys {keys}: {how}")
    elif len(keys) == 1:
        x_names = list(keys)  # one array and nothing else: it can only be the inputs
    else:
        single = _pick(keys, X_KEYS, path, "input", "x_key")
        numbered = sorted(
            ((int(m.group(1)), k) for k in keys if (m := _MULTI_X.match(k))), key=lambda t: t[0]
        )
        if single and numbered:
            raise DataError(
                f"{path} has both {single!r} and numbered inputs {[k for _, k in numbered]}: pass x_key to choose"
            )
        if single:
            x_names = [single]
        elif numbered:
            indices = [i for i, _ in numbered]
            if indices != list(range(len(indices))):
                raise DataError(
                    f"{path} has numbered inputs {[k for _, k in numbered]} that do not run 0, 1, 2, ...: "
                    f"rename them x0, x1, ... or pass x_key"
                )
            x_names = [k for _, k in numbered]
        else:
            raise DataError(
                f"cannot tell which arrays in {path} are the inputs (keys: {keys}); expected 'x' "
                f"(or {list(X_KEYS[1:])}), or x0, x1, ... for several inputs: {how}"
            )
    if y_key is not None:
        if y_key not in keys:
            raise DataError(f"{path} has no array {y_key!r} for y_key; it has keys {keys}: {how}")
        return x_names, y_key
    if x_key is None and len(keys) == 1:
        return x_names, None
    y_name = _pick([k for k in keys if k not in x_names], Y_KEYS, path, "label", "y_key")
    return x_names, y_name


def from_npz(path: str | os.PathLike, x_key: str | None = None, y_key: str | None = None) -> Dataset:
    """A dataset from an ``.npz`` file (``np.savez``).

    Inputs: ``x_key`` if given (comma-separated for several inputs); else the only array in the
    file; else ``x`` (or ``inputs``, ``images``, ``data``); else ``x0, x1, ...`` (or
    ``x_0, ...``) as several inputs. Labels: ``y_key`` if given, else ``y`` (or ``labels``,
    ``label``, ``targets``) if present. A ``classes`` string array becomes :attr:`Dataset.classes`.
    Other keys are ignored.

    Raises:
        DataError: Missing file, not an npz, unreadable member, ambiguous or missing keys, no rows.

    Example:
        >>> import os, tempfile, numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "calib.npz")
        >>> np.savez(path, x0=np.zeros((4, 3)), x1=np.ones((4, 2)), labels=np.arange(4))
        >>> ds = from_npz(path)
        >>> ds.num_inputs, ds.labels.tolist(), ds.name
        (2, [0, 1, 2, 3], 'calib.npz')
    """
    p = _existing_file(path, ".npz")
    # np.load falls back to unpickling unknown files; check the zip signature ourselves so a bad
    # file gets a clear reason instead of a message about pickles.
    if not zipfile.is_zipfile(p):
        hint = " (it is a .npy file: use from_npy)" if _is_npy(p) else ""
        raise DataError(f"cannot read {p} as .npz: not a zip archive{hint}: write it with np.savez(path, x=..., y=...)")
    try:
        with np.load(p, allow_pickle=False) as npz:
            keys = list(npz.files)
            if not keys:
                raise DataError(f"{p} contains no arrays: write it with np.savez(path, x=..., y=...)")
            x_names, y_name = _resolve_keys(keys, x_key, y_key, p)
            xs = [_member(p, npz, k) for k in x_names]
            y = npz[y_name] if y_name else None
            classes = npz[CLASSES_KEY] if CLASSES_KEY in keys and CLASSES_KEY not in x_names else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"cannot read {p} as .npz: {exc}: re-create it with np.savez (no object arrays)") from None
    names = () if classes is None or classes.dtype.kind != "U" else tuple(classes.tolist())
    return Dataset(tuple(xs), y, p.name, names)


def _member(path: Path, npz: Any, key: str) -> np.ndarray:
    """An ``.npz`` member, memory-mapped when it is stored uncompressed (``np.savez``), else read whole.

    ``np.load`` ignores ``mmap_mode`` for ``.npz``; but an uncompressed zip entry is the ``.npy``
    bytes at an offset of the file, so it maps like a ``.npy`` and a large eval set costs no
    memory until its batches are read. Compressed members (``np.savez_compressed``) are read whole.
    """
    mapped = _mapped_member(path, f"{key}.npy")
    return npz[key] if mapped is None else mapped


def _mapped_member(path: Path, member: str) -> np.ndarray | None:
    import struct

    with zipfile.ZipFile(path) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            return None
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:  # compressed or encrypted
        return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        f.seek(start)
        try:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
        except ValueError:
            return None
        offset = f.tell()
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if dtype.hasobject or offset - start + nbytes != info.file_size:  # the entry must be exactly this array
        return None
    if nbytes == 0:
        return None  # nothing to map (mmap refuses length 0): the reader's copy is free
    _check_crc(path, start, info)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _check_crc(path: Path, start: int, info: zipfile.ZipInfo) -> None:
    """The zip entry's CRC-32, checked as reading it whole would (in 1 MiB reads: no memory kept)."""
    import zlib

    crc, left = 0, info.file_size
    with open(path, "rb") as f:
        f.seek(start)
        while left:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                break
            crc, left = zlib.crc32(chunk, crc), left - len(chunk)
    if left or crc != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")


def _is_npy(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(len(_NPY_MAGIC)) == _NPY_MAGIC


def _load_npy(path: str | os.PathLike, what: str) -> tuple[Path, np.ndarray]:
    p = _existing_file(path, ".npy")
    if not _is_npy(p):
        hint = " (it is a zip/.npz archive: use from_npz)" if zipfile.is_zipfile(p) else ""
        raise DataError(f"cannot read {p} as .npy: not a .npy file{hint}: write {what} with np.save(path, array)")
    try:
        # Memory-mapped, read-only: a large eval/calibration file is paged in one batch at a time
        # by the loops that use it, not read whole (so is an uncompressed .npz member: _member).
        return p, np.load(p, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read {p} as .npy: {exc}: re-create it with np.save (no object arrays)") from None


def from_npy(path: str | os.PathLike, labels_path: str | os.PathLike | None = None) -> Dataset:
    """A single-input dataset from an ``.npy`` file, with labels from a second ``.npy`` if given.

    The arrays are memory-mapped read-only (``np.load(mmap_mode="r")``): samples are read from the
    file as batches need them, so a large file costs no memory until used. Prefer ``.npy`` over
    ``.npz`` for large data with ``np.savez_compressed``: compressed members are read whole
    (:func:`from_npz` maps uncompressed ones).

    Example:
        >>> import os, tempfile, numpy as np
        >>> d = tempfile.mkdtemp()
        >>> np.save(os.path.join(d, "x.npy"), np.zeros((5, 4)))
        >>> len(from_npy(os.path.join(d, "x.npy")))
        5
    """
    p, x = _load_npy(path, "the inputs")
    y = None if labels_path is None else _load_npy(labels_path, "the labels")[1]
    return Dataset((x,), y, p.name)
