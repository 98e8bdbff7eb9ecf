"""Build and train zoo models on their bundled data, cached so repeated runs are instant."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Callable

from edgekit.convert._tf import keras
from edgekit.models.registry import get_entry

Progress = Callable[[str], None]

# Bump when a builder or the training recipe changes, so stale cached weights are not reused.
ZOO_VERSION = 2


def cache_dir() -> Path:
    """Where trained zoo models are kept (``$EDGEKIT_CACHE`` or ``~/.cache/edgekit``)."""
    root = os.environ.get("EDGEKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "edgekit")
    return Path(root) / "zoo"


def build_model(name: str, **kwargs):
    """The untrained Keras model of zoo entry ``name``."""
    entry = get_entry(name)
    module, fn = entry.builder.split(":")
    return getattr(importlib.import_module(module), fn)(**kwargs)


def train_model(name: str, *, seed: int = 0, epochs: int | None = None, cache: bool = True, progress: Progress | None = None):
    """Train zoo model ``name`` on its bundled training split, seeded, and return it.

    The result is cached as a ``.keras`` file keyed by name, seed, epochs and :data:`ZOO_VERSION`.

    Example:
        >>> m = train_model("digits-cnn", epochs=1, cache=False)  # doctest: +SKIP
    """
    from edgekit.calibration import open_dataset

    entry = get_entry(name)
    epochs = entry.epochs if epochs is None else int(epochs)
    k = keras()
    path = cache_dir() / f"{name}-seed{seed}-e{epochs}-v{ZOO_VERSION}.keras"
    if cache and path.is_file():
        try:
            return k.saving.load_model(path, compile=True)
        except Exception:  # a corrupt cache entry is retrained, not fatal
            path.unlink(missing_ok=True)

    data = open_dataset(entry.train_data, limit=None, seed=seed)
    k.utils.set_random_seed(seed)
    model = build_model(name)
    model.compile(
        optimizer=k.optimizers.Adam(entry.learning_rate),
        loss=k.losses.SparseCategoricalCrossentropy(from_logits=entry.from_logits),
        metrics=["accuracy"],
    )
    callbacks = []
    if progress is not None:
        callbacks.append(_EpochProgress(k, progress, name, epochs))
    x = data.inputs[0] if data.num_inputs == 1 else list(data.inputs)
    model.fit(x, data.labels, epochs=epochs, batch_size=entry.batch_size, shuffle=True, verbose=0, callbacks=callbacks)
    if cache:
        from edgekit.manifest import atomic_write_bytes

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.keras")
        model.save(tmp)
        atomic_write_bytes(path, tmp.read_bytes())
        tmp.unlink(missing_ok=True)
    return model


def _EpochProgress(k, progress: Progress, name: str, epochs: int):
    class EpochProgress(k.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            progress(
                f"training {name}: epoch {epoch + 1}/{epochs} loss={logs.get('loss', float('nan')):.4f} "
                f"acc={logs.get('accuracy', float('nan')):.4f}"
            )

    return EpochProgress()
