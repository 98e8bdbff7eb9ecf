"""Keras 3 models rebuilt in tf_keras for tfmot: same outputs, same weights, clear refusals."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from edgekit.convert.stages.keras2 import clone, to_tf_keras
from edgekit.errors import UnsupportedError


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_functional_with_shared_layer_batchnorm_and_regularizer():
    import keras

    keras.utils.set_random_seed(0)
    a, b = keras.Input((6,), name="a"), keras.Input((6,), name="b")
    shared = keras.layers.Dense(4, kernel_regularizer=keras.regularizers.L2(1e-3), name="shared")
    x = keras.layers.Concatenate(name="cat")([shared(a), shared(b)])
    x = keras.layers.BatchNormalization(name="bn")(x)
    inner = keras.Sequential([keras.Input((8,)), keras.layers.Dense(5, activation="tanh", name="in1")], name="inner")
    out = keras.layers.Dense(3, activation="softmax", name="out")(inner(x))
    model = keras.Model([a, b], out, name="multi")
    # Non-trivial BatchNorm statistics, so copying them is checked too.
    model.get_layer("bn").set_weights([_rand(8, seed=s) + 0.5 for s in range(4)])

    k2, report = to_tf_keras(model, sample=[_rand(16, 6), _rand(16, 6, seed=1)])
    assert type(k2).__module__.startswith("tf_keras")
    assert report == {"from": "keras3", "layers": len(k2.layers), "max_abs_diff": report["max_abs_diff"]}
    assert report["max_abs_diff"] <= 1e-6
    assert [t.name.split(":")[0] for t in k2.inputs] == ["a", "b"]
    assert k2.get_layer("shared").kernel_regularizer.get_config()["l2"] == pytest.approx(1e-3)
    np.testing.assert_array_equal(k2.get_layer("bn").get_weights()[2], model.get_layer("bn").get_weights()[2])


def test_sequential_model_and_clone_share_nothing():
    import keras

    model = keras.Sequential([keras.Input((5,), name="x"), keras.layers.Dense(4, name="d"), keras.layers.ReLU(name="r")])
    k2, report = to_tf_keras(model, sample=[_rand(4, 5)])
    assert report["max_abs_diff"] <= 1e-6 and k2.get_layer("d").units == 4
    twin = clone(k2)
    assert twin.get_layer("d") is not k2.get_layer("d")
    np.testing.assert_array_equal(twin.get_layer("d").kernel.numpy(), k2.get_layer("d").kernel.numpy())
    twin.get_layer("d").kernel.assign(np.zeros((5, 4), np.float32))
    assert np.count_nonzero(k2.get_layer("d").kernel.numpy()) > 0


def test_layers_that_cannot_be_carried_over_are_all_named():
    import keras

    @keras.saving.register_keras_serializable(package="edgekit_test")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inp = keras.Input((3,), name="x")
    x = Doubler(name="twice")(inp)
    x = keras.layers.Dense(2, lora_rank=None, name="ok")(x)  # a Keras 3-only option left off is fine
    x = keras.layers.Dense(2, kernel_initializer=keras.initializers.GlorotUniform(), name="fine")(x)
    model = keras.Model(inp, x)
    with pytest.raises(UnsupportedError) as e:
        to_tf_keras(model)
    msg = str(e.value)
    assert "cannot carry 1 layer(s)" in msg and "'twice' (Doubler: no tf_keras layer of that name)" in msg
    assert "'ok'" not in msg and "'fine'" not in msg


def test_subclassed_model_is_refused_with_the_fix():
    import keras

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), np.float32))
    with pytest.raises(UnsupportedError, match="is a subclassed Keras model.*functional API"):
        to_tf_keras(net)


def test_tfmot_import_keeps_keras3_and_the_environment():
    """Importing tfmot through edgekit leaves TF_USE_LEGACY_KERAS alone and Keras 3 usable afterwards."""
    code = (
        "import os; from edgekit.convert.stages.keras2 import tfmot; import keras, numpy as np; "
        "m = tfmot(); print(os.environ.get('TF_USE_LEGACY_KERAS')); "
        "k = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]); k.compile('adam', 'mse'); "
        "k.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0); print(keras.__version__.split('.')[0], type(k).__module__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-1500:]
    assert r.stdout.split() == ["None", "3", "keras.src.models.sequential"]
