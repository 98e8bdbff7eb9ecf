"""Shared fixtures: real TensorFlow and LiteRT on tiny models, no mocks.

The trained zoo model and one converted output folder are built once per test session (a few
seconds); tests that need their own variants build tiny models in code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Keep the user's ~/.cache out of tests and the tests out of it.
os.environ.setdefault("EDGEKIT_CACHE", tempfile.mkdtemp(prefix="edgekit-test-cache-"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("EDGEKIT_RESULTS", os.path.join(os.environ["EDGEKIT_CACHE"], "results.sqlite"))

REPO = Path(__file__).resolve().parents[1]
TFLITE_TARGETS = ("tflite:fp32", "tflite:dynamic", "tflite:int8", "tflite:fp16")


@pytest.fixture(scope="session")
def digits_model():
    """The zoo's digits-cnn, trained on the bundled digits data (seeded, ~3 s)."""
    from edgekit.zoo import train

    return train("digits-cnn")


@pytest.fixture(scope="session")
def digits_out(tmp_path_factory, digits_model):
    """An output folder with the four TFLite targets of digits-cnn, converted and validated."""
    from edgekit.api import convert

    out = tmp_path_factory.mktemp("digits-out")
    manifest = convert({"model": "digits-cnn", "targets": list(TFLITE_TARGETS)}, out, force=True)
    return out, manifest


@pytest.fixture(scope="session")
def digits_eval():
    from edgekit.calibration import digits

    return digits("eval")
