"""Plain convolutional networks from the tutorials: the small digit CNN, the CIFAR-10 CNN, VGG with BN."""

from __future__ import annotations

from edgekit.convert.tf_env import keras


def digits_small_cnn(input_shape: tuple[int, ...] = (64,), classes: int = 10, image_shape: tuple[int, int, int] = (8, 8, 1),
                     filters: int = 12):
    """Reshape -> Conv2D(12, 3) -> MaxPool -> Flatten -> Dense(10), emitting logits.

    It takes the flat 64-pixel vector scikit-learn stores and reshapes it inside the model, so the
    converters see a Reshape at the input (a common source of layout bugs in NCHW converters).

    Args:
        input_shape: Flat per-sample shape; must hold ``prod(image_shape)`` values.
        classes: Output classes.
        image_shape: ``(H, W, C)`` the vector is reshaped to.
        filters: Convolution filters.

    Example:
        >>> digits_small_cnn().count_params()  # doctest: +SKIP
        1210
    """
    k = keras()
    inputs = k.Input(shape=input_shape, name="pixels")
    x = k.layers.Reshape(image_shape, name="to_image")(inputs)
    x = k.layers.Conv2D(filters, 3, activation="relu", name="conv")(x)
    x = k.layers.MaxPooling2D(2, name="pool")(x)
    x = k.layers.Flatten(name="flatten")(x)
    outputs = k.layers.Dense(classes, name="logits")(x)
    return k.Model(inputs, outputs, name="digits_small_cnn")


def cifar10_cnn(input_shape: tuple[int, ...] = (32, 32, 3), classes: int = 10, filters: tuple[int, int] = (32, 64),
                dense: int = 512):
    """The Keras CIFAR-10 CNN: two Conv-Conv-MaxPool-Dropout blocks, Dense 512, softmax.

    CIFAR-10 is not bundled (no downloads at run time): the zoo trains it on the digits upscaled to
    32x32 with three identical channels (``digits:train:32x32:rgb``), which keeps its shapes, ops and
    size exactly those of the tutorial model.

    Args:
        input_shape: ``(H, W, C)``; H and W at least 12 (two valid 3x3 convolutions and two pools).
        classes: Output classes.
        filters: Filters of the first and second block.
        dense: Units of the hidden dense layer.

    Example:
        >>> cifar10_cnn().count_params()  # doctest: +SKIP
        1250858
    """
    k = keras()
    inputs = k.Input(shape=input_shape, name="image")
    x = inputs
    for b, f in enumerate(filters, 1):
        x = k.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"block{b}_conv1")(x)
        x = k.layers.Conv2D(f, 3, activation="relu", name=f"block{b}_conv2")(x)
        x = k.layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
        x = k.layers.Dropout(0.25, name=f"block{b}_dropout")(x)
    x = k.layers.Flatten(name="flatten")(x)
    x = k.layers.Dense(dense, activation="relu", name="dense")(x)
    x = k.layers.Dropout(0.5, name="dropout")(x)
    outputs = k.layers.Dense(classes, activation="softmax", name="probs")(x)
    return k.Model(inputs, outputs, name="cifar10_cnn")


def vgg_bn(input_shape: tuple[int, ...] = (16, 16, 1), classes: int = 10, filters: tuple[int, ...] = (16, 32, 64)):
    """VGG-style blocks (Conv-BN-ReLU twice, then MaxPool) and a GlobalAveragePooling head, logits.

    BatchNormalization is what converters fold into the convolutions; GlobalAveragePooling instead
    of Flatten keeps the head independent of the input size.

    Args:
        input_shape: ``(H, W, C)``, H and W divisible by ``2 ** len(filters)``.
        classes: Output classes.
        filters: Filters per block.

    Example:
        >>> vgg_bn().output_shape  # doctest: +SKIP
        (None, 10)
    """
    k = keras()
    inputs = k.Input(shape=input_shape, name="image")
    x = inputs
    for b, f in enumerate(filters, 1):
        for c in (1, 2):
            x = k.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"block{b}_conv{c}")(x)
            x = k.layers.BatchNormalization(momentum=0.9, name=f"block{b}_bn{c}")(x)
            x = k.layers.ReLU(name=f"block{b}_relu{c}")(x)
        x = k.layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = k.layers.Dense(classes, name="logits")(x)
    return k.Model(inputs, outputs, name="vgg_bn")
