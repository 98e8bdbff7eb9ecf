"""The ``convert`` command's stage flags merged into a recipe's ``stages`` (no TensorFlow here).

Example:
    >>> cli_stages([], prune=0.8, prune_epochs=3, qat=True)[0]["prune"]["fit"]["epochs"]
    3
"""

from __future__ import annotations

from typing import Any, Sequence

from edgekit.convert.stages.config import STAGES, parse_stages
from edgekit.errors import RecipeError


def cli_stages(stages: Any, *, prune: float | None = None, prune_epochs: int | None = None,
               prune_structure: str | None = None, qat: bool = False, qat_epochs: int | None = None,
               qat_skip: Sequence[str] = (), strategy: str | None = None) -> list[dict[str, Any]]:
    """Merge the ``convert`` command's stage flags into a recipe's ``stages`` (its dict form).

    Flags override the matching recipe values; ``--prune``/``--prune-structure`` add a prune stage
    and ``--qat`` a QAT stage when the recipe has none; ``--qat-skip`` adds to the recipe's skip list.
    ``--strategy`` applies to every stage.

    Example:
        >>> cli_stages([], prune=0.8, prune_epochs=3, qat=True)[0]["prune"]["fit"]["epochs"]
        3
    """
    parsed = list(parse_stages(stages))
    by_kind = {s.kind: i for i, s in enumerate(parsed)}

    def edit(kind: str, create: bool, flag: str, **changes: Any) -> None:
        if kind not in by_kind:
            if not create:
                raise RecipeError(f"{flag} needs a {kind} stage: add --{kind}{' SPARSITY' if kind == 'prune' else ''} "
                                  f"or a {kind} stage in the recipe")
            parsed.insert(0 if kind == "prune" else len(parsed), STAGES[kind]())
            by_kind.clear()
            by_kind.update({s.kind: i for i, s in enumerate(parsed)})
        i = by_kind[kind]
        fit = changes.pop("fit", {})
        value = parsed[i].to_value()[kind]
        value.update(changes)
        value["fit"].update(fit)
        parsed[i] = STAGES[kind].from_value(value)

    if prune is not None:
        edit("prune", True, "--prune", sparsity=prune)
    if prune_structure is not None:
        edit("prune", True, "--prune-structure", structure=prune_structure)
    if prune_epochs is not None:
        edit("prune", False, "--prune-epochs", fit={"epochs": prune_epochs})
    if qat:
        edit("qat", True, "--qat")
    if qat_epochs is not None:
        edit("qat", False, "--qat-epochs", fit={"epochs": qat_epochs})
    if qat_skip:
        have = parsed[by_kind["qat"]].skip if "qat" in by_kind else ()
        edit("qat", False, "--qat-skip", skip=list(dict.fromkeys([*have, *qat_skip])))
    if strategy is not None:
        if not parsed:
            raise RecipeError("--strategy applies to training stages: add --prune SPARSITY or --qat (or stages in the recipe)")
        for s in list(parsed):
            edit(s.kind, False, "--strategy", fit={"strategy": strategy})
    return [s.to_value() for s in parsed]
