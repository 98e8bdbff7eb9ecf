"""Small Keras models that the repository's tests and benchmarks both build (not zoo entries: no data,
no training; they exist to exercise converters).

Example:
    >>> [t.name for t in multi_io().inputs]  # doctest: +SKIP
    ['image', 'meta']
"""

from __future__ import annotations

from typing import Any


def multi_io() -> Any:
    """tf_keras functional model: inputs image + meta, outputs cls + reg (not alphabetical), seeded.

    The ONNX int8 case that saturates on x86 without VNNI (``benchmarks/onnx_reduce_range.py``).
    """
    import tf_keras

    tf_keras.utils.set_random_seed(2)
    image = tf_keras.Input((8, 8, 1), name="image")
    meta = tf_keras.Input((3,), name="meta")
    x = tf_keras.layers.Conv2D(4, 3, activation="relu")(image)
    x = tf_keras.layers.Concatenate()([tf_keras.layers.Flatten()(x), meta])
    x = tf_keras.layers.Dense(16, activation="relu")(x)
    return tf_keras.Model([image, meta], [tf_keras.layers.Dense(10, name="zcls")(x), tf_keras.layers.Dense(1, name="areg")(x)])
