"""An engine that crashes is probed in a child process and reported, never allowed to kill the caller.

The crashing engine is a real one as far as the probe can tell: a backend registered through
``FORMATS`` (as any plug-in is) whose ``open()`` sends itself SIGSEGV, in the child the probe
starts. The real engines (ai-edge-litert, onnxruntime) are probed as they are installed here; the
real ai-edge-litert crash on arm64 is reproduced under qemu by tests/deploy/test_arm64.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.errors import ModelError
from edgekit.formats import DEVICE_CLASSES, FORMATS, EngineModule, FormatSpec
from edgekit.manifest import Artifact, Manifest
from edgekit.runtime import probe as probe_mod
from edgekit.runtime.artifacts import runnable
from edgekit.runtime.backends import BackendBase
from edgekit.runtime.loader import choose_artifact
from edgekit.runtime.probe import ProbeResult, cached, known_crash, probe, probe_key, probe_many


class SegfaultBackend(BackendBase):
    """An engine that dies of SIGSEGV while loading a model, as ai-edge-litert 2.3.0 does under qemu."""

    name = "segfault"
    format = "crashy"

    def probe_model(self) -> str:
        return __file__  # any file: the engine dies before reading it

    def open(self, path: Path, **options):
        os.kill(os.getpid(), signal.SIGSEGV)


class HangingBackend(SegfaultBackend):
    format = "hangs"

    def open(self, path: Path, **options):
        time.sleep(600)


def _spec(name: str, backend: str) -> FormatSpec:
    # Preferred over everything, so a chooser that still picks tflite proves it refused this one.
    return FormatSpec(name, "test_probe:NoExporter", f"test_probe:{backend}", (f".{name}",), extra=name,
                      engines=(EngineModule("numpy", ("numpy",)),), prefer={c: {"fp32": -5} for c in DEVICE_CLASSES})


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEKIT_PROBE", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def crashy(cache, monkeypatch):
    monkeypatch.setitem(FORMATS, "crashy", _spec("crashy", "SegfaultBackend"))
    # The fix a crash names: a release known to run (for ai-edge-litert, 2.1.6: see README, arm64).
    monkeypatch.setitem(probe_mod.KNOWN_GOOD, "numpy", "1.26.4")
    return "crashy"


EXPECTED = re.compile(r"^numpy \S+ crashes on this CPU \(signal 11\): install numpy==1\.26\.4 "
                      r"\(pip install 'numpy==1\.26\.4'\), or use a tflite artifact "
                      r"\(SIGSEGV while loading a model, in a probe subprocess\)$")


def test_a_segfaulting_engine_is_reported_in_one_line_and_the_caller_lives(crashy):
    r = probe("crashy")
    assert (r.status, r.signal, r.stage, r.crashed, r.ok) == ("crashed", 11, "open", True, False)
    assert EXPECTED.match(r.verdict()), r.verdict()
    assert "\n" not in r.verdict()
    again = probe("crashy")  # cached: no second child
    assert again.cached and again.verdict() == r.verdict()
    assert json.loads(Path(probe_mod.cache_path(r.key)).read_text())["signal"] == 11


def test_doctor_shows_the_crash_and_its_fix(crashy):
    from edgekit.cli import main

    res = CliRunner().invoke(main, ["doctor"])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if "crashy" in ln)
    assert line.startswith("  ❌ crashy ")
    assert EXPECTED.match(line.split("crashy", 1)[1].strip()), line
    assert "     install: pip install 'numpy==1.26.4'" in res.output
    assert re.search(r"✅ tflite +can run here\n     probe: ai-edge-litert \S+ loads and runs a model here", res.output)
    d = json.loads(CliRunner().invoke(main, ["doctor", "--json"]).output)
    assert d["probes"]["crashy"]["status"] == "crashed" and d["probes"]["crashy"]["cached"] is True
    assert d["backends"]["crashy"]["available"] is False and "signal 11" in d["backends"]["crashy"]["reason"]


def test_load_refuses_a_known_crash_and_names_the_alternative(crashy):
    art = Artifact("crashy:fp32", "crashy", "fp32", "passed", path="m.crashy")
    assert runnable(art) is None  # no verdict yet, and loading never probes unless asked to
    probe("crashy")
    reason = runnable(art)
    assert EXPECTED.match(reason.split("; ")[0]) and reason.endswith("`edgekit doctor --reprobe` checks again")
    tfl = Artifact("tflite:fp32", "tflite", "fp32", "passed", path="m.tflite")
    dev = {"machine": "x86_64", "cpu_flags": [], "gpus": []}
    chosen, _ = choose_artifact(Manifest({}, {}, (art, tfl)), device=dev)
    assert chosen.target == "tflite:fp32"  # ranked first by the table, refused by the verdict
    with pytest.raises(ModelError, match=r"crashy:fp32: numpy \S+ crashes on this CPU \(signal 11\): install numpy==1\.26\.4"):
        choose_artifact(Manifest({}, {}, (art,)), device=dev)


def test_a_bare_file_and_an_explicit_target_are_refused_too(crashy, tmp_path):
    # Neither goes through the chooser: load() must still not hand the file to the crashing engine.
    from edgekit.runtime import load
    from edgekit.runtime.artifacts import open_artifact

    model = tmp_path / "m.crashy"
    model.write_bytes(b"anything")
    probe("crashy")
    with pytest.raises(ModelError, match=r"^m\.crashy: numpy \S+ crashes on this CPU \(signal 11\)"):
        load(model)
    art = Artifact("crashy:fp32", "crashy", "fp32", "passed", path="m.crashy")
    with pytest.raises(ModelError, match=r"^crashy:fp32: numpy \S+ crashes on this CPU \(signal 11\)"):
        open_artifact(tmp_path, art, verify=False)


def test_EDGEKIT_PROBE_probes_once_when_there_is_no_verdict(crashy, monkeypatch):
    monkeypatch.setenv("EDGEKIT_PROBE", "1")
    assert cached("crashy") is None
    assert "crashes on this CPU (signal 11)" in known_crash("crashy")
    assert cached("crashy").status == "crashed"


def test_a_hanging_engine_times_out(cache, monkeypatch):
    monkeypatch.setitem(FORMATS, "hangs", _spec("hangs", "HangingBackend"))
    t = time.monotonic()
    r = probe("hangs", timeout=3)
    assert time.monotonic() - t < 30
    assert (r.status, r.stage, r.crashed) == ("timeout", "open", True)
    assert r.verdict().startswith("numpy ") and "hangs on this CPU (loading a model took over" in r.verdict()


def test_real_engines_run_their_bundled_model_and_verdicts_are_per_version(cache):
    got = probe_many(["tflite", "onnx", "tensorrt"])
    assert got["tflite"].status == "runs" and got["tflite"].engine == "ai-edge-litert"
    assert got["onnx"].status == "runs" and got["onnx"].stage == "run"
    assert got["tensorrt"].status == "unavailable" and "pip install" in got["tensorrt"].reason
    assert cached("tflite").cached and known_crash("tflite") is None
    v = got["tflite"].version
    assert probe_key("tflite", "ai-edge-litert", v) == got["tflite"].key != probe_key("tflite", "ai-edge-litert", "0.0")


def test_a_broken_cache_entry_is_no_verdict(cache):
    r = probe("tflite")
    Path(probe_mod.cache_path(r.key)).write_text("{not json")
    assert cached("tflite") is None and known_crash("tflite") is None
    assert ProbeResult.from_record(r.record()) == r
