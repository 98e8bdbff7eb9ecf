"""Training-time stages (pruning, QAT): a recipe's ``stages`` applied to a copy of the source model.

Importing this package is light (configs only); TensorFlow and tfmot load when
:func:`apply_stages` runs. Each stage follows ``prepare -> fit -> finalize`` on a fresh clone of
the previous model, so the user's model is never touched: tfmot's wrappers reuse the layer objects
of whatever they wrap, and the pipeline validates every artifact against the untouched source.

Example:
    >>> from edgekit.convert.stages import PruneConfig, parse_stages
    >>> parse_stages([{"prune": {"structure": "2:4"}}])[0].m_by_n
    (2, 4)
"""

from __future__ import annotations

import time
from typing import Any, Callable

from edgekit.convert.stages.config import (FitConfig, PruneConfig, QatConfig, check_stages, parse_stages,
                                           stage_from_value)
from edgekit.convert.stages.flags import cli_stages

Progress = Callable[[str], None]

__all__ = ["FitConfig", "PruneConfig", "QatConfig", "apply_stages", "check_stages", "cli_stages", "parse_stages",
           "stage_from_value"]


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
    pruned = False
    for cfg in recipe.stages:
        t0 = time.perf_counter()
        if cfg.kind == "prune":
            model, rep = _prune(model, cfg, source.model, train, recipe.seed, say)
            pruned = True
        else:
            model, rep = _qat(model, cfg, pruned, source.model, train, recipe.seed, say)
        rep["seconds"] = round(time.perf_counter() - t0, 2)
        report[cfg.kind] = rep
    report["params"] = int(model.count_params())
    staged = SourceModel(source.name, TF_KERAS, model, source.inputs, source.outputs, sha256=source.sha256, zoo=source.zoo)
    return staged, report


def _train(prepared_fn: Callable[[Any], Any], model: Any, cfg: Any, source_model: Any, train: Any, seed: int,
           say: Progress, callbacks: list[Any], cfg_for_report: Any,
           before_fit: Callable[[Any], Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Clone, prepare and compile under the strategy, fine-tune; shared by both stages."""
    from edgekit.convert._tf import tf_keras
    from edgekit.convert.stages import fit as fitting
    from edgekit.convert.stages.keras2 import clone

    k2 = tf_keras()
    strategy = fitting.strategy_for(cfg.fit)
    loss = fitting.resolve_loss(cfg.fit, source_model, model, train)
    k2.utils.set_random_seed(seed)  # same recipe, same data -> same weights
    with strategy.scope():  # variables must be created under the strategy that trains them
        prepared = prepared_fn(clone(model))
        fitting.compile_model(prepared, cfg.fit, loss)
    extra = before_fit(prepared) if before_fit is not None else {}
    say(f"{cfg.kind}: fine-tuning {cfg.fit.epochs} epoch(s) on {len(train)} samples "
        f"({loss.name}{', logits' if loss.from_logits else ''}; {cfg.fit.strategy} strategy, "
        f"{strategy.num_replicas_in_sync} replica(s))")
    history = fitting.fit(prepared, train, cfg.fit, seed=seed, callbacks=callbacks, progress=say, label=cfg.kind)
    rep = {
        "config": cfg_for_report.to_value()[cfg.kind],
        "loss": loss.to_dict(),
        "strategy": {"name": cfg.fit.strategy, "class": type(strategy).__name__,
                     "replicas": int(strategy.num_replicas_in_sync)},
        "history": history,
        **extra,
    }
    return prepared, rep


def _prune(model: Any, cfg: PruneConfig, source_model: Any, train: Any, seed: int, say: Progress) -> tuple[Any, dict]:
    from edgekit.convert.stages import prune
    from edgekit.convert.stages.fit import steps_per_epoch
    from edgekit.convert.stages.keras2 import clone
    from edgekit.convert.stages.sparsity import model_sparsity

    resolved = cfg.resolved(steps_per_epoch(len(train), cfg.fit))
    chosen, skipped = prune.plan(model, resolved)
    say(f"prune: {len(chosen)} layer(s) to {resolved.target_sparsity:.0%}"
        + (f" ({resolved.structure})" if resolved.structure else "")
        + (f"; left dense: {', '.join(s['layer'] for s in skipped)}" if skipped else ""))
    wrapped, rep = _train(lambda m: prune.prepare(m, resolved), model, cfg, source_model, train, seed, say,
                          prune.callbacks(), resolved)
    final = prune.finalize(wrapped)
    if cfg.fit.strategy != "default":
        final = clone(final)  # plain variables again, detached from the training strategy
    rep.update({"pruned": chosen, "skipped": skipped, "sparsity": model_sparsity(final)})
    say(f"prune: {rep['sparsity']['total']['sparsity']:.1%} of all kernel weights are zero")
    return final, rep


def _qat(model: Any, cfg: QatConfig, pruned: bool, source_model: Any, train: Any, seed: int,
         say: Progress) -> tuple[Any, dict]:
    from edgekit.convert.stages import qat
    from edgekit.convert.stages.keras2 import clone
    from edgekit.convert.stages.sparsity import model_sparsity

    preserve = pruned if cfg.preserve_sparsity is None else cfg.preserve_sparsity
    chosen, skipped = qat.plan(model, cfg)
    before = model_sparsity(model)
    say(f"qat: {len(chosen)} layer(s), scheme {'prune-preserving ' if preserve else ''}8-bit"
        + (f"; left float: {', '.join(s['layer'] for s in skipped)}" if skipped else ""))
    wrapped, rep = _train(lambda m: qat.prepare(m, cfg, preserve_sparsity=preserve), model, cfg, source_model, train,
                          seed, say, [], cfg,
                          before_fit=lambda m: {"calibrated_batches": qat.calibrate_ranges(m, train, batch_size=cfg.fit.batch_size)})
    final = qat.finalize(wrapped)
    if cfg.fit.strategy != "default":
        final = clone(final)
    after = model_sparsity(final)
    rep.update({"scheme": "prune_preserve_8bit" if preserve else "default_8bit", "quantized": chosen,
                "skipped": skipped, "sparsity_before": before, "sparsity_after": after})
    if pruned:
        say(f"qat: sparsity {before['total']['sparsity']:.1%} before, {after['total']['sparsity']:.1%} after")
    return final, rep
