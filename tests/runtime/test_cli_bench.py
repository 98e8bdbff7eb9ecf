"""`edgekit bench` end to end, in a child process (real LiteRT, real artifacts)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.runtime.bench import LATENCY_KEYS, BenchResult

TARGETS = ["tflite:fp32", "tflite:dynamic", "tflite:int8", "tflite:fp16"]


def edgekit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_bench_table(digits_out):
    out, _ = digits_out
    p = edgekit("bench", out, "--runs", "20", "--warmup", "2")
    assert p.returncode == 0, p.stderr
    for t in TARGETS:
        assert t in p.stdout
    assert "p50 ms" in p.stdout and "edgekit bench" in p.stdout
    assert "Traceback" not in p.stderr
    assert "error" not in p.stdout.lower()
    from edgekit.manifest import Manifest
    from edgekit.runtime.loader import choose_artifact

    target, why = choose_artifact(Manifest.load(out))
    assert f"load() picks {target.target}: {why}" in " ".join(p.stdout.split())  # the line may wrap


def test_console_script_next_to_python(digits_out):
    out, _ = digits_out
    script = Path(sys.executable).parent / "edgekit"
    if not script.exists():
        pytest.skip("no edgekit console script next to this python")
    p = subprocess.run([str(script), "bench", str(out), "--runs", "3", "--warmup", "0", "--target", "tflite:int8"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "tflite:int8" in p.stdout and "tflite:fp32" not in p.stdout


def test_bench_json_stdout(digits_out):
    out, _ = digits_out
    p = edgekit("bench", out, "--runs", "20", "--warmup", "2", "--json", "-")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)  # stdout is only the JSON document
    assert doc["schema"] == "edgekit.bench/1"
    assert doc["device"]["cores"] >= 1
    assert doc["config"]["runs"] == 20 and doc["config"]["warmup"] == 2
    assert [r["target"] for r in doc["results"]] == TARGETS
    fields = {f.name for f in dataclasses.fields(BenchResult)}
    for r in doc["results"]:
        assert set(r) == fields
        assert r["status"] == "ok" and r["runs"] == 20
        assert set(r["latency_ms"]) == set(LATENCY_KEYS)
        assert r["latency_ms"]["min"] <= r["latency_ms"]["p50"] <= r["latency_ms"]["max"]
        assert r["accuracy"] >= 95.0
        assert r["size_bytes"] == (out / Path(r["model"]).name).stat().st_size


def test_bench_json_and_csv_files(digits_out, tmp_path):
    out, _ = digits_out
    jpath, cpath = tmp_path / "r.json", tmp_path / "r.csv"
    p = edgekit("bench", out, "--runs", "5", "--warmup", "1", "--json", jpath, "--csv", cpath)
    assert p.returncode == 0, p.stderr
    assert all(t in p.stdout for t in TARGETS)  # the table still prints when both go to files
    doc = json.loads(jpath.read_text())
    assert [r["target"] for r in doc["results"]] == TARGETS
    text = cpath.read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    header = text.splitlines()[0].split(",")
    assert "latency_p50_ms" in header and "latency_ms" not in header
    assert {f"latency_{k}_ms" for k in LATENCY_KEYS} <= set(header)
    assert len(rows) == 4
    assert [r["target"] for r in rows] == TARGETS
    for row, r in zip(rows, doc["results"]):
        assert float(row["latency_p50_ms"]) == pytest.approx(r["latency_ms"]["p50"])
        assert int(row["size_bytes"]) == r["size_bytes"]
        assert row["status"] == "ok"


def test_bench_csv_stdout(digits_out):
    out, _ = digits_out
    p = edgekit("bench", out, "--runs", "3", "--warmup", "0", "--csv", "-", "--target", "tflite:fp32")
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert len(rows) == 1 and rows[0]["target"] == "tflite:fp32" and rows[0]["runs"] == "3"


def test_bench_missing_path(tmp_path):
    p = edgekit("bench", "missing/path", cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.startswith("error: ")
    assert "missing/path" in p.stderr and "does not exist" in p.stderr
    assert p.stderr.strip().count("\n") == 0
    assert "Traceback" not in p.stderr
    assert p.stdout == ""


def test_bench_bad_runs(digits_out):
    p = edgekit("bench", digits_out[0], "--runs", "0")
    assert p.returncode == 2
    assert p.stderr.startswith("error: ") and "runs >= 1" in p.stderr
    assert "Traceback" not in p.stderr


def test_bench_random_bytes_file(tmp_path):
    f = tmp_path / "junk.tflite"
    f.write_bytes(np.random.default_rng(0).bytes(4096))
    p = edgekit("bench", f, "--runs", "3")
    assert p.returncode == 1, p.stderr
    assert "junk.tflite is not a TFLite model" in p.stdout
    assert "TFL3" in p.stdout
    assert "Traceback" not in p.stderr


def test_bench_corrupt_artifact_exit_1_others_reported(digits_out, tmp_path):
    import shutil

    out, manifest = digits_out
    folder = tmp_path / "copy"
    shutil.copytree(out, folder)
    f = folder / manifest.artifact("tflite:dynamic").path
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    p = edgekit("bench", folder, "--runs", "3", "--warmup", "0", "--json", "-")
    assert p.returncode == 1, p.stderr
    by = {r["target"]: r for r in json.loads(p.stdout)["results"]}
    assert by["tflite:dynamic"]["status"] == "error" and "sha256" in by["tflite:dynamic"]["error"]
    assert [t for t, r in by.items() if r["status"] == "ok"] == ["tflite:fp32", "tflite:int8", "tflite:fp16"]
    # --no-verify loads the corrupt file anyway (the flip lands in a weight)
    p = edgekit("bench", folder, "--runs", "3", "--warmup", "0", "--json", "-", "--no-verify", "--target", "dynamic")
    (r,) = json.loads(p.stdout)["results"]
    assert r["status"] in ("ok", "error")
    assert p.returncode == (0 if r["status"] == "ok" else 1)


def test_bench_unknown_target(digits_out):
    p = edgekit("bench", digits_out[0], "--target", "onnx:fp32", "--runs", "2")
    assert "Traceback" not in p.stderr, p.stderr[-500:]
    assert p.returncode == 2
    assert p.stderr.startswith("error: ") and "tflite:fp32" in p.stderr
