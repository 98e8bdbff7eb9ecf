"""Shared fixtures: real TensorFlow and LiteRT on tiny models, no mocks.

The trained zoo model and one converted output folder are built once per test session (a few
seconds); tests that need their own variants build tiny models in code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
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
    from edgekit.models import train

    return train("digits-cnn")


@pytest.fixture(scope="session")
def digits_out(tmp_path_factory, digits_model):
    """An output folder with the four TFLite targets of digits-cnn, converted and validated."""
    from edgekit.convert.pipeline import convert

    out = tmp_path_factory.mktemp("digits-out")
    manifest = convert({"model": "digits-cnn", "targets": list(TFLITE_TARGETS)}, out, force=True)
    return out, manifest


@pytest.fixture(scope="session")
def digits_eval():
    from edgekit.calibration import digits

    return digits("eval")


def tiny_keras_model(seed: int = 0):
    """A 2-layer Keras 3 model on 8x8x1 inputs (untrained; for shape/plumbing tests only)."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(16, activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x))


def random_images(n: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 8, 8, 1), dtype=np.float32)
