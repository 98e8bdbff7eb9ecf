"""TensorRT exporter: the fp32 ONNX graph to a TensorRT engine, built here, shipped with its recipe.

Writes a ``.trt`` folder (layout in :mod:`edgekit.runtime.backends.tensorrt`): the ONNX model, the
build settings, the int8 calibration cache and the engine built on this machine, keyed by TensorRT
version + GPU. Another device rebuilds from the same folder on first load, so the artifact is
portable even though engines are not.

Needs ``tensorrt`` + ``cuda-python`` and a GPU at conversion time; without them the pipeline records
the target as ``unsupported`` with the reason, and the other targets go on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Mapping

from edgekit.quiet import captured_output
from edgekit.convert.exporters._tf2onnx import DEFAULT_OPSET, missing_converter, onnx_model
from edgekit.checks import positive_int
from edgekit.convert.exporters.base import ExporterBase, ExportResult, Option
from edgekit.errors import BackendError, ConverterError, EdgekitError, RecipeError
from edgekit.manifest import TensorSpec

DEFAULT_MAX_BATCH = 64
TOOL = "TensorRT"


class TensorRTExporter(ExporterBase):
    """Writes ``.trt`` folders holding a TensorRT engine for this GPU and what is needed to rebuild it.

    Precisions:
        ``fp32``; ``fp16`` (FP16 kernels where faster); ``int8`` (entropy calibration over the same
        calibration data as every other int8 target; the cache ships with the artifact).

    Options:
        ``max_batch`` (default 64) and ``opt_batch`` (default 1): the dynamic-batch profile
        (min 1 / opt / max). ``workspace_mb`` (default 1024): builder scratch memory.

    Example:
        >>> TensorRTExporter().precisions
        ('fp32', 'fp16', 'int8')
    """

    format: ClassVar[str] = "tensorrt"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    options: ClassVar[tuple[Option, ...]] = (
        Option("max_batch", check=positive_int, default=DEFAULT_MAX_BATCH, help="largest batch of the profile"),
        Option("opt_batch", check=positive_int, default=1, help="batch the kernels are tuned for"),
        # None: the runtime's default, so a rebuild on the device uses the same number.
        Option("workspace_mb", check=positive_int, default=None, help="builder scratch memory (MiB)"),
    )
    needs_calibration: ClassVar[tuple[str, ...]] = ("int8",)

    def unavailable(self) -> EdgekitError | None:
        from edgekit.runtime.backends import get_backend

        # Building an engine needs what running one needs (tensorrt, CUDA, a GPU), plus tf2onnx.
        return missing_converter() or get_backend("tensorrt").unavailable()

    def cross_check(self, precision: str, options: Mapping[str, Any]) -> None:
        """The batch profile must be ordered: opt <= max.

        Example:
            >>> TensorRTExporter().cross_check("fp16", {"max_batch": 8, "opt_batch": 16})
            Traceback (most recent call last):
            ...
            edgekit.errors.RecipeError: tensorrt option opt_batch=16 is larger than max_batch=8
        """
        mb, ob = self.setting(options, "max_batch"), self.setting(options, "opt_batch")
        if ob > mb:
            raise RecipeError(f"tensorrt option opt_batch={ob} is larger than max_batch={mb}")

    def export(self, source: Any, precision: str, options: Mapping[str, Any], calib: Any, out: Path) -> ExportResult:
        from edgekit.runtime.backends import trt_support
        from edgekit.runtime.backends.tensorrt import BUILD_FILE, CALIB_FILE, ENGINES, ONNX_FILE

        self.ready(precision, options, calib)
        workspace = self.setting(options, "workspace_mb") or trt_support.DEFAULT_WORKSPACE_MB
        build = {"precision": precision, "max_batch": int(self.setting(options, "max_batch")),
                 "opt_batch": int(self.setting(options, "opt_batch")), "workspace_mb": int(workspace),
                 "opset": DEFAULT_OPSET}
        proto, route = onnx_model(source, DEFAULT_OPSET)
        onnx_bytes = proto.SerializeToString()
        names = [s.name for s in source.inputs]
        with captured_output() as cap:
            try:
                cuda = trt_support.Cuda()
                calibrator = None
                if precision == "int8":
                    calibrator = trt_support.calibrator((dict(zip(names, s)) for s in calib.samples()), None, cuda)
                plan = trt_support.build_engine(onnx_bytes, precision, max_batch=build["max_batch"], opt_batch=build["opt_batch"],
                                                workspace_mb=build["workspace_mb"], calib=calibrator)
                key = trt_support.cache_key(cuda)
                gpu, cc = cuda.device()
            except BackendError as exc:
                raise ConverterError(TOOL, f"TensorRT build failed: {exc} [{cap.tail(2)}]") from None
        folder = Path(out)
        (folder / ENGINES).mkdir(parents=True)
        (folder / ONNX_FILE).write_bytes(onnx_bytes)
        (folder / ENGINES / f"{key}.engine").write_bytes(plan)
        if calibrator is not None and calibrator.cache:
            (folder / CALIB_FILE).write_bytes(calibrator.cache)
        build.update({"built_for": key, "gpu": gpu, "compute_capability": cc, "tensorrt": trt_support.trt().__version__})
        (folder / BUILD_FILE).write_text(json.dumps(build, indent=2) + "\n")
        return ExportResult(inputs=_specs(proto.graph.input), outputs=_specs(proto.graph.output),
                            options={k: build[k] for k in ("max_batch", "opt_batch", "workspace_mb")},
                            notes=(f"engine built for {key}; other devices rebuild from model.onnx on first load",
                                   f"tf2onnx route: {route}"))


def _specs(values: Any) -> tuple[TensorSpec, ...]:
    from onnx import helper

    out = []
    for v in values:
        tt = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        out.append(TensorSpec(v.name, dims, str(helper.tensor_dtype_to_np_dtype(tt.elem_type))))
    return tuple(out)
