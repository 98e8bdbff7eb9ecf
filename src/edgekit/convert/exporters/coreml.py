"""CoreML exporter: ML Program ``.mlpackage`` folders with coremltools, on any OS.

Conversion runs on Linux (coremltools 9.0 converts the TF 2.21 SavedModel signature here, though
it is only tested up to TF 2.12); CoreML *predictions* need macOS, so elsewhere the pipeline records
these artifacts as ``not_validated`` (see :mod:`edgekit.runtime.backends.coreml`).

The model goes in as the source's ``serving_default`` concrete function, the route that works for
Keras 3, tf_keras and SavedModels alike (coremltools has no Keras 3 frontend).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from edgekit.quiet import captured_output
from edgekit.checks import positive_int
from edgekit.convert.tf_env import tf
from edgekit.convert.exporters.base import ExporterBase, ExportResult, Option
from edgekit.errors import ConverterError, EdgekitError, ExportError, MissingDependencyError

PALETTIZE_BITS = (1, 2, 3, 4, 6, 8)
DEFAULT_PALETTIZE_BITS = 6
DEFAULT_MAX_BATCH = 64
TOOL = "coremltools"


class CoreMLExporter(ExporterBase):
    """Writes ``.mlpackage`` folders (ML Program).

    Precisions:
        ``fp32``: float32 weights and compute. ``fp16``: float16 compute precision (CoreML's own
        default; the Neural Engine runs float16). ``int8``: int8 weights (linear symmetric,
        per-channel), decompressed at load time; compute in ``compute=fp16`` (default) or ``fp32``.
        ``palettized``: weights clustered into a ``2**palettize_bits``-entry look-up table
        (k-means; default 6 bits). Compressed precisions need iOS 16 / macOS 13.

    Options:
        ``max_batch`` (default 64): upper bound of the flexible batch axis.

    Example:
        >>> CoreMLExporter().precisions
        ('fp32', 'fp16', 'int8', 'palettized')
        >>> from edgekit.convert.exporters import check_options
        >>> check_options(CoreMLExporter(), "fp32", {"palettize_bits": 4})
        Traceback (most recent call last):
        ...
        edgekit.errors.RecipeError: coreml option palettize_bits=4 does not apply to coreml:fp32; it applies to: coreml:palettized
    """

    format: ClassVar[str] = "coreml"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8", "palettized")
    options: ClassVar[tuple[Option, ...]] = (
        Option("compute", ("fp16", "fp32"), ("int8", "palettized"), default="fp16", help="compute precision"),
        Option("palettize_bits", PALETTIZE_BITS, ("palettized",), default=DEFAULT_PALETTIZE_BITS,
               help="look-up table bits"),
        Option("max_batch", check=positive_int, default=DEFAULT_MAX_BATCH, help="largest batch"),
    )
    needs_calibration: ClassVar[tuple[str, ...]] = ()

    def unavailable(self) -> EdgekitError | None:
        if importlib.util.find_spec("coremltools") is None:
            return MissingDependencyError("coremltools", "coreml", "CoreML export")
        if importlib.util.find_spec("tensorflow") is None:
            return MissingDependencyError("tensorflow", "convert", "CoreML export")
        return None

    def export(self, source: Any, precision: str, options: Mapping[str, Any], calib: Any, out: Path) -> ExportResult:
        self.ready(precision, options, calib)
        used: dict[str, Any] = {"max_batch": int(self.setting(options, "max_batch"))}
        if precision in ("int8", "palettized"):
            used["compute"] = self.setting(options, "compute")
            used["minimum_deployment_target"] = "iOS16"
        if precision == "palettized":
            used["palettize_bits"] = int(self.setting(options, "palettize_bits"))
        with captured_output() as cap:
            try:
                ct = _coremltools()
                model, names = _convert(ct, source, precision, used)
                if precision == "int8":
                    model = _linear_int8(model)
                elif precision == "palettized":
                    model = _palettize(model, used["palettize_bits"])
                model = _rename_outputs(ct, model, names, source)
                _save(model, Path(out))
            except (ExportError, MissingDependencyError):
                raise
            except Exception as exc:  # noqa: BLE001 - coremltools raises many types
                msg = " ".join(str(exc).split())[:300] or type(exc).__name__
                tail = cap.tail(2)
                extra = f" [{tail}]" if tail and tail not in msg else ""
                raise ConverterError(TOOL, f"CoreML conversion failed: {msg}{extra}") from None
        return ExportResult(inputs=tuple(source.inputs), outputs=tuple(source.outputs), options=used,
                            notes=("CoreML models run only on macOS: validate there with edgekit bench",))


def _coremltools() -> Any:
    # coremltools warns at import about untested TF/scikit-learn versions and missing macOS-only
    # libraries; none of it is actionable on a Linux conversion host.
    for name in ("coremltools", "coremltools.converters", "coremltools.models"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import coremltools as ct
        except ImportError:
            raise MissingDependencyError("coremltools", "coreml", "CoreML export") from None
    return ct


def _convert(ct: Any, source: Any, precision: str, used: Mapping[str, Any]) -> tuple[Any, dict[str, str]]:
    """The converted ML Program and {graph output name: signature output name}."""
    if any(d is None for s in source.inputs for d in s.shape[1:]):
        raise ExportError("CoreML export needs fixed input shapes apart from the batch axis; "
                          f"this model takes {', '.join(s.describe() for s in source.inputs)}")
    t = tf()
    loaded = t.saved_model.load(source.saved_model_dir())
    fn = loaded.signatures["serving_default"]
    inputs = [ct.TensorType(name=s.name, dtype=np.dtype(s.dtype).type,
                            shape=(ct.RangeDim(lower_bound=1, upper_bound=used["max_batch"], default=1), *s.shape[1:]))
              for s in source.inputs]
    compute = used.get("compute", "fp16" if precision == "fp16" else "fp32")
    kwargs: dict[str, Any] = {}
    if "minimum_deployment_target" in used:
        kwargs["minimum_deployment_target"] = ct.target.iOS16  # constexpr (de)compression ops
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ct.convert([fn], source="tensorflow", convert_to="mlprogram", inputs=inputs,
                           compute_precision=ct.precision.FLOAT16 if compute == "fp16" else ct.precision.FLOAT32,
                           skip_model_load=True, **kwargs)
    # Map the graph's output tensors (Identity, Identity_1, ...) to the signature's output names;
    # a signature flattens its output dict in sorted key order.
    graph_names = [o.name.split(":")[0] for o in fn.outputs]
    del loaded
    return model, dict(zip(graph_names, sorted(fn.structured_outputs)))


def _linear_int8(model: Any) -> Any:
    import coremltools.optimize.coreml as cto

    config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8"))
    return cto.linear_quantize_weights(model, config)


def _palettize(model: Any, bits: int) -> Any:
    import coremltools.optimize.coreml as cto

    config = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(mode="kmeans", nbits=bits))
    return cto.palettize_weights(model, config)


def _rename_outputs(ct: Any, model: Any, mapping: dict[str, str], source: Any) -> Any:
    spec = model.get_spec()
    have = [o.name for o in spec.description.output]
    if sorted(have) != sorted(mapping):
        raise ExportError(f"coremltools named the outputs {have}, expected {sorted(mapping)}")
    for old, new in mapping.items():
        if old != new:
            ct.utils.rename_feature(spec, old, new, rename_inputs=False)
    want = sorted(s.name for s in source.outputs)
    if sorted(mapping.values()) != want:
        raise ExportError(f"the SavedModel signature has outputs {sorted(mapping.values())}, the model {want}")
    # weights_dir: an ML Program keeps its weights beside the spec; rebuild around the same files.
    return ct.models.MLModel(spec, weights_dir=model.weights_dir, skip_model_load=True)


def _save(model: Any, out: Path) -> None:
    # coremltools insists on the .mlpackage suffix, and the pipeline hands us a staging name:
    # save beside it under a proper name, then rename into place (same file system: atomic).
    tmp = Path(tempfile.mkdtemp(prefix=".edgekit-coreml-", dir=out.parent))
    try:
        pkg = tmp / "model.mlpackage"
        model.save(str(pkg))
        # Modes: coremltools leaves the weights folder 0700; the pipeline's place() gives the whole
        # package the umask's modes before it is renamed into the output folder.
        os.replace(pkg, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
