"""Per-layer int8 sensitivity of a TFLite conversion, from TensorFlow's quantization debugger.

Why the debugger rather than the LiteRT Quantizer's per-tensor validation: the debugger runs on the
same converter edgekit already drives (one code path for the artifact and its diagnosis), its
denylist (``denylisted_nodes``) is exactly the knob the search turns, and it ships with TensorFlow,
so no extra package. Its per-op numbers compare each quantized op's output with the float op run on
the same (dequantized) inputs; ``rmse / scale`` (error in units of the quantization step) is the
ranking TensorFlow's guide recommends: ~0.29 is ideal rounding noise, much more means trouble.

An op's error can be caused by how its *input* tensor was quantized (an outlier-heavy activation
squeezes everything else into a few int8 steps). Keeping only that op in float does not help: its
input is still quantized. So every ranked layer carries its producers, and the search keeps a
layer float together with the layers that feed it.

Example:
    >>> rows = [{"op_name": "FULLY_CONNECTED", "tensor_name": "a", "mean_squared_error": "4.0", "scale": "1.0"}]
    >>> [(l.name, l.rmse_scale) for l in rank_rows(rows, {})]
    [('a', 2.0)]
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from edgekit._quiet import captured_output


@dataclass(frozen=True)
class LayerError:
    """One quantized op's error.

    Attributes:
        name: The op's output tensor name (what ``keep_float`` / ``denylisted_nodes`` take).
        op: TFLite op type, e.g. ``CONV_2D``.
        rmse_scale: Root-mean-square error divided by the output's quantization scale.
        mse: Mean squared error of the op's output.
        scale: The output's quantization scale.
        rank: 1 = most sensitive.
        producers: Names of the quantized ops that feed this one.
    """

    name: str
    op: str
    rmse_scale: float
    mse: float
    scale: float
    rank: int
    producers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["producers"] = list(self.producers)
        return d


def rank_rows(rows: Sequence[Mapping[str, str]], producers: Mapping[str, tuple[str, ...]]) -> list[LayerError]:
    """Rank the debugger's CSV rows by ``rmse / scale``, most sensitive first."""
    out = []
    for r in rows:
        mse, scale = float(r.get("mean_squared_error") or 0.0), float(r.get("scale") or 0.0)
        ratio = math.sqrt(max(mse, 0.0)) / scale if scale > 0 else 0.0
        name = r["tensor_name"]
        out.append((ratio, name, r.get("op_name", "?"), mse, scale))
    out.sort(key=lambda t: -t[0])
    names = {t[1] for t in out}
    return [
        LayerError(name=n, op=op, rmse_scale=round(ratio, 6), mse=mse, scale=scale, rank=i + 1,
                   producers=tuple(p for p in producers.get(n, ()) if p in names))
        for i, (ratio, n, op, mse, scale) in enumerate(out)
    ]


def producer_map(float_model: bytes) -> dict[str, tuple[str, ...]]:
    """Op output name -> names of the ops producing its inputs, read from a float ``.tflite``."""
    from edgekit.runtime.backends.litert import _interpreter_class, _resolver

    cls, _, _ = _interpreter_class()
    try:
        # No delegates and no allocate: we want the original op graph, not XNNPACK's fused one.
        it = cls(model_content=float_model, experimental_op_resolver_type=_resolver(cls, "BUILTIN_WITHOUT_DEFAULT_DELEGATES"))
        names = {t["index"]: t["name"] for t in it.get_tensor_details()}
        ops = it._get_ops_details()
    except Exception:  # noqa: BLE001 - without the graph the search still works, just less precisely
        return {}
    produced_by = {}
    for op in ops:
        for o in op["outputs"]:
            produced_by[o] = names.get(o)
    out: dict[str, tuple[str, ...]] = {}
    for op in ops:
        srcs = tuple(produced_by[i] for i in op["inputs"] if i >= 0 and produced_by.get(i))
        for o in op["outputs"]:
            out[names[o]] = srcs
    return out


def tflite_sensitivity(converter_factory: Any, representative: Any) -> list[LayerError]:
    """Run the quantization debugger once and rank every quantized op.

    Args:
        converter_factory: Returns a fresh ``TFLiteConverter`` set up for full int8 (the debugger
            consumes it).
        representative: Zero-argument generator function yielding lists of input arrays in the
            converted model's input order (the debugger feeds them positionally).
    """
    from edgekit.convert._tf import tf

    t = tf()
    with captured_output():
        float_model = _float_model(t, converter_factory)
        debugger = t.lite.experimental.QuantizationDebugger(converter=converter_factory(), debug_dataset=representative)
        debugger.run()
        buf = io.StringIO()
        debugger.layer_statistics_dump(buf)
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    return rank_rows(rows, producer_map(float_model))


def _float_model(t: Any, converter_factory: Any) -> bytes:
    conv = converter_factory()
    conv.optimizations = []
    conv.representative_dataset = None
    conv.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS]
    conv.inference_input_type = t.float32
    conv.inference_output_type = t.float32
    return conv.convert()


def keep_float_set(layers: Sequence[LayerError], k: int) -> tuple[str, ...]:
    """The top-``k`` ranked layers plus their producers, in rank order, without duplicates.

    Example:
        >>> ls = [LayerError("b", "FC", 3.0, 1.0, 1.0, 1, ("a",)), LayerError("c", "FC", 0.3, 1.0, 1.0, 2, ("b",)),
        ...       LayerError("a", "FC", 0.1, 1.0, 1.0, 3)]
        >>> keep_float_set(ls, 1)
        ('b', 'a')
    """
    out: list[str] = []
    for layer in layers[:k]:
        for n in (layer.name, *layer.producers):
            if n not in out:
                out.append(n)
    return tuple(out)
