"""`edgekit convert` as users run it: exit codes, one-line errors, quiet logs, recipes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# TensorFlow's start-up lines that must not bury edgekit's own output.
NOISE = ("oneDNN", "cudart", "absl::InitializeLog", "XNNPACK delegate", "Saved artifact at", "tf.lite.Interpreter is deprecated")


def edgekit(*args: str, cwd: Path | None = None, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # prove edgekit quiets TF itself
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "edgekit.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_convert_zoo_model_table_progress_and_quiet(tmp_path, digits_model):
    # Interval 0: every calibration sample and validation batch reports (a 224x224 convert's
    # cadence, every 10 s, on a model that takes a second).
    r = edgekit("convert", "digits-cnn", "-t", "tflite:fp32", "-t", "tflite:int8", "-o", str(tmp_path / "out"),
                EDGEKIT_PROGRESS_INTERVAL="0")
    assert r.returncode == 0, r.stderr
    assert "tflite:fp32" in r.stdout and "tflite:int8" in r.stdout and "passed" in r.stdout
    assert "reference accuracy" in " ".join(r.stdout.split())  # the title may wrap (long tmp paths)
    # Progress on stderr, one line per step, and none of TensorFlow's noise.
    assert "[1/2] tflite:fp32: converting" in r.stderr and "wrote" in r.stderr
    for noise in NOISE:
        assert noise not in r.stdout + r.stderr, noise
    # Calibration reports from inside the TFLite converter (whose own output is captured), sample by sample.
    calib = [ln for ln in r.stderr.splitlines() if "tflite:int8: calibration " in ln]
    assert len(calib) == 180 and "calibration 180/180 samples (100%" in calib[-1], calib[-3:]
    assert "tflite:fp32: calibration" not in r.stderr
    for target in ("tflite:fp32", "tflite:int8"):
        assert f"{target}: validation 256/359 samples (71%" in r.stderr
        assert f"{target}: validation 359/359 samples (100%" in r.stderr
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [a["status"] for a in m["artifacts"]] == ["passed", "passed"]
    # The table's last column is each target's seconds: its export plus its validation.
    assert re.search(r"SNR dB\s*┃\s*s\s*┃", r.stdout), r.stdout
    for a in m["artifacts"]:
        assert 0 < a["validation"]["seconds"] < a["seconds"] + 60
        row = next(ln for ln in r.stdout.splitlines() if f" {a['target']} " in ln)
        shown = float(row.strip("│ ").split("│")[-1])
        assert shown == pytest.approx(a["seconds"] + a["validation"]["seconds"], abs=0.051)


def test_convert_failure_exits_1_and_keeps_other_artifacts(tmp_path, digits_model):
    out = tmp_path / "out"
    r = edgekit("convert", "digits-cnn", "-q", "-t", "tflite:fp32", "-t", "tflite:int8", "--tol", "int8.min_snr_db=199", "-o", str(out))
    assert r.returncode == 1
    assert "failed" in r.stdout and "snr" in r.stdout
    assert (out / "tflite-fp32.tflite").is_file() and (out / "tflite-int8.tflite").is_file()


@pytest.mark.parametrize("args, msg", [
    (["nope.keras", "-t", "tflite:fp32"], "does not exist"),
    (["digits-cnn", "-t", "tflite:int4"], "supported: fp32, fp16, dynamic, int8, int16x8"),
    (["digits-cnnn", "-t", "tflite:fp32"], "did you mean 'digits-cnn'"),
    (["digits-cnn", "-t", "tflite:fp32", "--tol", "int8=3"], "PRECISION.CHECK=VALUE"),
    (["-t", "tflite:fp32"], "give a MODEL"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, msg):
    r = edgekit("convert", *args, "-o", str(tmp_path / "o"))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("[")]
    assert lines == [lines[0]] and lines[0].startswith("error: ") and msg in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_not_a_model_file(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(os.urandom(2048))
    r = edgekit("convert", str(bad), "-t", "tflite:fp32", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "not a Keras model" in r.stderr and "Traceback" not in r.stderr


def test_recipe_file_with_flag_override(tmp_path, digits_model):
    (tmp_path / "recipe.yaml").write_text(
        "model: digits-cnn\n"
        "targets: [tflite:fp16, 'tflite:int8,io=float']\n"
        "calib: digits:calib\n"
        "calib_limit: 100\n"
        "tolerances: {int8: {max_accuracy_drop: 1.5}}\n"
    )
    out = tmp_path / "out"
    r = edgekit("convert", "--recipe", str(tmp_path / "recipe.yaml"), "--max-accuracy-drop", "3", "-o", str(out), "--json", "-q")
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert [a["target"] for a in m["artifacts"]] == ["tflite:fp16", "tflite:int8,io=float"]
    assert m["recipe"]["calib_limit"] == 100
    assert m["recipe"]["tolerances"] == {"*": {"max_accuracy_drop": 3.0}, "int8": {"max_accuracy_drop": 1.5}}
    assert m["artifacts"][1]["validation"]["tolerance"]["max_accuracy_drop"] == 1.5
    # Re-running into the same folder needs --force.
    r2 = edgekit("convert", "--recipe", str(tmp_path / "recipe.yaml"), "-o", str(out), "-q")
    assert r2.returncode == 2 and "--force" in r2.stderr
