"""Batch sizes from a byte budget: how many samples one model call may take at once.

Reference prediction (eager Keras), staged-model prediction and validation (LiteRT, onnxruntime...)
run the eval data through a model in batches. A fixed sample count does not bound memory: 256
digits (8x8) need kilobytes, 256 MobileNetV2 224x224 samples need ~25 GB of activations. So the
batch is sized from bytes:

    per-sample bytes = input bytes + activation bytes
    batch            = clamp(budget // per-sample bytes, 1, cap), or ``max_batch`` when given

Activation bytes of a functional/sequential Keras model are the sum, over its layers, of each
layer's output tensor per sample (nested functional models are entered, so their layers count
rather than only their outputs). That is an upper bound: Keras frees a tensor once no later layer
needs it, and LiteRT/onnxruntime reuse buffers, so the real peak is a fraction of it; the budget is
meant against this conservative figure. Where layer outputs are unknown (a subclassed model's
insides, a SavedModel without Keras layers) the activations are taken as
:data:`OPAQUE_ACTIVATION_FACTOR` times the input bytes.

Metrics are computed on the concatenated outputs, so the batch changes none of them beyond float
rounding: LiteRT is bitwise batch-independent, eager Keras (oneDNN) is not (its float32 logits move
by <= 6e-6 on the digits models between batch 7 and 256). With the default budget the zoo's 8x8
models keep the reference batch of 256 they always had, so their manifests are bit-identical to
before; ``max_batch=7`` changes only the SNR of exact fp32 artifacts, which then measures rounding
(134.3 instead of 134.5 dB), every other metric agrees to 1e-6.

Eval data memory-mapped from ``.npy`` (``np.load(mmap_mode="r")``) is read one batch at a time by
these loops; ``.npz`` members (zip entries, often compressed) cannot be mapped and are read whole.

Example:
    >>> from edgekit.manifest import TensorSpec
    >>> digits = [TensorSpec("image", (None, 8, 8, 1), "float32")]
    >>> per_sample_bytes(digits)  # 256 input bytes + 32 x 256 opaque activations
    8448
    >>> batch_for(digits, 64 << 10), batch_for(digits, 1 << 30), batch_for(digits, 1 << 30, max_batch=7)
    (7, 256, 7)
    >>> batch_for(digits, 100)  # less than one sample still runs, one at a time
    1
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable, Sequence

import numpy as np

from edgekit.checks import positive_int
from edgekit.errors import RecipeError
from edgekit.runtime.session import OPAQUE_ACTIVATION_FACTOR  # the one estimate, shared with serve's batch limit

# Bytes of activations (as estimated above) one batch may take. 512 MiB keeps MobileNetV2 224x224
# at 6 samples per call (its sum of layer outputs is ~83 MiB per sample) while every
# model the zoo ships (8x8 digits) still gets the cap; on a small machine it is at most an eighth
# of the physical memory (see default_budget).
DEFAULT_BUDGET_BYTES = 512 << 20
# Never more samples per call than this, however small the model: past it larger batches buy no
# speed, and it is the batch reference prediction always used.
DEFAULT_CAP = 256


def default_budget() -> int:
    """The budget used when none is given: :data:`DEFAULT_BUDGET_BYTES`, at most 1/8 of physical memory.

    Example:
        >>> 64 << 20 <= default_budget() <= DEFAULT_BUDGET_BYTES
        True
    """
    try:
        phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return DEFAULT_BUDGET_BYTES
    return max(64 << 20, min(DEFAULT_BUDGET_BYTES, phys // 8))


def check_max_batch(value: Any, what: str = "max_batch") -> int | None:
    """``value`` as a positive ``int`` or ``None`` (size batches from the budget).

    Example:
        >>> check_max_batch(0)
        Traceback (most recent call last):
        ...
        edgekit.errors.RecipeError: max_batch must be a positive integer or null, got 0: null sizes batches from the memory budget
    """
    return positive_int(value, what, allow_none=True, error=RecipeError, fix="null sizes batches from the memory budget")


def batch_for(model_or_specs: Any, budget_bytes: int | None = None, *, max_batch: int | None = None,
              cap: int = DEFAULT_CAP, samples: Sequence[np.ndarray] | None = None) -> int:
    """Samples per model call so one batch of inputs and activations fits ``budget_bytes``.

    Args:
        model_or_specs: A Keras model, a loaded source (anything with ``model``, ``inputs`` and
            ``is_keras``, i.e. :class:`~edgekit.convert.source.SourceModel`), or input
            :class:`~edgekit.manifest.TensorSpec` s (batch axis first).
        budget_bytes: Bytes one batch may take (``None``: :func:`default_budget`).
        max_batch: Use exactly this batch instead (the recipe's ``max_batch``, ``--max-batch``).
        cap: The largest batch the budget may give.
        samples: The data to be run (one array per input), whose shapes stand in for ``None``
            dimensions of the specs (e.g. a fully convolutional model fed 224x224 images).

    Returns:
        ``max_batch`` if given, else ``budget // per-sample bytes`` clamped to ``1..cap``.

    Example:
        >>> from edgekit.manifest import TensorSpec
        >>> batch_for([TensorSpec("x", (None, 224, 224, 3), "float32")], 512 << 20)
        27
    """
    if max_batch is not None:
        return check_max_batch(max_batch)  # type: ignore[return-value]
    budget = default_budget() if budget_bytes is None else positive_int(budget_bytes, "batch budget_bytes")
    per = per_sample_bytes(model_or_specs, samples=samples)
    return int(min(max(budget // max(per, 1), 1), positive_int(cap, "batch cap")))


def per_sample_bytes(model_or_specs: Any, *, samples: Sequence[np.ndarray] | None = None) -> int:
    """Input bytes plus estimated activation bytes of one sample (see the module doc).

    Example:
        >>> from edgekit.manifest import TensorSpec
        >>> per_sample_bytes([TensorSpec("ids", (None, 10), "int32")])
        1320
    """
    model, specs = _model_and_specs(model_or_specs)
    nominal = sum(_elements(s.shape[1:]) * _itemsize(s.dtype) for s in specs)
    actual = nominal
    if samples is not None and any(d is None for s in specs for d in s.shape[1:]):
        actual = sum(int(np.prod(np.shape(a)[1:], dtype=np.int64)) * np.dtype(getattr(a, "dtype", "float32")).itemsize
                     for a in samples)
    scale = actual / nominal if nominal else 1.0
    acts = None if model is None else _keras_activation_bytes(model, scale)
    if acts is None:
        acts = OPAQUE_ACTIVATION_FACTOR * actual
    return int(actual + acts)


def _model_and_specs(obj: Any) -> tuple[Any, Sequence[Any]]:
    if hasattr(obj, "is_keras") and hasattr(obj, "inputs"):  # a SourceModel
        return (obj.model if obj.is_keras else None), obj.inputs
    if hasattr(obj, "layers") and getattr(obj, "inputs", None):  # a built Keras model
        return obj, list(obj.inputs)  # its input tensors have a shape (batch first) and a dtype
    specs = list(obj)
    if not all(hasattr(s, "shape") and hasattr(s, "dtype") for s in specs):
        raise TypeError(f"batch_for needs a Keras model, a source model or input TensorSpecs, got {obj!r}")
    return None, specs


def _elements(shape: Iterable[Any]) -> int:
    return int(math.prod(1 if d is None else int(d) for d in shape))


def _itemsize(dtype: Any) -> int:
    try:
        return np.dtype(str(getattr(dtype, "name", dtype))).itemsize
    except TypeError:
        return 4  # bfloat16 and other names numpy does not know: count them as float32


def _tensor_bytes(t: Any, scale: float) -> int:
    shape = tuple(getattr(t, "shape", ()) or ())[1:]
    n = _elements(shape) * _itemsize(getattr(t, "dtype", "float32"))
    # A None dimension (unknown spatial size) follows the input: 1 stands for what the data has.
    return int(n * scale) if any(d is None for d in shape) else n


def _keras_activation_bytes(model: Any, scale: float) -> int | None:
    """Sum of layer output bytes per sample; ``None`` when the model's layers say nothing."""
    layers = getattr(model, "layers", None)
    if not layers:
        return None
    total, largest, unknown = 0, 0, 0
    for layer in layers:
        if type(layer).__name__ == "InputLayer":
            continue  # the input is counted once, as input bytes
        if getattr(layer, "layers", None) is not None:  # a nested model
            if getattr(layer, "inputs", None):
                inner = _keras_activation_bytes(layer, scale)  # functional: its layers count
                if inner is not None:
                    total += inner
                    largest = max(largest, inner)
                    continue
            # Subclassed: what happens inside call() is unknown; guess from what goes in.
            ins = _layer_tensors(layer, "input") or []
            total += OPAQUE_ACTIVATION_FACTOR * sum(_tensor_bytes(t, scale) for t in ins)
            total += sum(_tensor_bytes(t, scale) for t in _layer_tensors(layer, "output") or [])
            continue
        outs = _layer_tensors(layer, "output")
        if outs is None:
            unknown += 1
            continue
        n = sum(_tensor_bytes(t, scale) for t in outs)
        total += n
        largest = max(largest, n)
    # A layer whose output cannot be read (a shared layer called on several tensors) counts as the
    # largest layer seen: an estimate, not a guess of zero.
    return total + unknown * largest


def _layer_tensors(layer: Any, which: str) -> list[Any] | None:
    try:
        value = getattr(layer, which)
    except (AttributeError, ValueError, RuntimeError):  # shared layers: several nodes, no one output
        return None
    if value is None:
        return None
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


__all__ = ["DEFAULT_BUDGET_BYTES", "DEFAULT_CAP", "OPAQUE_ACTIVATION_FACTOR", "batch_for", "check_max_batch",
           "default_budget", "per_sample_bytes"]
