"""Fine-tuning for the stages: strategy, loss, optimiser and a seeded ``fit`` on a :class:`Dataset`.

Distribution follows ``FitConfig.strategy``:

* ``default``: ``tf.distribute.get_strategy()``, one device.
* ``mirrored``: ``MirroredStrategy()``, every local GPU (the CPU when there is none).
* ``multi_worker``: ``MultiWorkerMirroredStrategy()`` over the hosts in ``TF_CONFIG``. TensorFlow
  insists it is created before anything else runs ("Collective ops must be configured at program
  startup"), so :func:`early_strategies` makes it first thing in ``convert``. Every worker runs the
  same ``edgekit convert`` command; each writes its own output folder.

The model must be built *inside* ``strategy.scope()`` (its variables are created there), so
:func:`apply_stages` clones and wraps under :func:`strategy_for`'s scope, then calls :func:`fit`.

Loss: the recipe's, else the source model's compile state, else guessed from the labels and the
model's outputs (integer labels + several outputs -> sparse categorical cross-entropy; rows that are
probabilities -> ``from_logits=False``, anything else -> logits).

Example:
    >>> strategy = strategy_for(FitConfig())  # doctest: +SKIP
    >>> history = fit(model, train, FitConfig(epochs=1), loss_spec, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from edgekit.calibration import Dataset
from edgekit.convert.tf_env import tf, tf_keras
from edgekit.convert.stages.base import StageContext
from edgekit.convert.stages.config import FitConfig
from edgekit.errors import DataError, RecipeError, UnsupportedError

Progress = Callable[[str], None]
_STRATEGIES: dict[str, Any] = {}
_CROSS_ENTROPY = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy")


def early_strategies(configs: Sequence[FitConfig]) -> None:
    """Create a multi-worker strategy now if any stage needs one (before TensorFlow runs anything).

    Example:
        >>> early_strategies([FitConfig()])  # nothing to do for the default strategy
    """
    if any(c.strategy == "multi_worker" for c in configs):
        strategy_for(FitConfig(strategy="multi_worker"))


def strategy_for(cfg: FitConfig) -> Any:
    """The ``tf.distribute`` strategy for ``cfg.strategy`` (created once per process).

    Raises:
        RecipeError: ``multi_worker`` without a usable ``TF_CONFIG``, or created too late.

    Example:
        >>> strategy_for(FitConfig(strategy="mirrored")).num_replicas_in_sync >= 1  # doctest: +SKIP
        True
    """
    t = tf()
    if cfg.strategy == "default":
        return t.distribute.get_strategy()
    if cfg.strategy not in _STRATEGIES:
        if cfg.strategy == "mirrored":
            _STRATEGIES["mirrored"] = t.distribute.MirroredStrategy()
        else:
            _check_tf_config()
            try:
                _STRATEGIES["multi_worker"] = t.distribute.MultiWorkerMirroredStrategy()
            except RuntimeError as exc:
                raise RecipeError(
                    f"strategy multi_worker must be created before TensorFlow runs anything ({exc}): run "
                    "'edgekit convert' (or convert()) in a fresh process on every worker"
                ) from None
    return _STRATEGIES[cfg.strategy]


def _check_tf_config() -> None:
    raw = os.environ.get("TF_CONFIG")
    example = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
    if not raw:
        raise RecipeError(f"strategy multi_worker needs TF_CONFIG describing the cluster and this worker, e.g. {example}")
    try:
        conf = json.loads(raw)
        ok = isinstance(conf, dict) and "cluster" in conf and "task" in conf
    except ValueError:
        ok = False
    if not ok:
        raise RecipeError(f"TF_CONFIG is not JSON with 'cluster' and 'task' keys (got {raw[:80]!r}), e.g. {example}")


@dataclass(frozen=True)
class LossSpec:
    """Which loss to fine-tune with, and where that choice came from (for the report)."""

    name: str
    from_logits: bool | None
    origin: str

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.name, "from_logits": self.from_logits, "from": self.origin}


def compiled_loss(model: Any) -> tuple[str, bool | None] | None:
    """``(loss name, from_logits)`` from a Keras 3 or tf_keras model's compile state, if known.

    Example:
        >>> compiled_loss(zoo_model)  # doctest: +SKIP
        ('sparse_categorical_crossentropy', True)
    """
    loss = getattr(model, "loss", None)
    if loss is None or isinstance(loss, (list, tuple, dict)):
        return None
    if isinstance(loss, str):
        name = loss
        from_logits = None
    else:
        cls = type(loss).__name__
        if cls in ("LossFunctionWrapper", "function"):
            fn = getattr(loss, "fn", loss)
            name = getattr(fn, "__name__", "")
        else:
            name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls).lower()
        cfg = loss.get_config() if hasattr(loss, "get_config") else {}
        from_logits = cfg.get("from_logits") if isinstance(cfg, dict) else None
    name = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}.get(name, name)
    return (name, from_logits) if name in _CROSS_ENTROPY + ("mean_squared_error", "mean_absolute_error", "huber") else None


def resolve_loss(cfg: FitConfig, source_model: Any, model: Any, train: Dataset) -> LossSpec:
    """Decide the loss: the recipe's, the source's compile state, or a guess from labels and outputs.

    Raises:
        DataError: No labels, or labels that fit no loss for this output.
        UnsupportedError: A model with several outputs (one label array cannot train them).

    Example:
        >>> resolve_loss(FitConfig(), zoo_model, k2_model, digits("train"))  # doctest: +SKIP
        LossSpec(name='sparse_categorical_crossentropy', from_logits=True, origin='model compile state')
    """
    if train.labels is None:
        raise DataError(f"training data {train.name} has no labels: stages fine-tune on labelled data "
                        "(npz with x and y, image folders with class sub-folders, or 'digits:train')")
    if len(model.outputs) != 1:
        raise UnsupportedError(f"fine-tuning supports single-output models; {model.name!r} has {len(model.outputs)} outputs")
    if cfg.loss != "auto":
        name, origin, from_logits = cfg.loss, "recipe", cfg.from_logits
    else:
        known = compiled_loss(source_model)
        if known:
            (name, from_logits), origin = known, "model compile state"
        else:
            name, origin, from_logits = _guess_loss(model, train), "labels and model output", None
        if cfg.from_logits is not None:
            from_logits = cfg.from_logits
    if name in _CROSS_ENTROPY and from_logits is None:
        from_logits = not _looks_like_probabilities(model, train, name)
    if name not in _CROSS_ENTROPY:
        from_logits = None
    return LossSpec(name, from_logits, origin)


def _guess_loss(model: Any, train: Dataset) -> str:
    out_dim = model.outputs[0].shape[-1]
    y = train.labels
    if y.ndim == 1 and y.dtype.kind in "iu":
        if out_dim and out_dim > 1:
            return "sparse_categorical_crossentropy"
        if out_dim == 1 and set(np.unique(y)) <= {0, 1}:
            return "binary_crossentropy"
    if y.ndim == 2 and y.shape[1] == out_dim and out_dim > 1 and np.allclose(y.sum(axis=1), 1.0):
        return "categorical_crossentropy"
    if y.dtype.kind == "f":
        return "mean_squared_error"
    raise DataError(
        f"cannot infer a loss for labels {y.shape} {y.dtype} and output width {out_dim}: set it in the recipe, "
        "e.g. fit: {loss: sparse_categorical_crossentropy}"
    )


def _looks_like_probabilities(model: Any, train: Dataset, name: str) -> bool:
    xs = [x[:64] for x in train.inputs]
    out = np.asarray(model(xs if len(xs) > 1 else xs[0], training=False), np.float64)
    if out.min() < 0.0 or out.max() > 1.0:
        return False
    if name == "binary_crossentropy":
        return True
    return bool(np.allclose(out.sum(axis=-1), 1.0, atol=1e-3))


def compile_model(model: Any, cfg: FitConfig, loss: LossSpec) -> None:
    """Compile ``model`` for fine-tuning (call inside the strategy's scope).

    Example:
        >>> with strategy_for(cfg).scope():  # doctest: +SKIP
        ...     compile_model(model, cfg, LossSpec("sparse_categorical_crossentropy", True, "recipe"))
    """
    k2 = tf_keras()
    opt = {"adam": k2.optimizers.Adam, "sgd": k2.optimizers.SGD, "rmsprop": k2.optimizers.RMSprop}[cfg.optimizer]
    classes = {
        "sparse_categorical_crossentropy": k2.losses.SparseCategoricalCrossentropy,
        "categorical_crossentropy": k2.losses.CategoricalCrossentropy,
        "binary_crossentropy": k2.losses.BinaryCrossentropy,
        "mean_squared_error": k2.losses.MeanSquaredError,
        "mean_absolute_error": k2.losses.MeanAbsoluteError,
        "huber": k2.losses.Huber,
    }
    kw = {"from_logits": loss.from_logits} if loss.name in _CROSS_ENTROPY else {}
    metrics = ["accuracy"] if loss.name in _CROSS_ENTROPY else []
    model.compile(optimizer=opt(learning_rate=cfg.learning_rate), loss=classes[loss.name](**kw), metrics=metrics)


def steps_per_epoch(n: int, cfg: FitConfig) -> int:
    """Optimizer steps in one epoch of ``n`` samples (the last batch may be short).

    Example:
        >>> steps_per_epoch(1258, FitConfig(batch_size=32))
        40
    """
    return max(1, math.ceil(n / cfg.batch_size))


def fit(model: Any, train: Dataset, cfg: FitConfig, *, seed: int, callbacks: Sequence[Any] = (),
        progress: Progress | None = None, label: str = "fit") -> dict[str, Any]:
    """Fine-tune a compiled model on ``train`` for ``cfg.epochs``; returns per-epoch loss/accuracy.

    Shuffling is seeded (``seed``), and the global seed is set before the first step, so the same
    recipe on the same data gives the same weights.

    Example:
        >>> fit(model, digits("train"), FitConfig(epochs=1), seed=0)  # doctest: +SKIP
        {'loss': [0.0612], 'accuracy': [0.9889]}
    """
    t = tf()
    x = tuple(train.inputs) if train.num_inputs > 1 else train.inputs[0]
    ds = t.data.Dataset.from_tensor_slices((x, train.labels))
    ds = ds.shuffle(len(train), seed=seed, reshuffle_each_iteration=True).batch(cfg.batch_size)
    options = t.data.Options()
    # Rows, not files: let multi-worker training shard the data itself.
    options.experimental_distribute.auto_shard_policy = t.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    ds = ds.with_options(options)
    cbs = list(callbacks)
    if progress is not None:
        cbs.append(_EpochProgress(progress, label, cfg.epochs))
    history = model.fit(ds, epochs=cfg.epochs, verbose=0, callbacks=cbs)
    return {k: [round(float(v), 5) for v in vals] for k, vals in history.history.items()}


def _EpochProgress(progress: Progress, label: str, epochs: int) -> Any:
    k2 = tf_keras()

    class EpochProgress(k2.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            extra = f" acc={logs['accuracy']:.4f}" if "accuracy" in logs else ""
            progress(f"{label}: epoch {epoch + 1}/{epochs} loss={logs.get('loss', float('nan')):.4f}{extra}")

    return EpochProgress()


def fine_tune(prepare: Callable[[Any], Any], model: Any, cfg: Any, ctx: StageContext, callbacks: list[Any],
              cfg_for_report: Any, before_fit: Callable[[Any], Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Clone, prepare and compile under the fit strategy, then fine-tune: what every stage shares.

    Args:
        prepare: Wraps a clone of ``model`` (tfmot's prune/quantize wrappers).
        model: The model so far (not modified).
        cfg: The stage config (its ``fit`` and ``kind``).
        ctx: The stage context.
        callbacks: Keras callbacks for ``fit``.
        cfg_for_report: The config as recorded (e.g. with resolved pruning steps).
        before_fit: Runs on the prepared model before fitting; its dict joins the report.

    Returns:
        The fine-tuned, still wrapped model and the stage's report.
    """
    from edgekit.convert.stages.keras2 import clone

    k2 = tf_keras()
    strategy = strategy_for(cfg.fit)
    loss = resolve_loss(cfg.fit, ctx.source_model, model, ctx.train)
    k2.utils.set_random_seed(ctx.seed)  # same recipe, same data -> same weights
    with strategy.scope():  # variables must be created under the strategy that trains them
        prepared = prepare(clone(model))
        compile_model(prepared, cfg.fit, loss)
    extra = before_fit(prepared) if before_fit is not None else {}
    ctx.say(f"{cfg.kind}: fine-tuning {cfg.fit.epochs} epoch(s) on {len(ctx.train)} samples "
            f"({loss.name}{', logits' if loss.from_logits else ''}; {cfg.fit.strategy} strategy, "
            f"{strategy.num_replicas_in_sync} replica(s))")
    history = fit(prepared, ctx.train, cfg.fit, seed=ctx.seed, callbacks=callbacks, progress=ctx.say,
                          label=cfg.kind)
    rep = {
        "config": cfg_for_report.to_value()[cfg.kind],
        "loss": loss.to_dict(),
        "strategy": {"name": cfg.fit.strategy, "class": type(strategy).__name__,
                     "replicas": int(strategy.num_replicas_in_sync)},
        "history": history,
        **extra,
    }
    return prepared, rep


def detached(model: Any, cfg: Any) -> Any:
    """``model`` with plain variables again when a distribution strategy trained it."""
    if cfg.fit.strategy == "default":
        return model
    from edgekit.convert.stages.keras2 import clone

    return clone(model)
