"""What a format is, written once: the ``FORMATS`` table.

Every part of edgekit that needs to know about a format reads this table: the exporter and backend
registries, ``--list-targets`` and the capability table, ``doctor``'s install hints, device
detection of installed engines, the artifact chooser's per-device preferences, the manifest's
``versions``, the coverage matrix and the accuracy-aware int8 search. A new format is one exporter
module, one backend module and one :class:`FormatSpec` here (or :func:`register_format` from a
plug-in package), nothing else.

This module imports nothing heavy (standard library only), so the runtime can read it on a device.

Example:
    >>> FORMATS["tflite"].suffixes[0], FORMATS["tflite"].extra
    ('.tflite', 'tflite')
    >>> format_for_suffix(".ONNX")
    'onnx'
    >>> preference("arm")[:2]
    [('tflite', 'int8'), ('tflite', 'dynamic')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

# Device classes the artifact chooser tells apart (see edgekit.runtime.choose.device_class).
DEVICE_CLASSES = ("mac", "gpu", "arm", "x86_vnni", "x86")
# Distributions recorded in every manifest whatever the targets: the converter's own stack.
BASE_DISTRIBUTIONS = ("tensorflow", "keras", "tf-keras", "numpy")


@dataclass(frozen=True)
class EngineModule:
    """An importable engine that runs a format, and the distributions that install it.

    Attributes:
        module: Import name, found with ``importlib.util.find_spec`` (never imported to detect it).
        distributions: PyPI names whose version is reported, first installed wins
            (``onnxruntime-gpu`` installs the ``onnxruntime`` module too).
    """

    module: str
    distributions: tuple[str, ...]


@dataclass(frozen=True)
class FormatSpec:
    """One artifact format: who writes it, who runs it, what to install, where it runs well.

    Attributes:
        name: The format's name in targets (``"tflite"`` in ``tflite:int8``).
        exporter: ``"module:Class"`` of its exporter (imported only when used).
        backend: ``"module:Class"`` of its runtime backend (imported only when used).
        suffixes: File or folder suffixes of its artifacts; the first is the one written.
        extra: The pip extra that installs its runtime engine (``pip install 'edgekit[extra]'``).
        install: What ``doctor`` tells a user to run when the engine is missing, if more than the extra.
        engines: Engines that run it, in the order the backend tries them.
        converter_distributions: Distributions the exporter uses, reported in the manifest's versions.
        prefer: Device class (:data:`DEVICE_CLASSES`) -> precision -> rank; lower ranks are chosen
            first across all formats. A precision missing for a class ranks after every listed one.
        platforms: ``platform.system()`` values the engine runs on (``()``: anywhere numpy does).
        int8_search: Whether its exporter ranks layers by int8 sensitivity for accuracy-aware int8
            (the exporter then implements :class:`edgekit.convert.exporters.Int8Search`).
    """

    name: str
    exporter: str
    backend: str
    suffixes: tuple[str, ...]
    extra: str
    install: str | None = None
    engines: tuple[EngineModule, ...] = ()
    converter_distributions: tuple[str, ...] = ()
    prefer: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    platforms: tuple[str, ...] = ()
    int8_search: bool = False

    def __post_init__(self) -> None:
        if not self.suffixes or any(not s.startswith(".") or s != s.lower() for s in self.suffixes):
            raise ValueError(f"format {self.name!r}: suffixes must be lower-case and start with '.', got {self.suffixes}")
        for spec in (self.exporter, self.backend):
            if ":" not in spec:
                raise ValueError(f"format {self.name!r}: {spec!r} is not 'module:Class'")
        bad = set(self.prefer) - set(DEVICE_CLASSES)
        if bad:
            raise ValueError(f"format {self.name!r}: unknown device class(es) {sorted(bad)}; known: {', '.join(DEVICE_CLASSES)}")

    @property
    def suffix(self) -> str:
        """The suffix of the artifacts the exporter writes."""
        return self.suffixes[0]

    @property
    def install_hint(self) -> str:
        """The command (or instruction) that makes this format's engine available."""
        return self.install or f"pip install 'edgekit[{self.extra}]'"

    def runs_on(self, system: str) -> bool:
        """Whether the engine can run on ``platform.system()`` == ``system``."""
        return not self.platforms or system in self.platforms


FORMATS: dict[str, FormatSpec] = {}


def register_format(spec: FormatSpec) -> FormatSpec:
    """Add (or replace) a format in :data:`FORMATS`; every registry and table follows.

    Example:
        >>> spec = register_format(FormatSpec("demo", "m:Exporter", "m:Backend", (".demo",), "demo"))
        >>> format_for_suffix(".demo")
        'demo'
        >>> _ = FORMATS.pop("demo")
    """
    FORMATS[spec.name] = spec
    return spec


_EXP = "edgekit.convert.exporters"
_BACK = "edgekit.runtime.backends"
_TRT_INSTALL = "pip install tensorrt  (desktop) / use JetPack's python3-libnvinfer (Jetson): see Dockerfile.jetson"
_TFTRT_INSTALL = "a TensorRT-enabled TensorFlow: NVIDIA's Jetson wheels or NGC containers (see Dockerfile.jetson)"

# The preference ranks encode what we measured and what the engines document (ANCHORS): on a GPU
# TensorRT first, then ONNX Runtime CUDA; on ARM int8 TFLite with XNNPACK; on x86 with VNNI int8
# pays off, without it fp32 first (int8 was no faster there).
for _spec in (
    FormatSpec(
        "tflite", f"{_EXP}.tflite:TFLiteExporter", f"{_BACK}.litert:LiteRTBackend", (".tflite",), "tflite",
        engines=(EngineModule("ai_edge_litert", ("ai-edge-litert",)), EngineModule("tflite_runtime", ("tflite-runtime",))),
        prefer=MappingProxyType({
            "gpu": {"fp16": 7, "fp32": 8, "int8": 10},
            "arm": {"int8": 0, "dynamic": 1, "fp16": 2, "fp32": 3, "int16x8": 6},
            "x86_vnni": {"int8": 0, "fp32": 2, "dynamic": 4, "fp16": 5},
            "x86": {"fp32": 0, "int8": 2, "dynamic": 4, "fp16": 5},
            "mac": {"fp32": 3, "int8": 4},
        }),
        int8_search=True,
    ),
    FormatSpec(
        "onnx", f"{_EXP}.onnx:ONNXExporter", f"{_BACK}.onnxruntime:ONNXRuntimeBackend", (".onnx",), "onnx",
        engines=(EngineModule("onnxruntime", ("onnxruntime", "onnxruntime-gpu")),),
        converter_distributions=("tf2onnx", "onnx", "onnxruntime"),
        prefer=MappingProxyType({
            "gpu": {"fp16": 3, "fp32": 4, "int8": 9},
            "arm": {"int8": 4, "fp32": 5},
            "x86_vnni": {"int8": 1, "fp32": 3, "fp16": 6},
            "x86": {"fp32": 1, "int8": 3, "fp16": 6, "dynamic": 7},
        }),
        int8_search=True,
    ),
    FormatSpec(
        "coreml", f"{_EXP}.coreml:CoreMLExporter", f"{_BACK}.coreml:CoreMLBackend", (".mlpackage",), "coreml",
        install="pip install 'edgekit[coreml]'  (runs on macOS only)",
        engines=(EngineModule("coremltools", ("coremltools",)),),
        converter_distributions=("coremltools",),
        prefer=MappingProxyType({"mac": {"fp16": 0, "int8": 1, "fp32": 2}}),
        platforms=("Darwin",),
    ),
    FormatSpec(
        # A TF-TRT SavedModel folder; runs on TensorFlow itself.
        "tftrt", f"{_EXP}.tftrt:TFTRTExporter", f"{_BACK}.tftrt:TFTRTBackend", (".tftrt",), "convert",
        install=_TFTRT_INSTALL,
        engines=(EngineModule("tensorflow", ("tensorflow",)),),
        prefer=MappingProxyType({"gpu": {"fp16": 5, "fp32": 6}}),
    ),
    FormatSpec(
        # A .trt folder (ONNX + build settings + per-device engine cache); bare engines load too.
        "tensorrt", f"{_EXP}.tensorrt:TensorRTExporter", f"{_BACK}.tensorrt:TensorRTBackend",
        (".trt", ".engine", ".plan"), "tensorrt",
        install=_TRT_INSTALL,
        engines=(EngineModule("tensorrt", ("tensorrt",)),),
        converter_distributions=("tensorrt",),
        prefer=MappingProxyType({"gpu": {"int8": 0, "fp16": 1, "fp32": 2}}),
        platforms=("Linux", "Windows"),
    ),
):
    register_format(_spec)


def format_names() -> list[str]:
    """Every registered format, sorted.

    Example:
        >>> {"tflite", "onnx"} <= set(format_names())
        True
    """
    return sorted(FORMATS)


def suffixes() -> dict[str, str]:
    """Every artifact suffix -> its format.

    Example:
        >>> suffixes()[".mlpackage"]
        'coreml'
    """
    return {s: spec.name for spec in FORMATS.values() for s in spec.suffixes}


def format_for_suffix(suffix: str) -> str | None:
    """The format whose artifacts end in ``suffix`` (any case), or ``None``."""
    return suffixes().get(suffix.lower())


def preference(device_class: str) -> list[tuple[str, str]]:
    """``(format, precision)`` pairs a device class prefers, best first.

    Example:
        >>> preference("gpu")[0]
        ('tensorrt', 'int8')
    """
    ranked = [(rank, fmt, prec) for fmt, spec in FORMATS.items() for prec, rank in spec.prefer.get(device_class, {}).items()]
    return [(fmt, prec) for _, fmt, prec in sorted(ranked)]


def engine_modules() -> dict[str, tuple[tuple[str, ...], str]]:
    """Engine import name -> (its distributions, the format it runs), over every format.

    Example:
        >>> engine_modules()["onnxruntime"][1]
        'onnx'
    """
    out: dict[str, tuple[tuple[str, ...], str]] = {}
    for spec in FORMATS.values():
        for eng in spec.engines:
            out.setdefault(eng.module, (eng.distributions, spec.name))
    return out


def distributions() -> tuple[str, ...]:
    """Every distribution worth recording in a manifest or report, without repeats.

    Example:
        >>> "onnxruntime" in distributions() and "tensorflow" in distributions()
        True
    """
    names: list[str] = list(BASE_DISTRIBUTIONS)
    for spec in FORMATS.values():
        names += list(spec.converter_distributions)
        names += [d for eng in spec.engines for d in eng.distributions]
    return tuple(dict.fromkeys(names))


def installed_versions() -> dict[str, str]:
    """Installed version of every distribution in :func:`distributions` (absent ones left out).

    Reads package metadata only: nothing is imported, so it is cheap and safe on any device.

    Example:
        >>> "numpy" in installed_versions()
        True
    """
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in distributions():
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return found
