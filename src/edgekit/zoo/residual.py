"""A residual network from custom layers: a subclassed residual block and a custom dense layer.

Both layers implement ``get_config`` and are registered with
``keras.saving.register_keras_serializable(package="edgekit")``, so a ``.keras`` file of the model
loads in any process that has imported this module (``edgekit convert`` does that for you). This
is the pattern the Keras "custom layers" guide teaches, and the one converters meet in the wild.
"""

from __future__ import annotations

from edgekit.convert.tf_env import keras as _keras

keras = _keras()  # the layers below subclass Keras classes, so the module needs Keras at import


@keras.saving.register_keras_serializable(package="edgekit")
class ResidualBlock(keras.layers.Layer):
    """Conv-BN-ReLU-Conv-BN plus a shortcut (1x1 projection when the shape changes), then ReLU.

    Args:
        filters: Output channels.
        stride: Stride of the first convolution (2 halves the spatial size).

    Example:
        >>> block = ResidualBlock(8, stride=2)  # doctest: +SKIP
        >>> block(keras.ops.zeros((1, 8, 8, 4))).shape  # doctest: +SKIP
        (1, 4, 4, 8)
    """

    def __init__(self, filters: int, stride: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.stride = int(stride)
        self.conv1 = keras.layers.Conv2D(self.filters, 3, strides=self.stride, padding="same", use_bias=False, name="conv1")
        self.bn1 = keras.layers.BatchNormalization(momentum=0.9, name="bn1")
        self.conv2 = keras.layers.Conv2D(self.filters, 3, padding="same", use_bias=False, name="conv2")
        self.bn2 = keras.layers.BatchNormalization(momentum=0.9, name="bn2")
        self.project = None

    def build(self, input_shape):
        if self.stride != 1 or input_shape[-1] != self.filters:
            self.project = keras.layers.Conv2D(self.filters, 1, strides=self.stride, use_bias=False, name="project")
            self.project.build(input_shape)
        self.conv1.build(input_shape)
        mid = self.conv1.compute_output_shape(input_shape)
        self.bn1.build(mid)
        self.conv2.build(mid)
        self.bn2.build(mid)
        super().build(input_shape)

    def call(self, x, training=None):
        h = keras.ops.relu(self.bn1(self.conv1(x), training=training))
        h = self.bn2(self.conv2(h), training=training)
        shortcut = x if self.project is None else self.project(x)
        return keras.ops.relu(h + shortcut)

    def compute_output_shape(self, input_shape):
        return self.conv1.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "stride": self.stride}


@keras.saving.register_keras_serializable(package="edgekit")
class CustomDense(keras.layers.Layer):
    """``activation(x @ kernel + bias)`` with its own weights: a dense layer written by hand.

    Args:
        units: Output features.
        activation: A Keras activation name, or ``None`` for logits.

    Example:
        >>> CustomDense(3)(keras.ops.ones((2, 4))).shape  # doctest: +SKIP
        (2, 3)
    """

    def __init__(self, units: int, activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation_name = activation
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
        super().build(input_shape)

    def call(self, x):
        return self.activation(keras.ops.matmul(x, self.kernel) + self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation_name}


def resnet_custom(input_shape: tuple[int, ...] = (8, 8, 1), classes: int = 10, filters: tuple[int, ...] = (16, 32)):
    """Stem conv, one :class:`ResidualBlock` per entry of ``filters`` (stride 2 after the first),
    GlobalAveragePooling and a :class:`CustomDense` head emitting logits.

    Args:
        input_shape: ``(H, W, C)``.
        classes: Output classes.
        filters: Channels of each residual block.

    Example:
        >>> resnet_custom().output_shape  # doctest: +SKIP
        (None, 10)
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(filters[0], 3, padding="same", activation="relu", name="stem")(inputs)
    for i, f in enumerate(filters):
        x = ResidualBlock(f, stride=1 if i == 0 else 2, name=f"res{i + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = CustomDense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet_custom")
