"""Quantization-aware training stage: tfmot fake-quant wrappers, fine-tuned, exported as int8.

Lifecycle: :func:`plan` -> :func:`prepare` (``quantize_annotate_layer`` on the chosen layers, then
``quantize_apply`` with the 8-bit scheme) -> fit -> :func:`finalize` (nothing to strip: the TFLite
converter with ``Optimize.DEFAULT`` reads the fake-quant ranges, so ``tflite:int8`` exports it).

After a prune stage the scheme is tfmot's ``Default8BitPrunePreserveQuantizeScheme``: it masks the
pruned zeros inside the weight quantizer, so fine-tuning cannot revive them and the int8 file stays
as sparse as the pruned model.

Layers tfmot cannot quantize (e.g. ``LayerNormalization``, ``PReLU``, ``Conv1D``) stop the stage
with one line naming all of them and how to skip them; skipped layers stay float in the QAT model
and the converter quantizes them post-training from the calibration data.

Example:
    >>> q = prepare(clone(model), QatConfig(), preserve_sparsity=False)  # doctest: +SKIP
    >>> q.fit(x, y, epochs=1)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, ClassVar, Iterator

from edgekit.convert.tf_env import tf_keras
from edgekit.convert.stages.base import StageContext
from edgekit.convert.stages.fit import detached, fine_tune
from edgekit.convert.stages.config import QatConfig
from edgekit.convert.stages.keras2 import tfmot
from edgekit.convert.stages.prune import _selected, check_selection
from edgekit.errors import UnsupportedError

# tfmot's quantize_apply: "Layer ln:<class '...LayerNormalization'> is not supported. ..."
_UNSUPPORTED = re.compile(r"Layer (?P<name>[^\s:]+):<class '(?:[\w.]*\.)?(?P<cls>\w+)'> is not supported")
_MAX_PROBES = 20
CALIBRATION_BATCHES = 8


def plan(model: Any, cfg: QatConfig) -> tuple[list[str], list[dict[str, str]]]:
    """Layers to annotate for quantization, and those left float with the reason.

    Example:
        >>> plan(k2_model, QatConfig(skip=("ln",)))  # doctest: +SKIP
        (['conv', 'flat', 'd1', 'logits'], [{'layer': 'ln', 'type': 'LayerNormalization', 'reason': ...}])
    """
    check_selection(model, "qat", cfg.layers, cfg.layer_types, cfg.skip)
    chosen, skipped = [], []
    for layer in model.layers:
        if isinstance(layer, tf_keras().layers.InputLayer):
            continue
        cls = type(layer).__name__
        if layer.name in cfg.skip:
            skipped.append({"layer": layer.name, "type": cls, "reason": "skipped by the recipe (skip)"})
        elif not _selected(layer, cfg):
            if layer.weights:
                skipped.append({"layer": layer.name, "type": cls, "reason": "not selected (layers / layer_types)"})
        elif isinstance(layer, tf_keras().Model):
            raise UnsupportedError(
                f"qat: layer {layer.name!r} is a nested model, which tfmot cannot quantize; flatten it into the "
                f"top-level model or skip it (qat: {{skip: [{layer.name}]}})"
            )
        else:
            chosen.append(layer.name)
    if not chosen:
        raise UnsupportedError("qat: no layer is selected for quantization; check layers / layer_types / skip")
    return chosen, skipped


def scheme(preserve_sparsity: bool) -> Any:
    """tfmot's 8-bit scheme, prune-preserving when ``preserve_sparsity``.

    Example:
        >>> type(scheme(True)).__name__  # doctest: +SKIP
        'Default8BitPrunePreserveQuantizeScheme'
    """
    if preserve_sparsity:
        return tfmot().quantization.keras.collab_opts.Default8BitPrunePreserveQuantizeScheme()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import default_8bit_quantize_scheme

    return default_8bit_quantize_scheme.Default8BitQuantizeScheme()


def prepare(model: Any, cfg: QatConfig, *, preserve_sparsity: bool = False) -> Any:
    """Annotate the planned layers and apply quantization; ``model`` should be a clone.

    Raises:
        UnsupportedError: Layers tfmot cannot quantize, all named, with how to skip them.

    Example:
        >>> q = prepare(clone(k2_model), QatConfig(layer_types=("Dense",)))  # doctest: +SKIP
    """
    chosen, _ = plan(model, cfg)
    bad: list[tuple[str, str]] = []
    # quantize_apply stops at the first unsupported layer; probe again without it, so the user
    # learns every layer to skip from one run instead of one per run. Nothing is skipped silently.
    for _ in range(_MAX_PROBES):
        names = [n for n in chosen if n not in {b for b, _ in bad}]
        if not names:
            break
        try:
            quantized = _apply(model, names, preserve_sparsity)
        except (RuntimeError, ValueError, TypeError) as exc:  # TypeError: fake-quant fed integers
            msg = " ".join(str(exc).split())
            m = _UNSUPPORTED.search(msg)
            integer = re.search(r"Input 'inputs' of 'FakeQuant\w*' Op has type (u?int\d+)", msg)
            if integer:  # tfmot fake-quantizes the tensor entering the first annotated layer: here token ids
                raise UnsupportedError(
                    f"qat: tfmot can fake-quantize float tensors only, and a layer is fed {integer.group(1)} "
                    f"(e.g. an Embedding on token ids): skip it with --qat-skip LAYER (recipe qat: {{skip: [LAYER]}}), "
                    "or convert without --qat: post-training int8 quantizes such models") from None
            if not m:
                raise UnsupportedError(f"qat: tfmot could not quantize the model: {msg[:300]}") from None
            if m.group("name") not in names:  # not a layer we annotated: skipping cannot help
                raise UnsupportedError(f"qat: tfmot could not quantize the model: {msg[:300]}") from None
            bad.append((m.group("name"), m.group("cls")))
            continue
        if not bad:
            return quantized
        break
    listed = ", ".join(f"{n!r} ({c})" for n, c in bad)
    skip = ", ".join(n for n, _ in bad)
    raise UnsupportedError(
        f"qat: tfmot cannot quantize layer(s) {listed}; skip them: --qat-skip {bad[0][0]} or "
        f"qat: {{skip: [{skip}]}} in the recipe (they stay float and are quantized post-training at export)"
    )


def _apply(model: Any, names: list[str], preserve_sparsity: bool) -> Any:
    qk = tfmot().quantization.keras

    def annotate(layer: Any) -> Any:
        return qk.quantize_annotate_layer(layer) if layer.name in names else layer

    with qk.quantize_scope():
        annotated = tf_keras().models.clone_model(model, clone_function=annotate)
        return qk.quantize_apply(annotated, scheme(preserve_sparsity))


def finalize(model: Any) -> Any:
    """The QAT model itself: the converter turns its fake-quant ranges into int8.

    Example:
        >>> finalize(q) is q  # doctest: +SKIP
        True
    """
    return model


@contextlib.contextmanager
def _ema_decay(holder: list[float]) -> Iterator[None]:
    """Make tfmot's activation quantizers use ``holder[0]`` as their EMA decay while active.

    tfmot hard-codes 0.999 (quantizers.py passes ``ema_decay=0.999`` to ``MovingAvgQuantize``),
    which is read at call time from the module, so an eager call inside this block sees ours.
    """
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    original = quant_ops.MovingAvgQuantize

    def patched(*args: Any, **kwargs: Any) -> Any:
        kwargs["ema_decay"] = holder[0]
        return original(*args, **kwargs)

    quant_ops.MovingAvgQuantize = patched
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = original


def calibrate_ranges(model: Any, train: Any, batches: int = CALIBRATION_BATCHES, batch_size: int = 32) -> int:
    """Set every activation quantizer's range to the mean per-batch range on training data.

    tfmot starts activation ranges at [-6, 6] and moves them by 0.1 % per training step (EMA
    decay 0.999): a fine-tune of a few hundred steps leaves them near the start, which clips
    logits and wastes int8 levels (measured on digits: up to 5 points of accuracy lost after one
    epoch at a low learning rate). A few forward passes with decay k/(k+1) make them the exact
    running mean of the observed ranges first, as post-training calibration would; fine-tuning
    then continues from there with tfmot's own decay. Weights are not changed.

    Returns:
        How many batches were used.

    Example:
        >>> calibrate_ranges(q, digits("train"))  # doctest: +SKIP
        8
    """
    xs = [x[: batches * batch_size] for x in train.inputs]
    n = len(xs[0])
    holder = [0.0]
    used = 0
    with _ema_decay(holder):
        for k, start in enumerate(range(0, n, batch_size)):
            holder[0] = k / (k + 1)
            batch = [x[start:start + batch_size] for x in xs]
            model(batch if len(batch) > 1 else batch[0], training=True)
            used += 1
    return used


class QatStage:
    """The ``qat`` stage: annotate, fake-quantize (prune-preserving after a prune stage), calibrate
    the ranges, fine-tune.

    Example:
        >>> QatStage.kind, QatStage.config.__name__
        ('qat', 'QatConfig')
    """

    kind: ClassVar[str] = "qat"
    config: ClassVar[type] = QatConfig

    def apply(self, model: Any, cfg: QatConfig, ctx: StageContext) -> tuple[Any, dict[str, Any]]:
        from edgekit.convert.stages.sparsity import model_sparsity

        pruned = "prune" in ctx.done
        preserve = pruned if cfg.preserve_sparsity is None else cfg.preserve_sparsity
        chosen, skipped = plan(model, cfg)
        before = model_sparsity(model)
        ctx.say(f"qat: {len(chosen)} layer(s), scheme {'prune-preserving ' if preserve else ''}8-bit"
                + (f"; left float: {', '.join(s['layer'] for s in skipped)}" if skipped else ""))
        wrapped, rep = fine_tune(
            lambda m: prepare(m, cfg, preserve_sparsity=preserve), model, cfg, ctx, [], cfg,
            before_fit=lambda m: {"calibrated_batches": calibrate_ranges(m, ctx.train, batch_size=cfg.fit.batch_size)})
        final = detached(finalize(wrapped), cfg)
        after = model_sparsity(final)
        rep.update({"scheme": "prune_preserve_8bit" if preserve else "default_8bit", "quantized": chosen,
                    "skipped": skipped, "sparsity_before": before, "sparsity_after": after})
        if pruned:
            ctx.say(f"qat: sparsity {before['total']['sparsity']:.1%} before, {after['total']['sparsity']:.1%} after")
        return final, rep
