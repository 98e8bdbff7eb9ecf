"""A toy format written as a plug-in author would: an exporter and a backend, nothing else of edgekit's.

``npzmlp`` stores a Keras multilayer perceptron (Dense layers with linear/ReLU activations; Dropout
and Flatten are identities at inference) as one ``.npzmlp`` file of numpy arrays, and runs it with
numpy matmuls. It is a real format: a trained model converts, validates against Keras and scores
the same accuracy. ``tests/test_format_plugin.py`` registers it through ``FORMATS`` alone.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgekit.convert.exporters import ExporterBase, ExportResult
from edgekit.errors import BackendError, ConverterError, ExportError
from edgekit.manifest import TensorSpec
from edgekit.runtime.backends import BackendBase

FORMAT = "npzmlp"
ACTIVATIONS = {"linear": lambda x: x, "relu": lambda x: np.maximum(x, 0.0)}


class MLPExporter(ExporterBase):
    """Keras MLP -> ``.npzmlp`` (fp32 weights, or fp16 weights computed in float32)."""

    format = FORMAT
    precisions = ("fp32", "fp16")

    def export(self, source: Any, precision: str, options: Mapping[str, Any], calib: Any, out: Path) -> ExportResult:
        arrays: dict[str, np.ndarray] = {}
        acts = []
        for layer in source.model.layers:
            kind = type(layer).__name__
            if kind in ("InputLayer", "Dropout", "Flatten"):
                continue
            if kind != "Dense":
                raise ConverterError("npzmlp", f"npzmlp stores Dense layers only; {layer.name} is a {kind}")
            act = layer.get_config()["activation"]
            if act not in ACTIVATIONS:
                raise ConverterError("npzmlp", f"npzmlp has no activation {act!r} (layer {layer.name})")
            kernel, bias = layer.get_weights()
            dtype = np.float16 if precision == "fp16" else np.float32
            arrays[f"w{len(acts)}"], arrays[f"b{len(acts)}"] = kernel.astype(dtype), bias.astype(dtype)
            acts.append(act)
        if not acts:
            raise ExportError("npzmlp: the model has no Dense layer")
        inp, outp = source.inputs[0], source.outputs[0]
        arrays["activations"] = np.array(acts)
        arrays["names"] = np.array([inp.name, outp.name])
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        Path(out).write_bytes(buf.getvalue())
        spec_in = TensorSpec(inp.name, (None, int(np.prod(inp.shape[1:]))), "float32")
        return ExportResult(inputs=(spec_in,), outputs=(TensorSpec(outp.name, outp.shape, "float32"),),
                            notes=(f"npzmlp: {len(acts)} Dense layers, {precision} weights",))


class MLPEngine:
    def __init__(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as z:
                self._acts = [str(a) for a in z["activations"]]
                self._layers = [(z[f"w{i}"].astype(np.float32), z[f"b{i}"].astype(np.float32)) for i in range(len(self._acts))]
                in_name, out_name = (str(n) for n in z["names"])
        except (OSError, ValueError, KeyError) as exc:
            raise BackendError(f"{Path(path).name} is not an npzmlp file: {exc}") from None
        width = self._layers[0][0].shape[0]
        self.inputs = (TensorSpec(in_name, (None, width), "float32"),)
        self.outputs = (TensorSpec(out_name, (None, self._layers[-1][0].shape[1]), "float32"),)

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        x = np.asarray(arrays[0], np.float32).reshape(len(arrays[0]), -1)
        for (w, b), act in zip(self._layers, self._acts):
            x = ACTIVATIONS[act](x @ w + b)
        return [x]

    def info(self) -> dict[str, Any]:
        return {"engine": "numpy", "version": np.__version__}


class MLPBackend(BackendBase):
    name = "numpy-mlp"
    format = FORMAT

    def open(self, path: Path, **options: Any) -> MLPEngine:
        return MLPEngine(Path(path))
