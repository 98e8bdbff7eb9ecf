"""Convert by zoo name or by file: the entry point the CLI, the coverage matrix and API users call.

:func:`edgekit.convert.pipeline.convert` loads files and in-memory models and knows no zoo. This
module is where the two meet: the model is resolved by :func:`edgekit.zoo.resolve` into a
provider that the pipeline calls at its load step (a zoo name is trained only after the recipe,
the targets and the output folder were checked; a ``.keras`` file loads with the zoo's custom
layers registered, so files written by ``edgekit zoo export`` convert in a fresh process).
Everything else is the pipeline's, unchanged (including where the files go on a ``multi_worker``
cluster: only the chief writes ``out_dir``, see :func:`edgekit.convert.cluster.run_as_worker`).

Importing this module imports no TensorFlow (the pipeline is imported on the first call).

Example:
    >>> m = convert({"model": "digits-cnn", "targets": ["tflite:fp32", "tflite:int8"]}, "out/")  # doctest: +SKIP
    >>> [(a.target, a.status) for a in m.artifacts]  # doctest: +SKIP
    [('tflite:fp32', 'passed'), ('tflite:int8', 'passed')]
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Mapping

from edgekit.zoo import resolve

if TYPE_CHECKING:
    from edgekit.convert.recipe import Recipe
    from edgekit.convert.source import SourceModel
    from edgekit.manifest import Manifest


def convert(recipe: "Recipe | Mapping[str, Any]", out_dir: str | os.PathLike[str], *, force: bool = False,
            progress: Callable[[str], None] | None = None, model: Any = None) -> "Manifest":
    """:func:`edgekit.convert.pipeline.convert`, with zoo names in ``recipe.model`` understood.

    Args:
        recipe: A :class:`~edgekit.convert.recipe.Recipe` or its dict form; ``model`` may be a zoo name.
        out_dir: Folder for the artifacts and ``manifest.json``; must be empty unless ``force``.
        force: Replace a previous edgekit output in ``out_dir``.
        progress: Called with one-line progress messages.
        model: An in-memory Keras model to use instead of ``recipe.model``.

    Returns:
        The manifest (also written to ``out_dir/manifest.json``). Check ``manifest.ok``. On a
        ``multi_worker`` worker that is not the chief: the same manifest, but nothing is written
        to ``out_dir`` (its artifacts were in a temporary folder, removed on return).

    Raises:
        RecipeError: A bad recipe, or ``multi_worker`` with a bad ``TF_CONFIG``.

    Example:
        >>> convert({"model": "mnist-mlp", "targets": ["onnx:fp32"]}, "out/", force=True).ok  # doctest: +SKIP
        True
    """
    from edgekit.convert.pipeline import convert as run_pipeline
    from edgekit.convert.recipe import Recipe

    if not isinstance(recipe, Recipe):
        recipe = Recipe.from_dict(recipe)
    if model is None:
        model = resolve(recipe.model)
    return run_pipeline(recipe, out_dir, force=force, progress=progress, model=model)


def load_source(spec: Any, *, allow_unsafe: bool = False, seed: int = 0,
                progress: Callable[[str], None] | None = None) -> "SourceModel":
    """:func:`edgekit.convert.source.load_source`, with zoo names understood (trained, or loaded from the cache).

    Example:
        >>> src = load_source("digits-cnn")  # doctest: +SKIP
        >>> src.zoo, [s.describe() for s in src.inputs]  # doctest: +SKIP
        ('digits-cnn', ['image[?x8x8x1] float32'])
    """
    from edgekit.convert.source import load_source as load

    return load(resolve(spec), allow_unsafe=allow_unsafe, seed=seed, progress=progress)
