"""The Raspberry Pi install: `edgekit[tflite]` is numpy + click + LiteRT, and LiteRT has aarch64 wheels.

The registry check (`benchmarks/pi_wheels.py`) needs PyPI; here it runs for one Python version and
skips cleanly when the index cannot be reached. The full matrix and its results are in the README.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import re
import subprocess
import sys
import tempfile

import pytest
from deploy_helpers import REPO

tomllib = pytest.importorskip("tomllib")
HEAVY = {"tensorflow", "tensorflow-cpu", "tf-keras", "keras", "jax", "jaxlib", "torch", "tensorflow-model-optimization"}
# ai-edge-litert 2.3.0's own runtime requirements (its METADATA, without extras).
LITERT_2_3_DEPS = {"backports-strenum", "flatbuffers", "ml-dtypes", "numpy", "protobuf", "tqdm", "typing-extensions"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~ ;\[]", req, maxsplit=1)[0].strip().lower().replace("_", "-").replace(".", "-")


def _pi_wheels():
    spec = importlib.util.spec_from_file_location("pi_wheels", REPO / "benchmarks" / "pi_wheels.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tflite_extra_adds_only_litert_to_numpy_and_click():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert sorted(_name(d) for d in project["dependencies"]) == ["click", "numpy"]
    assert {_name(d) for d in project["optional-dependencies"]["tflite"]} == {"ai-edge-litert"}
    assert project["requires-python"] == ">=3.10"  # JetPack 6 ships Python 3.10
    pi = _pi_wheels()
    assert pi.declared() == project["dependencies"] + project["optional-dependencies"]["tflite"]
    # One LiteRT line per device: markers evaluated for the device, not for this machine.
    assert pi.requirements("3.11", "aarch64") == ["numpy>=1.23", "click>=8.1", "ai-edge-litert<2.2,>=1.2"]
    assert pi.requirements("3.11", "x86_64") == ["numpy>=1.23", "click>=8.1", "ai-edge-litert>=1.2"]


def test_the_extra_caps_litert_on_arm64_only():
    # 2.2.0 and 2.3.0 segfault in Interpreter() on arm64 under the emulator (tests/deploy/test_arm64.py);
    # everywhere else the extra takes what it took before (the newest release, installed here).
    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["tflite"]]
    here = [r for r in reqs if r.marker is None or r.marker.evaluate()]
    arm = [r for r in reqs if r.marker is not None and r.marker.evaluate({"platform_machine": "aarch64"})]
    assert len(here) == 1 and str(here[0].specifier) == ">=1.2" and md.version("ai-edge-litert") in here[0].specifier
    assert len(arm) == 1 and {v for v in ("2.0.2", "2.1.6", "2.2.0", "2.3.0") if v in arm[0].specifier} == {"2.0.2", "2.1.6"}


def test_litert_brings_no_heavy_framework():
    reqs = [r for r in md.requires("ai-edge-litert") or [] if "extra ==" not in r]
    names = {_name(r) for r in reqs}
    assert not names & HEAVY, names
    if md.version("ai-edge-litert") == "2.3.0":
        assert names == LITERT_2_3_DEPS


def _index_reachable() -> bool:
    with tempfile.TemporaryDirectory() as d:
        try:
            proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                                   "--disable-pip-version-check", "--dest", d, "click==8.1.7"],
                                  capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return False
    return proc.returncode == 0


@pytest.mark.slow
def test_aarch64_wheels_resolve_for_python_3_11():
    if not _index_reachable():
        pytest.skip("package index not reachable: run benchmarks/pi_wheels.py where it is")
    result = _pi_wheels().resolve("3.11")
    assert result["ok"], result["error"]
    wheels = result["wheels"]
    assert {"numpy", "click", "ai-edge-litert"} <= set(wheels)
    assert re.search(r"cp311-cp311-manylinux_2_(17|27)_aarch64", wheels["ai-edge-litert"]), wheels["ai-edge-litert"]
    assert re.match(r"ai_edge_litert-2\.(0|1)\.", wheels["ai-edge-litert"]), "arm64 takes a LiteRT that runs there (< 2.2)"
    assert "aarch64" in wheels["numpy"] and wheels["click"].endswith("py3-none-any.whl")
    assert not set(wheels) & HEAVY
