"""The heavy half: the only package that imports TensorFlow / Keras (lazily, on first use).

Example:
    >>> from edgekit.convert import Recipe
    >>> Recipe.from_dict({"model": "digits-cnn", "targets": ["tflite:int8"]}).targets[0].precision
    'int8'
"""

from edgekit.convert.recipe import Recipe, Target, Tolerance

__all__ = ["Recipe", "Target", "Tolerance", "convert"]


def convert(*args, **kwargs):
    """See :func:`edgekit.convert.pipeline.convert` (imported lazily to keep this package light)."""
    from edgekit.convert.pipeline import convert as _convert

    return _convert(*args, **kwargs)
