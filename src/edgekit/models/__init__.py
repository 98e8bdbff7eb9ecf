"""The model zoo: small, seeded architectures that edgekit can build, train and convert by name.

The registry holds lazy ``"module:function"`` strings so ``import edgekit.models`` stays free of
TensorFlow until a model is actually built.

Example:
    >>> "digits-cnn" in zoo_names()
    True
"""

from __future__ import annotations

from edgekit.models.registry import ZOO, ZooEntry, get_entry, zoo_names

__all__ = ["ZOO", "ZooEntry", "get_entry", "zoo_names", "build", "train"]


def build(name: str, **kwargs):
    """Build the untrained Keras model for a zoo name (imports TensorFlow).

    Example:
        >>> build("digits-cnn").count_params() > 10_000  # doctest: +SKIP
        True
    """
    from edgekit.models.training import build_model

    return build_model(name, **kwargs)


def train(name: str, *, seed: int = 0, epochs: int | None = None, cache: bool = True, progress=None):
    """Build and train a zoo model on its bundled data (cached per name, seed and epochs).

    Example:
        >>> model = train("digits-cnn")  # doctest: +SKIP
    """
    from edgekit.models.training import train_model

    return train_model(name, seed=seed, epochs=epochs, cache=cache, progress=progress)
