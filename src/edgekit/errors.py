"""The exceptions edgekit raises on purpose.

Every error is one line that says what was received, what is allowed and how to fix it, so the
CLI can print ``error: <message>`` and exit non-zero without a traceback.
"""

from __future__ import annotations


# Who an artifact's error is down to, recorded as ``Artifact.error_kind`` where the error is raised
# (coverage and reports read it; nobody parses message text back):
#   edgekit      our own code or the data we were given
#   converter    a third-party converter or quantizer refused the model (``ConverterError.tool``)
#   engine       an inference engine could not load or run the artifact
#   unsupported  not possible on this machine (a missing engine, a platform the engine does not run on)
ERROR_KINDS = ("edgekit", "converter", "engine", "unsupported")


class EdgekitError(Exception):
    """Base of every error edgekit raises on purpose (the CLI prints these without a traceback)."""

    exit_code = 2
    kind = "edgekit"

    def __str__(self) -> str:  # keep messages on one line, whatever an engine put in them
        return " ".join(super().__str__().split())


class RecipeError(EdgekitError):
    """A recipe (YAML, dict or CLI flags) is malformed or names something unknown."""


class UnsupportedError(EdgekitError):
    """A format x precision pair (or an option) that an exporter or backend does not support."""

    kind = "unsupported"


class MissingDependencyError(EdgekitError):
    """An optional engine is not installed; the message names the extra to install.

    Attributes:
        package: The distribution or module that is missing.
        extra: The edgekit extra that installs it (``pip install 'edgekit[extra]'``).

    Example:
        >>> err = MissingDependencyError("onnxruntime", "onnx", "ONNX artifacts")
        >>> err.extra, err.install, err.kind
        ('onnx', "pip install 'edgekit[onnx]'", 'unsupported')
    """

    kind = "unsupported"

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        self.package = package
        self.extra = extra
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"{package} is not installed{what}: {self.install}")

    @property
    def install(self) -> str:
        """The command that fixes it."""
        return f"pip install 'edgekit[{self.extra}]'"


class ModelError(EdgekitError):
    """A model file or zoo name could not be loaded (missing, corrupt, unsafe, not a model)."""


class ExportError(EdgekitError):
    """An exporter failed to produce an artifact."""


class ConverterError(ExportError):
    """A third-party converter or quantizer refused the model (its message, plus edgekit's hint).

    Attributes:
        tool: Which converter (``"TFLite converter"``, ``"tf2onnx"``, ``"onnxruntime.quantization"``...).

    Example:
        >>> err = ConverterError("tf2onnx", "tf2onnx could not convert: op Foo")
        >>> err.kind, err.tool
        ('converter', 'tf2onnx')
    """

    kind = "converter"

    def __init__(self, tool: str, message: str) -> None:
        self.tool = tool
        super().__init__(message)


class BackendError(EdgekitError):
    """An inference engine could not load or run an artifact."""

    kind = "engine"


class BrokerError(EdgekitError):
    """The MQTT broker cannot be reached, or refused the connection or the subscription.

    Kind ``edgekit``: the broker address, credentials and topics are what we were given, and no
    artifact is at fault. Not an :class:`InputError`: the bridge reports *those* per message and
    goes on, while this one stops it at start.

    Example:
        >>> err = BrokerError("cannot connect to the MQTT broker mqtt://127.0.0.1:1883: ConnectionRefusedError")
        >>> err.kind, err.exit_code
        ('edgekit', 2)
    """


class InputError(EdgekitError):
    """Inputs (feeds, calibration or evaluation data) do not match what the model expects."""


class DataError(InputError):
    """A data source (npz, image folder, generator) is missing, empty or malformed."""


def error_kind(exc: BaseException) -> str:
    """The :data:`ERROR_KINDS` entry for an exception: its own ``kind``, ``"edgekit"`` for anything
    edgekit did not raise on purpose (an unhandled exception is our bug).

    Example:
        >>> error_kind(BackendError("corrupt")), error_kind(TypeError("x"))
        ('engine', 'edgekit')
    """
    kind = getattr(exc, "kind", None) if isinstance(exc, EdgekitError) else None
    return kind if kind in ERROR_KINDS else "edgekit"
