"""edgekit.runtime.load: choosing artifacts, specs, integrity checks and malformed files (real LiteRT)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import edgekit.runtime as rt
from edgekit.errors import BackendError, EdgekitError, InputError, ModelError
from edgekit.manifest import Manifest

TARGETS = ("tflite:fp32", "tflite:dynamic", "tflite:int8", "tflite:fp16")


def _copy_out(digits_out, tmp_path: Path) -> tuple[Path, Manifest]:
    out, _ = digits_out
    dst = tmp_path / "out-copy"
    shutil.copytree(out, dst)
    return dst, Manifest.load(dst)


def _artifact_file(folder: Path, manifest: Manifest, target: str) -> Path:
    return folder / str(manifest.artifact(target).path)


# ------------------------------------------------------------------ choosing the artifact


def test_fixture_has_four_passed_artifacts(digits_out):
    out, manifest = digits_out
    assert [a.target for a in manifest.artifacts] == list(TARGETS)
    assert all(a.status == "passed" and a.path for a in manifest.artifacts)
    assert (out / "eval.npz").is_file()


def test_load_folder_picks_the_best_artifact_for_this_device(digits_out):
    from edgekit.runtime.choose import rank
    from edgekit.runtime.device import device_info

    out, manifest = digits_out
    expected = rank(manifest.artifacts, device_info(), lambda a: None)[0][0]
    s = rt.load(out)
    assert s.artifact == expected
    assert s.format == "tflite"
    assert Path(s.path) == out / expected.path
    assert s.info["chosen"].startswith(f"{expected.target}: best for this device")
    assert "also runnable" in s.info["chosen"]


def test_format_and_precision_overrides(digits_out):
    out, _ = digits_out
    s = rt.load(out, precision="fp16")
    assert s.artifact.target == "tflite:fp16" and "requested precision='fp16'" in s.info["chosen"]
    assert rt.load(out, format="tflite", precision="dynamic").artifact.target == "tflite:dynamic"
    with pytest.raises(ModelError, match=r"no artifact matches 'onnx:\*'"):
        rt.load(out, format="onnx")


def test_load_manifest_json_path_same_as_folder(digits_out):
    out, _ = digits_out
    s = rt.load(out / "manifest.json", target="tflite:int8")
    assert s.artifact.target == "tflite:int8"
    assert Path(s.path) == out / "tflite-int8.tflite"


@pytest.mark.parametrize("target, expected", [
    ("tflite:int8", "tflite:int8"),
    ("tflite:fp16", "tflite:fp16"),
    ("dynamic", "tflite:dynamic"),   # a bare precision
    ("tflite", "tflite:fp32"),       # a bare format: the first one
])
def test_load_with_target(digits_out, target, expected):
    out, _ = digits_out
    s = rt.load(out, target=target)
    assert s.artifact.target == expected
    assert s.precision == expected.split(":")[1]
    assert f"requested {target!r}" in s.info["chosen"]


def test_unknown_target_lists_targets(digits_out):
    out, _ = digits_out
    with pytest.raises(ModelError) as ei:
        rt.load(out, target="onnx:fp32")
    msg = str(ei.value)
    assert "'onnx:fp32'" in msg
    for t in TARGETS:
        assert t in msg
    assert "\n" not in msg


def test_choose_artifact_without_passed_artifact(digits_out):
    import dataclasses

    _, manifest = digits_out
    failed = dataclasses.replace(manifest, artifacts=tuple(dataclasses.replace(a, status="failed") for a in manifest.artifacts))
    with pytest.raises(ModelError, match="no artifact in this folder passed validation"):
        rt.choose_artifact(failed)
    # an explicit target still works, with a warning in the reason
    a, why = rt.choose_artifact(failed, "tflite:int8")
    assert a.target == "tflite:int8"
    assert "warning" in why and "'failed'" in why


# ------------------------------------------------------------------ specs


def test_fp32_specs(digits_out):
    out, manifest = digits_out
    s = rt.load(out, target="tflite:fp32")
    assert s.input_names == ["image"]
    assert s.output_names == ["logits"]
    (i,), (o,) = s.inputs, s.outputs
    assert i.shape == (None, 8, 8, 1) and i.dtype == "float32" and not i.quantized
    assert o.shape == (None, 10) and o.dtype == "float32" and not o.quantized
    assert i.describe() == "image[?x8x8x1] float32"
    # what the runtime sees is what the converter recorded
    assert s.inputs == manifest.artifact("tflite:fp32").inputs
    assert s.outputs == manifest.artifact("tflite:fp32").outputs


def test_int8_specs_carry_quantization(digits_out):
    out, manifest = digits_out
    s = rt.load(out, target="tflite:int8")
    (i,), (o,) = s.inputs, s.outputs
    assert (i.name, i.shape, i.dtype) == ("image", (None, 8, 8, 1), "int8")
    assert (o.name, o.shape, o.dtype) == ("logits", (None, 10), "int8")
    assert i.quantized and o.quantized
    # inputs are images in [0, 1]: scale 1/255, zero point -128
    assert i.scale == pytest.approx(1 / 255, rel=1e-6)
    assert i.zero_point == -128
    assert o.scale > 0 and -128 <= o.zero_point <= 127
    assert s.inputs == manifest.artifact("tflite:int8").inputs
    assert s.outputs == manifest.artifact("tflite:int8").outputs
    assert "int8 (scale=" in repr(s)


@pytest.mark.parametrize("target", ["tflite:dynamic", "tflite:fp16"])
def test_float_io_for_dynamic_and_fp16(digits_out, target):
    out, _ = digits_out
    s = rt.load(out, target=target)
    assert [(t.dtype, t.shape) for t in s.inputs] == [("float32", (None, 8, 8, 1))]
    assert [(t.dtype, t.shape) for t in s.outputs] == [("float32", (None, 10))]


# ------------------------------------------------------------------ integrity


def test_flipped_byte_fails_sha256(digits_out, tmp_path):
    folder, manifest = _copy_out(digits_out, tmp_path)
    f = _artifact_file(folder, manifest, "tflite:fp32")
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ModelError) as ei:
        rt.load(folder, target="tflite:fp32")
    assert "sha256" in str(ei.value)
    assert f.name in str(ei.value)
    # the untouched artifacts still load
    assert rt.load(folder, target="tflite:int8").artifact.target == "tflite:int8"


def test_flipped_byte_without_verify_loads_or_backend_error(digits_out, tmp_path):
    """verify=False on a corrupt file: loads (the flip hit a weight) or BackendError, in a child process."""
    folder, manifest = _copy_out(digits_out, tmp_path)
    f = _artifact_file(folder, manifest, "tflite:fp32")
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    code = textwrap.dedent("""
        import sys, numpy as np
        import edgekit.runtime as rt
        from edgekit.errors import BackendError
        try:
            s = rt.load(sys.argv[1], target="tflite:fp32", verify=False)
            out = s.run(np.zeros((2, 8, 8, 1), np.float32))["logits"]
            print("loaded", out.shape)
        except BackendError as exc:
            print("BackendError", str(exc))
    """)
    proc = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    assert line == "loaded (2, 10)" or line.startswith("BackendError "), proc.stdout


def test_truncated_artifact_fails_size_check(digits_out, tmp_path):
    folder, manifest = _copy_out(digits_out, tmp_path)
    f = _artifact_file(folder, manifest, "tflite:int8")
    size = f.stat().st_size
    f.write_bytes(f.read_bytes()[: size // 2])
    with pytest.raises(ModelError) as ei:
        rt.load(folder, target="tflite:int8")
    msg = str(ei.value)
    assert "bytes" in msg
    assert str(size // 2) in msg and str(size) in msg


def test_deleted_artifact_is_missing(digits_out, tmp_path):
    folder, manifest = _copy_out(digits_out, tmp_path)
    f = _artifact_file(folder, manifest, "tflite:fp16")
    f.unlink()
    with pytest.raises(ModelError, match="missing"):
        rt.load(folder, target="tflite:fp16")
    # even without verify it is a clean error, not a crash
    with pytest.raises(EdgekitError):
        rt.load(folder, target="tflite:fp16", verify=False)


def test_verify_false_skips_sha_check_on_intact_file(digits_out, tmp_path):
    folder, manifest = _copy_out(digits_out, tmp_path)
    # tamper with the manifest's hash only: verify catches it, verify=False loads the (good) file
    doc = json.loads((folder / "manifest.json").read_text())
    for a in doc["artifacts"]:
        if a["target"] == "tflite:fp32":
            a["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="sha256"):
        rt.load(folder, target="tflite:fp32")
    s = rt.load(folder, target="tflite:fp32", verify=False)
    assert s.run(np.zeros((1, 8, 8, 1), np.float32))["logits"].shape == (1, 10)


def test_manifest_not_json(digits_out, tmp_path):
    folder, _ = _copy_out(digits_out, tmp_path)
    (folder / "manifest.json").write_text("{this is not json")
    with pytest.raises(ModelError) as ei:
        rt.load(folder)
    assert "not a valid edgekit manifest" in str(ei.value)
    assert "\n" not in str(ei.value)


def test_manifest_json_not_an_object(tmp_path):
    (tmp_path / "manifest.json").write_text("[]")
    with pytest.raises(ModelError):
        rt.load(tmp_path)


def test_folder_without_manifest(tmp_path):
    with pytest.raises(ModelError, match="no manifest"):
        rt.load(tmp_path)


# ------------------------------------------------------------------ bare files


def test_load_bare_file(digits_out):
    out, _ = digits_out
    s = rt.load(out / "tflite-int8.tflite")
    assert s.artifact is None and s.precision is None and s.format == "tflite"
    assert s.inputs[0].dtype == "int8"
    assert "chosen" not in s.info


def test_missing_path_is_model_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        rt.load(tmp_path / "nope.tflite")


@pytest.mark.parametrize("suffix", [".bin", ".pb", ".tfl", ""])
def test_unknown_suffix_lists_tflite(digits_out, tmp_path, suffix):
    from edgekit.runtime.backends import SUFFIXES

    assert suffix not in SUFFIXES
    out, _ = digits_out
    f = tmp_path / f"model{suffix}"
    shutil.copy(out / "tflite-fp32.tflite", f)
    with pytest.raises(BackendError) as ei:
        rt.load(f)
    assert ".tflite" in str(ei.value)
    assert "unknown suffix" in str(ei.value)
    assert "\n" not in str(ei.value)


def test_tflite_bytes_named_onnx(digits_out, tmp_path):
    """.onnx is either an unknown suffix (LiteRT-only install) or goes to its own engine, which rejects the bytes."""
    from edgekit.runtime.backends import SUFFIXES

    out, _ = digits_out
    f = tmp_path / "model.onnx"
    shutil.copy(out / "tflite-fp32.tflite", f)
    with pytest.raises(EdgekitError) as ei:
        rt.load(f)
    msg = str(ei.value)
    assert "\n" not in msg
    if ".onnx" not in SUFFIXES:
        assert isinstance(ei.value, BackendError) and ".tflite" in msg and "unknown suffix" in msg
    else:
        assert "model.onnx" in msg


def test_backend_open_on_folder_is_backend_error(tmp_path):
    from edgekit.runtime.backends import get_backend

    d = tmp_path / "dir.tflite"
    d.mkdir()
    with pytest.raises(BackendError, match="is a folder"):
        get_backend("tflite").open(d)


def test_unknown_engine_option_and_format():
    from edgekit.runtime.backends import get_backend

    with pytest.raises(BackendError, match="did you mean 'tflite'"):
        get_backend("tflit")
    with pytest.raises(InputError, match="use_xnnpack"):
        get_backend("tflite").open(Path("x.tflite"), bogus=1)


_MALFORMED_SCRIPT = textwrap.dedent("""
    import json, sys
    import edgekit.runtime as rt
    from edgekit.errors import EdgekitError
    results = {}
    for path in sys.argv[1:]:
        try:
            rt.load(path)
            results[path] = ["loaded", ""]
        except EdgekitError as exc:
            results[path] = [type(exc).__name__, str(exc)]
        except Exception as exc:  # reported, so the test names the leak instead of crashing here
            results[path] = ["UNEXPECTED " + type(exc).__name__, str(exc)]
    print("RESULTS " + json.dumps(results))
""")


def test_malformed_files_in_subprocess(digits_out, tmp_path):
    """Malformed files give one-line BackendErrors, and the process exits normally (no crash, no hang)."""
    out, _ = digits_out
    real = (out / "tflite-fp32.tflite").read_bytes()
    files = {
        "empty.tflite": b"",
        "random.tflite": np.random.default_rng(0).bytes(4096),
        "truncated.tflite": real[: len(real) // 2],
        "head-only.tflite": real[:1000],
        "text.tflite": b"this is a text file, not a model\n" * 20,
        "tiny.tflite": b"TFL3",
        "fake-header.tflite": b"\x1c\x00\x00\x00TFL3" + np.random.default_rng(1).bytes(2000),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = [str(tmp_path / n) for n in files]
    proc = subprocess.run([sys.executable, "-c", _MALFORMED_SCRIPT, *paths], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS "))
    results = json.loads(line[len("RESULTS "):])
    assert set(results) == set(paths)
    for path, (kind, msg) in results.items():
        name = Path(path).name
        assert kind == "BackendError", (name, kind, msg)
        assert "\n" not in msg
        assert name in msg, (name, msg)
    assert "bytes" in results[str(tmp_path / "empty.tflite")][1]
    assert "TFL3" in results[str(tmp_path / "random.tflite")][1]
    assert "TFL3" in results[str(tmp_path / "text.tflite")][1]


def test_malformed_directory_and_missing_in_subprocess(tmp_path):
    d = tmp_path / "folder.tflite"
    d.mkdir()
    missing = tmp_path / "missing.tflite"
    proc = subprocess.run([sys.executable, "-c", _MALFORMED_SCRIPT, str(d), str(missing)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS "))
    results = json.loads(line[len("RESULTS "):])
    # a folder named like a model file is that format's (folder-shaped formats exist, e.g. .mlpackage)
    assert results[str(d)][0] == "BackendError" and "is a folder, not a .tflite file" in results[str(d)][1]
    assert results[str(missing)] == ["ModelError", f"{missing} does not exist"]


def test_corrupt_tensor_name_is_backend_error(digits_out, tmp_path):
    out, _ = digits_out
    data = bytearray((out / "tflite-int8.tflite").read_bytes())
    pos = data.find(b"serving_default_image:0")
    assert pos > 0
    data[pos] ^= 0xFF  # 's' -> 0x8c: not valid UTF-8
    f = tmp_path / "bad-name.tflite"
    f.write_bytes(bytes(data))
    with pytest.raises(BackendError):
        rt.load(f)
