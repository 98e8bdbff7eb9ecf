"""Files edgekit writes atomically have the mode a plain write would give (the umask's), not
mkstemp's 0600: a folder copied to a device must be readable by the service user that serves it."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from edgekit.calibration import from_arrays
from edgekit.manifest import MANIFEST_NAME, atomic_write_bytes


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    os.umask(old)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask, want", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mask, want):
    umask(mask)
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    atomic = atomic_write_bytes(tmp_path / "atomic.bin", b"x")
    from_arrays(np.zeros((2, 3), np.float32)).to_npz(tmp_path / "data.npz")
    assert _mode(atomic) == _mode(plain) == want
    assert _mode(tmp_path / "data.npz") == want
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind


def test_a_converted_folder_is_readable_by_other_users(digits_out):
    out, manifest = digits_out
    files = [out / MANIFEST_NAME, out / manifest.eval_data["file"], *(out / a.path for a in manifest.artifacts)]
    for f in files:
        assert _mode(f) & 0o044 == 0o044, (f.name, oct(_mode(f)))  # group and others can read (umask 022)
