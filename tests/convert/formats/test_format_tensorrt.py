"""TF-TRT and TensorRT targets. This machine (pip TensorFlow 2.21, no tensorrt, no GPU) can only prove
the failure paths: recorded "unsupported" with the reason and the fix while the other targets pass,
and one-line errors from the backends. The GPU paths run where a GPU is present (see the issue note).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgekit.convert.exporters import get_exporter
from edgekit.api import convert
from edgekit.errors import BackendError, EdgekitError, MissingDependencyError, RecipeError
from edgekit.runtime.backends import get_backend

TFTRT_HERE = get_exporter("tftrt").unavailable_reason() is None
TRT_HERE = get_exporter("tensorrt").unavailable_reason() is None


@pytest.mark.skipif(TFTRT_HERE or TRT_HERE, reason="TensorRT is usable here: the GPU checks cover it")
def test_tftrt_and_tensorrt_recorded_unsupported_while_others_pass(tmp_path, digits_model):
    out = tmp_path / "out"
    m = convert({"model": "digits-cnn", "targets": ["tftrt:fp16", "tftrt:int8", "tensorrt:fp16", "tensorrt:int8",
                                                     "onnx:fp32", "tflite:fp32"]}, out)
    by = {a.target: a for a in m.artifacts}
    for t in ("tftrt:fp16", "tftrt:int8"):
        a = by[t]
        assert a.status == "unsupported" and a.path is None
        assert "TF-TRT needs TensorFlow built with TensorRT" in a.error and "Dockerfile.jetson" in a.error
        assert "NGC" in a.error and "\n" not in a.error
    for t in ("tensorrt:fp16", "tensorrt:int8"):
        assert by[t].status == "unsupported" and "pip install 'edgekit[tensorrt]'" in by[t].error
    assert by["onnx:fp32"].status == "passed" and by["tflite:fp32"].status == "passed"
    assert not m.ok  # an unsupported target is not a success
    saved = json.loads((out / "manifest.json").read_text())
    assert [a["status"] for a in saved["artifacts"]] == ["unsupported"] * 4 + ["passed"] * 2
    assert sorted(p.name for p in out.iterdir()) == ["eval.npz", "manifest.json", "onnx-fp32.onnx", "tflite-fp32.tflite"]


@pytest.mark.skipif(TRT_HERE, reason="tensorrt is installed here")
def test_bare_engine_without_tensorrt_says_what_to_install(tmp_path):
    import edgekit.runtime as rt

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\x00" * 64)
    with pytest.raises(MissingDependencyError) as e:
        rt.load(engine)
    msg = str(e.value)
    assert "pip install 'edgekit[tensorrt]'" in msg and "NVIDIA GPU" in msg and "\n" not in msg
    assert get_backend("tensorrt").unavailable_reason() == msg


def test_missing_engine_and_malformed_trt_folder_are_one_line(tmp_path):
    import edgekit.runtime as rt

    with pytest.raises(EdgekitError, match="does not exist"):
        rt.load(tmp_path / "absent.engine")
    folder = tmp_path / "broken.trt"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(BackendError, match="not an edgekit TensorRT folder"):
        rt.load(folder)
    (folder / "build.json").write_text("{not json")
    with pytest.raises(BackendError) as e:
        rt.load(folder)
    assert "not a valid TensorRT build file" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("target, msg", [
    ("tensorrt:fp16,opt_batch=32,max_batch=8", "opt_batch=32 is larger than max_batch=8"),
    ("tensorrt:fp16,max_batch=0", "max_batch must be a positive integer"),
    ("tftrt:fp16,max_batch=-1", "max_batch must be a positive integer"),
    ("tensorrt:fp16,workspace=1", "tensorrt has no option 'workspace'"),
])
def test_tensorrt_options_checked_up_front(tmp_path, target, msg):
    with pytest.raises(RecipeError, match=msg):
        convert({"model": "digits-cnn", "targets": [target]}, tmp_path / "o")


def test_tftrt_backend_runs_a_savedmodel_folder_through_its_signature(tmp_path):
    """The TF-TRT backend's own code path on a plain SavedModel (TF runs it without TensorRT)."""
    from testutil import tiny_keras_model

    from edgekit.convert.source import from_keras
    from edgekit.runtime.backends.tftrt import TFTRTBackend

    model = tiny_keras_model(seed=5)
    src = from_keras(model)
    folder = tmp_path / "tiny.tftrt"
    shutil.copytree(src.saved_model_dir(), folder)
    eng = TFTRTBackend().open(folder)
    assert [s.name for s in eng.inputs] == ["image"] and [s.name for s in eng.outputs] == ["logits"]
    x = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    (y,) = eng.run([x])
    np.testing.assert_allclose(y, np.asarray(model(x)), atol=1e-5)
    assert eng.info()["backend"] == "tftrt"
    with pytest.raises(BackendError, match="not a TF-TRT SavedModel folder"):
        TFTRTBackend().open(tmp_path)
    if not TFTRT_HERE:
        from edgekit.runtime.device import nvidia_gpus

        why = TFTRTBackend().unavailable_reason()
        # No GPU: said without importing TensorFlow; a GPU but a pip TensorFlow: the build is the reason.
        assert ("none is visible here" if not nvidia_gpus() else "not built with TensorRT") in why, why


# --- simulated TensorRT ----------------------------------------------------------------------------
# No GPU is lent to this machine, so these tests put a stand-in `tensorrt` + `cuda.bindings.runtime`
# in sys.modules. The stand-in "engine" runs the ONNX model with onnxruntime and "device memory" is
# host memory, so the numbers still validate end to end. It proves edgekit's own plumbing (folder
# layout, cache keys, rebuild on a foreign engine, calibration cache round trip), not TensorRT.

import ctypes  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402


class _Enum:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def _fake_modules(version: str, gpu: bytes = b"Fake GPU"):
    import onnx
    import onnxruntime

    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.TensorIOMode = _Enum(INPUT="in", OUTPUT="out")
    trt.MemoryPoolType = _Enum(WORKSPACE="ws")
    trt.BuilderFlag = _Enum(FP16="fp16", INT8="int8")
    trt.NetworkDefinitionCreationFlag = _Enum(EXPLICIT_BATCH=0)
    trt.nptype = lambda dt: np.float32
    trt.calibrated = []

    class Logger:
        ERROR, WARNING, VERBOSE = 1, 2, 3

        def __init__(self, level):
            self.level = level

    class Network:
        def __init__(self):
            self.onnx = None

        @property
        def num_inputs(self):
            return len(self.onnx.graph.input)

        def get_input(self, i):
            v = self.onnx.graph.input[i]
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim)
            return types.SimpleNamespace(name=v.name, shape=dims)

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, log):
            self.network = network

        def parse(self, data):
            self.network.onnx = onnx.load_from_string(data)
            return True

    class Config:
        def __init__(self):
            self.flags, self.int8_calibrator, self.profile = set(), None, None

        def set_memory_pool_limit(self, pool, size):
            pass

        def set_flag(self, flag):
            self.flags.add(flag)

        def add_optimization_profile(self, profile):
            self.profile = profile

        def set_calibration_profile(self, profile):
            pass

    class Profile(dict):
        def set_shape(self, name, lo, opt, hi):
            self[name] = (lo, opt, hi)

    class Builder:
        def __init__(self, log):
            pass

        def create_network(self, flags):
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            if "int8" in config.flags:
                cal = config.int8_calibrator
                if cal.read_calibration_cache() is None:
                    names = [i.name for i in network.onnx.graph.input]
                    n = 0
                    while cal.get_batch(names) is not None:
                        n += 1
                    trt.calibrated.append(n)
                    cal.write_calibration_cache(b"fake-scales")
            head = json.dumps({"version": trt.__version__, "profile": config.profile}).encode()
            return head + b"\n" + network.onnx.SerializeToString()

    class IInt8EntropyCalibrator2:
        def __init__(self):
            pass

    class Context:
        def __init__(self, engine):
            self.engine, self.shapes, self.addr = engine, {}, {}

        def set_input_shape(self, name, shape):
            self.shapes[name] = tuple(shape)
            return True

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def get_tensor_shape(self, name):
            batch = next(iter(self.shapes.values()))[0]
            return (batch, *self.engine.get_tensor_shape(name)[1:])

        def execute_async_v3(self, stream):
            feeds = {}
            for n in self.engine.inputs:
                shape = self.shapes[n]
                size = int(np.prod(shape)) * 4
                feeds[n] = np.frombuffer(ctypes.string_at(self.addr[n], size), np.float32).reshape(shape)
            outs = self.engine.sess.run(self.engine.outputs, feeds)
            for n, o in zip(self.engine.outputs, outs):
                o = np.ascontiguousarray(o, np.float32)
                ctypes.memmove(self.addr[n], o.ctypes.data, o.nbytes)
            return True

    class Engine:
        def __init__(self, profile, model):
            self.profile, self.model = profile, model
            self.sess = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            self.inputs = [v.name for v in model.graph.input]
            self.outputs = [v.name for v in model.graph.output]
            self.names = self.inputs + self.outputs
            self.num_io_tensors = len(self.names)

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return "in" if name in self.inputs else "out"

        def get_tensor_shape(self, name):
            v = next(v for v in list(self.model.graph.input) + list(self.model.graph.output) if v.name == name)
            return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim)

        def get_tensor_dtype(self, name):
            return "float"

        def get_tensor_profile_shape(self, name, i):
            return self.profile[name]

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, log):
            pass

        def deserialize_cuda_engine(self, plan):
            head, _, body = bytes(plan).partition(b"\n")
            try:
                meta = json.loads(head)
            except ValueError:
                return None
            if meta["version"] != trt.__version__:
                return None  # what TensorRT does with a foreign engine
            return Engine(meta["profile"], onnx.load_from_string(body))

    trt.Logger, trt.OnnxParser, trt.Builder, trt.Runtime = Logger, OnnxParser, Builder, Runtime
    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    rt = types.ModuleType("cuda.bindings.runtime")
    keep: dict[int, object] = {}

    def malloc(n):
        buf = ctypes.create_string_buffer(n)
        keep[ctypes.addressof(buf)] = buf
        return (0, ctypes.addressof(buf))

    rt.cudaGetDeviceCount = lambda: (0, 1)
    rt.cudaMalloc = malloc
    rt.cudaFree = lambda p: (keep.pop(p, None), 0)[1:]
    rt.cudaMemcpyKind = _Enum(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    rt.cudaMemcpy = lambda dst, src, n, kind: (ctypes.memmove(dst, src, n), 0)[1:]
    rt.cudaStreamCreate = lambda: (0, 7)
    rt.cudaStreamSynchronize = lambda s: (0,)
    rt.cudaGetDeviceProperties = lambda i: (0, types.SimpleNamespace(name=gpu, major=8, minor=7))
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    cuda.bindings, bindings.runtime = bindings, rt
    return {"tensorrt": trt, "cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": rt}


@pytest.fixture
def fake_trt(monkeypatch):
    def install(version: str = "10.3.0", gpu: bytes = b"Fake GPU"):
        mods = _fake_modules(version, gpu)
        for name, mod in mods.items():
            monkeypatch.setitem(sys.modules, name, mod)
        return mods["tensorrt"]

    return install


@pytest.mark.skipif(TRT_HERE, reason="real TensorRT present: the GPU script covers it")
def test_simulated_tensorrt_builds_validates_and_rebuilds_per_device(fake_trt, tmp_path, digits_model):
    import edgekit.runtime as rt

    trt = fake_trt("10.3.0")
    out = tmp_path / "out"
    m = convert({"model": "digits-cnn", "targets": ["tensorrt:fp16", "tensorrt:int8,max_batch=32"]}, out)
    fp16, int8 = m.artifacts
    assert fp16.status == "passed" and int8.status == "passed", [(a.target, a.error) for a in m.artifacts]
    assert fp16.validation["max_abs_err"] <= 1e-4 and int8.validation["accuracy_drop"] <= 2.0
    key = "trt10.3.0-fake-gpu-sm8.7"
    folder = out / int8.path
    assert sorted(p.name for p in folder.iterdir()) == ["build.json", "calibration.cache", "engines", "model.onnx"]
    assert (folder / "engines" / f"{key}.engine").is_file()
    build = json.loads((folder / "build.json").read_text())
    assert build["built_for"] == key and build["max_batch"] == 32 and build["precision"] == "int8"
    from edgekit.calibration import digits

    assert trt.calibrated == [len(digits("calib"))]  # the same calibration split as every other int8 target
    s = rt.load(out, target="tensorrt:fp16")
    assert s.info["engine_source"] == "artifact" and s.info["gpu"] == "Fake GPU"
    with pytest.raises(EdgekitError, match="over this engine's profile maximum 32"):
        rt.load(out, target="tensorrt:int8,max_batch=32").run(np.zeros((33, 8, 8, 1), np.float32))

    # Another TensorRT version: the shipped engine is not this device's; build from model.onnx, cache it.
    fake_trt("10.4.1")
    s = rt.load(out, target="tensorrt:int8,max_batch=32")  # sha256 still verifies: the artifact folder is untouched
    assert s.info["engine_source"] == "built"
    assert s.run(np.zeros((2, 8, 8, 1), np.float32))["logits"].shape == (2, 10)
    assert rt.load(out, target="tensorrt:int8,max_batch=32").info["engine_source"] == "cache"
    assert not (folder / "engines" / "trt10.4.1-fake-gpu-sm8.7.engine").exists()

    # A bare engine from another version cannot be rebuilt (no ONNX beside it): a clear error, no crash.
    bare = tmp_path / "old.engine"
    shutil.copy(folder / "engines" / f"{key}.engine", bare)
    with pytest.raises(BackendError, match="only load on the TensorRT version and GPU they were built with"):
        rt.load(bare)
