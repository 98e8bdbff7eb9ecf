"""The classic MNIST multilayer perceptron (the first model of the Keras/TensorFlow tutorials)."""

from __future__ import annotations

from edgekit.convert.tf_env import keras


def mnist_mlp(input_shape: tuple[int, ...] = (784,), classes: int = 10, hidden: tuple[int, ...] = (128, 64),
              dropout: float = 0.2):
    """MLP 784-128-64-10 with dropout after each hidden layer, emitting logits.

    The tutorial trains it on flattened 28x28 MNIST; the zoo feeds it the bundled digits upscaled
    to 28x28 (``digits:train:28x28:flat``), since MNIST itself cannot be downloaded at run time.

    Args:
        input_shape: Per-sample input shape; a flat vector (any length).
        classes: Output classes.
        hidden: Units of each hidden ReLU layer.
        dropout: Dropout rate after each hidden layer.

    Example:
        >>> m = mnist_mlp()  # doctest: +SKIP
        >>> m.count_params(), m.output_shape  # doctest: +SKIP
        (109386, (None, 10))
    """
    k = keras()
    inputs = k.Input(shape=input_shape, name="pixels")
    x = inputs
    for i, units in enumerate(hidden, 1):
        x = k.layers.Dense(units, activation="relu", name=f"dense{i}")(x)
        x = k.layers.Dropout(dropout, name=f"dropout{i}")(x)
    outputs = k.layers.Dense(classes, name="logits")(x)
    return k.Model(inputs, outputs, name="mnist_mlp")
