"""The model zoo: the tutorials' architectures, small and seeded, that edgekit builds, trains and converts by name.

``edgekit zoo list`` shows them; ``docs/coverage.md`` (``make coverage``) shows what each converts to.
The zoo uses the converter's public API only (:mod:`edgekit.convert.tf_env`,
:mod:`edgekit.convert.source`); the converter never imports the zoo. A zoo name reaches the
pipeline through :func:`resolve` (``edgekit.api.convert`` does that).

The registry holds lazy ``"module:function"`` strings so ``import edgekit.zoo`` stays free of
TensorFlow until a model is actually built.

Example:
    >>> "digits-cnn" in zoo_names()
    True
    >>> resolve("digits-cnn").name
    'digits-cnn'
"""

from __future__ import annotations

from edgekit.zoo.registry import ZOO, ZooEntry, get_entry, zoo_names
from edgekit.zoo.resolve import ZooFile, ZooModel, is_zoo_name, resolve, source_for

__all__ = ["ZOO", "ZooEntry", "ZooFile", "ZooModel", "build", "evaluate", "get_entry", "is_zoo_name",
           "register_custom_objects", "resolve", "source_for", "train", "zoo_names"]


def build(name: str, *, seed: int | None = None, **kwargs):
    """Build the untrained Keras model for a zoo name (imports TensorFlow).

    Args:
        name: Zoo name.
        seed: Fixes the initial weights (``keras.utils.set_random_seed``); ``None`` leaves them random.
        **kwargs: Builder options, e.g. ``input_shape=(32, 32, 3)``, ``classes=5``, ``unroll=False``.

    Example:
        >>> build("digits-cnn").count_params() > 10_000  # doctest: +SKIP
        True
    """
    from edgekit.zoo.training import build_model

    return build_model(name, seed=seed, **kwargs)


def train(name: str, *, seed: int = 0, epochs: int | None = None, cache: bool = True, progress=None):
    """Build and train a zoo model on its bundled data (cached per name, seed and epochs).

    Example:
        >>> model = train("digits-cnn")  # doctest: +SKIP
    """
    from edgekit.zoo.training import train_model

    return train_model(name, seed=seed, epochs=epochs, cache=cache, progress=progress)


def evaluate(name: str, model) -> dict:
    """Accuracy (%) of a trained zoo model on its eval split (plus ``ink_mae`` for models with an ink head).

    Example:
        >>> evaluate("digits-cnn", train("digits-cnn"))["accuracy"] >= 90  # doctest: +SKIP
        True
    """
    from edgekit.zoo.training import evaluate as _evaluate

    return _evaluate(name, model)


def register_custom_objects() -> None:
    """Register the zoo's custom Keras layers and models, so ``.keras`` files exported from the zoo load
    (imports TensorFlow).

    Example:
        >>> register_custom_objects()  # doctest: +SKIP
    """
    from edgekit.zoo.training import register_custom_objects as register

    register()
