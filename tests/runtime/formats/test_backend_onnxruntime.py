"""The onnxruntime backend on real converted files: providers, threads, names, dynamic batch,
malformed files as one-line errors, a TensorFlow-free runtime, and one bench table across engines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgekit.runtime as rt
from edgekit.errors import BackendError, InputError
from edgekit.runtime.backends.onnxruntime import ONNXRuntimeBackend, resolve_providers

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def mixed_out(tmp_path_factory, digits_model):
    """digits-cnn as ONNX, TFLite, CoreML and TF-TRT targets in one folder."""
    from edgekit.api import convert

    out = tmp_path_factory.mktemp("digits-mixed")
    targets = ["onnx:fp32", "onnx:int8", "tflite:fp32", "tflite:int8", "coreml:fp16", "tftrt:fp32"]
    return out, convert({"model": "digits-cnn", "targets": targets}, out)


@pytest.fixture(scope="module")
def onnx_file(mixed_out):
    out, m = mixed_out
    return out / m.artifact("onnx:fp32").path


def test_bare_onnx_file_named_inputs_dynamic_batch(onnx_file, digits_eval):
    s = rt.load(onnx_file)
    assert s.format == "onnx" and s.input_names == ["image"] and s.output_names == ["logits"]
    assert s.inputs[0].shape == (None, 8, 8, 1) and s.inputs[0].dtype == "float32"
    x = digits_eval.inputs[0]
    for n in (1, 7, 64):
        assert s.run({"image": x[:n]})["logits"].shape == (n, 10)
    acc = float(np.mean(np.argmax(s.run(x)["logits"], 1) == digits_eval.labels))
    assert acc >= 0.95
    assert s.run(x[:2].astype(np.float64))["logits"].dtype == np.float32  # float64 feeds are cast


def test_threads_providers_and_graph_optimisation_are_reported(onnx_file):
    s = rt.load(onnx_file, num_threads=1, providers="cpu", graph_optimization="basic")
    assert s.info["backend"] == "onnxruntime" and s.info["engine_version"] == ort.__version__
    assert s.info["num_threads"] == 1 and s.info["providers"] == ["CPUExecutionProvider"]
    assert s.info["graph_optimization"] == "basic"
    default = rt.load(onnx_file)
    assert default.info["num_threads"] == len(os.sched_getaffinity(0))  # cores, not onnxruntime's guess
    assert default.info["providers"][-1] == "CPUExecutionProvider"


def test_provider_order_keeps_the_accelerated_ones_first():
    avail = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(None, avail) == avail
    assert resolve_providers(None, avail[1:]) == avail[1:]
    assert resolve_providers("cpu,cuda", avail) == ["CPUExecutionProvider", "CUDAExecutionProvider"]
    assert resolve_providers(["CUDAExecutionProvider"], avail) == ["CUDAExecutionProvider"]


@pytest.mark.parametrize("providers, msg", [
    ("tensorrt", "onnxruntime-gpu"),
    ("bogus", "'bogus' is not in this onnxruntime build"),
    ("", "at least one execution provider"),
])
def test_bad_providers_are_input_errors(onnx_file, providers, msg):
    if providers == "tensorrt" and "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("TensorRT EP present")
    with pytest.raises(InputError, match=msg):
        rt.load(onnx_file, providers=providers)


def test_bad_engine_options_are_input_errors(onnx_file):
    with pytest.raises(InputError, match="graph_optimization='max' is not one of all, extended, basic, disable"):
        rt.load(onnx_file, graph_optimization="max")
    with pytest.raises(InputError, match=r"unknown onnxruntime option\(s\) \['use_xnnpack'\]"):
        rt.load(onnx_file, use_xnnpack=False)
    with pytest.raises(InputError, match="num_threads must be >= 1"):
        rt.load(onnx_file, num_threads=0)


def _corrupt(tmp: Path, onnx_file: Path) -> dict[str, Path]:
    data = onnx_file.read_bytes()
    files = {
        "empty": b"",
        "random": np.random.default_rng(0).bytes(4096),
        "truncated": data[: len(data) // 3],
        "text": b"this is not an onnx model\n",
        "tflite": (onnx_file.parent / "tflite-fp32.tflite").read_bytes(),
    }
    out = {}
    for name, payload in files.items():
        p = tmp / f"{name}.onnx"
        p.write_bytes(payload)
        out[name] = p
    folder = tmp / "folder.onnx"
    folder.mkdir()
    out["folder"] = folder
    return out


@pytest.mark.parametrize("kind", ["empty", "random", "truncated", "text", "tflite", "folder"])
def test_malformed_onnx_files_are_one_line_backend_errors(tmp_path, onnx_file, kind):
    path = _corrupt(tmp_path, onnx_file)[kind]
    with pytest.raises(BackendError) as e:
        rt.load(path)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 500
    assert path.name in msg


def test_malformed_file_from_the_cli_bench_is_one_line(tmp_path, onnx_file):
    bad = _corrupt(tmp_path, onnx_file)["random"]
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", "bench", str(bad), "--runs", "2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "cannot load random.onnx with onnxruntime" in r.stdout


def test_running_onnx_never_imports_tensorflow(onnx_file):
    code = (
        "import sys, numpy as np, edgekit.runtime as rt\n"
        "s = rt.load(sys.argv[1])\n"
        "y = s.run(np.zeros((2, 8, 8, 1), np.float32))['logits']\n"
        "assert y.shape == (2, 10)\n"
        "from edgekit.runtime.bench import BenchConfig, bench_file\n"
        "assert bench_file(sys.argv[1], BenchConfig(warmup=0, runs=2)).status == 'ok'\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'tf_keras', 'tf2onnx', 'onnx', 'coremltools') if m in sys.modules]\n"
        "print('heavy:', heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(onnx_file)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "heavy: []" in r.stdout


def test_bench_compares_every_format_in_one_table(mixed_out):
    from edgekit.runtime.bench import BenchConfig, bench_path

    out, m = mixed_out
    rows = {r.target: r for r in bench_path(out, BenchConfig(warmup=1, runs=5))}
    assert list(rows) == [a.target for a in m.artifacts]
    assert rows["onnx:fp32"].engine == "onnxruntime" and "litert" in rows["tflite:fp32"].engine
    for t in ("onnx:fp32", "onnx:int8", "tflite:fp32", "tflite:int8"):
        assert rows[t].status == "ok" and rows[t].accuracy >= 95.0 and rows[t].latency_ms["p50"] > 0
    assert rows["coreml:fp16"].status == "skipped" and "CoreML runs only on macOS" in rows["coreml:fp16"].error
    assert rows["tftrt:fp32"].status == "skipped" and rows["tftrt:fp32"].validation == "unsupported"


def test_cli_bench_table_shows_both_engines_and_exits_0(mixed_out):
    out, _ = mixed_out
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", "bench", str(out), "--runs", "5", "--warmup", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "onnxruntime" in r.stdout and "litert" in r.stdout  # both engines, one table
    assert "onnx:int8" in r.stdout and "tflite:int8" in r.stdout
    assert "not run here: CoreML runs only on macOS" in r.stdout
    assert "skipped" in r.stdout and "Traceback" not in r.stderr


def test_bare_onnx_bench_reads_precision_from_metadata(mixed_out, tmp_path):
    from edgekit.runtime.bench import BenchConfig, bench_path

    out, m = mixed_out
    bare = tmp_path / "model.onnx"
    shutil.copy(out / m.artifact("onnx:int8").path, bare)
    (row,) = bench_path(bare, BenchConfig(warmup=0, runs=2))
    assert (row.target, row.format, row.precision, row.status) == ("onnx:int8", "onnx", "int8", "ok")
    assert row.size_bytes == bare.stat().st_size


def test_backend_protocol_and_registration():
    from edgekit.runtime.backends import SUFFIXES, Backend, format_for_path, get_backend

    b = get_backend("onnx")
    assert isinstance(b, Backend) and isinstance(b, ONNXRuntimeBackend) and b.unavailable_reason() is None
    assert SUFFIXES[".onnx"] == "onnx" and format_for_path(Path("X.ONNX")) == "onnx"
    assert format_for_path(Path("m.mlpackage")) == "coreml" and format_for_path(Path("m.trt")) == "tensorrt"


def test_missing_onnxruntime_names_the_extra(onnx_file):
    code = (
        "import sys\n"
        "sys.modules['onnxruntime'] = None  # as if it were not installed\n"
        "import edgekit.runtime as rt\n"
        "from edgekit.errors import MissingDependencyError\n"
        "from edgekit.runtime.backends import get_backend\n"
        "print(get_backend('onnx').unavailable_reason())\n"
        "try:\n"
        "    rt.load(sys.argv[1])\n"
        "except MissingDependencyError as e:\n"
        "    print('raised:', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(onnx_file)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "onnxruntime is not installed (needed for running .onnx models): pip install 'edgekit[onnx]'"
    assert lines[1] == "raised: " + lines[0]
