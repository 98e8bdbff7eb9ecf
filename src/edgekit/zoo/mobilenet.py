"""MobileNetV2 from ``keras.applications``: the real edge CNN (depthwise separable, inverted residuals)."""

from __future__ import annotations

from edgekit.convert.tf_env import keras


def mobilenetv2(input_shape: tuple[int, ...] = (32, 32, 3), classes: int = 10, alpha: float = 0.35,
                bn_momentum: float = 0.9):
    """``keras.applications.MobileNetV2(weights=None)`` at a small width and input, softmax head.

    No pretrained weights: edgekit never downloads at run time, and the zoo trains it from scratch
    on the digits upscaled to 32x32 RGB. Keras sets BatchNormalization momentum to 0.999, tuned
    for ImageNet's hundreds of thousands of steps; with a few hundred steps the moving statistics
    would still be near their initial values and inference accuracy near chance, so the builder
    lowers it to ``bn_momentum`` (saved in the layer config, so it round-trips).

    Args:
        input_shape: ``(H, W, 3)``, H and W at least 32.
        classes: Output classes.
        alpha: Width multiplier (0.35, 0.5, 0.75, 1.0, ...).
        bn_momentum: BatchNormalization momentum for training.

    Example:
        >>> mobilenetv2().count_params() < 500_000  # doctest: +SKIP
        True
    """
    k = keras()
    inputs = k.Input(shape=input_shape, name="image")
    model = k.applications.MobileNetV2(input_tensor=inputs, alpha=alpha, weights=None, classes=classes,
                                       classifier_activation="softmax")
    for layer in model.layers:
        if isinstance(layer, k.layers.BatchNormalization):
            layer.momentum = bn_momentum
    return model
