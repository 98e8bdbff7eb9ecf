"""The device install: a fresh venv with only `edgekit[tflite]` runs bench, serve and the IoT app, without TensorFlow.

Installs a copy of the sources (so the repo tree gets no build/ folder) with pip, which may reuse its
cache; skipped only when pip cannot reach a package index at all. Everything then runs on the
committed tests/data/digits-int8 artifact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from deploy_helpers import DATA, IOT_APP, REPO, eval_data, manifest

from edgekit.runtime import load

HEAVY = {"tensorflow", "tensorflow-cpu", "tf-keras", "keras", "tensorflow-model-optimization", "jax", "torch", "onnxruntime"}
pytestmark = pytest.mark.slow  # a fresh venv and a pip install: ~30 s
NETWORK = re.compile(r"(Failed to establish a new connection|Temporary failure in name resolution|Network is unreachable"
                     r"|Max retries exceeded|ProxyError|Could not fetch URL)")


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def _du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("runtime-only")
    src = root / "edgekit-src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{src}[tflite]"],
                          capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != 0:
        if NETWORK.search(proc.stderr):
            pytest.skip(f"no package index reachable for a fresh install: {NETWORK.search(proc.stderr).group(0)}")
        pytest.fail(f"pip install '.[tflite]' failed:\n{proc.stderr[-3000:]}")
    return venv


def _run(venv: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGEKIT_RESULTS": str(venv / "results.sqlite"), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], capture_output=True, text=True, timeout=120,
                          env=env, **kw)


def test_installs_only_the_slim_runtime(runtime_venv):
    listed = json.loads(_run(runtime_venv, "python", "-m", "pip", "list", "--format", "json").stdout)
    names = {p["name"].lower().replace("_", "-").replace(".", "-") for p in listed}
    assert {"edgekit", "numpy", "click", "ai-edge-litert"} <= names
    assert not names & HEAVY, names & HEAVY
    beyond = names - {"edgekit", "numpy", "click", "ai-edge-litert", "pip", "setuptools", "wheel"}
    # LiteRT's own small dependencies, nothing else.
    assert beyond <= {"backports-strenum", "flatbuffers", "ml-dtypes", "protobuf", "tqdm", "typing-extensions"}, beyond
    proc = _run(runtime_venv, "python", "-c", "import tensorflow")
    assert proc.returncode != 0 and "No module named 'tensorflow'" in proc.stderr
    size = _du_mb(_site_packages(runtime_venv))
    print(f"runtime-only site-packages: {size:.0f} MiB")  # ~165 MiB incl. pip/setuptools on x86_64
    assert 50 < size < 250


def test_bench_reports_the_manifest_accuracy(runtime_venv):
    proc = _run(runtime_venv, "edgekit", "bench", str(DATA), "--runs", "20", "--warmup", "2", "--no-cold-start",
                "--no-store", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    (r,) = doc["results"]
    assert r["status"] == "ok" and r["target"] == "tflite:int8" and r["engine"] == "ai-edge-litert"
    assert r["runs"] == 20 and r["latency_ms"]["p50"] > 0
    validated = manifest()["artifacts"][0]["validation"]["accuracy"]
    assert r["accuracy"] == pytest.approx(validated, abs=1e-6) and r["accuracy"] > 95
    assert r["accuracy_samples"] == manifest()["eval_data"]["samples"] == 359
    assert "tensorflow" not in doc["device"]["engines"]


def test_iot_app_runs_results_and_skips_the_bad_line(runtime_venv):
    x, y = eval_data()
    lines = [json.dumps({"id": i, "inputs": {"image": x[i : i + 1].tolist()}}) for i in range(5)]
    lines.insert(2, '{"id": "broken", "inputs": [[1, 2')
    proc = _run(runtime_venv, "python", str(IOT_APP), str(DATA), input="\n".join(lines) + "\n")
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert len(results) == 5
    assert [r["id"] for r in results] == ["0", "1", "2", "3", "4"]
    want = load(DATA).run(x[:5])["logits"]  # the dev venv's runtime, for comparison
    np.testing.assert_allclose([r["outputs"]["logits"][0] for r in results], want, rtol=0, atol=1e-5)
    assert [r["top1"][0] for r in results] == np.argmax(want, axis=1).tolist()
    skips = [ln for ln in proc.stderr.splitlines() if ln.startswith("WARNING skip ")]
    assert len(skips) == 1 and "stdin:3: line is not valid JSON" in skips[0]
    stats = json.loads(proc.stderr.strip().splitlines()[-1])
    assert (stats["processed"], stats["errors"], stats["published"]) == (5, 1, 5)


def test_serve_answers_and_stops_on_sigterm(runtime_venv):
    proc = subprocess.Popen([str(runtime_venv / "bin" / "edgekit"), "serve", str(DATA), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = re.search(r"on (http://127\.0\.0\.1:\d+)", proc.stdout.readline()).group(1)
        x, _ = eval_data()
        req = urllib.request.Request(f"{url}/predict", data=json.dumps(x[:3].tolist()).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            logits = np.asarray(json.loads(resp.read())["outputs"]["logits"])
        np.testing.assert_allclose(logits, load(DATA).run(x[:3])["logits"], rtol=0, atol=1e-5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped: 1 requests, 1 predictions" in out
