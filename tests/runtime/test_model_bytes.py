"""Model bytes in memory: read once, verified, handed to the engine; files changed on disk afterwards
(truncated, replaced), FIFOs, devices, swapped manifest entries. Real LiteRT and ONNX Runtime."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import edgekit.runtime as rt
from edgekit.errors import BackendError, ModelError
from edgekit.manifest import Manifest


def _copy(digits_out, tmp_path) -> Path:
    folder = tmp_path / "out"
    shutil.copytree(digits_out[0], folder)
    return folder


def _tiny_onnx(path: Path, external: bool = False) -> np.ndarray:
    """A MatMul model (x[?, 64] @ W[64, 4]) written with onnx; returns W."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = (np.arange(64 * 4, dtype=np.float32).reshape(64, 4) / 100.0)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
                              [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if external:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return w


def _run_script(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    # In a child: a SIGBUS (or a blocking read) fails the test instead of killing or hanging pytest.
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_file_truncated_or_replaced_after_load_changes_nothing(digits_out, tmp_path):
    folder = _copy(digits_out, tmp_path)
    onnx_file = tmp_path / "m.onnx"
    _tiny_onnx(onnx_file)
    bare = tmp_path / "bare.tflite"
    shutil.copy(folder / "tflite-fp32.tflite", bare)
    r = _run_script(f"""
        import shutil, numpy as np
        import edgekit.runtime as rt
        folder, bare, onnx_file = {str(folder)!r}, {str(bare)!r}, {str(onnx_file)!r}
        x = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
        xo = np.random.default_rng(0).random((3, 64), dtype=np.float32)
        cases = [(rt.load(folder, target="tflite:fp32"), folder + "/tflite-fp32.tflite", x),
                 (rt.load(bare), bare, x), (rt.load(onnx_file), onnx_file, xo)]
        for s, path, feed in cases:
            before = s.run(feed)
            with open(path, "r+b") as f:
                f.truncate(100)  # a mapped file would SIGBUS on the next page touched
            after_truncate = s.run(feed)
            with open(path, "wb") as f:
                f.write(open(folder + "/tflite-int8.tflite", "rb").read())  # another model cp'd over it
            after_replace = s.run(feed)
            s.run(np.concatenate([feed] * 50))  # a resize re-plans memory: still from our bytes
            for out in (after_truncate, after_replace, s.run(feed)):
                assert all(np.array_equal(before[k], out[k]) for k in before), path
            print("OK", path.rsplit("/", 1)[-1], s.info["backend"])
    """)
    assert r.returncode == 0, f"rc={r.returncode} (SIGBUS is -7): {r.stderr[-2000:]}"
    assert r.stdout.count("OK") == 3, r.stdout


def test_fifo_artifact_is_refused_without_blocking(digits_out, tmp_path):
    folder = _copy(digits_out, tmp_path)
    os.unlink(folder / "tflite-fp32.tflite")
    os.mkfifo(folder / "tflite-fp32.tflite")
    # A manifest that records no size must not make the reader wait for the FIFO either.
    m = Manifest.load(folder)
    arts = tuple(dataclasses.replace(a, bytes=None) if a.target == "tflite:fp32" else a for a in m.artifacts)
    dataclasses.replace(m, artifacts=arts).save(folder)
    r = _run_script(f"""
        import edgekit.runtime as rt
        from edgekit.errors import EdgekitError
        from edgekit.runtime.bench import BenchConfig, bench_path
        folder = {str(folder)!r}
        for kw in ({{}}, {{"verify": False}}):
            try:
                rt.load(folder, target="tflite:fp32", **kw)
            except EdgekitError as e:
                print(type(e).__name__, "|", e)
        try:
            rt.load(folder + "/tflite-fp32.tflite")
        except EdgekitError as e:
            print(type(e).__name__, "|", e)
        res = bench_path(folder, BenchConfig(warmup=0, runs=2), target="tflite:fp32")
        print("bench", res[0].status, "|", res[0].error)
    """, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 4, r.stdout
    for line in lines[:2]:
        assert line.startswith("ModelError |") and "is a FIFO (named pipe), not a regular file" in line, line
    assert lines[2].startswith("BackendError |") and "FIFO" in lines[2]
    assert lines[3].startswith("bench error |") and "FIFO" in lines[3]


def test_symlinks_to_devices_and_fifos_are_refused(digits_out, tmp_path):
    folder = _copy(digits_out, tmp_path)
    os.unlink(folder / "tflite-int8.tflite")
    os.symlink("/dev/zero", folder / "tflite-int8.tflite")
    with pytest.raises(ModelError, match=r"points outside"):  # the link leaves the folder
        rt.load(folder, target="tflite:int8", verify=False)
    with pytest.raises(BackendError, match=r"tflite-int8.tflite is a character device, not a regular file"):
        rt.load(folder / "tflite-int8.tflite")
    os.unlink(folder / "tflite-int8.tflite")
    os.mkfifo(folder / "pipe")
    os.symlink("pipe", folder / "tflite-int8.tflite")  # inside the folder, but a FIFO
    with pytest.raises(ModelError, match=r"is a FIFO \(named pipe\), not a regular file"):
        rt.load(folder, target="tflite:int8", verify=False)


def test_corrupt_bytes_are_still_a_one_line_backend_error(digits_out, tmp_path):
    folder = _copy(digits_out, tmp_path)
    data = bytearray((folder / "tflite-fp32.tflite").read_bytes())
    data[8:4000] = b"\xff" * (4000 - 8)
    (folder / "tflite-fp32.tflite").write_bytes(bytes(data))
    with pytest.raises(BackendError) as ei:
        rt.load(folder, target="tflite:fp32", verify=False)
    assert "\n" not in str(ei.value) and "tflite-fp32.tflite" in str(ei.value)
    with pytest.raises(ModelError, match="does not match its sha256"):
        rt.load(folder, target="tflite:fp32")


def test_onnx_with_external_data_loads_from_bytes(tmp_path):
    model = tmp_path / "ext.onnx"
    w = _tiny_onnx(model, external=True)
    assert (tmp_path / "ext.onnx.data").is_file() and model.stat().st_size < 500  # the weights are beside it
    s = rt.load(model)
    x = np.random.default_rng(1).random((2, 64), dtype=np.float32)
    np.testing.assert_allclose(s.run(x)["y"], x @ w, rtol=1e-5)


def test_missing_sha256_is_refused_unless_verify_is_off(digits_out, tmp_path):
    folder = _copy(digits_out, tmp_path)
    doc = json.loads((folder / "manifest.json").read_text())
    for a in doc["artifacts"]:
        a["sha256"] = None
    (folder / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"tflite-int8.tflite has no sha256 in the manifest.*--no-verify"):
        rt.load(folder, target="tflite:int8")
    assert rt.load(folder, target="tflite:int8", verify=False).run(np.zeros((1, 8, 8, 1), np.float32))["logits"].shape == (1, 10)


@pytest.mark.parametrize("a,b", [("tflite:fp32", "tflite:int8"), ("tflite:fp32", "tflite:fp16"),
                                 ("tflite:fp16", "tflite:dynamic")])
def test_swapped_manifest_entries_are_refused(digits_out, tmp_path, a, b):
    folder = _copy(digits_out, tmp_path)
    doc = json.loads((folder / "manifest.json").read_text())
    ea, eb = (next(x for x in doc["artifacts"] if x["target"] == t) for t in (a, b))
    for key in ("path", "sha256", "bytes"):  # integrity passes: each file matches the entry's sha256
        ea[key], eb[key] = eb[key], ea[key]
    (folder / "manifest.json").write_text(json.dumps(doc))
    for target, file in ((a, ea["path"]), (b, eb["path"])):  # each entry now names the other file
        with pytest.raises(ModelError) as ei:
            rt.load(folder, target=target)
        msg = str(ei.value)
        assert f"manifest entry {target} points at {file}, which is not that artifact" in msg, msg
        assert "swapped" in msg and "\n" not in msg


def test_every_untouched_artifact_still_loads(digits_out):
    # the engine check must not refuse what convert wrote
    for a in digits_out[1].artifacts:
        s = rt.load(digits_out[0], target=a.target)
        assert s.run(np.zeros((2, 8, 8, 1), np.float32))["logits"].shape == (2, 10)
