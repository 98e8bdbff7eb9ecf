"""The issue's done-means on the zoo digits model, measured: pruned int8 size and accuracy, QAT vs PTQ."""

from __future__ import annotations

import pytest

from edgekit.api import convert


@pytest.mark.slow
def test_digits_prune_80_and_qat_meet_the_numbers(tmp_path, digits_out):
    _, base = digits_out  # the same zoo model (seed 0), post-training int8 from the calibration split
    ptq = base.artifact("tflite:int8")
    assert ptq.status == "passed"

    pruned = convert({"model": "digits-cnn", "targets": ["tflite:int8"],
                      "stages": [{"prune": {"sparsity": 0.8, "fit": {"epochs": 5}}}]}, tmp_path / "prune")
    p = pruned.artifacts[0]
    assert p.status == "passed", p.error
    assert pruned.stages["prune"]["sparsity"]["total"]["sparsity"] == pytest.approx(0.8, abs=0.002)
    assert p.sparsity["sparsity"] >= 0.79
    # Pruning pays off compressed: half the gzip size or better, within 2 points of the float model.
    assert p.gzip_bytes <= 0.5 * ptq.gzip_bytes, (p.gzip_bytes, ptq.gzip_bytes)
    assert p.validation["reference_accuracy"] == ptq.validation["reference_accuracy"]
    assert p.validation["accuracy_drop"] <= 2.0

    qat = convert({"model": "digits-cnn", "targets": ["tflite:int8"], "stages": ["qat"]}, tmp_path / "qat")
    q = qat.artifacts[0]
    assert q.status == "passed", q.error
    assert q.validation["accuracy"] >= ptq.validation["accuracy"] - 0.5, (q.validation["accuracy"], ptq.validation["accuracy"])
