"""Small models and data for the stage tests: real Keras 3, tf_keras and tfmot, seconds per stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.calibration import digits

TRAIN_LIMIT = 256  # enough steps for the schedules, few enough to keep each stage ~1 s


def tiny_keras3(extra: str | None = None, seed: int = 0):
    """Conv8 -> Flatten -> Dense32 [-> extra] -> Dense10 logits on 8x8x1 digits (Keras 3)."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(32, activation="relu", name="d1")(x)
    if extra == "prelu":
        x = keras.layers.PReLU(name="act")(x)
    elif extra == "ln":
        x = keras.layers.LayerNormalization(name="ln")(x)
    elif extra == "ln+prelu":
        x = keras.layers.LayerNormalization(name="ln")(x)
        x = keras.layers.PReLU(name="act")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name=f"tiny_{extra or 'plain'}")


def trained(extra: str | None = None, epochs: int = 4):
    """``tiny_keras3`` trained on the digits training split (compiled: logits, sparse labels)."""
    import keras

    model = tiny_keras3(extra)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    data = digits("train")
    model.fit(data.inputs[0], data.labels, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    return model


def weights_of(model) -> list[np.ndarray]:
    return [np.array(w, copy=True) for w in model.get_weights()]


def same_weights(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


def recipe(stages, *, seed: int = 0, **kw):
    from edgekit.convert.recipe import Recipe

    return Recipe.from_dict({"model": "api", "targets": ["tflite:int8"], "stages": stages, "seed": seed, **kw})


def run_stages(model, stages, *, seed: int = 0, limit: int = TRAIN_LIMIT):
    """apply_stages on an in-memory model with a seeded slice of the digits training split."""
    from edgekit.convert.source import from_keras
    from edgekit.convert.stages import apply_stages

    train = digits("train").take(limit, seed=0)
    return apply_stages(from_keras(model), recipe(stages, seed=seed), train)


def convert_api(out: Path, model, stages, targets=("tflite:int8",), **kw):
    from edgekit.convert.pipeline import convert

    r = {"model": "api", "targets": list(targets), "stages": stages, "train": "digits:train",
         "train_limit": TRAIN_LIMIT, "eval": "digits:eval", "calib": "digits:calib", "calib_limit": 50, **kw}
    return convert(r, out, model=model)


def kernel(model, name: str) -> np.ndarray:
    """A layer's kernel from a plain or tfmot-wrapped tf_keras model, by the original layer name."""
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if inner.name == name:
            return np.asarray(inner.kernel)
    raise KeyError(name)


@pytest.fixture(scope="session")
def tiny_trained():
    """A trained Keras 3 tiny model (Conv/Dense only: prunable and quantizable throughout)."""
    return trained()


@pytest.fixture(scope="session")
def tiny_prelu():
    """A trained Keras 3 tiny model with a PReLU layer (tfmot can neither prune nor quantize it)."""
    return trained("prelu")
