"""The Keras 2 side of the stages: import tfmot safely, rebuild Keras 3 models in tf_keras, clone.

tensorflow-model-optimization only works with Keras 2 (``tf_keras``). What we measured on TF 2.21,
keras 3.15, tf_keras 2.21, tfmot 0.8.1:

* Importing tfmot sets ``os.environ["TF_USE_LEGACY_KERAS"] = "1"`` itself and then reads
  ``tf.keras``. ``tf.keras`` is a lazy alias resolved on first use, so from then on it means
  tf_keras in this process. ``import keras`` is unaffected: it stays Keras 3, and Keras 3 models
  (the zoo) still build, train, save and export afterwards. edgekit never uses ``tf.keras``.
* tfmot itself only goes through its own ``compat.keras`` (tf_keras), so :func:`tfmot` restores
  the caller's ``TF_USE_LEGACY_KERAS`` after the import: child processes (and code that reads the
  variable later) see what the user set, not what tfmot set.
* A Keras 3 config cannot be loaded by tf_keras as is (``InputLayer`` got ``batch_shape``; layer
  ``dtype`` is a ``DTypePolicy`` object; initializers carry new arguments; the functional graph uses
  a new node format). :func:`to_tf_keras` rebuilds the graph layer by layer from each layer's
  translated config and copies the weights, then checks both models agree on real inputs.
* tfmot's wrappers reuse the layer objects of the model they wrap (and ``make_prunable`` patches
  them), so training a wrapped model changes the model it came from: :func:`clone` first.

Example:
    >>> k2_model = to_tf_keras(keras3_model, sample=[x[:32]])  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Sequence

import numpy as np

from edgekit.convert.tf_env import tf_keras
from edgekit.errors import ModelError, UnsupportedError

_tfmot: Any = None
# Keyword arguments tf_keras' base Layer accepts beyond its named parameters.
_BASE_KWARGS = {"input_dim", "input_shape", "batch_input_shape", "batch_size", "weights", "activity_regularizer",
                "autocast", "implementation", "trainable", "name", "dtype", "dynamic"}
# Keras 3 -> tf_keras config key renames, per layer class.
_RENAMES = {"InputLayer": {"batch_shape": "batch_input_shape"}}
# Most tf_keras objects are found by Keras 3 module name; anything else cannot be carried over.
_OBJECT_MODULES = {"keras.initializers": "initializers", "keras.regularizers": "regularizers",
                   "keras.constraints": "constraints"}
EQUIVALENCE_TOL = 1e-4


def tfmot() -> Any:
    """``tensorflow_model_optimization``, imported once, leaving ``TF_USE_LEGACY_KERAS`` as it was.

    Raises:
        MissingDependencyError: tfmot or tf_keras is not installed.

    Example:
        >>> tfmot().sparsity.keras.strip_pruning  # doctest: +SKIP
        <function strip_pruning at ...>
    """
    global _tfmot
    if _tfmot is None:
        tf_keras()  # TF set up quietly and tf_keras present, else a clear MissingDependencyError
        before = os.environ.get("TF_USE_LEGACY_KERAS")
        try:
            import tensorflow_model_optimization as mod
        except ImportError:
            from edgekit.errors import MissingDependencyError

            raise MissingDependencyError("tensorflow-model-optimization", "convert", "pruning and QAT") from None
        finally:
            if before is None:
                os.environ.pop("TF_USE_LEGACY_KERAS", None)
            else:
                os.environ["TF_USE_LEGACY_KERAS"] = before
        _tfmot = mod
    return _tfmot


def is_tf_keras(model: Any) -> bool:
    """Whether ``model`` is a tf_keras (Keras 2) object rather than a Keras 3 one.

    Example:
        >>> is_tf_keras(object())
        False
    """
    return type(model).__module__.startswith("tf_keras")


def clone(model: Any) -> Any:
    """A tf_keras model with new layer objects and the same weights (nothing shared).

    Example:
        >>> twin = clone(model)  # doctest: +SKIP
        >>> twin.layers[1] is model.layers[1]  # doctest: +SKIP
        False
    """
    k2, mot = tf_keras(), tfmot()
    try:
        # The scopes let clone_model rebuild tfmot's own wrapper layers from their configs.
        with mot.quantization.keras.quantize_scope(), mot.sparsity.keras.prune_scope():
            twin = k2.models.clone_model(model)
        twin.set_weights(model.get_weights())
    except Exception as exc:  # noqa: BLE001 - custom layers fail in many ways
        raise ModelError(f"cannot clone model {model.name!r} for training: {' '.join(str(exc).split())[:300]}") from None
    return twin


def to_tf_keras(model: Any, sample: Sequence[np.ndarray] | None = None) -> tuple[Any, dict[str, Any]]:
    """An equivalent tf_keras model for a Keras 3 (or tf_keras) functional/sequential model.

    Args:
        model: The Keras 3 or tf_keras model. It is not modified.
        sample: Input arrays (one per model input) to check the rebuilt model against the
            original; without it the check is skipped.

    Returns:
        ``(tf_keras_model, report)``; the report says where it came from and the largest output
        difference measured on ``sample``.

    Raises:
        UnsupportedError: The model is subclassed, or layers have no tf_keras equivalent (all of
            them are named, with why).
        ModelError: The rebuilt model's outputs differ from the original's.

    Example:
        >>> k2_model, report = to_tf_keras(keras3_model, sample=[x[:32]])  # doctest: +SKIP
        >>> report["from"]  # doctest: +SKIP
        'keras3'
    """
    if is_tf_keras(model):
        return clone(model), {"from": "tf_keras", "layers": len(model.layers)}
    rebuilt = _Rebuilder().model(model)
    report: dict[str, Any] = {"from": "keras3", "layers": len(rebuilt.layers)}
    if sample is not None:
        report["max_abs_diff"] = _check_equivalent(model, rebuilt, sample)
    return rebuilt, report


class _Rebuilder:
    """Rebuilds a Keras 3 graph in tf_keras, collecting every layer it cannot carry over."""

    def __init__(self) -> None:
        self.k2 = tf_keras()
        self.problems: list[str] = []

    def model(self, model: Any) -> Any:
        cls = type(model).__name__
        if cls == "Sequential":
            return self._sequential(model)
        if cls != "Functional":
            raise UnsupportedError(
                f"model {model.name!r} is a subclassed Keras model ({cls}); pruning and QAT need a functional or "
                "Sequential model (tfmot rebuilds it layer by layer): rebuild it with keras.Input(...) and the functional API"
            )
        return self._functional(model)

    # --- graphs -------------------------------------------------------------------------------
    def _sequential(self, model: Any) -> Any:
        if not getattr(model, "inputs", None):
            raise UnsupportedError(f"Sequential model {model.name!r} is not built: call it on data or start it with keras.Input")
        x = inp = self._input(model.inputs[0], model.inputs[0].name)
        pairs = []
        for layer in model.layers:
            new = self._layer(layer)
            if new is not None:
                x = new(x)
                pairs.append((layer, new))
        self._raise_problems(model)
        out = self.k2.Model(inp, x, name=model.name)
        self._copy_weights(pairs, model)
        return out

    def _functional(self, model: Any) -> Any:
        config = model.get_config()
        tensors: dict[tuple[str, int, int], Any] = {}
        layers: dict[str, Any] = {}
        pairs = []
        pending = []
        for lc in config["layers"]:
            name = lc["name"]
            if lc["class_name"] == "InputLayer":
                c = lc["config"]
                tensors[(name, 0, 0)] = self._input_from_config(c, name)
                continue
            src = model.get_layer(name)
            new = self._layer(src)
            if new is not None:
                layers[name] = new
                pairs.append((src, new))
            pending.extend((name, i, node) for i, node in enumerate(lc["inbound_nodes"]))
        self._raise_problems(model)
        # A shared layer's later call may need tensors from layers listed after it: keep going
        # until every call has its inputs (what Keras' own from_config does).
        while pending:
            progress = False
            for item in list(pending):
                name, index, node = item
                try:
                    args = _resolve(node.get("args", []), tensors)
                    kwargs = _resolve(node.get("kwargs", {}), tensors)
                except KeyError:
                    continue
                outs = layers[name](*args, **kwargs)
                for j, t in enumerate(outs if isinstance(outs, (list, tuple)) else [outs]):
                    tensors[(name, index, j)] = t
                pending.remove(item)
                progress = True
            if not progress:
                raise ModelError(f"cannot rebuild {model.name!r} in tf_keras: its graph refers to layers it does not contain")
        inputs = _unwrap_single(_resolve_refs(config["input_layers"], tensors))
        outputs = _unwrap_single(_resolve_refs(config["output_layers"], tensors))
        out = self.k2.Model(inputs, outputs, name=config.get("name", model.name))
        self._copy_weights(pairs, model)
        return out

    def _input(self, tensor: Any, name: str) -> Any:
        dtype = getattr(tensor.dtype, "name", tensor.dtype)
        return self.k2.Input(batch_shape=tuple(tensor.shape), dtype=str(dtype), name=name)

    def _input_from_config(self, c: dict[str, Any], name: str) -> Any:
        shape = c.get("batch_shape") or c.get("batch_input_shape")
        dtype = _dtype_name(c.get("dtype", "float32"))
        return self.k2.Input(batch_shape=tuple(shape), dtype=dtype, name=name, sparse=bool(c.get("sparse", False)))

    # --- layers -------------------------------------------------------------------------------
    def _layer(self, layer: Any) -> Any:
        cls = type(layer).__name__
        if cls in ("Functional", "Sequential"):
            return self.model(layer)  # nested model: rebuilt recursively, weights copied there
        k2cls = getattr(self.k2.layers, cls, None)
        if k2cls is None or not isinstance(k2cls, type):
            self.problems.append(f"'{layer.name}' ({cls}: no tf_keras layer of that name)")
            return None
        try:
            config = self._translate_config(layer, k2cls)
        except _CannotCarry as why:
            self.problems.append(f"'{layer.name}' ({cls}: {why})")
            return None
        try:
            return k2cls.from_config(config)
        except Exception as exc:  # noqa: BLE001 - tf_keras raises TypeError/ValueError/...
            self.problems.append(f"'{layer.name}' ({cls}: {' '.join(str(exc).split())[:120]})")
            return None

    def _translate_config(self, layer: Any, k2cls: type) -> dict[str, Any]:
        config = {k: _translate_value(v, self.k2, f"{k}") for k, v in layer.get_config().items()}
        for old, new in _RENAMES.get(type(layer).__name__, {}).items():
            if old in config:
                config[new] = config.pop(old)
        accepted = _accepted_kwargs(k2cls)
        for key in list(config):
            if key in accepted:
                continue
            value = config.pop(key)
            if value not in (None, False, (), [], {}):
                # A Keras 3-only option that is switched on changes what the layer computes.
                raise _CannotCarry(f"option {key}={value!r} has no tf_keras equivalent")
        return config

    def _copy_weights(self, pairs: list[tuple[Any, Any]], model: Any) -> None:
        for src, new in pairs:
            if type(src).__name__ in ("Functional", "Sequential"):
                continue  # copied by the recursive rebuild
            weights = src.get_weights()
            have = [tuple(w.shape) for w in new.weights]
            want = [tuple(w.shape) for w in weights]
            if have != want:
                self.problems.append(f"'{src.name}' ({type(src).__name__}: weights {want} do not fit tf_keras' {have})")
                continue
            new.set_weights(weights)
        self._raise_problems(model)

    def _raise_problems(self, model: Any) -> None:
        if self.problems:
            listed = ", ".join(self.problems)
            raise UnsupportedError(
                f"cannot carry {len(self.problems)} layer(s) of Keras 3 model {model.name!r} over to tf_keras (which "
                f"pruning/QAT need): {listed}; replace them with built-in layers, or save the model with tf_keras"
            )


class _CannotCarry(Exception):
    pass


def _dtype_name(value: Any) -> str:
    if isinstance(value, dict):  # Keras 3 DTypePolicy
        return str(value.get("config", {}).get("name", "float32"))
    return str(getattr(value, "name", value))


def _translate_value(value: Any, k2: Any, where: str) -> Any:
    """Keras 3 serialized objects inside a layer config -> what tf_keras accepts."""
    if not isinstance(value, dict) or "class_name" not in value:
        return value
    cls_name, cfg, module = value["class_name"], dict(value.get("config") or {}), str(value.get("module") or "")
    if cls_name in ("DTypePolicy", "FloatDTypePolicy"):
        return _dtype_name(value)
    if module in _OBJECT_MODULES:
        sub = getattr(k2, _OBJECT_MODULES[module])
        k2cls = getattr(sub, cls_name, None)
        if isinstance(k2cls, type):
            accepted = _accepted_kwargs(k2cls)
            extra = {k: v for k, v in cfg.items() if k not in accepted and v is not None}
            if extra:
                raise _CannotCarry(f"{where} {cls_name} option(s) {sorted(extra)} have no tf_keras equivalent")
            return k2cls(**{k: v for k, v in cfg.items() if k in accepted})
    raise _CannotCarry(f"{where} {cls_name} ({module or 'custom'}) has no tf_keras equivalent")


def _accepted_kwargs(cls: type) -> set[str]:
    names = set(_BASE_KWARGS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    names.discard("self")
    return names


def _is_ref(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and len(x) == 3 and isinstance(x[0], str) and all(isinstance(i, int) for i in x[1:])


def _resolve_refs(spec: Any, tensors: dict) -> Any:
    """``input_layers``/``output_layers``: ``[name, node, index]`` triples, nested in lists or dicts."""
    if _is_ref(spec):
        return tensors[(spec[0], spec[1], spec[2])]
    if isinstance(spec, dict):
        return {k: _resolve_refs(v, tensors) for k, v in spec.items()}
    return [_resolve_refs(s, tensors) for s in spec]


def _resolve(value: Any, tensors: dict) -> Any:
    """Node arguments: ``__keras_tensor__`` placeholders -> the rebuilt tensors (KeyError: not yet built)."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            name, node, index = value["config"]["keras_history"]
            return tensors[(name, node, index)]
        return {k: _resolve(v, tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, tensors) for v in value)
    return value


def _unwrap_single(x: Any) -> Any:
    return x[0] if isinstance(x, list) and len(x) == 1 else x


def _outputs(model: Any, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = model(list(arrays) if len(arrays) > 1 else arrays[0], training=False)
    if isinstance(out, dict):
        out = [out[k] for k in sorted(out)]
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def _check_equivalent(original: Any, rebuilt: Any, sample: Sequence[np.ndarray]) -> float:
    ref, got = _outputs(original, sample), _outputs(rebuilt, sample)
    worst = 0.0
    for r, g in zip(ref, got):
        if r.shape != g.shape:
            raise ModelError(f"tf_keras rebuild of {original.name!r} gives output shape {g.shape}, the original {r.shape}")
        diff = float(np.max(np.abs(r.astype(np.float64) - g))) if r.size else 0.0
        worst = max(worst, diff)
        if diff > EQUIVALENCE_TOL * max(1.0, float(np.max(np.abs(r))) if r.size else 1.0):
            raise ModelError(
                f"tf_keras rebuild of {original.name!r} differs from the Keras 3 model by up to {diff:.3g} on the "
                "training data; a layer behaves differently in tf_keras: save the model with tf_keras instead"
            )
    return worst
