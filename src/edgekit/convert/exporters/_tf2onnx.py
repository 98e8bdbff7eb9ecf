"""Keras / SavedModel to an fp32 ONNX ``ModelProto`` with tf2onnx, by the route that works.

Routes, in order:

``saved_model``
    The source's ``serving_default`` signature (see :meth:`SourceModel.saved_model_dir`) wrapped in a
    ``tf.function`` with named ``TensorSpec`` inputs and handed to ``tf2onnx.convert.from_function``.
    Works for Keras 3, tf_keras and plain SavedModels alike: tf2onnx's own ``from_keras`` breaks on
    Keras 3 (``'Sequential' object has no attribute '_get_save_spec'`` / ``output_names``).
``keras``
    Fallback for Keras models whose SavedModel does not convert: trace ``model(x, training=False)``
    directly in a ``tf.function``.

Whatever the route, the graph's inputs and outputs carry the source model's names in the source
model's order, and the batch axis is a named dynamic dimension (``batch``).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any, Callable

from edgekit.quiet import captured_output
from edgekit.convert.tf_env import tf
from edgekit.errors import ConverterError, ExportError, MissingDependencyError

DEFAULT_OPSET = 17
# tf2onnx 1.17 knows opsets up to 18; below 13 there is no per-channel QDQ (int8 needs it).
OPSETS = tuple(range(13, 19))
BATCH_DIM = "batch"


def missing_converter() -> MissingDependencyError | None:
    """Why the ONNX converter cannot run here (``None`` when it can), without importing it.

    Example:
        >>> err = missing_converter()
        >>> err is None or err.install == "pip install 'edgekit[convert]'"
        True
    """
    for module in ("tensorflow", "tf2onnx", "onnx", "onnxruntime"):
        if importlib.util.find_spec(module) is None:
            return MissingDependencyError(module, "convert", "ONNX export")
    return None


def onnx_model(source: Any, opset: int = DEFAULT_OPSET) -> tuple[Any, str]:
    """An fp32 ONNX ``ModelProto`` of ``source`` and the route that made it.

    Converted once per source and opset: fp16/int8/dynamic and the TensorRT engine all start from
    the same fp32 graph, and tracing is the slow part. The cache lives on the source object so it
    goes away with it.

    Example:
        >>> proto, route = onnx_model(load_source("digits-cnn"))  # doctest: +SKIP
        >>> [i.name for i in proto.graph.input], route  # doctest: +SKIP
        (['image'], 'saved_model')
    """
    import onnx

    memo: dict[int, tuple[bytes, str]] = source.__dict__.setdefault("_edgekit_onnx", {})
    if opset not in memo:
        memo[opset] = _convert(source, opset)
    data, route = memo[opset]
    proto = onnx.ModelProto()
    proto.ParseFromString(data)  # a fresh copy per caller: exporters edit their proto in place
    return proto, route


def _convert(source: Any, opset: int) -> tuple[bytes, str]:
    err = missing_converter()
    if err:
        raise err
    import onnx

    routes: list[tuple[str, Callable[[Any, int], Any]]] = [("saved_model", _from_signature)]
    if source.is_keras:
        routes.append(("keras", _from_keras_call))
    errors = []
    for route, fn in routes:
        with captured_output() as cap:
            try:
                proto = fn(source, opset)
                _tidy(proto, source)
                onnx.checker.check_model(proto)
                return proto.SerializeToString(), route
            except ExportError:
                raise
            except Exception as exc:  # noqa: BLE001 - tf2onnx raises many types
                msg = " ".join(str(exc).split())[:300] or type(exc).__name__
                tail = cap.tail(2)
                errors.append(f"{route} route: {msg}" + (f" [{tail}]" if tail and tail not in msg else ""))
    raise ConverterError("tf2onnx", f"tf2onnx could not convert {source.name}: " + "; ".join(errors) + _hint(errors))


def _hint(errors: list[str]) -> str:
    text = " ".join(errors)
    if "Unsupported ops" in text or "is not supported" in text:
        return " (an op has no ONNX equivalent in tf2onnx: try a newer opset with onnx:fp32,opset=18, or replace the op)"
    return ""


def _tf2onnx() -> Any:
    import tf2onnx

    # tf2onnx logs every pass at INFO/WARNING; edgekit reports the outcome itself.
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    return tf2onnx


def _signature(source: Any) -> list[Any]:
    t = tf()
    return [t.TensorSpec((None, *s.shape[1:]), s.dtype, name=s.name) for s in source.inputs]


def _from_signature(source: Any, opset: int) -> Any:
    t = tf()
    loaded = t.saved_model.load(source.saved_model_dir())
    fn = loaded.signatures["serving_default"]
    names = [s.name for s in source.inputs]
    sig = _signature(source)

    @t.function(input_signature=sig)
    def call(*args):
        # Keyword call: the signature's own input order is alphabetical, the model's may not be.
        return fn(**dict(zip(names, args)))

    proto, _ = _tf2onnx().convert.from_function(call, input_signature=sig, opset=opset)
    del loaded  # kept alive until tf2onnx has frozen the variables
    return proto


def _from_keras_call(source: Any, opset: int) -> Any:
    from edgekit.convert.source import _as_list

    t = tf()
    model, out_names = source.model, [s.name for s in source.outputs]
    sig = _signature(source)

    @t.function(input_signature=sig)
    def call(*args):
        out = model(list(args) if len(args) > 1 else args[0], training=False)
        return dict(zip(out_names, _as_list(out, model)))

    proto, _ = _tf2onnx().convert.from_function(call, input_signature=sig, opset=opset)
    return proto


def _tidy(proto: Any, source: Any) -> None:
    """Source order and names for graph inputs/outputs, and one named dynamic batch axis."""
    graph = proto.graph
    for values, specs, what in ((graph.input, source.inputs, "inputs"), (graph.output, source.outputs, "outputs")):
        by_name = {v.name: v for v in values}
        want = [s.name for s in specs]
        if sorted(by_name) != sorted(want):
            raise ExportError(f"tf2onnx named the {what} {sorted(by_name)} but the model's are {want}")
        ordered = [by_name[n] for n in want]
        copies = [type(v)() for v in ordered]
        for c, v in zip(copies, ordered):
            c.CopyFrom(v)
        del values[:]
        values.extend(copies)
        for v in values:
            dims = v.type.tensor_type.shape.dim
            if len(dims) and not dims[0].HasField("dim_value"):
                dims[0].dim_param = BATCH_DIM
