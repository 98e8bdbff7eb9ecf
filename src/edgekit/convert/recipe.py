"""Recipes: what to convert, to which targets, with which data and tolerances. Plain data.

A recipe round-trips through ``to_dict``/``from_dict`` (and YAML) and is stored in every manifest, so
an artifact always carries what made it. Unknown keys are rejected with a hint.

Example:
    >>> r = Recipe.from_dict({"model": "digits-cnn", "targets": ["tflite:fp32", "tflite:int8"]})
    >>> [t.name for t in r.targets]
    ['tflite:fp32', 'tflite:int8']
    >>> Recipe.from_dict(r.to_dict()) == r
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from edgekit.checks import known_key, positive_int
from edgekit.convert.stages.config import parse_stages
from edgekit.registry import did_you_mean
from edgekit.errors import RecipeError

# Default per-precision tolerances against the reference model. Chosen from what each precision
# can honestly promise on a well-calibrated model: fp32 is a re-implementation of the same maths;
# fp16 halves mantissa bits; int8 loses most, so it is judged by the task (accuracy, top-1).
DEFAULT_TOLERANCES: dict[str, dict[str, float | None]] = {
    "fp32": {"max_abs_err": 1e-4, "min_snr_db": 60.0, "min_top1_agreement": 0.99, "max_accuracy_drop": 0.5},
    "fp16": {"max_abs_err": None, "min_snr_db": 30.0, "min_top1_agreement": 0.98, "max_accuracy_drop": 1.0},
    "dynamic": {"max_abs_err": None, "min_snr_db": 20.0, "min_top1_agreement": 0.95, "max_accuracy_drop": 2.0},
    "int16x8": {"max_abs_err": None, "min_snr_db": 20.0, "min_top1_agreement": 0.95, "max_accuracy_drop": 2.0},
    "int8": {"max_abs_err": None, "min_snr_db": 12.0, "min_top1_agreement": 0.90, "max_accuracy_drop": 2.0},
}


IMAGE_OPTIONS = ("scale", "mean", "std")
STAGED_ACCURACY_DROP = 2.0  # points; the default budget when pruning/QAT change the model on purpose


@dataclass(frozen=True)
class Tolerance:
    """Pass/fail limits for one artifact against the reference model. ``None`` skips a check.

    Attributes:
        max_abs_err: Largest allowed |artifact - reference| over all outputs, relative to
            ``max(1, peak |reference|)`` so logits of any scale are judged alike.
        min_snr_db: Smallest allowed signal-to-noise ratio of the outputs, in dB.
        min_top1_agreement: Smallest fraction of samples whose arg-max matches the reference.
        max_accuracy_drop: Largest allowed accuracy loss in points (only with labels).

    Example:
        >>> Tolerance.for_precision("int8").max_accuracy_drop
        2.0
    """

    max_abs_err: float | None = None
    min_snr_db: float | None = None
    min_top1_agreement: float | None = None
    max_accuracy_drop: float | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None and (not isinstance(v, (int, float)) or v < 0):
                raise RecipeError(f"tolerance {f.name} must be a non-negative number or null, got {v!r}")

    @classmethod
    def for_precision(cls, precision: str, overrides: Mapping[str, Any] | None = None) -> "Tolerance":
        base = dict(DEFAULT_TOLERANCES.get(precision, DEFAULT_TOLERANCES["int8"]))
        base.update(overrides or {})
        return cls(**base)


@dataclass(frozen=True)
class Target:
    """One artifact to produce: a format, a precision and exporter options.

    Written ``format:precision[,key=value...]`` on the command line, e.g. ``tflite:int8,io=float``.

    Example:
        >>> Target.parse("tflite:int8,io=float")
        Target(format='tflite', precision='int8', options=(('io', 'float'),))
    """

    format: str
    precision: str = "fp32"
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.format}:{self.precision}"

    @property
    def opts(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def display(self) -> str:
        """``format:precision`` plus any options, e.g. ``tflite:int8,io=float`` (the manifest's target)."""
        return self.name + "".join(f",{k}={_show(v)}" for k, v in self.options)

    @property
    def label(self) -> str:
        """Name plus options, unique per artifact (file names are derived from it)."""
        extra = "".join(f"-{k}-{_slug(v)}" for k, v in self.options)
        return f"{self.format}-{self.precision}{extra}"

    @classmethod
    def parse(cls, text: str) -> "Target":
        head, *rest = [p.strip() for p in str(text).split(",")]
        fmt, _, precision = head.partition(":")
        if not fmt:
            raise RecipeError(f"target {text!r} is not 'format:precision', e.g. 'tflite:int8'")
        opts = []
        for item in rest:
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise RecipeError(f"target option {item!r} in {text!r} is not key=value, e.g. 'tflite:int8,io=float'")
            opts.append((key.strip(), _scalar(value.strip())))
        return cls(fmt.strip().lower(), (precision or "fp32").strip().lower(), tuple(sorted(opts)))

    @classmethod
    def from_value(cls, value: Any) -> "Target":
        if isinstance(value, Target):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, Mapping):
            d = dict(value)
            if "format" not in d:
                raise RecipeError(f"target {value!r} needs a 'format' key, e.g. {{format: tflite, precision: int8}}")
            fmt, precision = str(d.pop("format")).lower(), str(d.pop("precision", "fp32")).lower()
            # Lists (e.g. keep_float layer names) become tuples so a Target stays hashable data.
            items = ((k, tuple(v) if isinstance(v, list) else v) for k, v in d.items())
            return cls(fmt, precision, tuple(sorted(items)))
        raise RecipeError(f"target {value!r} must be 'format:precision' or a mapping with format/precision")

    def to_value(self) -> Any:
        if not self.options:
            return self.name
        return {"format": self.format, "precision": self.precision,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in self.options}}


def _show(value: Any) -> str:
    """Option value for display: a list of layer names reads as a count, not a wall of text."""
    if isinstance(value, (tuple, list)):
        return f"[{len(value)}]"
    return str(value)


def _slug(value: Any) -> str:
    """Option value safe in a file name: scalars as they are, lists as a short stable hash."""
    if isinstance(value, (tuple, list)):
        import hashlib

        return f"{len(value)}-" + hashlib.sha256("\n".join(map(str, value)).encode()).hexdigest()[:8]
    import re

    return re.sub(r"[^A-Za-z0-9_.]+", "_", str(value))


def _scalar(text: str) -> Any:
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class Recipe:
    """Everything :func:`edgekit.convert.convert` needs, as data.

    Attributes:
        model: ``.keras``/``.h5`` file, SavedModel folder, or zoo name.
        targets: Artifacts to produce.
        calib: Representative data for int8 (path, image folder or ``digits[:split]``); zoo
            models default to their own calibration split.
        eval: Held-out data for validation; zoo models default to their own eval split.
        calib_limit: Calibration samples drawn (seeded); TFLite's guidance is 100-500.
        eval_limit: Validation samples drawn (seeded); ``None`` uses all.
        seed: Seed for sampling and zoo training.
        tolerances: Per-precision overrides, e.g. ``{"int8": {"max_accuracy_drop": 1.0}}``; the key
            ``"*"`` applies to every precision.
        allow_unsafe: Allow Keras ``Lambda`` layers (arbitrary code) when loading the model.
        accuracy_aware: When a ``tflite:int8`` / ``onnx:int8`` artifact misses its tolerance, keep
            the most sensitive layers in float until it meets it (see
            :mod:`edgekit.convert.accuracy_aware`); the CLI's ``--max-accuracy-drop`` turns it on.
        images: Preprocessing for image-folder data, as the model was trained:
            ``scale`` (default 1/255), ``mean``, ``std`` (numbers or per-channel lists). Size and
            colour come from the model's input shape.
        train: Labelled training data for ``stages`` (same forms as ``calib``); zoo models default
            to their own training split.
        train_limit: Training samples drawn (seeded); ``None`` uses all.
        stages: Training-time stages applied in order before export, e.g.
            ``[{prune: {sparsity: 0.8}}, {qat: {}}]`` (see :mod:`edgekit.convert.stages.config`).
        max_batch: Samples per model call when predicting reference outputs and validating
            artifacts, and the most per ONNX calibration call; ``None`` sizes batches from a
            memory budget and the model's input and activation bytes
            (:func:`edgekit.convert.batching.batch_for`). Metrics do not depend on it.
    """

    model: str
    targets: tuple[Target, ...] = ()
    calib: str | None = None
    eval: str | None = None
    calib_limit: int = 200
    eval_limit: int | None = 1000
    seed: int = 0
    tolerances: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    allow_unsafe: bool = False
    accuracy_aware: bool = False
    images: tuple[tuple[str, Any], ...] = ()
    train: str | None = None
    train_limit: int | None = None
    stages: tuple[Any, ...] = ()
    max_batch: int | None = None

    def __post_init__(self) -> None:
        if not self.model or not isinstance(self.model, str):
            raise RecipeError(f"recipe needs 'model': a .keras/.h5 file, a SavedModel folder or a zoo name (got {self.model!r})")
        if not self.targets:
            raise RecipeError("recipe has no targets: add at least one, e.g. targets: [tflite:fp32, tflite:int8]")
        names = [t.label for t in self.targets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise RecipeError(f"recipe lists target(s) {dupes} more than once")
        positive_int(self.calib_limit, "calib_limit")
        positive_int(self.eval_limit, "eval_limit", allow_none=True, fix="null uses all the evaluation data")
        for k, _ in self.images:
            known_key(k, IMAGE_OPTIONS, "image option")
        for precision, items in self.tolerances:
            Tolerance.for_precision(precision, dict(items))  # validates names and values early
        positive_int(self.train_limit, "train_limit", allow_none=True, fix="null uses all the training data")
        positive_int(self.max_batch, "max_batch", allow_none=True, fix="null sizes batches from the memory budget")
        object.__setattr__(self, "stages", parse_stages(self.stages))

    def tolerance(self, precision: str) -> Tolerance:
        """Effective tolerance for ``precision``: defaults < ``"*"`` overrides < per-precision overrides.

        With training-time stages the default accuracy budget is at least
        :data:`STAGED_ACCURACY_DROP` points for every precision: pruning trades accuracy for size by
        design, so a pruned fp32 file should not fail the 0.5-point fp32 default. Any explicit
        override still wins.
        """
        over: dict[str, Any] = {}
        if self.stages:
            base = DEFAULT_TOLERANCES.get(precision, DEFAULT_TOLERANCES["int8"])["max_accuracy_drop"] or 0.0
            over["max_accuracy_drop"] = max(base, STAGED_ACCURACY_DROP)
        tol = dict(self.tolerances)
        over.update(dict(tol.get("*", ())))
        over.update(dict(tol.get(precision, ())))
        return Tolerance.for_precision(precision, over)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "targets": [t.to_value() for t in self.targets],
            "calib": self.calib,
            "eval": self.eval,
            "calib_limit": self.calib_limit,
            "eval_limit": self.eval_limit,
            "seed": self.seed,
            "tolerances": {p: dict(items) for p, items in self.tolerances},
            "allow_unsafe": self.allow_unsafe,
            "accuracy_aware": self.accuracy_aware,
            "images": {k: list(v) if isinstance(v, tuple) else v for k, v in self.images},
            "train": self.train,
            "train_limit": self.train_limit,
            "stages": [s.to_value() for s in self.stages],
            "max_batch": self.max_batch,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Recipe":
        if not isinstance(d, Mapping):
            raise RecipeError(f"a recipe must be a mapping of keys to values, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in known]
        if unknown:
            k = unknown[0]
            did = did_you_mean(k, known, "; did you mean {!r}?")
            raise RecipeError(f"unknown recipe key {k!r}{did} (known keys: {', '.join(known)})")
        kw = dict(d)
        if not kw.get("model"):
            raise RecipeError("recipe needs 'model': a .keras/.h5 file, a SavedModel folder or a zoo name")
        targets = kw.get("targets") or ()
        if isinstance(targets, (str, Mapping)):
            targets = [targets]
        kw["targets"] = tuple(Target.from_value(t) for t in targets)
        tols = kw.get("tolerances") or {}
        if not isinstance(tols, Mapping):
            raise RecipeError(f"tolerances must map precision -> {{check: value}}, got {tols!r}")
        known_checks = [f.name for f in dataclasses.fields(Tolerance)]
        items = []
        for precision, checks in tols.items():
            if not isinstance(checks, Mapping):
                raise RecipeError(f"tolerances[{precision!r}] must be a mapping like {{max_accuracy_drop: 1.0}}")
            for c in checks:
                if c not in known_checks:
                    did = did_you_mean(c, known_checks, "; did you mean {!r}?")
                    raise RecipeError(f"unknown tolerance {c!r}{did} (known: {', '.join(known_checks)})")
            items.append((str(precision), tuple(sorted(checks.items()))))
        kw["tolerances"] = tuple(sorted(items))
        images = kw.get("images") or {}
        if not isinstance(images, Mapping):
            raise RecipeError(f"images must map option -> value (scale, mean, std), got {images!r}")
        kw["images"] = tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in images.items()))
        kw["stages"] = parse_stages(kw.get("stages"))
        for key in ("calib", "eval", "model", "train"):
            if kw.get(key) is not None and not isinstance(kw[key], str):
                kw[key] = str(kw[key])
        return cls(**kw)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Recipe":
        """Read a recipe file (YAML or JSON). Relative data/model paths resolve against the file's folder."""
        p = Path(path)
        if not p.is_file():
            raise RecipeError(f"recipe file {p} does not exist")
        try:
            import yaml
        except ImportError:
            from edgekit.errors import MissingDependencyError

            raise MissingDependencyError("pyyaml", "convert", "recipe files") from None
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise RecipeError(f"recipe {p} is not valid YAML: {' '.join(str(exc).split())}") from None
        if not isinstance(data, Mapping):
            raise RecipeError(f"recipe {p} must be a mapping (model:, targets:, ...), got {type(data).__name__}")
        data = dict(data)
        for key in ("model", "calib", "eval", "train"):
            v = data.get(key)
            if isinstance(v, str) and not Path(v).is_absolute() and (p.parent / v).exists():
                data[key] = str(p.parent / v)
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "Recipe":
        return dataclasses.replace(self, **changes)
