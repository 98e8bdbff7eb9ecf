"""`edgekit convert` with stage flags, as users run it: exit codes, one-line errors, the manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from stage_helpers import tiny_keras3, tiny_trained  # noqa: F401

from edgekit.calibration import digits, from_arrays
from edgekit.errors import DataError, InputError


def edgekit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_trained):
    root = tmp_path_factory.mktemp("stage-cli")
    tiny_trained.save(root / "model.keras")
    for split in ("train", "eval", "calib"):
        d = digits(split)
        from_arrays(d.inputs[0], d.labels).to_npz(root / f"{split}.npz")
    return root


def _one_line_error(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def test_cli_recipe_stages_with_flag_overrides(files: Path, tmp_path):
    (tmp_path / "r.yaml").write_text(
        f"model: {files / 'model.keras'}\ntargets: [tflite:int8]\n"
        "stages:\n  - prune: {sparsity: 0.5, layer_types: [Dense, Conv2D], fit: {epochs: 5, batch_size: 64}}\n"
    )
    out = tmp_path / "out"
    r = edgekit("convert", "--recipe", str(tmp_path / "r.yaml"), "--train", str(files / "train.npz"),
                "--eval", str(files / "eval.npz"), "--calib", str(files / "calib.npz"), "--prune-epochs", "2",
                "--qat", "--qat-epochs", "1", "--max-accuracy-drop", "4", "-o", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    # Progress on stderr; the table plus one line per stage and per artifact's zeros on stdout.
    assert "prune: fine-tuning 2 epoch(s) on 1258 samples" in r.stderr and "qat: epoch 1/1" in r.stderr
    assert "prune: 3 layer(s), kernel sparsity 50.0%" in r.stdout
    assert "qat: 4 layer(s), prune_preserve_8bit; kernel sparsity 50.0% before" in r.stdout
    assert "tflite:int8: " in r.stdout and "zero weights" in r.stdout and "KiB gzipped" in r.stdout
    m = json.loads((out / "manifest.json").read_text())
    prune, qat = m["recipe"]["stages"]
    assert prune["prune"]["fit"]["epochs"] == 2 and prune["prune"]["fit"]["batch_size"] == 64  # flag won, rest kept
    assert prune["prune"]["layer_types"] == ["Dense", "Conv2D"] and qat["qat"]["fit"]["epochs"] == 1
    assert m["recipe"]["train"] == str(files / "train.npz")
    assert m["stages"]["order"] == ["prune", "qat"] and m["stages"]["model"]["from"] == "keras3"
    (art,) = m["artifacts"]
    assert art["status"] == "passed" and art["sparsity"]["sparsity"] >= 0.49 and 0 < art["gzip_bytes"] < art["bytes"]


@pytest.mark.parametrize("args, msg", [
    (["--prune", "1.5"], r"prune sparsity must be in (0, 1), got 1.5"),
    (["--prune-epochs", "2"], "--prune-epochs needs a prune stage: add --prune SPARSITY"),
    (["--strategy", "mirrored"], "--strategy applies to training stages"),
    (["--prune", "0.8", "--prune-structure", "2:4"], "prune structure 2:4 fixes sparsity at 0.5"),
    (["--prune-structure", "24"], "is not 'M:N'"),
])
def test_cli_bad_stage_flags_exit_2(tmp_path, args, msg):
    r = edgekit("convert", "digits-cnn", "-t", "tflite:int8", *args, "-o", str(tmp_path / "o"))
    assert r.returncode == 2
    assert msg in _one_line_error(r)
    assert not (tmp_path / "o").exists()


def test_cli_qat_unsupported_layer_is_one_line_exit_2(files: Path, tmp_path):
    tiny_keras3("ln").save(tmp_path / "ln.keras")
    r = edgekit("convert", str(tmp_path / "ln.keras"), "--train", str(files / "train.npz"), "--train-limit", "64",
                "--calib", str(files / "calib.npz"), "--qat", "-t", "tflite:int8", "-o", str(tmp_path / "o"))
    assert r.returncode == 2
    line = _one_line_error(r)
    assert "qat: tfmot cannot quantize layer(s) 'ln' (LayerNormalization); skip them: --qat-skip ln" in line


def test_stages_need_labelled_training_data(files: Path, tmp_path):
    from edgekit.api import convert

    base = {"model": str(files / "model.keras"), "targets": ["tflite:fp32"], "stages": ["qat"]}
    with pytest.raises(InputError, match="stages need training data: pass --train"):
        convert(base, tmp_path / "a")
    from_arrays(digits("train").inputs[0][:32]).to_npz(tmp_path / "nolabels.npz")
    with pytest.raises(InputError, match="has no labels: stages fine-tune on labelled data"):
        convert({**base, "train": str(tmp_path / "nolabels.npz")}, tmp_path / "b")
    from_arrays(digits("train", flat=True).inputs[0][:32], digits("train").labels[:32]).to_npz(tmp_path / "flat.npz")
    with pytest.raises(DataError, match=r"training data input 0 has per-sample shape \(64,\)"):
        convert({**base, "train": str(tmp_path / "flat.npz")}, tmp_path / "c")
