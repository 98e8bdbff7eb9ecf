"""Several inputs or several outputs: Functional multi-input / multi-output models and a subclassed
multi-task ``keras.Model``.

The second input is real metadata of each digit (:func:`edgekit.calibration.digit_forms.metadata`)
and the second output regresses a real target, the digit's "ink" (mean pixel intensity,
:func:`edgekit.calibration.digit_forms.ink`), so every head is trained and validated on real data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.convert.tf_env import keras as _keras

keras = _keras()  # DigitMultitask subclasses keras.Model, so the module needs Keras at import

DIGIT, INK = "digit", "ink"
# Mean and spread of ink on digits:train. The ink heads predict a standardized value and rescale it:
# raw ink varies by only ~0.03, too little gradient for a head that shares its features with the
# classifier (measured: worse than predicting the mean without this).
INK_MEAN, INK_STD = 0.305, 0.034


def multi_input(input_shape: tuple[int, ...] = (8, 8, 1), classes: int = 10, meta_features: int = 6):
    """Functional model: a conv image branch and a dense metadata branch, concatenated, logits.

    Args:
        input_shape: Image ``(H, W, C)``.
        classes: Output classes.
        meta_features: Length of the metadata vector (the second input).

    Example:
        >>> [tuple(t.shape) for t in multi_input().inputs]  # doctest: +SKIP
        [(None, 8, 8, 1), (None, 6)]
    """
    image = keras.Input(shape=input_shape, name="image")
    meta = keras.Input(shape=(meta_features,), name="meta")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(image)
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    m = keras.layers.Dense(16, activation="relu", name="meta_dense")(meta)
    x = keras.layers.Concatenate(name="concat")([x, m])
    x = keras.layers.Dense(64, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model([image, meta], outputs, name="multi_input")


def multi_output(input_shape: tuple[int, ...] = (8, 8, 1), classes: int = 10):
    """Functional model: a shared conv trunk, a classification head (``digit``, logits) and a
    regression head (``ink``, mean pixel intensity).

    Example:
        >>> multi_output().output_names  # doctest: +SKIP
        ['digit', 'ink']
    """
    image = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(image)
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    features = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="hidden")(features)
    digit = keras.layers.Dense(classes, name=DIGIT)(x)
    # The regression head reads the shared conv features directly: through the classifier's
    # hidden layer it competes with the digit head and learns ink poorly (measured).
    ink = keras.layers.Rescaling(INK_STD, offset=INK_MEAN, name=INK)(keras.layers.Dense(1, name="ink_z")(features))
    return keras.Model(image, [digit, ink], name="multi_output")


@keras.saving.register_keras_serializable(package="edgekit")
class DigitMultitask(keras.Model):
    """A subclassed multi-task model: ``call`` returns ``{"digit": logits, "ink": (N, 1)}``.

    Subclassed models have no ``inputs`` until wrapped: edgekit wraps them in a functional model
    from the zoo's input spec or the shape Keras recorded when the model was built (see
    :func:`edgekit.convert.source.from_keras`).

    Args:
        classes: Classes of the ``digit`` head.
        filters: Convolution filters of the trunk.
        hidden: Units of the digit head's hidden layer.

    Example:
        >>> m = DigitMultitask()  # doctest: +SKIP
        >>> sorted(m(np.zeros((2, 8, 8, 1), "float32")))  # doctest: +SKIP
        ['digit', 'ink']
    """

    def __init__(self, classes: int = 10, filters: int = 16, hidden: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.classes, self.filters, self.hidden = int(classes), int(filters), int(hidden)
        self.conv = keras.layers.Conv2D(self.filters, 3, padding="same", activation="relu", name="conv")
        self.pool = keras.layers.MaxPooling2D(2, name="pool")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.hidden_layer = keras.layers.Dense(self.hidden, activation="relu", name="hidden")
        self.digit_head = keras.layers.Dense(self.classes, name="digit_head")
        self.ink_head = keras.layers.Dense(1, name="ink_head")
        self.ink_scale = keras.layers.Rescaling(INK_STD, offset=INK_MEAN, name="ink_scale")

    def call(self, x, training=None):
        features = self.flatten(self.pool(self.conv(x)))
        return {DIGIT: self.digit_head(self.hidden_layer(features)), INK: self.ink_scale(self.ink_head(features))}

    def get_config(self):
        return {**super().get_config(), "classes": self.classes, "filters": self.filters, "hidden": self.hidden}


def multitask_subclassed(input_shape: tuple[int, ...] = (8, 8, 1), classes: int = 10):
    """A built :class:`DigitMultitask` (called once on zeros, so Keras records its input shape).

    Example:
        >>> hasattr(multitask_subclassed(), "inputs")  # doctest: +SKIP
        False
    """
    model = DigitMultitask(classes=classes, name="multitask_subclassed")
    model(np.zeros((1, *input_shape), np.float32))
    return model


def fit_multitask(model: Any, entry: Any, data: Any, *, epochs: int, callbacks: list[Any]) -> None:
    """Trainer hook: cross-entropy on ``digit`` plus mean squared error on ``ink``.

    The ``ink`` target is computed from the training images themselves, so it needs no extra file.

    Example:
        >>> fit_multitask(model, get_entry("multi-output"), digits("train"), epochs=1, callbacks=[])  # doctest: +SKIP
    """
    from edgekit.calibration.digit_forms import ink
    from edgekit.zoo.training import optimizer

    x = data.inputs[0] if data.num_inputs == 1 else list(data.inputs)
    model.compile(
        optimizer=optimizer(entry, len(data), epochs),
        loss={DIGIT: keras.losses.SparseCategoricalCrossentropy(from_logits=entry.from_logits), INK: "mse"},
        # 1 / std^2: the ink loss in standardized units, on a par with the cross-entropy.
        loss_weights={DIGIT: 1.0, INK: 1.0 / INK_STD**2},
        metrics={DIGIT: ["accuracy"], INK: ["mae"]},
    )
    y = {DIGIT: data.labels, INK: ink(data.inputs[0])}
    model.fit(x, y, epochs=epochs, batch_size=entry.batch_size, shuffle=True, verbose=0, callbacks=callbacks)
