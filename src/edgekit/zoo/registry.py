"""What the zoo holds: one :class:`ZooEntry` per name, no TensorFlow import."""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.registry import did_you_mean
from edgekit.errors import ModelError


# What the zoo trains on, in words (`edgekit zoo list` prints it: no model hides its data).
DIGITS = "digits (8x8 grey, scikit-learn's bundled set)"
CLASSIFIER = "edgekit.zoo.training:fit_classifier"
SCHEDULES = ("constant", "cosine")
UNROLLED = "edgekit.zoo.text:fit_unrolled"  # trains the loop twin of an unrolled RNN (faster to trace)

Input = tuple[str, tuple[int, ...], str]  # (name, per-sample shape, dtype)


@dataclass(frozen=True)
class ZooEntry:
    """A zoo model: how to build and train it, which bundled data trains, calibrates and evaluates it.

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
        inputs: The model's inputs as ``(name, per-sample shape, dtype)``, in order. Documents the
            builder and lets edgekit wrap a subclassed model, which has no ``inputs`` of its own.
        data: What the data is, in words (e.g. that CIFAR-10 is not bundled).
        trainer: Lazy ``"module:function"`` that compiles and fits the model:
            ``fn(model, entry, data, *, epochs, callbacks)``; the default trains a classifier.
        schedule: ``"constant"`` learning rate, or ``"cosine"`` decay to zero over the training
            (steadier final accuracy for the recurrent models and MobileNetV2).
        min_accuracy: Eval accuracy (%) the default training reaches at seed 0 or better (measured,
            and held by the test suite).

    Example:
        >>> get_entry("text-lstm").inputs
        (('tokens', (64,), 'int32'),)
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
    inputs: tuple[Input, ...] = (("image", (8, 8, 1), "float32"),)
    data: str = DIGITS
    trainer: str = CLASSIFIER
    schedule: str = "constant"
    min_accuracy: float = 90.0

    def __post_init__(self) -> None:
        for spec in (self.builder, self.trainer):
            if spec.count(":") != 1:
                raise ModelError(f"zoo entry {self.name!r}: {spec!r} is not a lazy 'module:function' string")
        if self.schedule not in SCHEDULES:
            raise ModelError(f"zoo entry {self.name!r}: schedule {self.schedule!r} is not one of {list(SCHEDULES)}")


def _digits(name: str, builder: str, description: str, form: str = "", **kw) -> ZooEntry:
    """An entry trained on the digits splits in one ``form`` (e.g. ``":28x28:flat"``)."""
    return ZooEntry(name=name, builder=builder, description=description, train_data=f"digits:train{form}",
                    calib_data=f"digits:calib{form}", eval_data=f"digits:eval{form}", **kw)


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        _digits("digits-cnn", "edgekit.zoo.digits:digits_cnn",
                "8x8 digit classifier: Conv16-Conv64-MaxPool-Dense256-Dense10 (logits), ~160k params", epochs=20),
        _digits("mnist-mlp", "edgekit.zoo.mlp:mnist_mlp",
                "classic MNIST MLP 784-128-64-10 with dropout (logits)", ":28x28:flat",
                inputs=(("pixels", (784,), "float32"),), data="digits upscaled to 28x28, flattened (MNIST is not bundled)",
                epochs=10),
        _digits("digits-small-cnn", "edgekit.zoo.cnn:digits_small_cnn",
                "small digit CNN: Reshape-Conv12-MaxPool-Flatten-Dense10 (logits) on the flat 64 pixels", ":flat",
                inputs=(("pixels", (64,), "float32"),), data="digits, flat 64-pixel vectors", epochs=12,
                learning_rate=3e-3),
        _digits("cifar10-cnn", "edgekit.zoo.cnn:cifar10_cnn",
                "Keras CIFAR-10 CNN: 2x (Conv-Conv-MaxPool-Dropout), Dense512, softmax", ":32x32:rgb",
                inputs=(("image", (32, 32, 3), "float32"),), from_logits=False, epochs=3,
                data="digits upscaled to 32x32 RGB (CIFAR-10 is not bundled)"),
        _digits("vgg-bn", "edgekit.zoo.cnn:vgg_bn",
                "VGG-style: 3x (Conv-BN-ReLU x2, MaxPool), GlobalAveragePooling, Dense10 (logits)", ":16x16",
                inputs=(("image", (16, 16, 1), "float32"),), data="digits upscaled to 16x16", epochs=8, schedule="cosine"),
        _digits("resnet-custom", "edgekit.zoo.residual:resnet_custom",
                "residual net from a custom ResidualBlock layer and a CustomDense head (logits)", epochs=10),
        _digits("multi-input", "edgekit.zoo.multi:multi_input",
                "Functional 2 inputs: image branch (conv) + metadata branch (dense), concatenated (logits)", ":meta",
                inputs=(("image", (8, 8, 1), "float32"), ("meta", (6,), "float32")),
                data="digits + 6 metadata features of each image (ink mean/std, half-image means)", epochs=8),
        _digits("multi-output", "edgekit.zoo.multi:multi_output",
                "Functional 2 outputs: shared conv trunk; digit (10 logits) + ink regression (1)",
                data="digits; second target: ink = mean pixel intensity", epochs=12,
                trainer="edgekit.zoo.multi:fit_multitask"),
        _digits("multitask-subclassed", "edgekit.zoo.multi:multitask_subclassed",
                "subclassed keras.Model, 2 heads: digit (10 logits) + ink regression (1)",
                data="digits; second target: ink = mean pixel intensity", epochs=12,
                trainer="edgekit.zoo.multi:fit_multitask"),
        _digits("text-lstm", "edgekit.zoo.text:text_lstm",
                "text classifier: Embedding-LSTM64 (unrolled)-Dense10 (logits) over 64 tokens", ":tokens",
                inputs=(("tokens", (64,), "int32"),), data="digits as 64 tokens (pixel values 0..16, raster order)",
                epochs=20, learning_rate=1e-2, schedule="cosine", min_accuracy=88.0, trainer=UNROLLED),
        _digits("text-gru", "edgekit.zoo.text:text_gru",
                "text classifier: Embedding-GRU64 (unrolled)-Dense10 (logits) over 64 tokens", ":tokens",
                inputs=(("tokens", (64,), "int32"),), data="digits as 64 tokens (pixel values 0..16, raster order)",
                epochs=24, learning_rate=1e-2, schedule="cosine", min_accuracy=88.0, trainer=UNROLLED),
        _digits("mobilenetv2", "edgekit.zoo.mobilenet:mobilenetv2",
                "keras.applications MobileNetV2, alpha 0.35, weights=None, softmax", ":32x32:rgb",
                inputs=(("image", (32, 32, 3), "float32"),), from_logits=False, epochs=10, learning_rate=3e-3,
                schedule="cosine", min_accuracy=88.0, data="digits upscaled to 32x32 RGB (CIFAR-10 is not bundled)"),
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
