"""Mutated model files never crash or hang the process (each run in its own subprocess with a timeout).

The suite runs a few hundred files; benchmarks/fuzz_models.py runs thousands.
"""

from __future__ import annotations

import random

import pytest

from tools.fuzz import MUTATIONS, fuzz, mutate


def test_mutations_are_seeded_and_change_the_file():
    data = bytes(range(256)) * 16
    for kind in MUTATIONS:
        a, b = mutate(data, random.Random(3), kind), mutate(data, random.Random(3), kind)
        assert a == b, kind
    assert all(mutate(data, random.Random(i), k) != data for i in range(3) for k in ("truncate", "random_file", "bad_identifier"))
    with pytest.raises(ValueError, match="unknown mutation"):
        mutate(data, random.Random(0), "nope")


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tflite:int8", "tflite:fp32"])
def test_fuzzed_models_give_clean_errors_never_crash_or_hang(digits_out, target):
    out, manifest = digits_out
    report = fuzz(out / manifest.artifact(target).path, n=150, seed=7, timeout=60)
    assert report.total == 150
    assert report.bad == 0, report.failures
    # Every mutation kind ran, and the clearly broken ones (truncation, wrong identifier) were refused.
    assert set(report.by_mutation) == set(MUTATIONS)
    assert report.by_mutation["truncate"]["error"] == 15
    assert report.by_mutation["bad_identifier"]["error"] == 15
    assert report.counts["error"] > 0 and report.counts["ran"] > 0


@pytest.mark.slow
def test_fuzzed_onnx_models_never_crash_or_hang(tmp_path, digits_model):
    pytest.importorskip("onnxruntime")
    from edgekit.api import convert

    m = convert({"model": "digits-cnn", "targets": ["onnx:int8"]}, tmp_path / "o")
    report = fuzz(tmp_path / "o" / m.artifacts[0].path, n=100, seed=3, timeout=60)
    assert report.total == 100 and report.bad == 0, report.failures
    assert report.by_mutation["truncate"]["error"] == 10
