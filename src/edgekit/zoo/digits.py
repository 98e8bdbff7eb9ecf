"""Builders for the digits models (8x8 grey images from scikit-learn's bundled digits set)."""

from __future__ import annotations

from edgekit.convert.tf_env import keras


def digits_cnn(input_shape: tuple[int, ...] = (8, 8, 1), classes: int = 10):
    """A small CNN for 8x8 digits whose dense head dominates its size.

    The dense layer carries ~90 % of the weights on purpose: it makes the model large enough that
    quantization's 4x weight saving is visible in the file size, as it is on real edge models,
    instead of being hidden by the flatbuffer's fixed overhead.

    Example:
        >>> digits_cnn().output_shape  # doctest: +SKIP
        (None, 10)
    """
    k = keras()
    inputs = k.Input(shape=input_shape, name="image")
    x = k.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = k.layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = k.layers.MaxPooling2D(2, name="pool")(x)
    x = k.layers.Flatten(name="flatten")(x)
    x = k.layers.Dense(256, activation="relu", name="dense")(x)
    x = k.layers.Dropout(0.2, name="dropout")(x)
    outputs = k.layers.Dense(classes, name="logits")(x)
    return k.Model(inputs, outputs, name="digits_cnn")
