"""The exceptions edgekit raises on purpose.

Every error is one line that says what was received, what is allowed and how to fix it, so the
CLI can print ``error: <message>`` and exit non-zero without a traceback.
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Base of every error edgekit raises on purpose (the CLI prints these without a traceback)."""

    exit_code = 2

    def __str__(self) -> str:  # keep messages on one line, whatever an engine put in them
        return " ".join(super().__str__().split())


class RecipeError(EdgekitError):
    """A recipe (YAML, dict or CLI flags) is malformed or names something unknown."""


class UnsupportedError(EdgekitError):
    """A format x precision pair (or an option) that an exporter or backend does not support."""


class MissingDependencyError(EdgekitError):
    """An optional engine is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        self.package = package
        self.extra = extra
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"{package} is not installed{what}: pip install 'edgekit[{extra}]'"
        )


class ModelError(EdgekitError):
    """A model file or zoo name could not be loaded (missing, corrupt, unsafe, not a model)."""


class ExportError(EdgekitError):
    """An exporter failed to produce an artifact."""


class ValidationError(EdgekitError):
    """An artifact's outputs are outside tolerance against the reference model."""


class BackendError(EdgekitError):
    """An inference engine could not load or run an artifact."""


class InputError(EdgekitError):
    """Inputs (feeds, calibration or evaluation data) do not match what the model expects."""


class DataError(InputError):
    """A data source (npz, image folder, generator) is missing, empty or malformed."""
