"""Files edgekit writes have the mode a plain write would give (the umask's), not mkstemp's 0600 or
mkdtemp's 0700: a folder copied to a device must be readable by the service user that serves it.

Covered: atomic writes, converted folders with a folder artifact (CoreML ``.mlpackage``), the bench
outputs (``--json``, ``--csv``, ``--report``) and the SQLite results store."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.calibration import from_arrays
from edgekit.manifest import MANIFEST_NAME, atomic_write_bytes, umask_modes

DATA = Path(__file__).resolve().parent / "data" / "digits-int8"  # committed int8 folder


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


def _tree_modes(root: Path) -> dict[str, int]:
    """Mode of ``root`` and of everything under it, by path relative to ``root``."""
    return {str(p.relative_to(root)): _mode(p) for p in [root, *sorted(root.rglob("*"))]}


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077], ids=lambda m: f"umask{m:03o}")
def test_umask_modes_gives_a_tree_the_modes_of_plain_writes(tmp_path, umask, mask):
    import tempfile

    umask(mask)
    tree = Path(tempfile.mkdtemp(dir=tmp_path))  # 0700, as every mkdtemp folder
    (tree / "sub").mkdir(mode=0o700)
    fd, name = tempfile.mkstemp(dir=tree / "sub")  # 0600
    os.close(fd)
    (tree / "tool.sh").write_text("#!/bin/sh\n")
    os.chmod(tree / "tool.sh", 0o700)
    (tmp_path / "outside").write_text("x")
    os.chmod(tmp_path / "outside", 0o600)
    os.symlink(tmp_path / "outside", tree / "link")
    assert umask_modes(tree) == tree
    d, f = 0o777 & ~mask, 0o666 & ~mask
    assert _mode(tree) == _mode(tree / "sub") == d
    assert _mode(name) == f
    assert _mode(tree / "tool.sh") == d  # executables stay executable
    assert _mode(tmp_path / "outside") == 0o600  # a link's target is not ours to change
    single = tmp_path / "single.bin"
    single.write_bytes(b"x")
    os.chmod(single, 0o600)
    assert _mode(umask_modes(single)) == f


@pytest.mark.parametrize("mask", [0o022, 0o077], ids=lambda m: f"umask{m:03o}")
def test_a_converted_folder_with_a_folder_artifact_follows_the_umask(tmp_path, umask, mask):
    pytest.importorskip("coremltools", reason="coremltools converts the .mlpackage folder artifact")
    from edgekit.api import convert

    umask(mask)
    out = tmp_path / "out"  # edgekit creates the output folder too
    manifest = convert({"model": "digits-cnn", "targets": ["coreml:fp32", "tflite:fp32"]}, out, force=True)
    pkg = out / manifest.artifact("coreml:fp32").path
    assert pkg.is_dir() and pkg.suffix == ".mlpackage"
    modes = _tree_modes(out)
    assert any(Path(k).parent.name == "com.apple.CoreML" and (out / k).is_dir() for k in modes)  # weights/ is in
    assert [k for k in modes if Path(k).name.startswith(".")] == []  # no staging left behind
    d, f = 0o777 & ~mask, 0o666 & ~mask
    wrong = {k: oct(m) for k, m in modes.items() if m != (d if (out / k).is_dir() else f)}
    assert wrong == {}, f"umask {oct(mask)}: want dirs {oct(d)}, files {oct(f)}"


@pytest.mark.parametrize("mask", [0o022, 0o077], ids=lambda m: f"umask{m:03o}")
def test_bench_outputs_and_results_store_follow_the_umask(tmp_path, umask, mask):
    umask(mask)  # the child process inherits it
    env = {**os.environ, "EDGEKIT_RESULTS": str(tmp_path / "store" / "results.sqlite")}
    p = subprocess.run([sys.executable, "-m", "edgekit.cli", "bench", str(DATA), "--runs", "3", "--warmup", "0",
                        "--no-cold-start", "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv"),
                        "--report", str(tmp_path / "r.html")], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    f, d = 0o666 & ~mask, 0o777 & ~mask
    for name in ("r.json", "r.csv", "r.html", "store/results.sqlite"):
        assert _mode(tmp_path / name) == f, (name, oct(_mode(tmp_path / name)))
    assert _mode(tmp_path / "store") == d
