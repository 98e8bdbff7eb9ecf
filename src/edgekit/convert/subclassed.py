"""Subclassed Keras models (``class M(keras.Model)`` with a ``call``) as functional models.

A subclassed model has no ``inputs``/``outputs`` tensors, and every converter (and edgekit's
validation) needs named, shaped inputs. We wrap it: ``keras.Input`` tensors of the right shape,
the model called on them, and the outputs named after the keys of a dict output. The weights are
the model's own (shared, not copied), so the wrapper computes exactly what the model does.

Where the input shape comes from, in order: the zoo entry's declared inputs; the shape Keras
recorded when the model was built or first called (Keras 3 ``get_build_config()``, saved inside
``.keras`` files; tf_keras ``_build_input_shape``). A model that was never built has none, and
that is an error that says how to fix it.

Example:
    >>> wrapped = as_functional(model)  # doctest: +SKIP
    >>> [t.name for t in wrapped.inputs], wrapped.output_names  # doctest: +SKIP
    (['input_0'], ['digit', 'ink'])
"""

from __future__ import annotations

from typing import Any, Sequence

from edgekit.errors import ModelError

InputSpec = tuple[str, tuple[int | None, ...], str]


def _shape(value: Any) -> tuple[int | None, ...] | None:
    """``value`` as one shape tuple if it is a sequence of ints/None, else ``None``."""
    if isinstance(value, (list, tuple)) and all(d is None or isinstance(d, int) for d in value):
        return tuple(value)
    return None


def recorded_inputs(model: Any) -> list[InputSpec] | None:
    """Input specs from the shape Keras recorded at build time, or ``None`` when it recorded none.

    Keras records shapes only, so the dtype is float32 (integer inputs, e.g. token ids, need a
    zoo entry or a functional model with ``keras.Input(dtype="int32")``).

    Example:
        >>> recorded_inputs(built_model)  # doctest: +SKIP
        [('input_0', (8, 8, 1), 'float32')]
    """
    shape: Any = None
    get_config = getattr(model, "get_build_config", None)
    if callable(get_config):
        try:
            shape = (get_config() or {}).get("input_shape")
        except Exception:  # noqa: BLE001 - an unbuilt model may raise instead of returning None
            shape = None
    if shape is None:
        shape = getattr(model, "_build_input_shape", None)  # tf_keras
        if shape is not None and hasattr(shape, "as_list"):
            shape = shape.as_list()
    if shape is None:
        return None
    single = _shape(shape)
    shapes = [single] if single is not None else [_shape(s) for s in shape] if isinstance(shape, (list, tuple)) else [None]
    if not shapes or any(s is None or len(s) < 2 for s in shapes):
        return None
    return [(f"input_{i}", tuple(s[1:]), "float32") for i, s in enumerate(shapes)]


def as_functional(model: Any, inputs: Sequence[InputSpec] | None = None, *, tf_keras: bool = False) -> Any:
    """A functional model that calls the subclassed ``model`` on named ``keras.Input`` tensors.

    Args:
        model: A subclassed Keras 3 (or tf_keras) model without ``inputs``.
        inputs: ``(name, per-sample shape, dtype)`` per input, e.g. from the zoo entry; ``None``
            uses the shape Keras recorded when the model was built.
        tf_keras: Build the wrapper with tf_keras (for tf_keras models).

    Raises:
        ModelError: The input shape is unknown (never built), or calling the model on symbolic
            inputs fails.

    Example:
        >>> as_functional(model, [("image", (8, 8, 1), "float32")]).inputs[0].shape  # doctest: +SKIP
        (None, 8, 8, 1)
    """
    from edgekit.convert.tf_env import keras
    from edgekit.convert.tf_env import tf_keras as keras2

    name = getattr(model, "name", type(model).__name__)
    specs = list(inputs) if inputs else recorded_inputs(model)
    if not specs:
        raise ModelError(
            f"model {name!r} ({type(model).__name__}) is a subclassed Keras model that was never built, so its "
            "input shape is unknown: call it on a batch of data (model(x)) or model.build((None, ...)) before "
            "saving, or define it with keras.Input (functional API)"
        )
    k = keras2() if tf_keras else keras()
    tensors = [k.Input(shape=tuple(shape), dtype=dtype, name=n) for n, shape, dtype in specs]
    try:
        out = model(tensors[0] if len(tensors) == 1 else tensors)
    except Exception as exc:  # noqa: BLE001 - whatever the user's call() raises
        got = ", ".join(f"{n}{tuple(s)} {d}" for n, s, d in specs)
        raise ModelError(f"cannot call subclassed model {name!r} on inputs {got}: {' '.join(str(exc).split())[:300]}: "
                         "check the input shape it was built with") from None
    if isinstance(out, dict):
        # Name each output after its key, so converted files say "digit"/"ink", not "output_0".
        outputs: Any = [k.layers.Identity(name=key if key != name else f"{key}_out")(value) for key, value in out.items()]
    else:
        outputs = out
    return k.Model(tensors if len(tensors) > 1 else tensors[0], outputs, name=name)
