"""What the zoo holds: one :class:`ZooEntry` per name, no TensorFlow import."""

from __future__ import annotations

from dataclasses import dataclass

from edgekit._lazy import did_you_mean
from edgekit.errors import ModelError


@dataclass(frozen=True)
class ZooEntry:
    """A zoo model: how to build it and which bundled data trains, calibrates and evaluates it.

    Attributes:
        name: Zoo name used on the command line, e.g. ``"digits-cnn"``.
        builder: Lazy ``"module:function"`` returning an uncompiled Keras 3 model.
        description: One line for ``edgekit zoo list``.
        train_data: Data spec (see :func:`edgekit.calibration.open_dataset`) used to train it.
        calib_data: Default representative data for int8 calibration.
        eval_data: Default held-out data for validation and bench accuracy.
        epochs: Default training epochs.
        batch_size: Training batch size.
        learning_rate: Adam learning rate.
        from_logits: Whether the classifier emits logits (loss is built to match).
    """

    name: str
    builder: str
    description: str
    train_data: str
    calib_data: str
    eval_data: str
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    from_logits: bool = True


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry(
            name="digits-cnn",
            builder="edgekit.models.digits:digits_cnn",
            description="8x8 digit classifier: Conv16-Conv64-MaxPool-Dense256-Dense10 (logits), ~160k params",
            train_data="digits:train",
            calib_data="digits:calib",
            eval_data="digits:eval",
            epochs=20,
        ),
    )
}


def zoo_names() -> list[str]:
    """Sorted zoo names."""
    return sorted(ZOO)


def get_entry(name: str) -> ZooEntry:
    """The entry for ``name``; :class:`ModelError` with close matches when unknown."""
    try:
        return ZOO[name]
    except KeyError:
        raise ModelError(f"unknown zoo model {name!r}{did_you_mean(name, ZOO)}; the zoo has {zoo_names()}") from None
