"""Zoo names for the converter: the caller resolves a name before the pipeline loads it.

:mod:`edgekit.convert` knows no zoo. :func:`edgekit.api.convert` passes ``resolve(recipe.model)``
to the pipeline as its ``model``, a :class:`~edgekit.convert.source.ModelProvider` that the
pipeline calls at its load step:

* a zoo name becomes a :class:`ZooModel`, which trains the model (or loads the cached one) and
  hands over the entry's declared inputs and bundled data as the defaults;
* a Keras file becomes a :class:`ZooFile`, which registers the zoo's custom layers first, so files
  written by ``edgekit zoo export`` load in a fresh process.

Both wait for the load step, so nothing is trained (and no TensorFlow is imported) before the
recipe, the targets and the output folder were checked, and a multi-worker strategy is still
created before TensorFlow runs anything. Importing this module imports no TensorFlow.

Example:
    >>> resolve("digits-cnn")
    ZooModel(name='digits-cnn')
    >>> resolve("model.keras")
    ZooFile(name='model.keras')
    >>> resolve("saved_model_dir/")
    'saved_model_dir/'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgekit.zoo.registry import ZOO, get_entry

if TYPE_CHECKING:  # for annotations only: listing the zoo does not load edgekit.convert
    from edgekit.convert.source import SourceModel

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ZooModel:
    """A zoo name on its way to the converter (an ``edgekit.convert.source.ModelProvider``).

    Attributes:
        name: The zoo name; an unknown one raises with close matches when provided.
    """

    name: str

    def provide(self, *, seed: int, allow_unsafe: bool = False, progress: Progress | None = None) -> "SourceModel":
        """The trained model (cached per name, seed and epochs) as the converter's source.

        Example:
            >>> ZooModel("digits-cnn").provide(seed=0).zoo  # doctest: +SKIP
            'digits-cnn'
        """
        from edgekit.zoo.training import train_model

        get_entry(self.name)  # raises with close matches before any training
        return source_for(self.name, train_model(self.name, seed=seed, progress=progress))


@dataclass(frozen=True)
class ZooFile:
    """A Keras file that may use the zoo's custom layers (an ``edgekit.convert.source.ModelProvider``).

    Attributes:
        name: The path, as the user gave it (the manifest records it so).
    """

    name: str

    def provide(self, *, seed: int = 0, allow_unsafe: bool = False, progress: Progress | None = None) -> "SourceModel":
        """The file loaded by the converter, after the zoo's layers were registered with Keras.

        Example:
            >>> ZooFile("resnet.keras").provide(seed=0).kind  # doctest: +SKIP
            'keras3'
        """
        from edgekit.convert.source import check_model_path, load_source
        from edgekit.zoo.training import register_custom_objects

        check_model_path(self.name)  # a typo or a wrong file fails before TensorFlow is imported
        register_custom_objects()  # e.g. edgekit>ResidualBlock: Keras finds it only once its module is imported
        return load_source(self.name, allow_unsafe=allow_unsafe, seed=seed, progress=progress)


def source_for(name: str, model: Any) -> "SourceModel":
    """A zoo model (built or trained) as the converter's source: named after its entry, with the
    entry's declared inputs (a subclassed model has none of its own) and bundled data as defaults.

    Example:
        >>> source_for("multitask-subclassed", build("multitask-subclassed")).inputs[0].name  # doctest: +SKIP
        'image'
    """
    from edgekit.convert.source import DefaultData, from_keras

    entry = get_entry(name)
    data = DefaultData(calib=entry.calib_data, eval=entry.eval_data, train=entry.train_data)
    return from_keras(model, name, zoo=name, inputs=entry.inputs, data=data)


def is_zoo_name(spec: Any) -> bool:
    """Whether ``spec`` names a zoo model rather than a file: a zoo name, or a bare word that is no path.

    A bare word that is not in the zoo still counts, so it fails with the zoo's did-you-mean hint
    instead of "does not exist".

    Example:
        >>> is_zoo_name("digits-cnn"), is_zoo_name("digits-cnnn"), is_zoo_name("missing.keras")
        (True, True, False)
    """
    if not isinstance(spec, (str, os.PathLike)):
        return False
    text = str(spec)
    path = Path(text)
    if path.exists():
        return False
    return text in ZOO or (not path.suffix and "/" not in text)


def resolve(spec: Any) -> Any:
    """What the converter should load for ``spec``: a :class:`ZooModel` for a zoo name, a
    :class:`ZooFile` for a Keras file, ``spec`` itself otherwise (SavedModel folders, Keras objects).

    Example:
        >>> resolve("text-lstm").name
        'text-lstm'
    """
    # The converter's own list of Keras files: only these can name the zoo's custom layers. Imported
    # here, not at the top, so listing the zoo loads no part of the converter.
    from edgekit.convert.source import MODEL_SUFFIXES

    if is_zoo_name(spec):
        return ZooModel(str(spec))
    if isinstance(spec, (str, os.PathLike)) and Path(spec).suffix.lower() in MODEL_SUFFIXES:
        return ZooFile(str(spec))
    return spec
