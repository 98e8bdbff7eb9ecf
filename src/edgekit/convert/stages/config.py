"""Training-time stage configs as plain data: :class:`PruneConfig`, :class:`QatConfig`, :class:`FitConfig`.

No TensorFlow here: recipes, the CLI and the manifest read these without the heavy half. Every
config is a frozen dataclass that checks itself in ``__post_init__``, round-trips through
``to_value``/``from_value``, and rejects unknown keys with a hint.

In a recipe, ``stages`` is a list of one-key mappings, applied in order::

    stages:
      - prune: {sparsity: 0.8, fit: {epochs: 3}}
      - qat: {fit: {epochs: 2, learning_rate: 1.0e-5}}

Example:
    >>> stages = parse_stages([{"prune": {"sparsity": 0.8}}, "qat"])
    >>> [s.kind for s in stages], stages[0].target_sparsity, stages[1].fit.epochs
    (['prune', 'qat'], 0.8, 1)
    >>> parse_stages([s.to_value() for s in stages]) == stages
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

from edgekit.convert.stages.base import STAGES_REGISTRY, config_class
from edgekit.errors import RecipeError
from edgekit.registry import did_you_mean

STRATEGIES = ("default", "mirrored", "multi_worker")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
LOSSES = ("auto", "sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
          "mean_squared_error", "mean_absolute_error", "huber")
# Short names users type; stored under the canonical name so recipes compare equal.
LOSS_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}
SCHEDULES = ("polynomial", "constant")


def _unknown_keys(d: Mapping[str, Any], cls: type, what: str) -> None:
    known = [f.name for f in dataclasses.fields(cls)]
    for k in d:
        if k not in known:
            did = did_you_mean(str(k), known, "; did you mean {!r}?")
            raise RecipeError(f"unknown {what} key {k!r}{did} (known keys: {', '.join(known)})")


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RecipeError(f"{what} must be a mapping of keys to values, got {value!r}")
    return dict(value)


def _names(value: Any, what: str) -> tuple[str, ...]:
    """A list of layer names/types; a single string is one name (never split into characters)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise RecipeError(f"{what} must be a list of layer names, e.g. [dense, conv2], got {value!r}")
    return tuple(value)


def _number(value: Any, what: str, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecipeError(f"{what} must be a number, got {value!r}")
    bad_lo = value <= lo if lo_open else value < lo
    bad_hi = value >= hi if hi_open else value > hi
    if bad_lo or bad_hi:
        span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise RecipeError(f"{what} must be in {span}, got {value!r}")
    return float(value)


def _int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RecipeError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _choice(value: Any, what: str, choices: Sequence[str]) -> str:
    if value not in choices:
        # Prefixes count as close too: "poly" means "polynomial" though difflib scores it low.
        prefix = [c for c in choices if str(value) and c.startswith(str(value))]
        did = f" (did you mean {prefix[0]!r}?)" if prefix else did_you_mean(str(value), choices)
        raise RecipeError(f"{what} {value!r} is not one of {', '.join(choices)}{did}")
    return value


def parse_structure(text: str) -> tuple[int, int]:
    """``"2:4"`` -> ``(2, 4)``: M zeros in every N consecutive weights (tfmot's ``sparsity_m_by_n``).

    Example:
        >>> parse_structure("2:4")
        (2, 4)
    """
    m, colon, n = str(text).partition(":")
    try:
        pair = (int(m), int(n))
    except ValueError:
        pair = None
    if not colon or pair is None or not 0 < pair[0] < pair[1]:
        raise RecipeError(f"prune structure {text!r} is not 'M:N' with 0 < M < N (M zeros in every N weights), e.g. '2:4'")
    return pair


@dataclass(frozen=True)
class FitConfig:
    """How a stage fine-tunes: epochs, batch, optimiser, loss and distribution strategy.

    Attributes:
        epochs: Passes over the training data.
        batch_size: Global batch size (split across replicas by the strategy).
        learning_rate: Optimiser learning rate.
        optimizer: ``"adam"``, ``"sgd"`` or ``"rmsprop"``.
        loss: ``"auto"`` (the model's compile state, else guessed from its output and the labels)
            or a loss name, e.g. ``"sparse_categorical_crossentropy"``; ``mse``/``mae`` are accepted.
        from_logits: For cross-entropy losses: ``None`` detects logits vs probabilities from the
            model's outputs on training data.
        strategy: ``"default"`` (one device), ``"mirrored"`` (all local GPUs) or
            ``"multi_worker"`` (hosts described by ``TF_CONFIG``).

    Example:
        >>> FitConfig.from_value({"epochs": 3, "loss": "mse"}).loss
        'mean_squared_error'
    """

    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    loss: str = "auto"
    from_logits: bool | None = None
    strategy: str = "default"

    def __post_init__(self) -> None:
        _int(self.epochs, "fit epochs", 1)
        _int(self.batch_size, "fit batch_size", 1)
        _number(self.learning_rate, "fit learning_rate", 0.0, 10.0, lo_open=True)
        _choice(self.optimizer, "fit optimizer", OPTIMIZERS)
        loss = LOSS_ALIASES.get(self.loss, self.loss) if isinstance(self.loss, str) else self.loss
        object.__setattr__(self, "loss", _choice(loss, "fit loss", LOSSES))
        if self.from_logits is not None and not isinstance(self.from_logits, bool):
            raise RecipeError(f"fit from_logits must be true, false or null (detect), got {self.from_logits!r}")
        _choice(self.strategy, "fit strategy", STRATEGIES)

    def to_value(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_value(cls, value: Any, base: "FitConfig | None" = None) -> "FitConfig":
        """Build from a mapping; keys not given keep ``base``'s values (a stage's defaults)."""
        if isinstance(value, FitConfig):
            return value
        d = _mapping(value, "fit")
        _unknown_keys(d, cls, "fit")
        return dataclasses.replace(base or cls(), **d)


class _Stage:
    """What prune and QAT configs share: layer selection and the fit settings."""

    kind: ClassVar[str] = ""
    default_fit: ClassVar[FitConfig] = FitConfig()

    def to_value(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        for k in ("layers", "layer_types", "skip"):
            d[k] = list(d[k])
        d["fit"] = self.fit.to_value()  # type: ignore[attr-defined]
        return {self.kind: d}

    @classmethod
    def from_value(cls, value: Any) -> Any:
        if isinstance(value, cls):
            return value
        d = _mapping(value, cls.kind)
        _unknown_keys(d, cls, cls.kind)
        for k in ("layers", "layer_types", "skip"):
            if k in d:
                d[k] = _names(d[k], f"{cls.kind} {k}")
        d["fit"] = FitConfig.from_value(d.get("fit"), base=cls.default_fit)
        return cls(**d)

    def _check_selection(self) -> None:
        for k in ("layers", "layer_types", "skip"):
            object.__setattr__(self, k, _names(getattr(self, k), f"{self.kind} {k}"))
        both = sorted(set(self.layers) & set(self.skip))  # type: ignore[attr-defined]
        if both:
            raise RecipeError(f"{self.kind}: layer(s) {both} are both selected (layers) and skipped (skip); keep one")
        if not isinstance(self.fit, FitConfig):  # type: ignore[attr-defined]
            raise RecipeError(f"{self.kind} fit must be a FitConfig or a mapping, got {self.fit!r}")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PruneConfig(_Stage):
    """Magnitude pruning (tfmot ``prune_low_magnitude``), fine-tuned, then stripped.

    Attributes:
        sparsity: Target fraction of zero weights in each pruned layer; default 0.5. Not with
            ``structure``, which fixes it (2:4 is 0.5).
        schedule: ``"polynomial"`` (PolynomialDecay from ``initial_sparsity`` to the target) or
            ``"constant"`` (ConstantSparsity: the target from ``begin_step`` on).
        initial_sparsity: Polynomial schedule's starting sparsity.
        power: Polynomial schedule's exponent (tfmot's default, 3).
        begin_step: Training step at which pruning starts.
        end_step: Step at which the polynomial schedule reaches the target; ``None`` = 70 % of the
            fine-tuning steps, so the remaining steps recover accuracy with the mask fixed.
        frequency: Steps between mask updates; ``None`` = about 10 updates over the schedule.
        structure: ``"M:N"`` structured sparsity (e.g. ``"2:4"``: 2 zeros in every 4 weights along
            the input channel), for kernels of Dense and Conv2D-like layers.
        layers: Prune only these layers (by name); with ``layer_types``, their union.
        layer_types: Prune only layers of these classes, e.g. ``["Dense"]``.
        skip: Never prune these layers (by name).
        fit: Fine-tuning settings (default 2 epochs, learning rate 1e-3).

    Example:
        >>> PruneConfig(structure="2:4").target_sparsity
        0.5
        >>> PruneConfig.from_value({"sparsity": 0.8, "fit": {"epochs": 3}}).fit.epochs
        3
    """

    kind: ClassVar[str] = "prune"
    default_fit: ClassVar[FitConfig] = FitConfig(epochs=2, learning_rate=1e-3)

    sparsity: float | None = None
    schedule: str = "polynomial"
    initial_sparsity: float = 0.0
    power: float = 3.0
    begin_step: int = 0
    end_step: int | None = None
    frequency: int | None = None
    structure: str | None = None
    layers: tuple[str, ...] = ()
    layer_types: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    fit: FitConfig = field(default_factory=lambda: PruneConfig.default_fit)

    def __post_init__(self) -> None:
        self._check_selection()
        if self.sparsity is not None:
            _number(self.sparsity, "prune sparsity", 0.0, 1.0, lo_open=True, hi_open=True)
        _choice(self.schedule, "prune schedule", SCHEDULES)
        _number(self.initial_sparsity, "prune initial_sparsity", 0.0, 1.0, hi_open=True)
        _number(self.power, "prune power", 0.0, 100.0, lo_open=True)
        _int(self.begin_step, "prune begin_step", 0)
        if self.end_step is not None:
            _int(self.end_step, "prune end_step", 1)
            if self.end_step <= self.begin_step:
                raise RecipeError(f"prune end_step ({self.end_step}) must be after begin_step ({self.begin_step})")
        if self.frequency is not None:
            _int(self.frequency, "prune frequency", 1)
        if self.structure is not None:
            m, n = parse_structure(self.structure)
            object.__setattr__(self, "structure", f"{m}:{n}")
            if self.sparsity is not None and abs(self.sparsity - m / n) > 1e-9:
                raise RecipeError(
                    f"prune structure {m}:{n} fixes sparsity at {m / n:g}; drop sparsity: {self.sparsity:g} or the structure"
                )
        if self.schedule == "polynomial" and self.initial_sparsity >= self.target_sparsity:
            raise RecipeError(
                f"prune initial_sparsity ({self.initial_sparsity:g}) must be below the target sparsity "
                f"({self.target_sparsity:g}), or use schedule: constant"
            )

    @property
    def target_sparsity(self) -> float:
        """The sparsity each pruned layer ends at (M/N for structured pruning)."""
        if self.structure:
            m, n = parse_structure(self.structure)
            return m / n
        return 0.5 if self.sparsity is None else float(self.sparsity)

    @property
    def m_by_n(self) -> tuple[int, int] | None:
        return parse_structure(self.structure) if self.structure else None

    def resolved(self, steps_per_epoch: int) -> "PruneConfig":
        """This config with ``end_step`` and ``frequency`` fixed for a run of ``fit.epochs`` epochs.

        The end step is rounded to a multiple of the frequency after ``begin_step`` so the last
        mask update lands on the target sparsity rather than short of it.

        Example:
            >>> c = PruneConfig(sparsity=0.8, fit=FitConfig(epochs=3)).resolved(steps_per_epoch=40)
            >>> c.begin_step, c.end_step, c.frequency
            (0, 80, 8)
        """
        total = max(1, steps_per_epoch * self.fit.epochs)
        if self.begin_step >= total:
            raise RecipeError(
                f"prune begin_step {self.begin_step} is past the end of fine-tuning ({total} steps = "
                f"{self.fit.epochs} epochs x {steps_per_epoch} steps): lower it or add epochs"
            )
        end = self.end_step if self.end_step is not None else max(self.begin_step + 1, round(0.7 * total))
        freq = self.frequency if self.frequency is not None else max(1, (end - self.begin_step) // 10)
        if self.end_step is None:
            span = max(freq, (end - self.begin_step) // freq * freq)
            end = self.begin_step + span
        return dataclasses.replace(self, end_step=end, frequency=freq)


@dataclass(frozen=True)
class QatConfig(_Stage):
    """Quantization-aware training (tfmot ``quantize_apply``), exported through ``tflite:int8``.

    Attributes:
        layers: Quantize only these layers (annotate them); with ``layer_types``, their union.
            Empty: every layer tfmot supports.
        layer_types: Quantize only layers of these classes, e.g. ``["Conv2D", "Dense"]``.
        skip: Leave these layers float (the TFLite converter quantizes them post-training from
            calibration data). Layers tfmot cannot quantize must be listed here.
        preserve_sparsity: Use tfmot's prune-preserving scheme so pruned zeros stay zero;
            ``None`` = yes when a prune stage ran before.
        fit: Fine-tuning settings (default 1 epoch, learning rate 1e-5).

    Example:
        >>> QatConfig.from_value({"skip": "ln"}).skip
        ('ln',)
    """

    kind: ClassVar[str] = "qat"
    # A converged model only needs its weights nudged once the ranges are calibrated (qat.py):
    # on digits, 1e-4 cost up to 0.6 points against post-training int8, 1e-5 never did.
    default_fit: ClassVar[FitConfig] = FitConfig(epochs=1, learning_rate=1e-5)

    layers: tuple[str, ...] = ()
    layer_types: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    preserve_sparsity: bool | None = None
    fit: FitConfig = field(default_factory=lambda: QatConfig.default_fit)

    def __post_init__(self) -> None:
        self._check_selection()
        if self.preserve_sparsity is not None and not isinstance(self.preserve_sparsity, bool):
            raise RecipeError(f"qat preserve_sparsity must be true, false or null (auto), got {self.preserve_sparsity!r}")


def stage_from_value(value: Any) -> Any:
    """One stage from ``{"prune": {...}}``, ``{"qat": null}``, ``"qat"`` or a config object.

    Example:
        >>> stage_from_value({"prune": {"structure": "2:4"}}).m_by_n
        (2, 4)
        >>> stage_from_value("qta")
        Traceback (most recent call last):
        ...
        edgekit.errors.RecipeError: unknown stage 'qta'; did you mean 'qat'? (stages: prune, qat)
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and getattr(value, "kind", None) in STAGES_REGISTRY:
        return value
    if isinstance(value, str):
        kind, body = value, None
    elif isinstance(value, Mapping) and len(value) == 1:
        kind, body = next(iter(value.items()))
    else:
        raise RecipeError(
            f"stage {value!r} must be one mapping like {{prune: {{sparsity: 0.8}}}} or {{qat: {{}}}}, or the name 'qat'"
        )
    return config_class(kind).from_value(body)


def check_stages(stages: Sequence[Any]) -> None:
    """Each stage at most once, prune before QAT (tfmot cannot prune a quantized model).

    Example:
        >>> check_stages([QatConfig(), PruneConfig()])
        Traceback (most recent call last):
        ...
        edgekit.errors.RecipeError: prune after qat is not supported (tfmot cannot prune a quantized model): put prune first
    """
    kinds = [s.kind for s in stages]
    for k in set(kinds):
        if kinds.count(k) > 1:
            raise RecipeError(f"stage {k!r} is listed {kinds.count(k)} times; give it once (with all its options)")
    if "prune" in kinds and "qat" in kinds and kinds.index("qat") < kinds.index("prune"):
        raise RecipeError("prune after qat is not supported (tfmot cannot prune a quantized model): put prune first")


def parse_stages(value: Any) -> tuple[Any, ...]:
    """The recipe's ``stages`` list as config objects, checked for order and duplicates.

    Example:
        >>> [s.kind for s in parse_stages([{"prune": {"sparsity": 0.8}}, {"qat": None}])]
        ['prune', 'qat']
    """
    if value is None:
        return ()
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        value = [value]
    stages = tuple(stage_from_value(v) for v in value)
    check_stages(stages)
    return stages


__all__ = ["FitConfig", "PruneConfig", "QatConfig", "check_stages", "parse_stages", "parse_structure",
           "stage_from_value"]
