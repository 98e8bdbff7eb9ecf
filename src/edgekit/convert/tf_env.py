"""Import TensorFlow and Keras quietly, once, with a clear error when the extra is missing.

Public so code outside :mod:`edgekit.convert` that builds Keras models (the zoo's builders) gets
the same quiet, lazily imported TensorFlow. Importing this module imports no TensorFlow.

Example:
    >>> callable(keras) and callable(tf_keras)
    True
"""

from __future__ import annotations

import logging
import warnings
from types import ModuleType

from edgekit.quiet import captured_output, quiet_tf_env
from edgekit.errors import MissingDependencyError

_tf: ModuleType | None = None


def tf() -> ModuleType:
    """The ``tensorflow`` module, imported without its start-up noise.

    Raises:
        MissingDependencyError: TensorFlow is not installed (``edgekit[convert]``).
    """
    global _tf
    if _tf is None:
        quiet_tf_env()
        with captured_output():
            try:
                import tensorflow
            except ImportError as exc:
                raise MissingDependencyError("tensorflow", "convert", f"converting models ({exc})") from None
        tensorflow.get_logger().setLevel(logging.ERROR)
        try:
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
        except ImportError:  # absl ships with TF, but never fail on a log setting
            pass
        warnings.filterwarnings("ignore", module="tensorflow")
        warnings.filterwarnings("ignore", module="keras")
        _tf = tensorflow
    return _tf


def keras() -> ModuleType:
    """Keras 3 (the ``keras`` package), after TensorFlow is set up."""
    tf()
    import keras as keras3

    return keras3


def tf_keras() -> ModuleType:
    """Keras 2 (``tf_keras``), which tensorflow-model-optimization and legacy files need."""
    tf()
    try:
        import tf_keras as k2
    except ImportError:
        raise MissingDependencyError("tf-keras", "convert", "Keras 2 models and pruning/QAT") from None
    return k2
