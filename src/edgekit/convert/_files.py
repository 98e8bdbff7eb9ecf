"""Artifacts on disk, file or folder: atomic placement, removal, and the sizes the manifest records.

Most formats write one file; CoreML (``.mlpackage``), TF-TRT (a SavedModel) and TensorRT (``.trt``)
write a folder. Both are staged under a hidden name and renamed into place, so a reader sees no
artifact or the whole artifact, never half of one.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

from edgekit.manifest import artifact_bytes, umask_modes


def remove(path: Path) -> None:
    """Delete a file or a folder artifact; nothing if it is not there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def place(staging: Path, final: Path) -> None:
    """Rename ``staging`` to ``final`` atomically, replacing a previous file or folder there.

    Every file and folder of the artifact first gets the umask's modes (:func:`~edgekit.manifest.umask_modes`):
    exporters stage in temporary files and folders (0600 / 0700) and some tools pick their own
    modes, but an artifact is made to be copied to a device and read there by another user.

    ``os.replace`` cannot replace a non-empty folder, so an old folder is first renamed aside
    (one atomic step) and deleted after the new one is in place.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); (d / ".a.partial").mkdir(); (d / "a").mkdir()
        >>> _ = (d / ".a.partial" / "new").write_text("x"); _ = (d / "a" / "old").write_text("y")
        >>> place(d / ".a.partial", d / "a"); sorted(p.name for p in (d / "a").iterdir())
        ['new']
    """
    umask_modes(staging)
    if final.is_dir() and not final.is_symlink():
        aside = final.with_name(f".{final.name}.old")
        remove(aside)
        os.replace(final, aside)
        os.replace(staging, final)
        remove(aside)
    else:
        os.replace(staging, final)


def sizes(path: Path) -> tuple[int, int]:
    """``(bytes, gzip_bytes)`` of an artifact.

    For a folder, ``bytes`` is the total of its files and ``gzip_bytes`` the sum of each file
    compressed alone with gzip -9: what the payload costs to ship, without the tar framing that a
    single archive would add (and without depending on how one tars a folder).
    """
    if path.is_dir():
        files = sorted(q for q in path.rglob("*") if q.is_file())
        return artifact_bytes(path), sum(len(gzip.compress(f.read_bytes(), 9)) for f in files)
    data = path.read_bytes()
    return len(data), len(gzip.compress(data, 9))
