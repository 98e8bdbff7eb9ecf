"""ONNX exporter: fp32 and fp16 graphs from tf2onnx, int8 (static QDQ) and dynamic int8 from
onnxruntime's quantization tools.

The fp32 graph comes from :func:`edgekit.convert.exporters._tf2onnx.onnx_model` (SavedModel
signature first, direct Keras trace as the fallback); every other precision is derived from it, so
a recipe with four ONNX targets traces the model once. The route that made it is recorded in the
artifact's notes (with why any earlier route was passed over) and in the file's metadata
(``edgekit.tf2onnx_route``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

from edgekit import __version__
from edgekit.quiet import captured_output
from edgekit.convert.exporters._tf2onnx import DEFAULT_OPSET, OPSETS, missing_converter, onnx_model, skipped_routes
from edgekit.convert.exporters.base import ExporterBase, ExportResult, Option, layer_names
from edgekit.convert.progress import counter
from edgekit.errors import ConverterError, EdgekitError, ExportError

TOOL = "onnxruntime.quantization"
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# Calibration runs the fp32 model over the data; for MinMax, batches of this many keep it fast
# without changing the result. The histogram methods (entropy, percentile) stack every batch's
# outputs into one array, so they need equal batches: they get one sample at a time.
CALIB_BATCH = 16


class ONNXExporter(ExporterBase):
    """Writes ``.onnx`` files that onnxruntime (CPU, CUDA, TensorRT EP) and TensorRT can run.

    Precisions:
        ``fp32``: the tf2onnx graph. ``fp16``: weights and compute in float16, inputs/outputs kept
        float32 (``io=fp16`` makes them float16 too). ``dynamic``: int8 weights, activations
        quantized at run time (``quantize_dynamic``). ``int8``: static QDQ quantization from the
        calibration data (``quantize_static``); ``calibration=minmax`` (default) ``| entropy |
        percentile``, ``per_channel=true`` for per-channel weight scales, ``reduce_range=true`` for
        7-bit weights where onnxruntime's int8 kernels saturate (x86 CPUs without VNNI).

    Options:
        ``opset`` (13-18, default 17) applies to every precision.

    Implements :class:`~edgekit.convert.exporters.base.Int8Search` (``keep_float`` names graph nodes).

    Example:
        >>> ONNXExporter().precisions
        ('fp32', 'fp16', 'dynamic', 'int8')
        >>> from edgekit.convert.exporters import check_options
        >>> check_options(ONNXExporter(), "fp16", {"calibration": "entropy"})
        Traceback (most recent call last):
        ...
        edgekit.errors.RecipeError: onnx option calibration=entropy does not apply to onnx:fp16; it applies to: onnx:int8
    """

    format: ClassVar[str] = "onnx"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "dynamic", "int8")
    options: ClassVar[tuple[Option, ...]] = (
        Option("opset", OPSETS, default=DEFAULT_OPSET, help="ONNX opset"),
        Option("io", ("fp32", "fp16"), ("fp16",), default="fp32", help="dtype of the model's inputs/outputs"),
        Option("calibration", CALIBRATION_METHODS, ("int8",), default="minmax", help="activation range method"),
        Option("per_channel", (True, False), ("dynamic", "int8"), default=False, help="per-channel weight scales"),
        # onnxruntime's u8s8 kernels on x86 CPUs without VNNI (AVX2, plain AVX-512) saturate their int16
        # intermediates; 7-bit weights avoid it (measured on an AVX2 EPYC: SNR 11.9 -> 30 dB on a small
        # conv+dense model). Off by default as in onnxruntime and Optimum: VNNI and ARM do not need it.
        Option("reduce_range", (True, False), ("dynamic", "int8"), default=False,
               help="7-bit weights: no int8 saturation on x86 CPUs without VNNI"),
        # Node names to leave in float (accuracy-aware int8 writes it; onnxruntime's nodes_to_exclude).
        Option("keep_float", None, ("int8",), check=layer_names, default=(), help="nodes to leave in float"),
    )
    needs_calibration: ClassVar[tuple[str, ...]] = ("int8",)

    def unavailable(self) -> EdgekitError | None:
        return missing_converter()

    def export(self, source: Any, precision: str, options: Mapping[str, Any], calib: Any, out: Path) -> ExportResult:
        self.ready(precision, options, calib)
        opset = int(self.setting(options, "opset"))
        model, route = onnx_model(source, opset)
        used: dict[str, Any] = {"opset": opset}
        with tempfile.TemporaryDirectory(prefix="edgekit-onnx-") as tmp, captured_output() as cap:
            try:
                if precision == "fp16":
                    used["io"] = self.setting(options, "io")
                    model = _to_fp16(model, keep_io=used["io"] == "fp32")
                elif precision == "dynamic":
                    used["per_channel"] = bool(self.setting(options, "per_channel"))
                    reduce = bool(self.setting(options, "reduce_range"))
                    model = _dynamic(model, Path(tmp), used["per_channel"], reduce)
                elif precision == "int8":
                    used["calibration"] = self.setting(options, "calibration")
                    used["per_channel"] = bool(self.setting(options, "per_channel"))
                    reduce = bool(self.setting(options, "reduce_range"))
                    keep = layer_names(options.get("keep_float"))
                    model = _static(model, Path(tmp), calib, source, used["calibration"], used["per_channel"], keep,
                                    reduce)
                    if keep:
                        used["keep_float"] = list(keep)
                if precision in ("dynamic", "int8") and reduce:
                    used["reduce_range"] = True  # recorded only when on: older manifests read the same
            except EdgekitError:
                raise
            except Exception as exc:  # noqa: BLE001 - onnxruntime.quantization raises many types
                msg = " ".join(str(exc).split())[:300] or type(exc).__name__
                tail = cap.tail(2)
                extra = f" [{tail}]" if tail and tail not in msg else ""
                raise ConverterError(TOOL, f"onnx:{precision} failed: {msg}{extra}") from None
        # The route goes in the file's metadata and the notes, not in options: it is an outcome, not a setting.
        _stamp(model, source, precision, {**used, "tf2onnx_route": route})
        _save(model, Path(out))
        ins, outs = _read_specs(Path(out))
        notes = (f"tf2onnx route: {route}", *(f"tf2onnx passed over the {r}" for r in skipped_routes(source, opset)))
        return ExportResult(inputs=ins, outputs=outs, options=used, notes=notes)

    # -- Int8Search: what the accuracy-aware int8 search asks of this format ----------------------

    def layer_sensitivity(self, source: Any, calib: Any, options: Mapping[str, Any], max_samples: int = 64) -> list[Any]:
        """Rank the int8 model's nodes by their own error (see :func:`edgekit.convert.sensitivity.onnx_sensitivity`).

        Uses the same pre-processing and quantization settings as :meth:`export`, so the node names
        it returns are the ones ``keep_float`` (``nodes_to_exclude``) takes.
        """
        import onnx

        from edgekit.convert.sensitivity import onnx_sensitivity

        opset = int(self.setting(options, "opset"))
        model, _ = onnx_model(source, opset)
        sample = calib.take(max_samples)
        with tempfile.TemporaryDirectory(prefix="edgekit-onnx-sens-") as tmp, captured_output():
            work = Path(tmp)
            qdq = _static(model, work, sample, source, self.setting(options, "calibration"),
                          bool(self.setting(options, "per_channel")), (), bool(self.setting(options, "reduce_range")))
            onnx.save(qdq, str(work / "qdq.onnx"))
            # _static pre-processed into work/pre.onnx (or quantized work/fp32.onnx if that failed).
            pre = work / "pre.onnx" if (work / "pre.onnx").exists() else work / "fp32.onnx"
            return onnx_sensitivity(pre, work / "qdq.onnx", _reader(sample, [s.name for s in source.inputs], 1), work)


def _to_fp16(model: Any, keep_io: bool) -> Any:
    # onnxruntime ships the maintained copy of onnxconverter-common's float16 pass: no extra package.
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=keep_io)


def _dynamic(model: Any, tmp: Path, per_channel: bool, reduce_range: bool = False) -> Any:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = tmp / "dynamic.onnx"
    quantize_dynamic(str(_preprocessed(model, tmp)), str(dst), per_channel=per_channel, reduce_range=reduce_range,
                     weight_type=QuantType.QInt8)
    return onnx.load(str(dst))


def _preprocessed(model: Any, tmp: Path) -> Path:
    """The model saved for quantization, after onnxruntime's recommended pre-processing.

    Shape inference + graph fusions first give fewer, better-placed quantized ops; if the
    pre-processing itself fails, quantize the plain graph (it is an optimisation only).
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, pre = tmp / "fp32.onnx", tmp / "pre.onnx"
    onnx.save(model, str(src))
    try:
        quant_pre_process(str(src), str(pre))
    except Exception:  # noqa: BLE001
        return src
    return pre


def _static(model: Any, tmp: Path, calib: Any, source: Any, method: str, per_channel: bool,
            keep_float: tuple[str, ...] = (), reduce_range: bool = False) -> Any:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    pre, dst = _preprocessed(model, tmp), tmp / "int8.onnx"
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    # QDQ with signed int8 activations and weights: what TensorRT and ARM kernels want, and
    # onnxruntime's default. Same calibration Dataset the TFLite exporter uses.
    batch = calibration_batch(source, method)
    quantize_static(str(pre), str(dst), _reader(calib, [s.name for s in source.inputs], batch),
                    quant_format=QuantFormat.QDQ, per_channel=per_channel, reduce_range=reduce_range,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, calibrate_method=methods[method],
                    calibration_providers=["CPUExecutionProvider"], nodes_to_exclude=list(keep_float))
    return onnx.load(str(dst))


def calibration_batch(source: Any, method: str) -> int:
    """Samples per calibration call: :data:`CALIB_BATCH` for MinMax, fewer where activations are large.

    The calibration model runs the whole fp32 graph, so one call holds a batch of activations: 16
    MobileNetV2 224x224 samples are ~1.3 GB by :mod:`edgekit.convert.batching`'s estimate, the
    validation budget allows 6. MinMax keeps only each tensor's min and max per call, so the
    batch changes its memory, not its result. The source's ``max_batch`` (the recipe's,
    ``--max-batch``) caps it. The histogram methods stack every call's outputs and need equal
    batches: one sample at a time.

    Example:
        >>> from edgekit.manifest import TensorSpec
        >>> calibration_batch([TensorSpec("image", (None, 8, 8, 1), "float32")], "minmax")
        16
    """
    from edgekit.convert.batching import batch_for

    if method != "minmax":
        return 1
    return min(CALIB_BATCH, batch_for(source, max_batch=getattr(source, "max_batch", None)))


def _reader(calib: Any, names: list[str], batch: int) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class DatasetReader(CalibrationDataReader):
        """Feeds an edgekit calibration Dataset to onnxruntime's calibrators, by input name."""

        def __init__(self) -> None:
            self._it: Iterator[dict[str, Any]] = iter(())
            self.rewind()

        def get_next(self) -> dict[str, Any] | None:
            # Asked for the next batch: the one before it has run through the calibration model.
            self._tick(min(self._done, len(calib)))
            self._done += batch
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = (dict(zip(names, xs)) for xs, _ in calib.batches(batch))
            self._tick, self._done = counter("calibration", len(calib)), 0

    return DatasetReader()


def _stamp(model: Any, source: Any, precision: str, used: Mapping[str, Any]) -> None:
    """Record what made the file in the model's own metadata (readable by onnxruntime alone)."""
    meta = {"edgekit.version": __version__, "edgekit.precision": precision, "edgekit.source": str(source.name),
            **{f"edgekit.{k}": str(v) for k, v in used.items()}}
    keep = [p for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)


def _save(model: Any, out: Path) -> None:
    import onnx

    if model.ByteSize() >= 2**31 - 1:
        raise ExportError("the ONNX model is over 2 GiB, protobuf's limit for one file; edgekit writes single-file models only")
    onnx.save(model, str(out))


def _read_specs(path: Path):
    from edgekit.runtime.backends.onnxruntime import open_specs

    return open_specs(path)
