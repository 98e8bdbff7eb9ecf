"""The slim runtime on arm64: a real Debian arm64 userland, the real aarch64 wheels, under qemu-user.

``benchmarks/arm64_check.py`` builds the userland (mmdebstrap) and the runtime-only wheel set as pip
resolves ``edgekit[tflite]`` on a Pi, then runs ``edgekit doctor``, ``edgekit bench`` and
``examples/iot_app.py`` under ``qemu-aarch64-static``, and lays ai-edge-litert 2.3.0 (which
segfaults there) over the set to check that doctor reports it and ``load()`` refuses it.

The userlands and wheel sets (~100 MB per suite) are kept in ``$EDGEKIT_ARM64_CACHE``, else
``~/.cache/edgekit/arm64``, not in the test run's throw-away cache: rebuilt, they cost a minute and
the Debian mirror; cached, the test costs the emulated runs only. Skips, saying why, where
mmdebstrap or qemu-user-static is not installed (``.ci/run`` installs them as root) or where the
Debian mirror or PyPI cannot be reached.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from deploy_helpers import REPO

pytestmark = pytest.mark.slow
NETWORK = ("Temporary failure", "Could not resolve", "Network is unreachable", "No matching distribution",
           "Connection", "timed out", "E: ")


def _arm64_check():
    spec = importlib.util.spec_from_file_location("arm64_check", REPO / "benchmarks" / "arm64_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def arm(tmp_path_factory):
    mod = _arm64_check()
    why = mod.missing_tools()
    if why:
        pytest.skip(why)
    os.environ.setdefault("EDGEKIT_ARM64_CACHE", str(Path.home() / ".cache" / "edgekit" / "arm64"))
    return mod


@pytest.fixture(scope="module")
def x86(arm, digits_out):
    folder, _ = digits_out
    return arm.x86_bench(folder, 5)


@pytest.mark.parametrize("suite", ["bookworm", "trixie"])
def test_arm64_userland_runs_doctor_bench_and_the_iot_app(arm, x86, digits_out, suite):
    folder, manifest = digits_out
    try:
        arm.userland(suite)
        arm.runtime_site(arm.SUITES[suite])
    except RuntimeError as exc:
        if any(s in str(exc) for s in NETWORK):
            pytest.skip(f"cannot build the {suite} arm64 set here (Debian mirror or PyPI unreachable): {str(exc)[-200:]}")
        raise
    r = arm.check_suite(suite, folder, runs=5, x86=x86)
    assert r["ok"], r["failures"]
    assert r["doctor"]["machine"] == "aarch64" and r["doctor"]["python"].startswith(arm.SUITES[suite])
    # The extra's aarch64 marker picks a LiteRT that runs there, and nothing heavy comes with it.
    litert = r["versions"]["ai-edge-litert"]
    assert tuple(int(x) for x in litert.split(".")[:2]) < (2, 2), litert
    assert not set(r["versions"]) & {"tensorflow", "keras", "tf-keras", "onnx"}
    assert "loads and runs a model here" in r["doctor"]["tflite"]
    # Every target's accuracy on the folder's eval.npz is the x86_64 run's, to the digit.
    assert set(r["bench"]) == {a.target for a in manifest.artifacts if a.path}
    for target, row in r["bench"].items():
        assert row["accuracy"] == r["x86_accuracy"][target] and row["p50_ms"] > 0, (target, row)
    assert r["iot"]["top1"] == r["iot"]["x86_top1"] and r["iot"]["max_abs_diff_vs_x86"] < 1e-3
    # ai-edge-litert 2.3.0 segfaults here: doctor says so with the fix, load() refuses in one line.
    c = r["crash"]
    assert c["doctor_rc"] == 0
    assert "ai-edge-litert 2.3.0 crashes on this CPU (signal 11): install ai-edge-litert==2.1.6" in c["doctor_line"]
    assert c["install"] == "install: pip install 'ai-edge-litert==2.1.6'"
    assert c["load_rc"] == 3 and c["load_error"].startswith("ModelError: ") and "\n" not in c["load_error"]
    assert "crashes on this CPU (signal 11): install ai-edge-litert==2.1.6" in c["load_error"]
