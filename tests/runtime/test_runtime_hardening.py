"""Loader hardening: manifests cannot point outside their folder; absurd tensor sizes are refused."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys

import pytest

import edgekit.runtime as rt
from edgekit.errors import ModelError
from edgekit.manifest import Manifest


def test_manifest_path_outside_folder_is_refused(tmp_path, digits_out):
    out, _ = digits_out
    folder = tmp_path / "copy"
    shutil.copytree(out, folder)
    shutil.copy(out / "tflite-fp32.tflite", tmp_path / "outside.tflite")
    m = Manifest.load(folder)
    evil = dataclasses.replace(m.artifacts[0], path="../outside.tflite")
    dataclasses.replace(m, artifacts=(evil,) + m.artifacts[1:]).save(folder)
    with pytest.raises(ModelError, match=r"points outside .*refusing to load it"):
        rt.load(folder, target="tflite:fp32")
    from edgekit.runtime.bench import BenchConfig, bench_path

    res = bench_path(folder, BenchConfig(warmup=0, runs=2), target="tflite:fp32")
    assert res[0].status == "error" and "points outside" in res[0].error


def test_tensor_size_limit_refuses_before_allocating(digits_out):
    out, _ = digits_out
    code = (
        "import edgekit.runtime as rt\n"
        "from edgekit.errors import BackendError\n"
        f"try:\n    rt.load({str(out / 'tflite-fp32.tflite')!r})\n"
        "except BackendError as e:\n    print('REFUSED', e)\n"
    )
    env = {**os.environ, "EDGEKIT_MAX_TENSOR_BYTES": "1000"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "REFUSED" in r.stdout and "declares more than 0 MiB of tensors" in r.stdout
    assert "EDGEKIT_MAX_TENSOR_BYTES" in r.stdout


def test_empty_batch_is_an_input_error(digits_out):
    import numpy as np

    s = rt.load(digits_out[0], target="tflite:fp32")
    with pytest.raises(rt.InputError, match="empty batch"):
        s.run(np.zeros((0, 8, 8, 1), np.float32))
    assert s.run(np.zeros((2, 8, 8, 1), np.float32))["logits"].shape == (2, 10)
