"""Build, train and evaluate zoo models on their bundled data, cached so repeated runs are instant."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekit.cache import cache_dir as _cache_dir
from edgekit.convert.memory import collect_new_only
from edgekit.convert.tf_env import keras
from edgekit.locks import file_lock
from edgekit.registry import load_attr
from edgekit.zoo.registry import ZooEntry, get_entry

Progress = Callable[[str], None]

# Bump when a builder or the training recipe changes, so stale cached weights are not reused.
ZOO_VERSION = 4


def cache_dir() -> Path:
    """Where trained zoo models are kept (``zoo/`` under :func:`edgekit.cache.cache_root`)."""
    return _cache_dir("zoo", create=False)


def cache_path(name: str, seed: int, epochs: int) -> Path:
    """The cache file of one trained zoo model.

    Example:
        >>> cache_path("digits-cnn", 0, 20).name
        'digits-cnn-seed0-e20-v4.keras'
    """
    return cache_dir() / f"{name}-seed{seed}-e{epochs}-v{ZOO_VERSION}.keras"


def register_custom_objects() -> None:
    """Import the zoo modules that define registered custom layers and models.

    A ``.keras`` file of ``resnet-custom`` or ``multitask-subclassed`` names classes such as
    ``edgekit>ResidualBlock``; Keras finds them only once their module is imported.

    Example:
        >>> register_custom_objects()  # doctest: +SKIP
    """
    for module in ("edgekit.zoo.residual", "edgekit.zoo.multi"):
        importlib.import_module(module)


def build_model(name: str, *, seed: int | None = None, **kwargs: Any):
    """The untrained Keras model of zoo entry ``name``; ``seed`` fixes its initial weights.

    Example:
        >>> build_model("digits-small-cnn", seed=0).count_params()  # doctest: +SKIP
        1210
    """
    entry = get_entry(name)
    builder = load_attr(entry.builder)
    if seed is not None:
        keras().utils.set_random_seed(seed)
    return builder(**kwargs)


def train_model(name: str, *, seed: int = 0, epochs: int | None = None, cache: bool = True,
                progress: Progress | None = None):
    """Train zoo model ``name`` on its bundled training split, seeded, and return it.

    The result is cached as a ``.keras`` file keyed by name, seed, epochs and :data:`ZOO_VERSION`.
    Training is deterministic on CPU: the same seed gives bit-identical weights.

    Example:
        >>> m = train_model("digits-cnn", epochs=1, cache=False)  # doctest: +SKIP
    """
    entry = get_entry(name)
    epochs = entry.epochs if epochs is None else int(epochs)
    k = keras()
    path = cache_path(name, seed, epochs)
    if not cache:
        return _train(name, entry, seed, epochs, progress)
    # Another process training the same entry (a second convert, a test worker) finishes first and
    # this one loads its result instead of training again.
    with file_lock(path):
        if path.is_file():
            register_custom_objects()
            try:
                return k.saving.load_model(path, compile=False)
            except Exception:  # a corrupt cache entry is retrained, not fatal
                path.unlink(missing_ok=True)
        model = _train(name, entry, seed, epochs, progress)
        from edgekit.manifest import atomic_write_bytes

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.keras")
        _save_without_optimizer(model, tmp)
        atomic_write_bytes(path, tmp.read_bytes())
        tmp.unlink(missing_ok=True)
    return model


def _save_without_optimizer(model: Any, path: Path) -> None:
    """Save ``model`` without its optimizer state; the caller's model keeps its optimizer.

    The cache is loaded with ``compile=False``, so Adam's two slots per weight, two thirds of
    the file, were never read: cifar10-cnn 15.1 MB -> 5.0 MB, resnet-custom 301 KB -> 129 KB.
    """
    optimizer = getattr(model, "optimizer", None)
    model.optimizer = None  # Keras saves an optimizer only when the model holds one
    try:
        model.save(path)
    finally:
        model.optimizer = optimizer


def _train(name: str, entry: ZooEntry, seed: int, epochs: int, progress: Progress | None):
    from edgekit.calibration import open_dataset

    k = keras()
    data = open_dataset(entry.train_data, limit=None, seed=seed)
    model = build_model(name, seed=seed)
    callbacks = [] if progress is None else [_EpochProgress(k, progress, name, epochs)]
    with collect_new_only():  # fit's automatic collections skip TensorFlow's own objects: 5-10 % faster
        load_attr(entry.trainer)(model, entry, data, epochs=epochs, callbacks=callbacks)
    return model


def _train_job(job: tuple[str, int]) -> str:
    """Train one model into the cache in a worker process (module level, so it pickles)."""
    name, seed = job
    train_model(name, seed=seed)
    return name


def pretrain(names: list[str] | None = None, *, seed: int = 0, workers: int = 2,
             progress: Progress | None = None) -> None:
    """Train zoo models into the cache, ``workers`` at a time in spawned processes (default epochs).

    Small models leave a core idle and tracing is single-threaded, so two processes on two cores
    train the zoo faster than one; :func:`train_model` then loads them from the cache.

    Example:
        >>> pretrain(["mnist-mlp", "digits-small-cnn"], workers=2)  # doctest: +SKIP
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from edgekit.zoo.registry import zoo_names

    names = [n for n in (names or zoo_names()) if not cache_path(n, seed, get_entry(n).epochs).is_file()]
    if not names:
        return
    if workers <= 1:
        for name in names:
            train_model(name, seed=seed, progress=progress)
        return
    # spawn, not fork: TensorFlow's threads do not survive a fork of a process that has imported it.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for name in pool.map(_train_job, [(n, seed) for n in names]):
            if progress:
                progress(f"trained {name}")


def fit_classifier(model: Any, entry: ZooEntry, data: Any, *, epochs: int, callbacks: list[Any]) -> None:
    """The default trainer hook: Adam + sparse categorical cross-entropy on the class labels.

    Example:
        >>> fit_classifier(model, get_entry("digits-cnn"), digits("train"), epochs=1, callbacks=[])  # doctest: +SKIP
    """
    k = keras()
    model.compile(
        optimizer=optimizer(entry, len(data), epochs),
        loss=k.losses.SparseCategoricalCrossentropy(from_logits=entry.from_logits),
        metrics=["accuracy"],
    )
    x = data.inputs[0] if data.num_inputs == 1 else list(data.inputs)
    model.fit(x, data.labels, epochs=epochs, batch_size=entry.batch_size, shuffle=True, verbose=0, callbacks=callbacks)


def optimizer(entry: ZooEntry, samples: int, epochs: int) -> Any:
    """Adam at the entry's learning rate, constant or cosine-decayed to zero over all the steps.

    Example:
        >>> optimizer(get_entry("text-gru"), 1258, 20).learning_rate  # doctest: +SKIP
    """
    k = keras()
    lr: Any = entry.learning_rate
    if entry.schedule == "cosine":
        steps = max(1, epochs * -(-samples // entry.batch_size))
        lr = k.optimizers.schedules.CosineDecay(entry.learning_rate, steps)
    return k.optimizers.Adam(lr)


def evaluate(name: str, model: Any, *, split: str = "eval") -> dict[str, Any]:
    """Accuracy (%) of a zoo model on a split of its data, plus ``ink_mae`` for models with an ink head.

    Example:
        >>> evaluate("digits-cnn", train_model("digits-cnn"))["accuracy"] > 90  # doctest: +SKIP
        True
    """
    from edgekit.calibration import open_dataset
    from edgekit.calibration.digit_forms import ink

    entry = get_entry(name)
    spec = entry.eval_data.replace("digits:eval", f"digits:{split}", 1)
    data = open_dataset(spec, limit=None)
    outs = predict(model, data.inputs)
    result: dict[str, Any] = {"eval_data": spec, "samples": len(data)}
    logits = next(o for o in outs.values() if o.ndim == 2 and o.shape[1] > 1)
    result["accuracy"] = round(float(np.mean(np.argmax(logits, axis=1) == data.labels)) * 100.0, 2)
    if "ink" in outs:
        result["ink_mae"] = round(float(np.mean(np.abs(outs["ink"] - ink(data.inputs[0])))), 5)
    return result


def predict(model: Any, inputs: tuple[np.ndarray, ...], batch_size: int = 256) -> dict[str, np.ndarray]:
    """``{output name: array}`` of a Keras model in inference mode (dict, list or single outputs).

    Example:
        >>> sorted(predict(train_model("multi-output"), digits("eval").inputs))  # doctest: +SKIP
        ['digit', 'ink']
    """
    chunks: list[dict[str, np.ndarray]] = []
    for start in range(0, len(inputs[0]), batch_size):
        batch = [x[start : start + batch_size] for x in inputs]
        out = model(batch if len(batch) > 1 else batch[0], training=False)
        if isinstance(out, dict):
            named = dict(out)
        elif isinstance(out, (list, tuple)):
            names = list(getattr(model, "output_names", None) or [])
            if len(names) != len(out) or len(set(names)) != len(names):
                names = [f"output_{i}" for i in range(len(out))]
            named = dict(zip(names, out))
        else:
            named = {"output": out}
        chunks.append({k: np.asarray(v) for k, v in named.items()})
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _EpochProgress(k, progress: Progress, name: str, epochs: int):
    class EpochProgress(k.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            acc = logs.get("accuracy", logs.get("digit_accuracy", float("nan")))
            progress(f"training {name}: epoch {epoch + 1}/{epochs} loss={logs.get('loss', float('nan')):.4f} "
                     f"acc={acc:.4f}")

    return EpochProgress()
