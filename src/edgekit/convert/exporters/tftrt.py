"""TF-TRT exporter: the source SavedModel through ``TrtGraphConverterV2``, saved as a SavedModel folder.

TF-TRT needs a TensorFlow built with TensorRT and an NVIDIA GPU. The TensorFlow wheels on PyPI
(2.21 here) have no TensorRT, and ``TrtGraphConverterV2`` raises at construction; so
:meth:`TFTRTExporter.unavailable` checks first, the pipeline records the target as
``unsupported`` with the reason and the fix, and the other targets go on.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

from edgekit.quiet import captured_output
from edgekit.checks import positive_int
from edgekit.convert.tf_env import tf
from edgekit.convert.exporters.base import ExporterBase, ExportResult, Option
from edgekit.errors import ConverterError, EdgekitError, MissingDependencyError, UnsupportedError

FIX = ("use a TensorRT-enabled TensorFlow on an NVIDIA GPU: NVIDIA's TensorFlow for Jetson (the image built from "
       "Dockerfile.jetson) or an NGC tensorflow container; or target tensorrt (ONNX -> TensorRT engine) where the "
       "tensorrt package is installed")
DEFAULT_MAX_BATCH = 64
TOOL = "TF-TRT"


def tftrt_unavailable() -> EdgekitError | None:
    """Why TF-TRT cannot run here (``None`` when it can), with the fix.

    Example:
        >>> str(tftrt_unavailable())  # doctest: +SKIP
        'TF-TRT needs TensorFlow built with TensorRT, and tensorflow 2.21.0 (pip) is not: use ...'
    """
    if importlib.util.find_spec("tensorflow") is None:
        return MissingDependencyError("tensorflow", "convert", "TF-TRT")
    t = tf()
    try:
        from tensorflow.compiler.tf2tensorrt import _pywrap_py_utils  # private, but what TF-TRT itself checks

        enabled = bool(_pywrap_py_utils.is_tensorrt_enabled())
    except Exception:  # noqa: BLE001 - module missing or moved: treat as not built with TensorRT
        enabled = False
    if not enabled:
        return UnsupportedError(f"TF-TRT needs TensorFlow built with TensorRT, and tensorflow {t.__version__} (pip) is not: {FIX}")
    with captured_output():
        gpus = t.config.list_physical_devices("GPU")
    if not gpus:
        return UnsupportedError(f"TF-TRT needs an NVIDIA GPU visible to TensorFlow and none is: {FIX}")
    return None


class TFTRTExporter(ExporterBase):
    """Writes a TF-TRT SavedModel folder (``.tftrt``), TensorRT engines built for batch 1..``max_batch``.

    Precisions:
        ``fp32``, ``fp16``: TensorRT precision modes. ``int8``: calibrated from the same calibration
        data as every other int8 target.

    Example:
        >>> TFTRTExporter().precisions, [o.name for o in TFTRTExporter.options]
        (('fp32', 'fp16', 'int8'), ['max_batch'])
    """

    format: ClassVar[str] = "tftrt"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    options: ClassVar[tuple[Option, ...]] = (
        Option("max_batch", check=positive_int, default=DEFAULT_MAX_BATCH, help="largest batch the engines cover"),
    )
    needs_calibration: ClassVar[tuple[str, ...]] = ("int8",)

    def unavailable(self) -> EdgekitError | None:
        return tftrt_unavailable()

    def export(self, source: Any, precision: str, options: Mapping[str, Any], calib: Any, out: Path) -> ExportResult:
        self.ready(precision, options, calib)
        max_batch = int(self.setting(options, "max_batch"))
        names = [s.name for s in source.inputs]
        t = tf()
        from tensorflow.python.compiler.tensorrt import trt_convert as trt

        with captured_output() as cap:
            try:
                conv = trt.TrtGraphConverterV2(
                    input_saved_model_dir=source.saved_model_dir(),
                    input_saved_model_signature_key="serving_default",
                    precision_mode={"fp32": trt.TrtPrecisionMode.FP32, "fp16": trt.TrtPrecisionMode.FP16,
                                    "int8": trt.TrtPrecisionMode.INT8}[precision],
                    use_calibration=precision == "int8",
                    # One engine covering batch 1..max_batch, not one engine per batch size seen.
                    use_dynamic_shape=True,
                    dynamic_shape_profile_strategy="Range",
                )
                if precision == "int8":
                    conv.convert(calibration_input_fn=lambda: _calibration(t, calib, names))
                else:
                    conv.convert()
                conv.build(input_fn=lambda: _shapes(t, source, max_batch))
                conv.save(str(out))
            except Exception as exc:  # noqa: BLE001 - TF-TRT raises many types
                msg = " ".join(str(exc).split())[:300] or type(exc).__name__
                raise ConverterError(TOOL, f"TF-TRT conversion failed: {msg} [{cap.tail(2)}]") from None
        from edgekit.runtime.backends.tftrt import read_specs

        ins, outs = read_specs(Path(out))
        return ExportResult(inputs=ins, outputs=outs, options={"max_batch": max_batch})


def _calibration(t: Any, calib: Any, names: list[str]) -> Iterator[dict[str, Any]]:
    # TF-TRT calibrates on whole batches of one shape: one sample at a time keeps every batch alike.
    for sample in calib.samples():
        yield {n: t.constant(x) for n, x in zip(names, sample)}


def _shapes(t: Any, source: Any, max_batch: int) -> Iterator[dict[str, Any]]:
    # The "Range" profile spans the smallest and largest shapes seen while building.
    import numpy as np

    for batch in (1, max_batch):
        yield {s.name: t.constant(np.zeros((batch, *[d or 1 for d in s.shape[1:]]), s.dtype)) for s in source.inputs}
