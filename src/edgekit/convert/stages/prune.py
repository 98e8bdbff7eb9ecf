"""Pruning stage: tfmot magnitude pruning, layer by layer, then the wrappers are stripped.

Lifecycle: :func:`plan` (which layers, and why the others are left dense) -> :func:`prepare` (wrap
them in ``PruneLowMagnitude`` with the schedule) -> fit with :func:`callbacks` -> :func:`finalize`
(``strip_pruning``: a plain tf_keras model whose kernels hold the zeros).

Layers tfmot cannot prune (no registry entry, e.g. ``PReLU``; or no prunable weights, e.g.
``DepthwiseConv2D``; or, for M:N structure, a kernel that is not rank 2 or 4) are skipped and listed
in the report, never fatal. ``prepare`` wraps the layer objects of the model it is given: pass it a
clone (:func:`edgekit.convert.stages.keras2.clone`), never the user's model.

Example:
    >>> cfg = PruneConfig(sparsity=0.8).resolved(steps_per_epoch=40)
    >>> wrapped = prepare(clone(model), cfg)  # doctest: +SKIP
    >>> history = wrapped.fit(x, y, epochs=2, callbacks=callbacks())  # doctest: +SKIP
    >>> pruned = finalize(wrapped)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, ClassVar

from edgekit.convert.tf_env import tf_keras
from edgekit.convert.stages.base import StageContext
from edgekit.convert.stages.fit import detached, fine_tune
from edgekit.convert.stages.config import PruneConfig
from edgekit.convert.stages.keras2 import tfmot
from edgekit.errors import RecipeError, UnsupportedError
from edgekit.registry import did_you_mean


def check_selection(model: Any, kind: str, layers: tuple[str, ...], types: tuple[str, ...], skip: tuple[str, ...]) -> None:
    """Every layer name and type a stage names must exist in the model (typos fail loudly).

    Example:
        >>> check_selection(model, "prune", ("dens",), (), ())  # doctest: +SKIP
        Traceback (most recent call last):
        edgekit.errors.RecipeError: prune: no layer named 'dens' in the model; did you mean 'dense'? ...
    """
    names = [layer.name for layer in model.layers]
    have_types = sorted({type(layer).__name__ for layer in model.layers})
    for key, wanted in (("layers", layers), ("skip", skip)):
        for n in wanted:
            if n not in names:
                did = did_you_mean(n, names, "; did you mean {!r}?", cutoff=0.5)  # short names: "d2" ~ "d1"
                raise RecipeError(f"{kind} {key}: no layer named {n!r} in the model{did} (layers: {', '.join(names)})")
    for t in types:
        if t not in have_types:
            did = did_you_mean(t, have_types, "; did you mean {!r}?", cutoff=0.5)
            raise RecipeError(f"{kind} layer_types: no layer of type {t!r} in the model{did} (types: {', '.join(have_types)})")


def _selected(layer: Any, cfg: Any) -> bool:
    if not cfg.layers and not cfg.layer_types:
        return True
    return layer.name in cfg.layers or type(layer).__name__ in cfg.layer_types


def _why_not_prunable(layer: Any, cfg: PruneConfig) -> str | None:
    sp = tfmot().sparsity.keras
    registry = _registry()
    cls = type(layer).__name__
    if isinstance(layer, tf_keras().Model):
        return "nested model: tfmot prunes the layers of the top-level model only"
    if isinstance(layer, sp.PrunableLayer) or hasattr(layer, "get_prunable_weights"):
        weights = layer.get_prunable_weights()
    elif registry.supports(layer):
        if layer.__class__ in registry._LAYERS_WEIGHTS_MAP and not registry._weight_names(layer):
            return f"tfmot prunes no weights of {cls}"
        weights = None  # RNN/attention: tfmot finds the weights itself
    else:
        return f"tfmot cannot prune {cls} (no pruning rule for it)"
    if cfg.m_by_n:
        kernels = weights if weights is not None else [getattr(layer, n) for n in registry._weight_names(layer)] \
            if layer.__class__ in registry._LAYERS_WEIGHTS_MAP else []
        if not kernels or any(len(w.shape) not in (2, 4) for w in kernels):
            return f"{cfg.structure} structure needs rank-2/4 kernels (Dense, Conv2D); {cls} has none"
    return None


def _registry() -> Any:
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    return PruneRegistry


def plan(model: Any, cfg: PruneConfig) -> tuple[list[str], list[dict[str, str]]]:
    """Which layers to prune, and every weighted layer left dense with the reason.

    Returns:
        ``(names to prune, [{"layer", "type", "reason"}, ...])``.

    Raises:
        RecipeError: A layer name/type in the config is not in the model.
        UnsupportedError: No layer is left to prune.

    Example:
        >>> plan(k2_model, PruneConfig(layer_types=("Dense",)))  # doctest: +SKIP
        (['dense', 'logits'], [{'layer': 'conv1', 'type': 'Conv2D', 'reason': 'not selected (layers / layer_types)'}, ...])
    """
    check_selection(model, "prune", cfg.layers, cfg.layer_types, cfg.skip)
    chosen, skipped = [], []
    for layer in model.layers:
        if not layer.trainable_weights:
            continue  # nothing to prune and nothing to report (Flatten, pooling, dropout, ...)
        cls = type(layer).__name__
        if layer.name in cfg.skip:
            reason = "skipped by the recipe (skip)"
        elif not _selected(layer, cfg):
            reason = "not selected (layers / layer_types)"
        else:
            reason = _why_not_prunable(layer, cfg)
        if reason:
            skipped.append({"layer": layer.name, "type": cls, "reason": reason})
        else:
            chosen.append(layer.name)
    if not chosen:
        listed = "; ".join(f"{s['layer']} ({s['type']}): {s['reason']}" for s in skipped) or "it has no weights"
        raise UnsupportedError(f"prune: no layer of the model can be pruned with this recipe: {listed}")
    return chosen, skipped


def schedule(cfg: PruneConfig) -> Any:
    """The tfmot pruning schedule for a resolved config (``end_step`` and ``frequency`` set).

    Example:
        >>> schedule(PruneConfig(sparsity=0.8).resolved(40)).get_config()["config"]["final_sparsity"]  # doctest: +SKIP
        0.8
    """
    sp = tfmot().sparsity.keras
    if cfg.end_step is None or cfg.frequency is None:
        raise RecipeError("prune schedule needs a resolved config: call cfg.resolved(steps_per_epoch) first")
    if cfg.schedule == "constant":
        return sp.ConstantSparsity(cfg.target_sparsity, begin_step=cfg.begin_step, end_step=cfg.end_step,
                                   frequency=cfg.frequency)
    return sp.PolynomialDecay(initial_sparsity=cfg.initial_sparsity, final_sparsity=cfg.target_sparsity,
                              begin_step=cfg.begin_step, end_step=cfg.end_step, power=cfg.power,
                              frequency=cfg.frequency)


def prepare(model: Any, cfg: PruneConfig) -> Any:
    """Wrap the planned layers of ``model`` (a clone: its layers are reused) for pruning.

    Example:
        >>> wrapped = prepare(clone(model), PruneConfig(sparsity=0.8).resolved(40))  # doctest: +SKIP
    """
    sp = tfmot().sparsity.keras
    chosen, _ = plan(model, cfg)
    sched = schedule(cfg)
    kw = {"sparsity_m_by_n": cfg.m_by_n} if cfg.m_by_n else {}

    def wrap(layer: Any) -> Any:
        if layer.name in chosen:
            return sp.prune_low_magnitude(layer, pruning_schedule=sched, **kw)
        return layer

    return tf_keras().models.clone_model(model, clone_function=wrap)


def callbacks() -> list[Any]:
    """Callbacks the pruned model must train with (advances the pruning step).

    Example:
        >>> wrapped.fit(x, y, callbacks=callbacks())  # doctest: +SKIP
    """
    return [tfmot().sparsity.keras.UpdatePruningStep()]


def finalize(model: Any) -> Any:
    """Strip the pruning wrappers: a plain tf_keras model with the zeros in its kernels.

    Example:
        >>> pruned = finalize(wrapped)  # doctest: +SKIP
    """
    return tfmot().sparsity.keras.strip_pruning(model)


class PruneStage:
    """The ``prune`` stage: plan the layers, wrap, fine-tune with the pruning callbacks, strip.

    Example:
        >>> PruneStage.kind, PruneStage.config.__name__
        ('prune', 'PruneConfig')
    """

    kind: ClassVar[str] = "prune"
    config: ClassVar[type] = PruneConfig

    def apply(self, model: Any, cfg: PruneConfig, ctx: StageContext) -> tuple[Any, dict[str, Any]]:
        from edgekit.convert.stages.fit import steps_per_epoch
        from edgekit.convert.stages.sparsity import model_sparsity

        resolved = cfg.resolved(steps_per_epoch(len(ctx.train), cfg.fit))
        chosen, skipped = plan(model, resolved)
        ctx.say(f"prune: {len(chosen)} layer(s) to {resolved.target_sparsity:.0%}"
                + (f" ({resolved.structure})" if resolved.structure else "")
                + (f"; left dense: {', '.join(s['layer'] for s in skipped)}" if skipped else ""))
        wrapped, rep = fine_tune(lambda m: prepare(m, resolved), model, cfg, ctx, callbacks(), resolved)
        final = detached(finalize(wrapped), cfg)
        rep.update({"pruned": chosen, "skipped": skipped, "sparsity": model_sparsity(final)})
        ctx.say(f"prune: {rep['sparsity']['total']['sparsity']:.1%} of all kernel weights are zero")
        return final, rep
