"""Keras / SavedModel to an fp32 ONNX ``ModelProto`` with tf2onnx, by the first route that works.

Routes, in order:

``saved_model``
    The source's ``serving_default`` signature (see :meth:`SourceModel.saved_model_dir`) wrapped in a
    ``tf.function`` with named ``TensorSpec`` inputs. Works for Keras 3, tf_keras and plain
    SavedModels alike: tf2onnx's own ``from_keras`` breaks on Keras 3 (``'Sequential' object has no
    attribute '_get_save_spec'`` / ``output_names``).
``keras``
    Fallback for Keras models whose SavedModel does not convert (a SavedModel export that fails, an
    op only the signature has): trace ``model(x, training=False)`` directly in a ``tf.function``.

Either route's function is frozen here, every capture included, before tf2onnx sees it: tf2onnx's
``from_function`` freezes captured *variables* but turns captured *tensors* (the constants a
Keras ``Normalization`` layer keeps its mean and variance in, as in every EfficientNet) into
extra graph inputs.

A route's result is used only if it is usable: graph inputs and outputs are exactly the source's
(renamed to the source's names, in its order), ``onnx.checker`` accepts it and onnxruntime loads
it. Otherwise its reason is recorded and the next route is tried; when none works, one
:class:`~edgekit.errors.ConverterError` lists every route's reason. The batch axis is a named
dynamic dimension (``batch``).
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
TOOL = "tf2onnx"


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
    the same fp32 graph, and tracing is the slow part. A failure is remembered too, so the next
    ONNX target of the same source reports it at once instead of tracing again. The cache lives on
    the source object so it goes away with it. Why earlier routes were passed over:
    :func:`skipped_routes`.

    Raises:
        ConverterError: No route gave a usable graph; the message names each route's reason.

    Example:
        >>> proto, route = onnx_model(load_source("digits-cnn"))  # doctest: +SKIP
        >>> [i.name for i in proto.graph.input], route  # doctest: +SKIP
        (['image'], 'saved_model')
    """
    import onnx

    data, route, _ = _converted(source, opset)
    proto = onnx.ModelProto()
    proto.ParseFromString(data)  # a fresh copy per caller: exporters edit their proto in place
    return proto, route


def skipped_routes(source: Any, opset: int = DEFAULT_OPSET) -> tuple[str, ...]:
    """One line per route tried before the one :func:`onnx_model` used, with why it was not used.

    Empty when the first route worked. Converts (once) if :func:`onnx_model` has not yet.

    Example:
        >>> skipped_routes(load_source("model.h5"))  # doctest: +SKIP
        ("saved_model route: cannot trace model into a SavedModel: ... 'untracked' resource ...",)
    """
    return _converted(source, opset)[2]


def _converted(source: Any, opset: int) -> tuple[bytes, str, tuple[str, ...]]:
    memo: dict[int, tuple[bytes, str, tuple[str, ...]] | str] = source.__dict__.setdefault("_edgekit_onnx", {})
    if opset not in memo:
        try:
            memo[opset] = _convert(source, opset)
        except ConverterError as exc:
            memo[opset] = str(exc)
            raise
    done = memo[opset]
    if isinstance(done, str):
        raise ConverterError(TOOL, done)
    return done


def _convert(source: Any, opset: int) -> tuple[bytes, str, tuple[str, ...]]:
    err = missing_converter()
    if err:
        raise err

    routes: list[tuple[str, Callable[[Any, int], Any]]] = [("saved_model", _from_signature)]
    if source.is_keras:
        routes.append(("keras", _from_keras_call))
    errors: list[str] = []
    for route, fn in routes:
        with captured_output() as cap:
            try:
                proto = fn(source, opset)
                _tidy(proto, source)
                _check(proto)
                return proto.SerializeToString(), route, tuple(errors)
            except Exception as exc:  # noqa: BLE001 - tf2onnx raises many types; any failure means "next route"
                errors.append(_reason(route, exc, cap.tail(2)))
    raise ConverterError(TOOL, f"tf2onnx could not convert {source.name}: " + "; ".join(errors) + _hint(errors))


def _reason(route: str, exc: BaseException, tail: str) -> str:
    """One line: the route, what failed, and tf2onnx's last log lines when they add something.

    Example:
        >>> _reason("keras", ValueError("bad\\nthing"), "log line")
        'keras route: bad thing [log line]'
        >>> _reason("keras", KeyError(), "")
        'keras route: KeyError'
    """
    msg = " ".join(str(exc).split())[:300] or type(exc).__name__
    return f"{route} route: {msg}" + (f" [{tail}]" if tail and tail not in msg else "")


def _hint(errors: list[str]) -> str:
    text = " ".join(errors)
    if "Unsupported ops" in text or "is not supported" in text or "No Op registered" in text:
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

    proto = _function_to_onnx(call, sig, opset)
    del loaded  # kept alive until the variables are frozen
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

    return _function_to_onnx(call, sig, opset)


def _function_to_onnx(call: Any, sig: list[Any], opset: int) -> Any:
    """tf2onnx on the ``tf.function`` ``call``, whose graph inputs are exactly ``sig``.

    ``tf2onnx.convert.from_function`` takes every non-resource input of the concrete function as
    a graph input, and a concrete function's inputs include its captured tensors (eager constants
    such as a ``Normalization`` layer's mean and variance): they would become ONNX inputs named
    like ``171296:0``. So freeze first, with tf2onnx's own freezer (it holds tf2onnx's workarounds
    for graphs TF cannot freeze), naming only the real inputs, then convert the frozen GraphDef.
    """
    t = tf()
    tf2onnx = _tf2onnx()
    concrete = call.get_concrete_function(*sig)
    captured = {id(placeholder) for _, placeholder in concrete.graph.captures}
    inputs = [x.name for x in concrete.inputs if id(x) not in captured and x.dtype != t.resource]
    outputs = [x.name for x in concrete.outputs]
    if len(inputs) != len(sig) or not isinstance(concrete.structured_outputs, dict):
        raise ExportError(f"the traced function has inputs {inputs} for the signature {[s.name for s in sig]}")
    # A dict's flat order in tf.nest (and so in concrete.outputs) is its sorted keys.
    rename = {**dict(zip(inputs, [s.name for s in sig])), **dict(zip(outputs, sorted(concrete.structured_outputs)))}
    with t.device("/cpu:0"):
        graph_def = tf2onnx.tf_loader.from_function(concrete, inputs, outputs)
    proto, _ = tf2onnx.convert.from_graph_def(graph_def, name=concrete.name, input_names=inputs,
                                              output_names=outputs, opset=opset, tensors_to_rename=rename)
    return proto


def _check(proto: Any) -> None:
    """Raise unless ``onnx.checker`` accepts ``proto`` and onnxruntime can load it.

    tf2onnx keeps going past ops it cannot convert (leaving the TF op in the graph), so a returned
    proto is not yet a usable one. Loading with graph optimisations off costs well under a second
    even at 224x224.
    """
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(proto)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


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
