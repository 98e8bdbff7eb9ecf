"""The ``convert`` command's flags as data, merged over a recipe in one place (no TensorFlow here).

The CLI collects its options into one :class:`ConvertFlags` and asks it for the recipe: a recipe
file (``--recipe``) is the base, every flag given wins over it, and flags not given leave the
file's values alone. Stage flags (``--prune``, ``--qat``...) edit the recipe's ``stages`` with
:func:`cli_stages`.

Example:
    >>> flags = ConvertFlags(model="digits-cnn", targets=("tflite:int8",), calib_limit=50, tols=("int8.min_snr_db=10",))
    >>> r = flags.recipe()
    >>> r.targets[0].name, r.calib_limit, r.tolerance("int8").min_snr_db
    ('tflite:int8', 50, 10.0)
    >>> cli_stages([], prune=0.8, prune_epochs=3, qat=True)[0]["prune"]["fit"]["epochs"]
    3
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

from edgekit.convert.recipe import Recipe
from edgekit.convert.stages.base import config_class
from edgekit.convert.stages.config import parse_stages
from edgekit.errors import RecipeError

DEFAULT_TARGET = "tflite:fp32"
# Flags that only exist to edit the recipe's training stages (see cli_stages).
STAGE_FLAGS = ("prune", "prune_epochs", "prune_structure", "qat", "qat_epochs", "qat_skip", "strategy")


@dataclass(frozen=True)
class ConvertFlags:
    """What ``edgekit convert`` was given, one field per recipe-shaping flag (``None``: not given).

    Attributes:
        model: MODEL: a file, SavedModel folder or zoo name; wins over the recipe file's.
        recipe_path: ``--recipe``: the YAML the flags override.
        targets: ``-t``: replaces the recipe's targets (default ``tflite:fp32`` when neither names any).
        calib, eval, calib_limit, eval_limit, seed: The recipe keys of the same names.
        max_accuracy_drop: ``--max-accuracy-drop``: a budget for every precision; turns on accuracy-aware int8.
        tols: ``--tol PREC.CHECK=V`` items (``none``/``null``/``off`` turn a check off).
        image_scale, image_mean, image_std: ``--image-*``: image-folder preprocessing (mean/std:
            a number or a comma list).
        allow_unsafe: ``--allow-unsafe``.
        train, train_limit: Training data for the stages.
        max_batch: ``--max-batch``: samples per model call in prediction, calibration and
            validation (recipe ``max_batch``; default: sized from a memory budget).
        prune, prune_epochs, prune_structure, qat, qat_epochs, qat_skip, strategy: Stage flags
            (see :func:`cli_stages`).
    """

    model: str | None = None
    recipe_path: str | None = None
    targets: tuple[str, ...] = ()
    calib: str | None = None
    eval: str | None = None
    calib_limit: int | None = None
    eval_limit: int | None = None
    seed: int | None = None
    max_accuracy_drop: float | None = None
    tols: tuple[str, ...] = ()
    image_scale: float | None = None
    image_mean: str | None = None
    image_std: str | None = None
    allow_unsafe: bool = False
    train: str | None = None
    train_limit: int | None = None
    max_batch: int | None = None
    prune: float | None = None
    prune_epochs: int | None = None
    prune_structure: str | None = None
    qat: bool = False
    qat_epochs: int | None = None
    qat_skip: tuple[str, ...] = ()
    strategy: str | None = None

    def __post_init__(self) -> None:
        # click hands over tuples already; API callers may pass lists.
        for name in ("targets", "tols", "qat_skip"):
            object.__setattr__(self, name, tuple(getattr(self, name) or ()))

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "ConvertFlags":
        """The flags among a command's parsed options (the others, e.g. ``--out``, are ignored).

        Example:
            >>> ConvertFlags.from_options({"model": "m.keras", "out_dir": "out/", "qat": True}).qat
            True
        """
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in names})

    def recipe(self) -> Recipe:
        """The recipe: ``--recipe``'s file (if any) with every given flag merged over it.

        Raises:
            RecipeError: neither MODEL nor ``--recipe``, a malformed ``--tol``/``--image-*``, or a
                stage flag without its stage.
        """
        if self.recipe_path:
            base = Recipe.from_yaml(self.recipe_path).to_dict()
        elif not self.model:
            raise RecipeError("give a MODEL (file, SavedModel folder or zoo name) or --recipe recipe.yaml")
        else:
            base = {}
        return self.merge(base)

    def merge(self, base: Mapping[str, Any]) -> Recipe:
        """``base`` (a recipe's dict form) with every given flag winning over it, as a :class:`Recipe`.

        Example:
            >>> ConvertFlags(seed=3).merge({"model": "m.keras", "seed": 1, "targets": ["onnx:fp32"]}).seed
            3
        """
        from edgekit.convert.recipe import Recipe, Target

        d: dict[str, Any] = dict(base)
        if self.model:
            d["model"] = self.model
        if self.targets:
            d["targets"] = [Target.parse(t).to_value() for t in self.targets]
        elif not d.get("targets"):
            d["targets"] = [DEFAULT_TARGET]
        for key in ("calib", "eval", "calib_limit", "eval_limit", "seed", "train", "train_limit", "max_batch"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        if self.allow_unsafe:
            d["allow_unsafe"] = True
        d["tolerances"] = self._tolerances(d.get("tolerances") or {})
        if self.max_accuracy_drop is not None:
            d["accuracy_aware"] = True  # a budget means: meet it, keeping sensitive layers in float
        images = dict(d.get("images") or {})
        for key, value in (("scale", self.image_scale), ("mean", self.image_mean), ("std", self.image_std)):
            if value is not None:
                images[key] = value if key == "scale" else _numbers(value, f"--image-{key}")
        d["images"] = images
        given = {k: getattr(self, k) for k in STAGE_FLAGS}
        if any(v not in (None, False, ()) for v in given.values()):
            d["stages"] = cli_stages(d.get("stages") or [], **given)
        return Recipe.from_dict(d)

    def _tolerances(self, base: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        out = {k: dict(v) for k, v in base.items()}
        if self.max_accuracy_drop is not None:
            out.setdefault("*", {})["max_accuracy_drop"] = self.max_accuracy_drop
        for item in self.tols:
            key, eq, value = item.partition("=")
            precision, dot, check = key.partition(".")
            if not eq or not dot:
                raise RecipeError(f"--tol {item!r} is not PRECISION.CHECK=VALUE, e.g. int8.max_accuracy_drop=1.0")
            try:
                number: Any = None if value.lower() in ("none", "null", "off") else float(value)
            except ValueError:
                raise RecipeError(f"--tol {item!r}: {value!r} is not a number") from None
            out.setdefault(precision, {})[check] = number
        return out


def _numbers(text: str, flag: str) -> float | list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise RecipeError(f"{flag} {text!r} must be a number or a comma list, e.g. 0.485,0.456,0.406") from None
    return vals[0] if len(vals) == 1 else vals


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
            parsed.insert(0 if kind == "prune" else len(parsed), config_class(kind)())
            by_kind.clear()
            by_kind.update({s.kind: i for i, s in enumerate(parsed)})
        i = by_kind[kind]
        fit = changes.pop("fit", {})
        value = parsed[i].to_value()[kind]
        value.update(changes)
        value["fit"].update(fit)
        parsed[i] = config_class(kind).from_value(value)

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
