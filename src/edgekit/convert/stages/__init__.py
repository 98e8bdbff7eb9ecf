"""Training-time stages (pruning, QAT): a recipe's ``stages`` applied to a copy of the source model.

Importing this package is light (configs only); TensorFlow and tfmot load when
:func:`apply_stages` runs. Each stage is a :class:`~edgekit.convert.stages.base.Stage` found by its
kind in the stage registry, and follows ``prepare -> fit -> finalize`` on a fresh clone of the
previous model, so the user's model is never touched: tfmot's wrappers reuse the layer objects of
whatever they wrap, and the pipeline validates every artifact against the untouched source.

Example:
    >>> from edgekit.convert.stages import PruneConfig, parse_stages
    >>> parse_stages([{"prune": {"structure": "2:4"}}])[0].m_by_n
    (2, 4)
"""

from __future__ import annotations

import time
from typing import Any, Callable

from edgekit.convert.stages.base import STAGES_REGISTRY, Stage, StageContext, get_stage, stage_kinds
from edgekit.convert.stages.config import (FitConfig, PruneConfig, QatConfig, check_stages, parse_stages,
                                           stage_from_value)

Progress = Callable[[str], None]

__all__ = ["STAGES_REGISTRY", "FitConfig", "PruneConfig", "QatConfig", "Stage", "StageContext", "apply_stages",
           "check_stages", "get_stage", "parse_stages", "stage_from_value", "stage_kinds"]


def apply_stages(source: Any, recipe: Any, train: Any, progress: Progress | None = None) -> tuple[Any, dict[str, Any]]:
    """Run ``recipe.stages`` in order on a tf_keras copy of ``source`` and return the result.

    Args:
        source: The loaded :class:`~edgekit.convert.source.SourceModel` (Keras 3 or tf_keras). Not modified.
        recipe: The :class:`~edgekit.convert.recipe.Recipe` (its ``stages`` and ``seed``).
        train: Labelled training :class:`~edgekit.calibration.Dataset`, already checked against the inputs.
        progress: Called with one-line progress messages.

    Returns:
        ``(staged, report)``: a ``tf_keras`` SourceModel with the source's input/output names, ready
        to export, and the report the manifest stores under ``stages``.

    Raises:
        UnsupportedError: A SavedModel source, layers that cannot be carried to tf_keras, or layers
            tfmot cannot quantize (named, with how to skip them).

    Example:
        >>> staged, report = apply_stages(source, recipe, train)  # doctest: +SKIP
        >>> report["prune"]["sparsity"]["total"]["sparsity"]  # doctest: +SKIP
        0.8
    """
    from edgekit.convert.source import SAVED_MODEL, TF_KERAS, SourceModel
    from edgekit.convert.stages.keras2 import tfmot, to_tf_keras
    from edgekit.errors import UnsupportedError

    say = progress or (lambda _msg: None)
    if source.kind == SAVED_MODEL:
        raise UnsupportedError(
            f"pruning/QAT need a Keras model (.keras/.h5 file or zoo name); {source.name} is a SavedModel, "
            "which has no Keras layers to wrap: convert from the model's .keras file instead"
        )
    tfmot()
    report: dict[str, Any] = {
        "order": [s.kind for s in recipe.stages],
        "train_data": {"source": train.name, "samples": len(train)},
    }
    sample = [x[:64] for x in train.inputs]
    model, report["model"] = to_tf_keras(source.model, sample)
    if report["model"]["from"] == "keras3":
        say(f"stages: rebuilt the Keras 3 model in tf_keras for tfmot ({report['model']['layers']} layers, "
            f"max diff {report['model']['max_abs_diff']:.2g})")
    done: list[str] = []
    for cfg in recipe.stages:
        t0 = time.perf_counter()
        ctx = StageContext(source.model, train, recipe.seed, say, done=tuple(done))
        model, rep = get_stage(cfg.kind).apply(model, cfg, ctx)
        rep["seconds"] = round(time.perf_counter() - t0, 2)
        report[cfg.kind] = rep
        done.append(cfg.kind)
    report["params"] = int(model.count_params())
    staged = SourceModel(source.name, TF_KERAS, model, source.inputs, source.outputs, sha256=source.sha256,
                         zoo=source.zoo, data=source.data, max_batch=source.max_batch)
    return staged, report
