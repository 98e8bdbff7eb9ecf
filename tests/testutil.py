"""Plain helpers shared by tests (imported as ``testutil``; ``conftest`` is not importable by name
once sub-folders have their own conftest.py)."""

from __future__ import annotations

import numpy as np


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
