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
    >>> [(l.name, l.score) for l in rank_rows(rows, {})]
    [('a', 2.0)]
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from edgekit.quiet import captured_output


@dataclass(frozen=True)
class LayerError:
    """One quantized op's error.

    Attributes:
        name: What ``keep_float`` takes: the op's output tensor name (TFLite ``denylisted_nodes``)
            or the node name (ONNX ``nodes_to_exclude``).
        op: Op type, e.g. ``CONV_2D`` or ``Conv``.
        score: The ranking number (higher = more sensitive), see ``metric``.
        metric: What ``score`` is: ``"rmse/scale"`` (TFLite) or ``"snr drop dB"`` (ONNX).
        rank: 1 = most sensitive.
        producers: Names of the quantized ops that feed this one.
        mse: Mean squared error of the op's output (TFLite), if known.
        scale: The output's quantization scale (TFLite), if known.
        snr_db: Signal-to-noise ratio of the op's output against the float model (ONNX), if known.
    """

    name: str
    op: str
    score: float
    metric: str
    rank: int
    producers: tuple[str, ...] = ()
    mse: float | None = None
    scale: float | None = None
    snr_db: float | None = None
    members: tuple[str, ...] = ()  # unranked nodes that belong to this layer (ONNX: the Gemm before a Relu)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["producers"] = list(self.producers)
        d["members"] = list(self.members)
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
        LayerError(name=n, op=op, score=round(ratio, 6), metric="rmse/scale", rank=i + 1,
                   producers=tuple(p for p in producers.get(n, ()) if p in names), mse=mse, scale=scale)
        for i, (ratio, n, op, mse, scale) in enumerate(out)
    ]


def producer_map(float_model: bytes) -> dict[str, tuple[str, ...]]:
    """Op output name -> names of the ops producing its inputs, read from a float ``.tflite``."""
    from edgekit.runtime.backends.litert import LiteRTBackend, open_interpreter

    missing = LiteRTBackend().unavailable()
    if missing is not None:
        raise missing
    try:
        # No delegates and no allocate: we want the original op graph, not XNNPACK's fused one.
        it = open_interpreter(model_content=float_model)
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
    from edgekit.convert.tf_env import tf

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
        >>> ls = [LayerError("b", "FC", 3.0, "rmse/scale", 1, ("a",)), LayerError("c", "FC", 0.3, "rmse/scale", 2, ("b",)),
        ...       LayerError("a", "FC", 0.1, "rmse/scale", 3)]
        >>> keep_float_set(ls, 1)
        ('b', 'a')
    """
    by_name = {layer.name: layer for layer in layers}
    out: list[str] = []
    for layer in layers[:k]:
        for n in (layer.name, *layer.members, *layer.producers):
            if n not in out:
                out.append(n)
        for p in layer.producers:  # a producer's own unranked nodes come with it
            for n in by_name[p].members if p in by_name else ():
                if n not in out:
                    out.append(n)
    return tuple(out)


def onnx_sensitivity(float_model: Path, qdq_model: Path, reader: Any, workdir: Path) -> list[LayerError]:
    """Rank the float graph's nodes by how much SNR (float vs QDQ model) they lose across themselves.

    Accumulated error grows towards the outputs, so ranking by it always blames the last layers.
    The drop across a node (worst SNR of its activation inputs minus the SNR of its output) is its
    own contribution; an op hurt by its quantized input shows as the drop right after that input.

    Args:
        float_model: The pre-processed float model the QDQ model was quantized from.
        qdq_model: The QDQ int8 model.
        reader: An onnxruntime ``CalibrationDataReader`` over calibration samples.
        workdir: Folder for the augmented (all tensors as outputs) copies.
    """
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as dbg

    aug_f, aug_q = workdir / "float_aug.onnx", workdir / "qdq_aug.onnx"
    with captured_output():
        dbg.modify_model_output_intermediate_tensors(str(float_model), str(aug_f))
        dbg.modify_model_output_intermediate_tensors(str(qdq_model), str(aug_q))
        float_acts = dbg.collect_activations(str(aug_f), reader, execution_providers=["CPUExecutionProvider"])
        reader.rewind()
        qdq_acts = dbg.collect_activations(str(aug_q), reader, execution_providers=["CPUExecutionProvider"])
    match = dbg.create_activation_matching(qdq_acts, float_acts)
    snr = {name: errs["xmodel_err"] for name, errs in dbg.compute_activation_error(match).items() if "xmodel_err" in errs}
    graph = onnx.load(str(float_model)).graph
    node_of = {o: n for n in graph.node for o in n.output}
    ranked = {n.name for n in graph.node if n.name and any(o in snr for o in n.output)}

    def upstream(node: Any) -> tuple[list[float], list[str], list[str]]:
        """SNRs of the nearest measured tensors above ``node``, ranked producers, unranked nodes between."""
        stack, seen, snrs, prods, mids = list(node.input), set(), [], [], []
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            p = node_of.get(t)
            if t in snr:
                snrs.append(snr[t])
                if p is not None and p.name in ranked:
                    prods.append(p.name)
            elif p is not None:  # e.g. the Gemm feeding a Relu: only the Relu's output is quantized
                mids.append(p.name)
                stack.extend(p.input)
        return snrs, prods, mids

    rows = []
    for node in graph.node:
        if node.name not in ranked:
            continue
        snrs, prods, mids = upstream(node)
        out_snr = min(snr[o] for o in node.output if o in snr)
        # A node fed only by weights and unquantized inputs starts from a clean signal.
        drop = (min(snrs) if snrs else 100.0) - out_snr
        rows.append((drop, node.name, node.op_type, out_snr, tuple(dict.fromkeys(prods)), tuple(dict.fromkeys(mids))))
    rows.sort(key=lambda t: -t[0])
    return [
        LayerError(name=n, op=op, score=round(float(d), 4), metric="snr drop dB", rank=i + 1, producers=prods,
                   snr_db=round(float(out_snr), 4), members=mids)
        for i, (d, n, op, out_snr, prods, mids) in enumerate(rows)
    ]
