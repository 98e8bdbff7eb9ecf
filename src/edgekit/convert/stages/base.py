"""The stage protocol and the registry of training-time stages by kind.

A stage (prune, QAT) is a config dataclass plus a :class:`Stage` that applies it to a tf_keras
model. The registry holds lazy ``"module:Class"`` strings, so parsing a recipe imports no
TensorFlow; a new stage is one module (config + ``Stage``) and one line in :data:`STAGE_CLASSES`,
never an ``if`` in :func:`~edgekit.convert.stages.apply_stages`.

Example:
    >>> stage_kinds()
    ['prune', 'qat']
    >>> check_kind("prun")
    Traceback (most recent call last):
    ...
    edgekit.errors.RecipeError: unknown stage 'prun'; did you mean 'prune'? (stages: prune, qat)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

from edgekit.errors import RecipeError
from edgekit.registry import Registry, did_you_mean

Progress = Callable[[str], None]

# Kind -> lazy "module:Class" of its Stage; the modules import TensorFlow only inside functions.
STAGE_CLASSES: dict[str, str] = {
    "prune": "edgekit.convert.stages.prune:PruneStage",
    "qat": "edgekit.convert.stages.qat:QatStage",
}
STAGES_REGISTRY: "Registry[Stage]" = Registry("stage", STAGE_CLASSES, error=RecipeError, known_label="stages")


@dataclass(frozen=True)
class StageContext:
    """What a stage needs besides the model and its config.

    Attributes:
        source_model: The user's untouched Keras model (loss detection reads its compile state).
        train: Labelled training :class:`~edgekit.calibration.Dataset`, checked against the inputs.
        seed: The recipe's seed (same recipe, same data -> same weights).
        say: One-line progress messages.
        done: Kinds of the stages that already ran on the model, in order (QAT preserves a prune
            stage's zeros).
    """

    source_model: Any
    train: Any
    seed: int
    say: Progress
    done: tuple[str, ...] = ()


@runtime_checkable
class Stage(Protocol):
    """One training-time stage: ``prepare -> fit -> finalize`` on a clone of the model, in ``apply``."""

    kind: ClassVar[str]
    config: ClassVar[type]  # its frozen config dataclass, with from_value/to_value

    def apply(self, model: Any, cfg: Any, ctx: StageContext) -> tuple[Any, dict[str, Any]]:
        """The staged tf_keras model (never ``model`` itself, which stays untouched) and its report."""


def stage_kinds() -> list[str]:
    """Every registered stage kind, sorted."""
    return STAGES_REGISTRY.names()


def check_kind(kind: Any) -> str:
    """``kind`` itself when a stage is registered under it, else a RecipeError with a hint."""
    if kind not in STAGES_REGISTRY:
        did = did_you_mean(str(kind), stage_kinds(), "; did you mean {!r}?")
        raise RecipeError(f"unknown stage {kind!r}{did} (stages: {', '.join(stage_kinds())})")
    return kind


def config_class(kind: str) -> type:
    """The config dataclass of stage ``kind`` (imports the stage's module, not TensorFlow).

    Example:
        >>> config_class("prune").__name__
        'PruneConfig'
    """
    return STAGES_REGISTRY.load(check_kind(kind)).config


def get_stage(kind: str) -> Stage:
    """The :class:`Stage` registered as ``kind``."""
    return STAGES_REGISTRY.get(check_kind(kind))


__all__ = ["STAGES_REGISTRY", "STAGE_CLASSES", "Stage", "StageContext", "check_kind", "config_class", "get_stage",
           "stage_kinds"]
