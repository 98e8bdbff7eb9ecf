"""TFLite exporter: fp32, fp16, dynamic-range int8, full int8 and 16x8, via the TFLite converter.

The model reaches the converter as a SavedModel with one named signature (see
:meth:`SourceModel.saved_model_dir`), the route that works for Keras 3 and tf_keras alike on TF >= 2.16.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

from edgekit._quiet import captured_output
from edgekit.convert._tf import tf
from edgekit.convert.exporters.base import ExportResult
from edgekit.errors import ExportError, InputError


class TFLiteExporter:
    """Writes ``.tflite`` flatbuffers.

    Precisions:
        ``fp32``: no optimisation. ``fp16``: float16 weights, float compute on CPU.
        ``dynamic``: int8 weights, activations quantized on the fly. ``int8``: full integer
        (weights and activations) from calibration data; ``io=int8`` (default) makes the model's
        inputs/outputs int8 too, ``io=float`` keeps them float32. ``int16x8``: int16 activations,
        int8 weights, for models whose activations int8 cannot hold.

    Example:
        >>> TFLiteExporter().precisions
        ('fp32', 'fp16', 'dynamic', 'int8', 'int16x8')
    """

    format: ClassVar[str] = "tflite"
    suffix: ClassVar[str] = ".tflite"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "dynamic", "int8", "int16x8")
    options: ClassVar[Mapping[str, tuple[Any, ...] | None]] = {"io": ("int8", "uint8", "float")}
    needs_calibration: ClassVar[tuple[str, ...]] = ("int8", "int16x8")

    def unavailable_reason(self) -> str | None:
        try:
            tf()
        except Exception as exc:  # noqa: BLE001 - MissingDependencyError or a broken install
            return str(exc)
        return None

    def export(self, source: Any, precision: str, options: Mapping[str, Any], calib: Any, out: Path) -> ExportResult:
        t = tf()
        if precision in self.needs_calibration and (calib is None or len(calib) == 0):
            raise InputError(
                f"tflite:{precision} needs representative (calibration) data to fix activation ranges: "
                "pass --calib data.npz (or an image folder, or 'digits' for the bundled set), ~100-500 samples"
            )
        io = options.get("io", "int8" if precision == "int8" else "float")
        if precision != "int8" and io != "float":
            raise InputError(f"tflite:{precision} keeps float inputs/outputs; io={io!r} only applies to tflite:int8")

        with captured_output() as cap:
            try:
                conv = self._converter(t, source)
                if precision == "fp16":
                    conv.optimizations = [t.lite.Optimize.DEFAULT]
                    conv.target_spec.supported_types = [t.float16]
                elif precision == "dynamic":
                    conv.optimizations = [t.lite.Optimize.DEFAULT]
                elif precision in ("int8", "int16x8"):
                    conv.optimizations = [t.lite.Optimize.DEFAULT]
                    conv.representative_dataset = _representative(calib, source)
                    if precision == "int8":
                        conv.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
                        if io != "float":
                            conv.inference_input_type = t.int8 if io == "int8" else t.uint8
                            conv.inference_output_type = t.int8 if io == "int8" else t.uint8
                    else:
                        conv.target_spec.supported_ops = [
                            t.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
                        ]
                data = conv.convert()
            except Exception as exc:  # noqa: BLE001 - the converter raises many types
                raise ExportError(_explain(exc, cap.tail(3))) from None
        Path(out).write_bytes(data)
        specs = _read_specs(out)
        return ExportResult(inputs=specs[0], outputs=specs[1], options={"io": io} if precision == "int8" else {})

    @staticmethod
    def _converter(t: Any, source: Any) -> Any:
        # The SavedModel route works for Keras 3, tf_keras and plain SavedModels alike.
        return t.lite.TFLiteConverter.from_saved_model(source.saved_model_dir(), signature_keys=["serving_default"])


def _representative(calib: Any, source: Any):
    names = [s.name for s in source.inputs]

    def gen():
        # Signature-based conversion accepts a dict keyed by input name, which keeps multi-input
        # models safe from the converter's own (alphabetical) input order.
        for sample in calib.samples():
            yield dict(zip(names, sample))

    return gen


def _read_specs(path: Path):
    from edgekit.runtime.backends.litert import open_interpreter_specs

    return open_interpreter_specs(path)


def _explain(exc: Exception, engine_tail: str) -> str:
    msg = " ".join(str(exc).split())
    hint = ""
    if "Select TF" in msg or "FlexOps" in msg or "not supported by" in msg and "TFLite" in msg:
        hint = " (an op has no TFLite builtin; Select TF ops are not enabled by edgekit yet)"
    tail = f" [converter: {engine_tail}]" if engine_tail and engine_tail not in msg else ""
    return f"TFLite conversion failed: {msg[:400]}{hint}{tail}"
