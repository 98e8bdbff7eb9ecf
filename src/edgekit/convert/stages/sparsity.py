"""How sparse is it? Zero weights in a tf_keras model (per layer) and in a converted file.

Only kernels count (``kernel``, ``depthwise_kernel``, ``pointwise_kernel``, ``recurrent_kernel``,
``embeddings``): that is what pruning zeroes, and biases would only dilute the number. For a QAT
model the weights counted are the *effective* ones, after the layer's weight quantizer (and, with
the prune-preserving scheme, its sparsity mask): exactly what the int8 file will hold.

Example:
    >>> summarize({"dense": (90, 100), "logits": (0, 10)})["total"]
    {'weights': 110, 'zeros': 90, 'sparsity': 0.8182}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel", "embeddings")


def _short(name: str) -> str:
    return name.split("/")[-1].split(":")[0]


def _count(arrays: list[np.ndarray]) -> tuple[int, int]:
    zeros = sum(int(np.count_nonzero(a == 0)) for a in arrays)
    return zeros, sum(int(a.size) for a in arrays)


def summarize(counts: Mapping[str, tuple[int, int]], types: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Per-layer ``(zeros, weights)`` counts -> the report's ``{"layers": {...}, "total": {...}}``.

    Example:
        >>> summarize({"d": (1, 4)}, {"d": "Dense"})["layers"]["d"]
        {'type': 'Dense', 'weights': 4, 'zeros': 1, 'sparsity': 0.25}
    """
    layers = {}
    for name, (zeros, n) in counts.items():
        entry: dict[str, Any] = {"weights": n, "zeros": zeros, "sparsity": round(zeros / n, 4) if n else 0.0}
        if types and name in types:
            entry = {"type": types[name], **entry}
        layers[name] = entry
    zeros = sum(z for z, _ in counts.values())
    total = sum(n for _, n in counts.values())
    return {"layers": layers, "total": {"weights": total, "zeros": zeros, "sparsity": round(zeros / total, 4) if total else 0.0}}


def model_sparsity(model: Any) -> dict[str, Any]:
    """Zero kernels per layer and in total for a tf_keras model (plain, or QAT-wrapped).

    Example:
        >>> model_sparsity(pruned)["total"]["sparsity"]  # doctest: +SKIP
        0.8
    """
    counts: dict[str, tuple[int, int]] = {}
    types: dict[str, str] = {}
    for layer in _flat_layers(model):
        arrays, inner = _kernels(layer)
        if arrays:
            counts[inner.name] = _count(arrays)
            types[inner.name] = type(inner).__name__
    return summarize(counts, types)


def _flat_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and not hasattr(layer, "layer"):  # nested model, not a wrapper
            out.extend(_flat_layers(layer))
        else:
            out.append(layer)
    return out


def _kernels(layer: Any) -> tuple[list[np.ndarray], Any]:
    weight_vars = getattr(layer, "_weight_vars", None)
    if weight_vars is not None and hasattr(layer, "layer"):  # tfmot QuantizeWrapper
        arrays = []
        for weight, quantizer, qvars in weight_vars:
            if _short(weight.name) in KERNELS:
                arrays.append(np.asarray(quantizer(weight, training=False, weights=qvars)))
        return arrays, layer.layer
    inner = getattr(layer, "layer", layer)  # a pruning wrapper counts its inner layer
    return [np.asarray(w) for w in inner.weights if _short(w.name) in KERNELS and w.trainable], inner


def file_sparsity(path: str | Path) -> dict[str, Any] | None:
    """Zero weights in a converted file: constant tensors of rank >= 2 (the kernels).

    Returns ``None`` for formats it cannot read (only ``.tflite`` today) or an unreadable file:
    sparsity is information, never a reason to fail an artifact.

    Example:
        >>> file_sparsity("out/tflite-int8.tflite")["sparsity"]  # doctest: +SKIP
        0.7998
    """
    p = Path(path)
    if p.suffix != ".tflite":
        return None
    try:
        from tensorflow.lite.tools import flatbuffer_utils

        model = flatbuffer_utils.read_model(str(p))
    except Exception:  # noqa: BLE001
        return None
    zeros = total = 0
    for graph in model.subgraphs:
        for t in graph.tensors:
            data = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
            shape = [int(d) for d in (t.shape if t.shape is not None else [])]
            if data is None or len(data) == 0 or len(shape) < 2:  # activations have no data
                continue
            n = int(np.prod(shape))
            dtype = _NP_TYPES.get(flatbuffer_utils.type_to_name(t.type))
            if dtype is None or n == 0:
                continue
            if t.sparsity is not None:  # stored compressed: only the non-zeros are in the buffer
                zeros += n - len(data) // np.dtype(dtype).itemsize
            else:
                zeros += int(np.count_nonzero(np.frombuffer(bytes(data), dtype=dtype)[:n] == 0))
            total += n
    return {"weights": total, "zeros": zeros, "sparsity": round(zeros / total, 4) if total else 0.0}


_NP_TYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16,
             "INT32": np.int32, "FLOAT64": np.float64}
