"""TFLite exporter: fp32, fp16, dynamic-range int8, full int8 and 16x8, via the TFLite converter.

The model reaches the converter as a SavedModel with one named signature (see
:meth:`SourceModel.saved_model_dir`), the route that works for Keras 3 and tf_keras alike on TF >= 2.16.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from edgekit.quiet import captured_output
from edgekit.convert.tf_env import tf
from edgekit.convert.exporters.base import ExporterBase, ExportResult, Option, layer_names
from edgekit.convert.progress import counter
from edgekit.errors import ConverterError, EdgekitError, RecipeError, UnsupportedError

TOOL = "TFLite converter"
FLEX_NOTE = ("uses Select TF ops: it runs only where the Flex delegate is linked in (e.g. Android's "
             "tensorflow-lite-select-tf-ops); the ai-edge-litert and tensorflow pip wheels cannot run it")


class TFLiteExporter(ExporterBase):
    """Writes ``.tflite`` flatbuffers.

    Precisions:
        ``fp32``: no optimisation. ``fp16``: float16 weights, float compute on CPU.
        ``dynamic``: int8 weights, activations quantized on the fly. ``int8``: full integer
        (weights and activations) from calibration data; ``io=int8`` (default) makes the model's
        inputs/outputs int8 too, ``io=float`` keeps them float32. ``int16x8``: int16 activations,
        int8 weights, for models whose activations int8 cannot hold.

    Implements :class:`~edgekit.convert.exporters.base.Int8Search` (``keep_float`` names op outputs).

    Example:
        >>> TFLiteExporter().precisions
        ('fp32', 'fp16', 'dynamic', 'int8', 'int16x8')
        >>> from edgekit.convert.exporters import check_options
        >>> check_options(TFLiteExporter(), "int8", {"io": "int8", "keep_float": ["dense"]})
        Traceback (most recent call last):
        ...
        edgekit.errors.RecipeError: tflite option keep_float makes a model with float inputs/outputs (TensorFlow's quantization debugger builds it so), which contradicts io=int8: drop io or give io=float
    """

    format: ClassVar[str] = "tflite"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "dynamic", "int8", "int16x8")
    options: ClassVar[tuple[Option, ...]] = (
        Option("io", ("int8", "uint8", "float"), ("int8",), default="int8",
               help="dtype of the model's inputs/outputs"),
        # Op output names to leave in float (accuracy-aware int8 writes it; see
        # edgekit.convert.accuracy_aware). Such models keep float I/O.
        Option("keep_float", None, ("int8", "int16x8"), check=layer_names, default=(),
               help="op outputs to leave in float"),
        # Let ops without a TFLite builtin run as TensorFlow kernels ("Flex"): an explicit, recorded
        # opt-in because the runtime then needs the Flex delegate (plain LiteRT has none).
        Option("select_tf_ops", (True, False), default=False, help="allow TensorFlow (Flex) ops"),
    )
    needs_calibration: ClassVar[tuple[str, ...]] = ("int8", "int16x8")

    def unavailable(self) -> EdgekitError | None:
        try:
            tf()
        except EdgekitError as exc:  # MissingDependencyError: pip install 'edgekit[convert]'
            return exc
        except Exception as exc:  # noqa: BLE001 - a broken install must not break the listing
            return UnsupportedError(f"TensorFlow cannot be imported: {type(exc).__name__}: {exc}")
        return None

    def cross_check(self, precision: str, options: Mapping[str, Any]) -> None:
        # The selective model keeps float I/O; an explicit integer io cannot be honoured, and
        # turning it into float behind the user's back would hand them a model they did not ask for.
        if options.get("keep_float") and options.get("io", "float") != "float":
            raise RecipeError(f"tflite option keep_float makes a model with float inputs/outputs (TensorFlow's "
                              f"quantization debugger builds it so), which contradicts io={options['io']}: drop io "
                              "or give io=float")

    def export(self, source: Any, precision: str, options: Mapping[str, Any], calib: Any, out: Path) -> ExportResult:
        t = tf()
        self.ready(precision, options, calib)
        keep_float = layer_names(options.get("keep_float"))
        select = bool(self.setting(options, "select_tf_ops"))
        # Without keep_float, int8 defaults to integer I/O; the selective model is float I/O (and an
        # explicit integer io with keep_float was refused above).
        io = "float" if keep_float or precision != "int8" else self.setting(options, "io")
        with captured_output() as cap:
            try:
                if keep_float:
                    data = self._selective(t, source, precision, calib, keep_float)
                else:
                    data = self.converter(source, precision, io, calib, select_tf_ops=select).convert()
            except Exception as exc:  # noqa: BLE001 - the converter raises many types
                raise ConverterError(TOOL, _explain(exc, cap.tail(3))) from None
        Path(out).write_bytes(data)
        specs = _read_specs(out, source if select else None)
        opts: dict[str, Any] = {"io": io} if precision == "int8" else {}
        if keep_float:
            opts["keep_float"] = list(keep_float)
        notes: tuple[str, ...] = ()
        if select:
            opts["select_tf_ops"] = True
            notes = (FLEX_NOTE,)
        return ExportResult(inputs=specs[0], outputs=specs[1], options=opts, notes=notes)

    # -- Int8Search: what the accuracy-aware int8 search asks of this format ----------------------

    def layer_sensitivity(self, source: Any, calib: Any, options: Mapping[str, Any]) -> list[Any]:
        """Rank the int8 model's ops by ``rmse / scale`` (TensorFlow's quantization debugger).

        The names are op output tensor names, what ``keep_float`` (``denylisted_nodes``) takes.
        """
        from edgekit.convert.sensitivity import tflite_sensitivity

        return tflite_sensitivity(lambda: self.converter(source, "int8", "float", calib),
                                  positional_representative(self, source, calib))

    def int16_fallback(self) -> str | None:
        """16-bit activations, int8 weights: tried when no set of float layers meets the budget."""
        return "int16x8"

    def calibration_warnings(self, artifact: Path, calib: Any, evald: Any, input_names: Sequence[str]) -> list[str]:
        """Calibration-set warnings, including per-layer saturation on eval data (LiteRT runs the artifact)."""
        from edgekit.convert.calib_checks import calibration_warnings

        return calibration_warnings(calib, evald, artifact, input_names, artifact_inputs=input_order(artifact))

    def converter(self, source: Any, precision: str, io: str = "float", calib: Any = None, *,
                  select_tf_ops: bool = False) -> Any:
        """A ``TFLiteConverter`` configured for ``precision`` (what export and the sensitivity debugger use)."""
        t = tf()
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
                conv.target_spec.supported_ops = [t.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        if select_tf_ops:
            builtins = list(conv.target_spec.supported_ops or [t.lite.OpsSet.TFLITE_BUILTINS])
            conv.target_spec.supported_ops = builtins + [t.lite.OpsSet.SELECT_TF_OPS]
            # Keep TensorList ops (an RNN's while loop) as TF ops: lowering them needs static shapes.
            conv._experimental_lower_tensor_list_ops = False
        return conv

    def _selective(self, t: Any, source: Any, precision: str, calib: Any, keep_float: tuple[str, ...]) -> bytes:
        """Quantize everything but ``keep_float`` (TensorFlow's quantization debugger denylist)."""
        options = t.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(keep_float))
        debugger = t.lite.experimental.QuantizationDebugger(
            converter=self.converter(source, precision, "float", calib),
            debug_dataset=positional_representative(self, source, calib), debug_options=options)
        return debugger.get_nondebug_quantized_model()

    @staticmethod
    def _converter(t: Any, source: Any) -> Any:
        # The SavedModel route works for Keras 3, tf_keras and plain SavedModels alike.
        return t.lite.TFLiteConverter.from_saved_model(source.saved_model_dir(), signature_keys=["serving_default"])


def _representative(calib: Any, source: Any):
    names = [s.name for s in source.inputs]

    def gen():
        # Signature-based conversion accepts a dict keyed by input name, which keeps multi-input
        # models safe from the converter's own (alphabetical) input order.
        tick = counter("calibration", len(calib))
        for done, sample in enumerate(calib.samples(), 1):
            yield dict(zip(names, sample))
            tick(done)

    return gen


def positional_representative(exporter: Any, source: Any, calib: Any):
    """Calibration samples as lists in the converted model's own input order.

    The quantization debugger feeds inputs by position, and the converter orders them its own way
    (not the Keras order, not alphabetical), so read the order from a float conversion.
    """
    if len(source.inputs) == 1:
        def one():
            tick = counter("calibration", len(calib))
            for done, sample in enumerate(calib.samples(), 1):
                yield [sample[0]]
                tick(done)

        return one
    import tempfile

    float_bytes = exporter.converter(source, "fp32").convert()
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(float_bytes)
        f.flush()
        order = input_order(Path(f.name))
    pos = [[s.name for s in source.inputs].index(n) for n in order]

    def gen():
        tick = counter("calibration", len(calib))
        for done, sample in enumerate(calib.samples(), 1):
            yield [sample[i] for i in pos]
            tick(done)

    return gen


def input_order(model: Path) -> list[str]:
    """A ``.tflite`` model's input names in tensor-index order.

    The quantization debugger and the calibration checks feed inputs by position in that order,
    while the engine's (and the source's) inputs are in signature order.
    """
    from edgekit.runtime.backends.litert import LiteRTEngine

    return list(LiteRTEngine(Path(model), num_threads=1).input_tensor_order)


def _read_specs(path: Path, flex_source: Any = None):
    from edgekit.errors import BackendError
    from edgekit.runtime.backends.litert import open_interpreter_specs

    try:
        return open_interpreter_specs(path)
    except BackendError:
        if flex_source is None:
            raise
        # LiteRT cannot open a model with Flex ops; its signature keeps the source's names and dtypes.
        return tuple(flex_source.inputs), tuple(flex_source.outputs)


def _explain(exc: Exception, engine_tail: str) -> str:
    msg = " ".join(str(exc).split())
    located = re.search(r"\): ('tf\.\w+' op .*)", msg)
    if located and "error: loc(" in msg:
        # Drop MLIR's call-site location chains (before the op and in the trailing notes): the op
        # and the reason are what help.
        msg = located.group(1).split(" <unknown>:0: note:")[0].strip()
    hint = ""
    if "Flex delegate" in msg:
        hint = (" (int8/int16x8 calibration runs the model in the converter's own interpreter, which has no Flex "
                "delegate: Select TF ops work for fp32/fp16/dynamic only; for int8 avoid the TF ops, e.g. build "
                "LSTM/GRU layers with unroll=True)")
    elif "TensorListReserve" in msg and "element_shape to be static" in msg:
        hint = (" (a recurrent layer's loop (LSTM/GRU/RNN) has a dynamic batch size, which TFLite builtins cannot "
                "hold: build the layer with unroll=True for short sequences, or add the target option "
                "select_tf_ops=true, whose model needs the Flex delegate to run)")
    elif "Max and min for dynamic tensors should be recorded" in msg:
        hint = (" (the converter's 16x8 quantizer cannot take integer model inputs such as token ids; "
                "use tflite:int8 or tflite:dynamic for this model)")
    elif "Select TF" in msg or "FlexOps" in msg or "not supported by" in msg and "TFLite" in msg:
        hint = (" (an op has no TFLite builtin: replace it, or add the target option select_tf_ops=true, e.g. "
                "tflite:fp32,select_tf_ops=true, whose model needs the Flex delegate to run)")
    tail = f" [converter: {engine_tail}]" if engine_tail and engine_tail not in msg else ""
    return f"TFLite conversion failed: {msg[:400]}{hint}{tail}"
